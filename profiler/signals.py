"""Signals become exceptions while a GPU is changed, so ``finally`` blocks restore it.

SIGINT raises :class:`KeyboardInterrupt` (as Python does by default); SIGTERM and SIGHUP raise
:class:`Terminated`, which is a ``BaseException`` so that ``except Exception`` cannot swallow it.
Handlers are installed while at least one actuation session is open (main thread only; elsewhere
``atexit`` is the backstop) and the previous handlers come back when the last one closes.
:func:`deferred` blocks these signals around a restore so that it is never cut in half; a signal
that arrives meanwhile is delivered right after.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived; ``signum`` says which. The CLI exits with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


_previous: dict[int, Any] = {}
_users = 0


def _handler(signum: int, frame: Any) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """Convert HANDLED signals to exceptions until the matching :func:`uninstall`."""
    global _users
    _users += 1
    if _users > 1 or not _main_thread():
        return
    for s in HANDLED:
        _previous[s] = signal.signal(s, _handler)


def uninstall() -> None:
    global _users
    if _users == 0:
        return
    _users -= 1
    if _users > 0 or not _main_thread():
        return
    for s, old in _previous.items():
        with contextlib.suppress(TypeError, ValueError):
            signal.signal(s, old if old is not None else signal.SIG_DFL)
    _previous.clear()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold HANDLED signals back for the duration of the block (this thread).

    ``pthread_sigmask`` runs pending Python handlers after it changes the mask, so a handler can
    raise from the very call that blocks: the old mask is read first (changing nothing), and the
    block happens inside ``try`` so that the mask is put back whatever is raised where.
    """
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    except (AttributeError, OSError):  # pragma: no cover - non-POSIX
        yield
        return
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
