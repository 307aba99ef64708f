"""``wattbench reset``: put a GPU's original settings back (a scheduler epilog's command).

With a journal (left by ``wattbench apply`` or by a run that crashed), the journaled original
settings are restored and the journal removed. Without one, the driver defaults are set: clocks
unlocked, default power limit. Without ``--device``: every GPU with a journal here, and every
visible real GPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wattbench.profiler.device import Device, open_device, visible_real_indices
from wattbench.profiler.errors import DriverNotFoundError, GpuBusyError, UsageError
from wattbench.profiler.safety import ActuationGuard, GpuSettings, JournalFile, apply_settings
from wattbench.profiler.safety.guard import journal_file_for
from wattbench.profiler.safety.journal import JournalError, journal_dir
from wattbench.profiler.sim.state import state_dir


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
    devices = [open_device(sel) for sel in args.device] if args.device else _default_devices()
    if not devices:
        print("nothing to reset: no journal found and no NVIDIA GPU visible")
        return 0
    if not all(d.actuation_allowed for d in devices):
        raise UsageError(
            "wattbench reset changes GPU settings, but WATTBENCH_NO_ACTUATE forbids it",
            "unset WATTBENCH_NO_ACTUATE to reset",
        )
    for device in devices:
        print(reset(device, ignore_journal=args.ignore_journal))
    return 0


def reset(device: Device, *, ignore_journal: bool = False) -> str:
    """Restore ``device``; returns a line saying what was done."""
    file = journal_file_for(device)
    if ignore_journal and file.try_lock():
        try:
            file.remove()
        finally:
            file.unlock()
    prior = file.read()  # unreadable: JournalError naming --ignore-journal
    guard = ActuationGuard(device, "reset", notify=lambda m: print(f"wattbench: {m}"))
    try:
        guard.open()  # refuses while a live run holds the GPU; recovers a crashed one
    except GpuBusyError as exc:
        raise GpuBusyError(
            exc.message, "stop that run (it restores the GPU when it ends), then reset"
        ) from None
    settings = prior.original if prior is not None else GpuSettings()  # else driver defaults
    try:
        apply_settings(device, settings)
        guard.discard()
    finally:
        guard.close()  # no-op after discard(); restores if apply_settings failed half-way
    if prior is not None:
        return f"reset {device.identity}: restored the journaled original settings: {settings}"
    return f"reset {device.identity}: no journal; set the driver defaults: {settings}"


def _default_devices() -> list[Device]:
    """Every GPU with a journal in the journal folders, then every visible real GPU."""
    out: dict[str, Device] = {}
    folders = {journal_dir(), journal_dir(state_dir())}
    for folder in sorted(folders):
        for path in sorted(Path(folder).glob("GPU-*.json")):
            try:
                journal = JournalFile(Path(folder), path.stem).read()
            except JournalError as exc:
                print(f"wattbench: warning: {exc}")
                continue
            if journal is not None and journal.selection:
                dev = open_device(journal.selection)
                out.setdefault(dev.identity.uuid, dev)
    try:
        for i in range(len(visible_real_indices())):
            dev = open_device(str(i))
            out.setdefault(dev.identity.uuid, dev)
    except DriverNotFoundError:
        pass
    return list(out.values())
