"""The runner interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from wattbench.kernels.work import Work


class Runner(Protocol):
    """Executes a problem.

    ``run(n)`` launches ``n`` iterations back to back and returns only when the device has
    finished them (device-synchronised; used for calibration and the "steady" method's windows).

    ``run_window(n, poll, poll_s)`` launches ``n`` iterations queued ahead with no host
    synchronisation among them, calls ``poll()`` from the host about every ``poll_s`` seconds
    while the device is busy with them (never before the first has started nor after the last
    has ended), and returns the device's own time (s) from the start of the first to the end of
    the last (CUDA events on a real GPU, the virtual clock on a simulated one).
    """

    work: Work
    #: True when kernels are not executed but modelled on a simulated GPU
    simulated: bool

    def run(self, iterations: int) -> None: ...

    def run_window(self, iterations: int, poll: Callable[[], None], poll_s: float) -> float: ...

    def describe(self) -> dict: ...
