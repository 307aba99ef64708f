"""Clock-event (throttle) reasons: NVML's bitmask decoded to stable names."""

from __future__ import annotations

from dataclasses import dataclass

#: bit -> name, as nvmlClocksEventReason* defines them (names are stable keys in result files).
REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

#: Reasons that mean the clock was pulled below what was asked for.
THROTTLE_NAMES = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)


@dataclass(frozen=True)
class ClockEventReasons:
    mask: int

    @property
    def names(self) -> tuple[str, ...]:
        named = tuple(name for bit, name in REASON_BITS.items() if self.mask & bit)
        unknown = self.mask & ~sum(REASON_BITS)
        return named + ((f"unknown_0x{unknown:x}",) if unknown else ())

    @property
    def throttled(self) -> bool:
        return any(n in THROTTLE_NAMES for n in self.names)

    def __str__(self) -> str:
        return ",".join(self.names) or "none"


def decode(mask: int) -> tuple[str, ...]:
    return ClockEventReasons(mask).names
