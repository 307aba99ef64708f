"""``wattbench export``: operating points from finished run records, for ``apply`` and schedulers.

Writes a ``wattbench.points/1`` document (``profiler/store/points.py``): one entry per GPU,
workload and objective. Renderers for Slurm, Kubernetes and shell build on the same document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wattbench.profiler.errors import UsageError
from wattbench.profiler.store import RunRecord
from wattbench.profiler.store.points import points_from_runs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the chosen operating points of run records as a points document",
        description="Collect the chosen point per objective from complete run records into a "
        "versioned JSON document that `wattbench apply --from` reads.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run records, or folders of them")
    p.add_argument("-o", "--out", metavar="POINTS.json", help="output file (default: stdout)")
    p.add_argument(
        "--per-device",
        action="store_true",
        help="key entries by GPU UUID (per-device tuning) as well as by model name",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths: list[Path] = []
    for given in map(Path, args.runs):
        paths.extend(sorted(given.glob("*.json")) if given.is_dir() else [given])
    records = [RunRecord.load(p) for p in paths]
    unfinished = [str(r.path) for r in records if r.doc.get("status") != "complete"]
    if unfinished:
        raise UsageError(
            f"run records not complete: {', '.join(unfinished)}",
            "finish them with `wattbench sweep --resume RUN`, or leave them out",
        )
    if not records:
        raise UsageError("no run records given", "name run files or folders holding them")
    doc = points_from_runs(records, per_device=args.per_device)
    if args.out:
        doc.write(args.out)
        print(f"{len(doc.points)} operating points written to {args.out}", file=sys.stderr)
    else:
        json.dump(doc.to_json(), sys.stdout, indent=2)
        print()
    return 0
