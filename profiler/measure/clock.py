"""Clocks the measurement loop reads and waits on: wall time on a real GPU, virtual time on a
simulated one (waiting advances the simulated GPU's clock as idle time)."""

from __future__ import annotations

import time
from typing import Protocol

from wattbench.profiler.sim.gpu import SimulatedGpu


class Clock(Protocol):
    def now_s(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class WallClock:
    """Monotonic wall time (``time.perf_counter``)."""

    def now_s(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class VirtualClock:
    """A simulated GPU's virtual time; sleeping lets the GPU idle."""

    def __init__(self, gpu: SimulatedGpu) -> None:
        self.gpu = gpu

    def now_s(self) -> float:
        return self.gpu.now_s

    def sleep(self, seconds: float) -> None:
        self.gpu.idle(max(0.0, seconds))
