"""The actuation guard: journal a GPU's settings before the first change, put them back after.

An :class:`ActuationGuard` is one *session* of changes to one GPU:

1. :meth:`~ActuationGuard.open` takes the GPU's session lock (refusing if another live wattbench
   holds it), finds a journal left by a crashed session and restores from it (saying so), then
   journals the settings in force -- durably -- before anything is changed.
2. While sessions are open, SIGINT / SIGTERM / SIGHUP raise exceptions
   (:mod:`wattbench.profiler.signals`), so ``with`` blocks and ``finally`` clauses run;
   ``atexit`` restores whatever is still open.
3. :meth:`~ActuationGuard.close` puts back the journaled settings (or the target a ``wattbench
   apply`` left) with signals held back, then removes the journal or clears its session.

The device layer opens a guard by itself before its first setter call if the caller has not
(:func:`ensure_guard`, which this module registers with the device layer on import; without it
the setters refuse), so no code path can change a GPU without a journal. Guards are kept per
journal file in this process; there is at most one per GPU.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from wattbench.profiler import signals
from wattbench.profiler.device.device import register_session_opener
from wattbench.profiler.device.nvml import before_shutdown
from wattbench.profiler.errors import DeviceError, GpuBusyError
from wattbench.profiler.safety.journal import (
    GpuSettings,
    Journal,
    JournalError,
    JournalFile,
    Session,
    journal_dir,
)

if TYPE_CHECKING:
    from wattbench.profiler.device import Device

Notify = Callable[[str], None]

_active: dict[Path, ActuationGuard] = {}
_atexit_registered = False


def _stderr(message: str) -> None:
    print(f"wattbench: {message}", file=sys.stderr, flush=True)


def journal_file_for(device: Device) -> JournalFile:
    """Where ``device``'s journal lives (simulated GPUs: beside their state file)."""
    sim = device.simulated
    sim_dir = None
    if sim is not None:
        from wattbench.profiler.sim.state import state_dir

        sim_dir = state_dir()
    return JournalFile(journal_dir(sim_dir), device.identity.uuid)


#: the settings a session can change, in the order they are put back
KNOBS = ("mem", "sm", "power")


def apply_settings(
    device: Device, settings: GpuSettings, only: frozenset[str] | set[str] = frozenset(KNOBS)
) -> None:
    """Put ``settings`` (the knobs in ``only``) in force: memory clock first (the SM clocks depend
    on it), then SM clock, then power limit. Every step is tried; failures are reported together
    afterwards."""
    steps: list[tuple[str, Callable[[], None]]] = []
    if "mem" in only:
        if settings.mem_mhz is None:
            steps.append(
                ("unlock the memory clock", lambda: device.reset_memory_clocks(if_supported=True))
            )
        else:
            mem = settings.mem_mhz
            steps.append(
                (f"lock the memory clock at {mem} MHz", lambda: device.lock_memory_clocks(mem))
            )
    if "sm" in only:
        if settings.sm_mhz is None:
            steps.append(("unlock the SM clock", device.reset_sm_clocks))
        else:
            sm = settings.sm_mhz
            steps.append((f"lock the SM clock at {sm} MHz", lambda: device.lock_sm_clocks(sm)))
    if "power" in only:
        if settings.power_limit_w is None:
            steps.append(("set the default power limit", device.reset_power_limit))
        else:
            pl = settings.power_limit_w
            steps.append((f"set the power limit to {pl:g} W", lambda: device.set_power_limit_w(pl)))
    failed = []
    for what, step in steps:
        try:
            step()
        except DeviceError as exc:
            failed.append(f"{what}: {exc.message}")
    if failed:
        raise DeviceError(
            f"could not restore {device.identity.name}: " + "; ".join(failed),
            "the journal is kept; fix the cause, then run `wattbench reset --device "
            f"{device.selection}`",
        )


