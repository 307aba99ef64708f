"""Stopping the daemons tests start (the shared simulator service, a local Slurm cluster) by
their PIDs: SIGTERM, a grace period, then SIGKILL for what lingers."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie still answers ``kill 0``: daemons are started in their own
    session and reaped by init, and ``/proc`` tells a zombie apart."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def stop_pids(pids: Iterable[int], grace_s: float = 10.0) -> None:
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def tail_logs(folder: Path, lines: int) -> str:
    """The last ``lines`` of every ``*.log`` in ``folder``, each under its name (for a daemon
    that did not come up)."""
    out = []
    for p in sorted(folder.glob("*.log")):
        tail = p.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {p.name}\n" + "\n".join(tail))
    return "\n".join(out)
