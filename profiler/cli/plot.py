"""``wattbench plot``: figures of run records, one per problem and kind (``report/plot.py``)."""

from __future__ import annotations

import argparse
import sys

from wattbench.profiler.cli.args import add_runs_argument
from wattbench.profiler.report.plot import ALL_KINDS, FORMATS, KINDS, plot_runs
from wattbench.profiler.report.runs import check_rank_by, default_runs, load_runs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="plot run records: energy and time vs clock, Pareto front, perf/W bars, power",
        description="Per problem: energy per work and time vs SM clock (energy), time vs "
        "energy with the Pareto front and chosen points (pareto), TFLOP/J at baseline and "
        "optimum per GPU (bars), power vs clock with power-limit lines (power).",
    )
    add_runs_argument(p)
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for the figures")
    p.add_argument(
        "--kind",
        action="append",
        choices=ALL_KINDS,
        help="plot kind (repeatable; default: energy, pareto, bars, power; spread: the units "
        "of each GPU model side by side)",
    )
    p.add_argument("--format", choices=FORMATS, default="png", help="image format")
    p.add_argument(
        "--normalise",
        action="store_true",
        help="clock as a fraction of each GPU's highest clock (pareto: relative to baseline; "
        "power: relative to the default limit)",
    )
    p.add_argument(
        "--rank-by", metavar="NAME", help="objective whose point is the optimum (default energy)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    notes: list[str] = []
    records = load_runs(args.runs or default_runs(), notes)
    check_rank_by(args.rank_by, records)
    for n in notes:
        print(f"wattbench: note: {n}", file=sys.stderr)
    files = plot_runs(
        records,
        args.out,
        kinds=args.kind or KINDS,
        fmt=args.format,
        normalise=args.normalise,
        rank_by=args.rank_by,
    )
    for f in files:
        print(f)
    return 0