class ActuationGuard:
    """One session of changes to one GPU. Use as a context manager or open()/close()."""

    def __init__(self, device: Device, command: str, notify: Notify = _stderr) -> None:
        self.device = device
        self.command = command
        self.notify = notify
        self.file = journal_file_for(device)
        self.journal: Journal | None = None
        #: knobs ("mem", "sm", "power") changed in this session: only these are put back
        self.changed: set[str] = set()

    def mark_changed(self, knob: str) -> None:
        """Called by the device layer after a setter succeeded."""
        self.changed.add(knob)

    # --- opening ---------------------------------------------------------------------------------

    def open(self) -> ActuationGuard:
        """Lock, recover from a crashed session, journal the current settings. Idempotent."""
        if self.journal is not None:
            return self
        if self.file.path in _active:
            raise GpuBusyError(
                f"{self.device.identity.name} already has an open actuation session in this "
                "process",
                "use that session (wattbench bug if you did not open one)",
            )
        if not self.file.try_lock():
            raise GpuBusyError(
                f"{self.device.identity} is being changed by another wattbench process: "
                + _owner_text(self.file),
                "wait for it to finish (it restores the GPU when it ends), or stop it",
            )
        _register(self)  # recovery below calls setters, which must find this session
        try:
            journal = self.file.read()
            if journal is not None and journal.session is not None:
                self._recover(journal)
            if journal is None:
                journal = Journal(
                    gpu_uuid=self.device.identity.uuid,
                    gpu_name=self.device.identity.name,
                    selection=self.device.selection,
                    original=GpuSettings(power_limit_w=self.device.power_limit_w()),
                )
            journal.session = Session.current(self.command)
            self.file.write(journal)  # durable before the first change
        except BaseException:
            _unregister(self)
            self.file.unlock()
            raise
        self.journal = journal
        self.changed.clear()
        return self

    def _recover(self, journal: Journal) -> None:
        settings = journal.restore_to
        with signals.deferred():
            apply_settings(self.device, settings)
            journal.session, stale = None, journal.session
            self.file.write(journal)
        self.notify(
            f"{self.device.identity.name} ({journal.gpu_uuid}) was left changed by an interrupted "
            f"{stale}; restored it from the journal: {settings}"
        )

    # --- closing ---------------------------------------------------------------------------------

    def restore(self) -> None:
        """Put the journaled settings back now; the session stays open."""
        if self.journal is None:
            return
        with signals.deferred():
            apply_settings(self.device, self.journal.restore_to, self.changed)
            self.changed.clear()

    def close(self, *, restore: bool = True) -> None:
        """End the session: restore (unless told not to), then remove or update the journal."""
        journal = self.journal
        if journal is None:
            return
        try:
            with signals.deferred():
                if restore and self.changed:
                    apply_settings(self.device, journal.restore_to, self.changed)
                journal.session = None
                if journal.target is None:
                    self.file.remove()
                else:
                    self.file.write(journal)
        finally:
            self.journal = None
            self.changed.clear()
            self.file.unlock()
            _unregister(self)

    def commit(self, applied: GpuSettings, knobs: set[str] | frozenset[str]) -> None:
        """End the session leaving ``applied`` (its ``knobs``) in force on purpose (``wattbench
        apply``): it becomes the journal's target, which later sessions restore to and reset
        undoes."""
        journal = self.journal
        if journal is None:
            raise RuntimeError("commit() on a guard that is not open")
        base = journal.target or GpuSettings()
        journal.target = base.replaced(applied, knobs)
        journal.target_knobs = journal.target_knobs | frozenset(knobs)
        self.close(restore=False)

    def discard(self) -> None:
        """End the session and forget the journal (``wattbench reset`` has put originals back)."""
        if self.journal is None:
            return
        self.journal.target = None
        self.journal.target_knobs = frozenset()
        self.close(restore=False)

    def __enter__(self) -> ActuationGuard:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _owner_text(file: JournalFile) -> str:
    try:
        journal = file.read()
    except JournalError:
        journal = None
    if journal is None or journal.session is None:
        return "its session lock is held"
    return str(journal.session)


# --- the process-wide set of open sessions -------------------------------------------------------


def _register(guard: ActuationGuard) -> None:
    global _atexit_registered
    _active[guard.file.path] = guard
    signals.install()
    if not _atexit_registered:
        atexit.register(release_all)
        _atexit_registered = True


def _unregister(guard: ActuationGuard) -> None:
    if _active.get(guard.file.path) is guard:
        del _active[guard.file.path]
        signals.uninstall()


def active_guard(device: Device) -> ActuationGuard | None:
    return _active.get(journal_file_for(device).path)


def ensure_guard(device: Device, command: str = "library session") -> ActuationGuard:
    """The open session for ``device``, opening one if there is none (called by the setters)."""
    guard = active_guard(device)
    if guard is None:
        guard = ActuationGuard(device, command).open()
    return guard


def release_all() -> None:
    """Restore and close every open session (at exit, and before NVML shuts down)."""
    for guard in list(_active.values()):
        try:
            guard.close()
        except Exception as exc:
            _stderr(f"error: restoring {guard.device.identity.name} failed: {exc}")


@contextlib.contextmanager
def actuation_session(device: Device, command: str) -> Iterator[ActuationGuard | None]:
    """An open guard for the block, or None when the device may not be changed (observe-only)."""
    if not device.actuation_allowed:
        yield None
        return
    guard = ActuationGuard(device, command).open()
    try:
        yield guard
    finally:
        guard.close()


def stale_journal_warning(device: Device) -> str | None:
    """For commands that will not change ``device``: a line saying it was left changed by a crashed
    session (or that its journal is unreadable), or None."""
    file = journal_file_for(device)
    try:
        journal = file.read()
    except JournalError as exc:
        return str(exc)
    if journal is None:
        return None
    if journal.session is not None and file.try_lock():
        file.unlock()
        return (
            f"{device.identity.name} was left changed by an interrupted {journal.session}; "
            f"measurements show the changed state -- run `wattbench reset --device "
            f"{device.selection}` to restore {journal.restore_to}"
        )
    if journal.target is not None and journal.session is None:
        return f"{device.identity.name} runs at a point set by `wattbench apply`: {journal.target}"
    return None


# the device layer's setters open sessions through this layer, and shutdown restores first
register_session_opener(ensure_guard)
before_shutdown(release_all)
