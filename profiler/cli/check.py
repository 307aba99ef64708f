"""``wattbench check``: is each implementation of a kernel correct here, and how fast?

Runs every available implementation (or the named ones; the vendor baseline always runs) once on
fresh seeded random inputs, with the output poisoned (NaN) first, and compares it with the
family's float64 reference (relative Frobenius error against the dtype's tolerance). On a CUDA
device it also times them (CUDA events, median after warm-up) and gives TFLOP/s and the speedup
over the baseline. The timing follows an L2 policy (``--l2``, :mod:`wattbench.kernels.l2`):
``rotate`` (default; ``--flush-l2`` is the old name) runs each launch on the next of several
seeded input sets that together hold twice the L2, so operands come from device memory as in
the energy loop of ``wattbench sweep``; ``warm`` reuses the checked inputs. Without a CUDA
device it is a CPU correctness check: the vendor impl runs torch's CPU matmul, and Triton runs
in its interpreter -- this command sets ``TRITON_INTERPRET=1`` itself before any Triton kernel
is imported when torch sees no CUDA device (small shapes only).

Families that declare a comparison (the quantized GEMMs: the same (M, N, K) in bf16 on cuBLAS)
get one more column on a CUDA device: that problem is timed the same way and each
implementation's speedup over it is shown (``vs bf16 cuBLAS``) beside the one over the baseline.

Exit code 1 when an implementation fails its tolerance or raises, when an implementation named
with ``--impl`` could not run here, or when nothing could run; 0 otherwise. Unavailable
implementations are listed with the reason. It never changes a GPU setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wattbench.kernels import catalog
from wattbench.kernels.comparison import ComparisonTiming, report_json, time_comparison
from wattbench.kernels.env import Environment, probe, use_triton_interpreter_without_cuda
from wattbench.kernels.family import choice_text, shape_text
from wattbench.kernels.timing import TimingSettings
from wattbench.kernels.verify import Report, check, l2_lines
from wattbench.profiler.cli.args import add_l2_arguments, non_negative_int, positive_int

SCHEMA = "wattbench.check/1"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="check every implementation of a kernel against a float64 reference",
        description="Run each implementation of a kernel once on seeded random inputs, compare "
        "with a float64 reference (relative Frobenius error vs the dtype's tolerance) and, on a "
        "CUDA GPU, time it (ms, TFLOP/s, speedup over the vendor baseline). Without a CUDA "
        "device it checks on the CPU: the vendor impl runs torch on the CPU and Triton runs in "
        "its interpreter (TRITON_INTERPRET=1 is set for you; small shapes only). Exit code 1 "
        "if any implementation fails. Never changes a GPU setting.",
    )
    p.add_argument("--kernel", required=True, help="kernel family, e.g. matmul")
    p.add_argument(
        "--shape",
        required=True,
        help="MxNxK (e.g. 67x45x93), a preset (square, odd, llama3-8b-qkv, ...) or PRESET@M "
        "(`wattbench kernels` lists presets)",
    )
    p.add_argument(
        "--dtype",
        required=True,
        help="a dtype of the family: bf16, fp16, fp32, tf32, fp8 (matmul); int8, int8-fp16, fp8, "
        "fp8-row (w8a8); bf16-g128, fp16-g32, ... (w4a16)",
    )
    p.add_argument(
        "--impl",
        action="append",
        metavar="IMPL",
        help="implementation to check (repeatable or comma-separated; default: all). The vendor "
        "baseline always runs",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="input seed (default: 0)")
    p.add_argument(
        "--warmup", type=non_negative_int, default=3, help="launches before timing (default: 3)"
    )
    p.add_argument("--reps", type=positive_int, default=10, help="timed repetitions (default: 10)")
    add_l2_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--observe-only",
        action="store_true",
        help="accepted for symmetry with sweep: check never changes a GPU setting anyway",
    )
    p.set_defaults(run=run)


def _impl_names(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def run(args: argparse.Namespace) -> int:
    fam = catalog.family(args.kernel)
    fam.dtype(args.dtype)
    shapes = fam.shapes(args.shape)
    names = _impl_names(args.impl)
    for name in names or ():
        fam.impl(name)  # unknown names are usage errors before anything runs
    interpreter_set = use_triton_interpreter_without_cuda()
    env = probe(catalog.required_modules())
    timing = TimingSettings(warmup=args.warmup, reps=args.reps, l2=args.l2)
    reports = [
        check(fam, shape, args.dtype, env, impls=names, seed=args.seed, timing=timing)
        for shape in shapes
    ]
    comparisons = [
        time_comparison(fam, rep.shape, env, timing if env.cuda else None, seed=args.seed)
        for rep in reports
    ]
    not_run = sorted(
        {
            f"{r.impl} ({r.reason})"
            for rep in reports
            for r in rep.results
            if (names and r.impl in names and not r.ran and not r.failed)
        }
    )
    nothing_ran = [rep for rep in reports if not any(r.ran for r in rep.results)]
    failed = any(rep.failed for rep in reports) or bool(not_run) or bool(nothing_ran)
    if args.json:
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "environment": env.to_json(),
            "triton_interpret_set_by_check": interpreter_set,
            "passed": not failed,
            "reports": [
                report_json(rep, cmp) for rep, cmp in zip(reports, comparisons, strict=True)
            ],
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(render_environment(env, interpreter_set))
        for rep, cmp in zip(reports, comparisons, strict=True):
            print()
            print(render(rep, cmp))
    if not_run:
        print(f"wattbench check: not checked here: {', '.join(not_run)}", file=sys.stderr)
    if nothing_ran:
        print(
            "wattbench check: no implementation could run for "
            + ", ".join(shape_text(rep.shape) for rep in nothing_ran),
            file=sys.stderr,
        )
    return 1 if failed else 0


def render_environment(env: Environment, interpreter_set: bool) -> str:
    stack = "  ".join(f"{m} {v or 'not installed'}" for m, v in env.modules.items())
    if env.cuda:
        cc = env.compute_capability
        where = f"CUDA device 0: {env.device_name} (sm_{cc[0]}{cc[1]})" if cc else env.device_name
    else:
        triton = (
            "Triton runs in its interpreter"
            + (" (TRITON_INTERPRET=1 set by wattbench check)" if interpreter_set else "")
            if env.triton_interpret
            else "Triton needs a GPU (TRITON_INTERPRET is set to something other than 1)"
        )
        where = (
            f"no CUDA device ({env.cuda_error}): CPU correctness check, no timings; the vendor "
            f"impl runs torch on the CPU; {triton}"
        )
    return f"{where}\n{stack}"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}"


def render(rep: Report, comparison: ComparisonTiming | None = None) -> str:
    if rep.reference_device:
        ref = f"float64 reference on {rep.reference_device}"
    else:
        ref = "unverified" if any(r.ran for r in rep.results) else "nothing ran"
    cmp_head = f"{'vs ' + comparison.label:>16}" if comparison else ""
    lines = [
        f"{rep.family} {shape_text(rep.shape)} {rep.dtype}  seed {rep.seed}  "
        f"{rep.work.flops / 1e9:.4g} GFLOP  {ref}",
        f"  {'impl':<14}{'rel.error':>10}{'tolerance':>11}  {'result':<12}{'time ms':>9}"
        f"{'TFLOP/s':>9}{'vs ' + rep.baseline:>11}{cmp_head}  note",
    ]
    for r in rep.results:
        speed = None if r.speedup_vs_baseline is None else f"{r.speedup_vs_baseline:.2f}x"
        cmp_cell = ""
        if comparison:
            vs = comparison.speedup(r.time_ms)
            cmp_cell = f"{'-' if vs is None else f'{vs:.2f}x':>16}"
        lines.append(
            f"  {r.impl:<14}{_num(r.rel_error, '.2e'):>10}{r.tolerance_rel_fro:>11.1e}  "
            f"{r.status:<12}{_num(r.time_ms, '.4f'):>9}{_num(r.tflops, '.1f'):>9}"
            f"{speed or '-':>11}{cmp_cell}  {r.reason or choice_text(r.kernel)}".rstrip()
        )
    lines += l2_lines(rep)
    if comparison:
        lines.append(f"  {comparison.describe()}")
    return "\n".join(lines)
