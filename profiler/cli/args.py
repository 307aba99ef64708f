"""Argument types that validate at parse time: a bad number is a usage error (exit 2) naming the
option and the accepted range, before anything runs."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from wattbench.kernels.l2 import DEFAULT_POLICY, POLICIES, ROTATE

#: the positional argument of the commands that read run records (compare, plot, export)
RUNS_HELP = (
    "run records, or folders of them (searched recursively; default: the sweeps' default "
    "folder, $WATTBENCH_RESULTS_DIR or ~/.local/share/wattbench/runs)"
)


def add_runs_argument(p: argparse.ArgumentParser) -> None:
    """``RUN...``: run files or folders; none means the default run folder."""
    p.add_argument("runs", nargs="*", metavar="RUN", help=RUNS_HELP)


def add_l2_arguments(p: argparse.ArgumentParser) -> None:
    """``--l2 {rotate,warm}`` and its old name ``--flush-l2`` (= ``--l2 rotate``), into
    ``args.l2``; shared by ``wattbench check`` and suites/bench/kernels.py."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--l2",
        choices=POLICIES,
        help="how timed launches meet the L2 cache: rotate (default) runs each launch on the "
        "next of several seeded input sets that together hold twice the L2, so operands come "
        "from device memory, as in the energy loop of `wattbench sweep`; warm reuses the same "
        "inputs (small problems then run from L2)",
    )
    group.add_argument(
        "--flush-l2",
        dest="l2",
        action="store_const",
        const=ROTATE,
        help="the old name of --l2 rotate (the default); nothing is flushed",
    )
    p.set_defaults(l2=DEFAULT_POLICY)


def _number(kind: type, text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def bounded(
    kind: type, *, minimum: float | None = None, maximum: float | None = None, open_min=False
) -> Callable[[str], float]:
    """An argparse ``type``: ``kind`` (int or float) within [minimum, maximum]; ``open_min``
    excludes the minimum itself."""

    def parse(text: str) -> float:
        value = _number(kind, text)
        low_ok = minimum is None or (value > minimum if open_min else value >= minimum)
        if not low_ok or (maximum is not None and value > maximum):
            low = "" if minimum is None else (f"> {minimum:g}" if open_min else f">= {minimum:g}")
            high = "" if maximum is None else f"<= {maximum:g}"
            raise argparse.ArgumentTypeError(
                f"{text} is out of range: use a value {' and '.join(b for b in (low, high) if b)}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = bounded(int, minimum=1)
non_negative_int = bounded(int, minimum=0)
positive_float = bounded(float, minimum=0, open_min=True)


def nonempty(text: str) -> str:
    """An argparse ``type`` for a value that must not be empty (``--sm-clocks ""``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value; give one or leave the option out")
    return text
