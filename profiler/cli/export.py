"""``wattbench export``: operating points from run records, for ``apply`` and schedulers.

``--format points`` (default) writes a ``wattbench.points/1`` document (``store/points.py``; one
entry per GPU, workload and objective) to ``-o FILE`` or stdout. ``env``, ``slurm`` and ``k8s``
render the same entries into the folder ``-o DIR`` (``profiler/export/render.py``). The entries
come from run records (files or folders; the newest complete run per GPU and workload, see
``report/runs.py``) or from an existing document (``--from POINTS.json``); ``--gpu``,
``--workload`` (a name or a class) and ``--objective`` narrow them.
"""

from __future__ import annotations

import argparse
import sys

from wattbench.profiler.cli.args import add_runs_argument
from wattbench.profiler.errors import UsageError
from wattbench.profiler.export.points import points_from_runs
from wattbench.profiler.export.render import FORMATS, render
from wattbench.profiler.report.runs import default_runs, load_runs
from wattbench.profiler.store.points import PointsDocument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the chosen operating points of run records for apply and schedulers",
        description="Collect the chosen point per objective from complete run records into a "
        "versioned JSON document that `wattbench apply --from` reads, or render it for Slurm "
        "(--gpu-freq value, power-limit prolog/epilog), Kubernetes (ConfigMap, node labels) "
        "or a shell env file.",
    )
    add_runs_argument(p)
    p.add_argument("--from", dest="points_file", metavar="POINTS.json", help="render this "
                   "points document instead of run records")  # fmt: skip
    p.add_argument(
        "-o", "--out", metavar="OUT", help="output file (points; default or -: stdout) or folder"
    )
    p.add_argument(
        "--format",
        choices=("points", *FORMATS),
        default="points",
        help="points: the JSON document; env, slurm, k8s: files for schedulers in folder -o",
    )
    p.add_argument(
        "--per-device",
        action="store_true",
        help="key entries by GPU UUID (per-device tuning) as well as by model name",
    )
    p.add_argument("--gpu", metavar="NAME", help="only this GPU model (its NVML name)")
    p.add_argument("--workload", help="only this workload (or workload class)")
    p.add_argument("--objective", help="only this objective's points")
    p.set_defaults(run=run)


def _document(args: argparse.Namespace) -> PointsDocument:
    if args.points_file and args.runs:
        raise UsageError("give run records or --from POINTS.json, not both", "")
    if args.points_file:
        if args.per_device:
            raise UsageError("--per-device applies to run records, not to --from", "")
        return PointsDocument.load(args.points_file)
    notes: list[str] = []
    records = load_runs(args.runs or default_runs(), notes)
    doc = points_from_runs(records, per_device=args.per_device, notes=notes)
    for n in notes:
        print(f"wattbench: note: {n}", file=sys.stderr)
    return doc


def run(args: argparse.Namespace) -> int:
    if args.format != "points" and (not args.out or args.out == "-"):
        raise UsageError(f"--format {args.format} writes several files", "pass -o FOLDER")
    if args.out == "-":  # the usual spelling of standard output
        args.out = None
    doc = _document(args)
    if args.gpu or args.workload or args.objective:
        kept = doc.select(args.gpu, args.workload, args.objective)
        names = {p.gpu_name for p in kept}
        doc = PointsDocument(
            kept, doc.created_at, {k: v for k, v in doc.gpus.items() if k in names}
        )
    if not doc.points:
        filtered = args.gpu or args.workload or args.objective
        raise UsageError(
            "no operating points to export",
            "check --gpu / --workload / --objective" if filtered else "the runs chose no point",
        )
    if args.format != "points":
        files = render(doc, args.format, args.out)
        print(f"{len(files)} files for {args.format} written to {args.out}", file=sys.stderr)
    elif args.out:
        try:
            doc.write(args.out)
        except OSError as exc:
            raise UsageError(
                f"cannot write {args.out}: {exc.strerror or exc}", "pass -o a path you can write"
            ) from None
        print(f"{len(doc.points)} operating points written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(doc.text())
    return 0
