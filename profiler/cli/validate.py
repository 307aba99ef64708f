"""``wattbench validate``: the GPU acceptance run (library: :mod:`wattbench.profiler.validate`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wattbench.profiler.cli.args import bounded
from wattbench.profiler.errors import UsageError

STATUS_MARK = {
    "pass": "ok",
    "fail": "FAIL",
    "info": "--",
    "unavailable": "n/a",
    "skipped": "skip",
    "error": "ERROR",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="the GPU acceptance run: correctness, bandwidth, targets, sensors, in a budget",
        description="Within a time budget, without changing any GPU setting: provenance, "
        "every kernel checked against float64, HBM bandwidth and a cuBLAS anchor, the "
        "performance targets timed with CUDA graphs against their references, and the NVML "
        "sensors characterised around a load step. Each step is written as it ends "
        "(steps.jsonl); --resume runs only what is missing. Ends with a verdict table. "
        "--dry-run runs the same flow here: a simulated GPU, Triton's interpreter.",
    )
    p.add_argument(
        "--device", default="0", help="the GPU (default 0); with --dry-run a sim: selection"
    )
    p.add_argument(
        "--budget-s",
        type=bounded(float, minimum=1),
        default=420.0,
        help="wall-time budget in seconds (default 420)",
    )
    p.add_argument("--out", help="output folder (default <results>/validate/<gpu uuid>)")
    p.add_argument("--resume", action="store_true", help="keep finished steps of --out")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="STEP",
        help="leave out steps whose key starts with STEP (e.g. configs, target:, sensors)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="run the flow on this machine: simulated GPU, Triton interpreter",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from wattbench.kernels import catalog
    from wattbench.kernels.env import probe, use_triton_interpreter_without_cuda
    from wattbench.profiler.device import open_device
    from wattbench.profiler.store import default_results_dir
    from wattbench.profiler.validate.run import Context, run_validate
    from wattbench.profiler.validate.targets import render_verdict

    if args.dry_run:
        use_triton_interpreter_without_cuda()
    env = probe(catalog.required_modules())
    if not args.dry_run and not env.cuda:
        raise UsageError(
            f"no CUDA device here ({env.cuda_error})",
            "run on a machine with a GPU, or pass --dry-run to rehearse the flow here",
        )
    selection = args.device
    if args.dry_run and not selection.startswith("sim:"):
        selection = "sim:h100-sxm"  # a dry run never touches a real GPU
    device = open_device(selection, observe_only=True)
    folder = (
        Path(args.out) if args.out else (default_results_dir() / "validate" / device.identity.uuid)
    )
    argv = sys.argv[1:]
    ctx = Context(args.dry_run, device, env, folder, argv)

    def echo(o: dict) -> None:
        mark = STATUS_MARK.get(o["status"], o["status"])
        kept = " (kept)" if o.get("resumed") else ""
        print(f"[{mark:>5}] {o['title']}: {o.get('summary', '')}{kept}", flush=True)

    if args.dry_run:
        print(
            "DRY RUN: a simulated GPU answers NVML, kernels run in Triton's interpreter; "
            "the steps marked n/a say what a GPU run adds"
        )
    outcomes, rows = run_validate(
        ctx, args.budget_s, resume=args.resume, echo=echo, skip=tuple(args.skip)
    )
    print()
    print(render_verdict(rows))
    print(f"written: {folder} (steps.jsonl, provenance.json, verdict.json, verdict.md)")
    return 1 if any(o["status"] in ("fail", "error") for o in outcomes) else 0
