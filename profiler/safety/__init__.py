"""Safety: never leave a GPU changed, and refuse to start what would go wrong.

* ``journal.py``   -- the per-GPU journal of original settings (on disk before any change)
* ``guard.py``     -- ActuationGuard: one session of changes; crash recovery, restore, apply/reset
* ``../signals.py`` -- SIGINT/SIGTERM/SIGHUP become exceptions while a session is open
* ``preflight.py`` -- before a sweep: privileges for what it will change, other processes on the GPU
* ``apply.py``     -- set a point and leave it set (checked first, journaled, the target committed)
* ``reset.py``     -- put a GPU's original settings (or the driver defaults) back
"""

from wattbench.profiler.safety.guard import (
    ActuationGuard,
    actuation_session,
    apply_settings,
    ensure_guard,
    release_all,
    stale_journal_warning,
)
from wattbench.profiler.safety.journal import GpuSettings, Journal, JournalError, JournalFile
from wattbench.profiler.signals import Terminated

__all__ = [
    "ActuationGuard",
    "GpuSettings",
    "Journal",
    "JournalError",
    "JournalFile",
    "Terminated",
    "actuation_session",
    "apply_settings",
    "ensure_guard",
    "release_all",
    "stale_journal_warning",
]
