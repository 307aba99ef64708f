"""``wattbench reset``: put a GPU's original settings back (a scheduler epilog's command).

With a journal (left by ``wattbench apply`` or by a run that crashed), the journaled original
settings are restored and the journal removed. Without one, the driver defaults are set: clocks
unlocked, default power limit. Without ``--device``: every GPU with a journal here, and every
visible real GPU. The library side is ``safety/reset.py``.
"""

from __future__ import annotations

import argparse

from wattbench.profiler.device import open_device
from wattbench.profiler.errors import UsageError
from wattbench.profiler.safety.reset import devices_to_reset, reset


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reset",
        help="restore a GPU's original settings (from the journal) or the driver defaults",
        description="Restore the settings journaled before wattbench changed the GPU (after "
        "`wattbench apply`, or a run that was killed), else set the driver defaults.",
    )
    p.add_argument(
        "--device",
        action="append",
        metavar="SEL",
        help="the GPU (repeatable; default: every GPU with a journal, and every visible real GPU)",
    )
    p.add_argument(
        "--ignore-journal",
        action="store_true",
        help="set the driver defaults and remove the journal, even if it is unreadable",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    devices = (
        [open_device(sel) for sel in args.device]
        if args.device
        else devices_to_reset(warn=lambda m: _note(f"warning: {m}"))
    )
    if not devices:
        print("nothing to reset: no journal found and no NVIDIA GPU visible")
        return 0
    if not all(d.actuation_allowed for d in devices):
        raise UsageError(
            "wattbench reset changes GPU settings, but WATTBENCH_NO_ACTUATE forbids it",
            "unset WATTBENCH_NO_ACTUATE to reset",
        )
    for device in devices:
        print(reset(device, ignore_journal=args.ignore_journal, notify=_note))
    return 0


def _note(message: str) -> None:
    print(f"wattbench: {message}")
