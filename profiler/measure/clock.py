"""Clocks the measurement loop reads and waits on: :class:`Clock` and the wall time of a real GPU.
A simulated GPU's virtual time is the simulator's own (``sim.gpu.VirtualClock``), passed in by
whoever builds the measurement."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_s(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class WallClock:
    """Monotonic wall time (``time.perf_counter``)."""

    def now_s(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))
