"""The runner interface."""

from __future__ import annotations

from typing import Protocol

from wattbench.kernels.work import Work


class Runner(Protocol):
    """Executes a problem. ``run(n)`` launches ``n`` iterations back to back and returns only
    when the device has finished them (device-synchronised)."""

    work: Work
    #: True when kernels are not executed but modelled on a simulated GPU
    simulated: bool

    def run(self, iterations: int) -> None: ...

    def describe(self) -> dict: ...
