"""Applies operating points to a device, changing only what differs from the last applied point.

Every change goes through the device layer's setters (which refuse under WATTBENCH_NO_ACTUATE).
``restore()`` puts the driver defaults back: clocks unlocked, default power limit.
"""

from __future__ import annotations

import contextlib

from wattbench.profiler.device import Device
from wattbench.profiler.errors import NotSupportedError
from wattbench.profiler.measure.types import OperatingPoint


class Actuator:
    def __init__(self, device: Device) -> None:
        self.device = device
        self._applied: OperatingPoint | None = None  # None: state unknown, set everything

    def apply(self, point: OperatingPoint) -> None:
        d, last = self.device, self._applied
        if last is None or point.mem_mhz != last.mem_mhz:
            # memory first: the supported SM clocks depend on the memory clock
            if point.mem_mhz is None:
                if last is None or last.mem_mhz is not None:
                    self._reset_memory()
            else:
                d.lock_memory_clocks(point.mem_mhz)
        if last is None or point.sm_mhz != last.sm_mhz:
            if point.sm_mhz is None:
                d.reset_sm_clocks()
            else:
                d.lock_sm_clocks(point.sm_mhz)
        if last is None or point.power_limit_w != last.power_limit_w:
            if point.power_limit_w is None:
                d.reset_power_limit()
            else:
                d.set_power_limit_w(point.power_limit_w)
        self._applied = point

    def _reset_memory(self) -> None:
        # pre-Ampere: memory clocks cannot be locked, so there is nothing to reset
        with contextlib.suppress(NotSupportedError):
            self.device.reset_memory_clocks()

    def restore(self) -> None:
        """Driver defaults: nothing locked, default power limit."""
        self._applied = None
        self.apply(OperatingPoint())
