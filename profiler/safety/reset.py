"""Putting a GPU's original settings back (``wattbench reset``, a scheduler epilog).

With a journal (left by ``wattbench apply`` or by a run that crashed), the journaled original
settings are restored and the journal removed. Without one, the driver defaults are set: clocks
unlocked, default power limit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wattbench.profiler.device import Device, open_device, visible_real_indices
from wattbench.profiler.errors import DriverNotFoundError, GpuBusyError
from wattbench.profiler.safety.guard import ActuationGuard, apply_settings, journal_file_for
from wattbench.profiler.safety.journal import GpuSettings, JournalError, JournalFile, journal_dir
from wattbench.profiler.sim.state import state_dir

Notify = Callable[[str], None]


def reset(device: Device, *, ignore_journal: bool = False, notify: Notify = print) -> str:
    """Restore ``device``; returns a line saying what was done. ``notify`` hears the session's
    notes (a crashed session recovered)."""
    file = journal_file_for(device)
    if ignore_journal and file.try_lock():
        try:
            file.remove()
        finally:
            file.unlock()
    prior = file.read()  # unreadable: JournalError naming --ignore-journal
    guard = ActuationGuard(device, "reset", notify=notify)
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


def devices_to_reset(warn: Notify = print) -> list[Device]:
    """Every GPU with a journal in the journal folders, then every visible real GPU; ``warn``
    hears of journals that cannot be read (they are skipped)."""
    out: dict[str, Device] = {}
    folders = {journal_dir(), journal_dir(state_dir())}
    for folder in sorted(folders):
        for path in sorted(Path(folder).glob("GPU-*.json")):
            try:
                journal = JournalFile(Path(folder), path.stem).read()
            except JournalError as exc:
                warn(str(exc))
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
