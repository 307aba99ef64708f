"""``wattbench compare``: GPUs side by side on perf-per-watt, one table per problem.

Per GPU: the baseline (TFLOP/s, W, TFLOP/J, fraction of the GPU's peak) and the point each
objective chose (clocks, power limit, TFLOP/J, energy saving, slowdown), ranked by TFLOP/J at the
rank objective's point. Logic in ``profiler/report`` (runs, compare, table).
"""

from __future__ import annotations

import argparse

from wattbench.profiler.cli.args import add_runs_argument
from wattbench.profiler.report.compare import compare
from wattbench.profiler.report.runs import check_rank_by, default_runs, load_runs
from wattbench.profiler.report.table import FORMATS, render


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare GPUs on perf-per-watt from run records (table, csv, markdown, json)",
        description="One table per problem (family, implementation, dtype, shape), one row per "
        "GPU: the baseline and the chosen point per objective, the fraction of the GPU's peak "
        "rate, and a rank by TFLOP/J. Several runs of one problem on one GPU: the newest "
        "complete one is used (a note says so).",
    )
    add_runs_argument(p)
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument(
        "--objective",
        action="append",
        metavar="NAME",
        help="show this objective (repeatable; default: every objective the runs chose by)",
    )
    p.add_argument(
        "--rank-by", metavar="NAME", help="rank by this objective's point (default: energy)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    notes: list[str] = []
    records = load_runs(args.runs or default_runs(), notes)
    check_rank_by(args.rank_by, records)
    result = compare(records, objectives=args.objective, rank_by=args.rank_by, notes=notes)
    text = render(result, args.format)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
