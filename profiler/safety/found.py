"""The settings a GPU is found in before a sweep, and where each value came from.

A sweep changes only the knobs it sweeps; every other knob stays as found, so every point (the
baseline too) is measured under it. :func:`settings_found` states what that is: the power limit
read from the GPU, clock locks from the journal of a ``wattbench apply`` (NVML cannot read clock
locks back, so without one they are taken as unlocked, and the source says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wattbench.profiler.safety.journal import GpuSettings, Journal, JournalError

if TYPE_CHECKING:
    from wattbench.profiler.device import Device

#: a power limit within this of the default is the default (NVML reports mW)
LIMIT_TOLERANCE_W = 0.5

SOURCE_READ = "read from the GPU"
SOURCE_APPLY = "set by `wattbench apply` (its journal)"
SOURCE_ASSUMED = "assumed unlocked (NVML cannot read clock locks; no `wattbench apply` journal)"
SOURCE_UNKNOWN = "unknown: an interrupted session left the GPU changed"


@dataclass(frozen=True)
class FoundSettings:
    """``settings``: None is unlocked / the default limit; ``sources``: knob -> where its value
    came from; ``default_power_limit_w``: the driver's default limit (W)."""

    settings: GpuSettings
    default_power_limit_w: float
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def nondefault_knobs(self) -> frozenset[str]:
        """Knobs ("sm", "mem", "power") not at their driver default, or not known to be."""
        s = self.settings
        out = {k for k, name in _FIELD.items() if getattr(s, name) is not None}
        out |= {k for k, src in self.sources.items() if src == SOURCE_UNKNOWN}
        return frozenset(out)

    @property
    def at_defaults(self) -> bool:
        return not self.nondefault_knobs

    def describe(self, knobs: frozenset[str] | set[str] | None = None) -> str:
        """The non-default knobs among ``knobs`` (default all), e.g. ``power limit 300 W
        (default 700 W)``; "driver defaults" when there are none."""
        wanted = self.nondefault_knobs if knobs is None else self.nondefault_knobs & set(knobs)
        s, bits = self.settings, []
        for knob in ("sm", "mem", "power"):
            if knob not in wanted:
                continue
            if self.sources.get(knob) == SOURCE_UNKNOWN:
                bits.append(f"{_NAME[knob]} unknown (interrupted session)")
            elif knob == "power":
                bits.append(
                    f"power limit {s.power_limit_w:g} W (default {self.default_power_limit_w:g} W)"
                )
            else:
                bits.append(f"{_NAME[knob]} locked at {getattr(s, _FIELD[knob])} MHz")
        return ", ".join(bits) if bits else "driver defaults"

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "sm_mhz": s.sm_mhz,
            "mem_mhz": s.mem_mhz,
            "power_limit_w": s.power_limit_w,
            "power_limit_w_default": self.default_power_limit_w,
            "at_driver_defaults": self.at_defaults,
            "sources": dict(self.sources),
        }


_FIELD = {"sm": "sm_mhz", "mem": "mem_mhz", "power": "power_limit_w"}
_NAME = {"sm": "SM clock", "mem": "memory clock", "power": "power limit"}


def settings_found(device: Device, journal: Journal | None = None) -> FoundSettings:
    """What ``device`` runs under now. ``journal``: the open session's journal (after crash
    recovery); None reads the journal file without taking its lock (observe-only)."""
    from wattbench.profiler.safety.guard import journal_file_for

    default_w = device.capabilities.power_limit_w_default
    read_w = device.power_limit_w()
    limit_w = None if abs(read_w - default_w) <= LIMIT_TOLERANCE_W else read_w
    sources = {"power": SOURCE_READ}
    stale = False
    if journal is None:
        file = journal_file_for(device)
        try:
            journal = file.read()
        except JournalError:
            journal = None
        if journal is not None and journal.session is not None and file.try_lock():
            file.unlock()
            stale = True
    clocks: dict[str, int | None] = {"sm": None, "mem": None}
    for knob in clocks:
        if stale:
            sources[knob] = SOURCE_UNKNOWN
        elif journal is not None and journal.target is not None and knob in journal.target_knobs:
            clocks[knob] = getattr(journal.target, _FIELD[knob])
            sources[knob] = SOURCE_APPLY
        else:
            sources[knob] = SOURCE_ASSUMED
    return FoundSettings(GpuSettings(clocks["sm"], clocks["mem"], limit_w), default_w, sources)
