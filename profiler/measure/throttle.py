"""Did the clocks hold? Flags for a measured point, from achieved clocks and clock-event reasons.

Flags (stable strings in result files):

* ``clock_missed`` -- an SM clock was requested and the window's minimum achieved SM clock fell
  more than ``tolerance_mhz`` below it;
* ``power_capped`` -- the power cap bound (SwPowerCap) at a point that did not set a power limit;
  expected, and not flagged, at power-limit points;
* ``thermal_throttled`` -- software or hardware thermal slowdown was seen;
* ``hw_slowdown`` -- hardware slowdown or power brake was seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wattbench.profiler.measure.types import OperatingPoint


@dataclass(frozen=True)
class ClockHoldCheck:
    tolerance_mhz: int = 15

    def flags(self, point: OperatingPoint, sm_mhz_min: int, reasons: Iterable[str]) -> list[str]:
        seen = set(reasons)
        out = []
        if point.sm_mhz is not None and sm_mhz_min < point.sm_mhz - self.tolerance_mhz:
            out.append("clock_missed")
        if "sw_power_cap" in seen and point.power_limit_w is None:
            out.append("power_capped")
        if seen & {"sw_thermal_slowdown", "hw_thermal_slowdown"}:
            out.append("thermal_throttled")
        if seen & {"hw_slowdown", "hw_power_brake_slowdown"}:
            out.append("hw_slowdown")
        return out
