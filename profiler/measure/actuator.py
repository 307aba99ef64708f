"""Applies operating points to a device, changing only what differs from the last applied point.

Every change goes through the device layer's setters (which refuse under WATTBENCH_NO_ACTUATE and
journal the GPU's settings before the first change). An actuator touches only its ``knobs``
("sm", "mem", "power"): a power-limit sweep never resets clock locks, so it runs where capping is
permitted and clock locking is not. ``restore()`` puts those knobs at the driver defaults
(clocks unlocked, default power limit); putting back the settings found *before* the run is the
actuation guard's job (``profiler/safety/guard.py``).
"""

from __future__ import annotations

from wattbench.profiler.device import Device
from wattbench.profiler.measure.types import OperatingPoint

# the setters open their journaled session through the safety layer, which registers on import
from wattbench.profiler.safety import guard as _guard  # noqa: F401

ALL_KNOBS = frozenset({"sm", "mem", "power"})


class Actuator:
    def __init__(self, device: Device, knobs: frozenset[str] | set[str] = ALL_KNOBS) -> None:
        unknown = set(knobs) - ALL_KNOBS
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)}; use {sorted(ALL_KNOBS)}")
        self.device = device
        self.knobs = frozenset(knobs)
        self._applied: OperatingPoint | None = None  # None: state unknown, set everything

    def apply(self, point: OperatingPoint) -> None:
        d, last = self.device, self._applied
        for knob, value in (("sm", point.sm_mhz), ("mem", point.mem_mhz)):
            if value is not None and knob not in self.knobs:
                raise ValueError(f"point {point} sets {knob}, which this actuator does not touch")
        if point.power_limit_w is not None and "power" not in self.knobs:
            raise ValueError(f"point {point} sets the power limit, which this actuator does not")
        # memory first: the supported SM clocks depend on the memory clock
        if "mem" in self.knobs and (last is None or point.mem_mhz != last.mem_mhz):
            if point.mem_mhz is None:
                d.reset_memory_clocks(if_supported=True)
            else:
                d.lock_memory_clocks(point.mem_mhz)
        if "sm" in self.knobs and (last is None or point.sm_mhz != last.sm_mhz):
            if point.sm_mhz is None:
                d.reset_sm_clocks()
            else:
                d.lock_sm_clocks(point.sm_mhz)
        if "power" in self.knobs and (last is None or point.power_limit_w != last.power_limit_w):
            if point.power_limit_w is None:
                d.reset_power_limit()
            else:
                d.set_power_limit_w(point.power_limit_w)
        self._applied = point

    def restore(self) -> None:
        """Driver defaults for this actuator's knobs: nothing locked, default power limit."""
        self._applied = None
        self.apply(OperatingPoint())
