"""Operating-point spaces: parse the user's clock and power-limit specs against a device.

Spec forms (whitespace ignored):

* SM clocks (MHz): ``all``; ``every:K`` (every K-th supported clock from the highest, always
  with the lowest); a list ``1200,1500,1980`` (each must be supported); a range ``900:1800``
  (the supported clocks within, inclusive); a stepped range ``900:1800:60`` (targets
  ``900, 960, ... <= 1800``, each snapped to the nearest supported clock within the range,
  ties to the lower); ``default`` (not locked).
* Memory clocks (MHz): the same forms against the memory-clock table.
* Power limits (W): a list ``300,450,700`` or a stepped range ``200:700:50`` (``200, 250, ...``
  up to and including 700 when on the grid); every value within the device's constraints.

Clock lists come out highest first and without duplicates; power limits too (rounded to mW,
NVML's unit). SM clocks depend on the memory clock (e.g. an L4 at 405 MHz memory tops out at
1050 MHz SM): table forms resolve against each memory clock's own table, and an explicit SM clock
not supported at a given memory clock is left out of that combination only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wattbench.profiler.device.device import Capabilities, nearest_supported
from wattbench.profiler.errors import (
    PowerLimitOutOfRangeError,
    UnsupportedClockError,
    UsageError,
)
from wattbench.profiler.measure.types import OperatingPoint

CLOCK_FORMS = "all, every:K, a list 1200,1500,1980, a range 900:1800 or 900:1800:60, default"
POWER_FORMS = "a list 300,450,700 or a range with step 200:700:50 (W)"

_NAMES = {"sm": "SM clock", "mem": "memory clock"}


# --- clocks -------------------------------------------------------------------------------------


def _int(text: str, spec: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"bad {what} spec {spec!r}: {text!r} is not a whole number of MHz",
            f"accepted forms: {CLOCK_FORMS}",
        ) from None


def _snap(supported: Sequence[int], target: float) -> int:
    """The supported clock nearest ``target``; ties go to the lower clock."""
    return min(supported, key=lambda c: (abs(c - target), c))


def resolve_clocks(
    spec: str, supported: Sequence[int], kind: str = "sm", *, empty_ok: bool = False
) -> tuple[int | None, ...]:
    """Resolve a clock spec against one table of supported clocks (MHz); highest first.

    ``kind`` is ``"sm"`` or ``"mem"`` (for messages). ``default`` gives ``(None,)``. Raises
    :class:`UnsupportedClockError` for an explicit unsupported clock and :class:`UsageError` for
    malformed text or a range with no supported clock in it (``()`` instead with ``empty_ok``).
    """
    what = _NAMES[kind]
    table = sorted(set(supported), reverse=True)
    text = "".join(spec.split()).lower()
    if not table:
        raise UsageError(f"the device lists no supported {what}s", "check the driver")
    if text == "default":
        return (None,)
    if text == "all":
        return tuple(table)
    if text.startswith("every:"):
        k = _int(text[6:], spec, what)
        if k < 1:
            raise UsageError(f"bad {what} spec {spec!r}: K must be >= 1", "e.g. every:4")
        return tuple(sorted(set(table[::k]) | {table[-1]}, reverse=True))
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise UsageError(f"bad {what} spec {spec!r}", f"accepted forms: {CLOCK_FORMS}")
        lo, hi = (_int(p, spec, what) for p in parts[:2])
        if lo > hi:
            raise UsageError(
                f"bad {what} range {spec!r}: start above end", "write it low:high, e.g. 900:1800"
            )
        within = [c for c in table if lo <= c <= hi]
        if not within and empty_ok:
            return ()
        if not within:
            raise UsageError(
                f"no supported {what} in {lo}-{hi} MHz",
                f"supported: {table[-1]}-{table[0]} MHz",
            )
        if len(parts) == 2:
            return tuple(within)
        step = _int(parts[2], spec, what)
        if step < 1:
            raise UsageError(
                f"bad {what} range {spec!r}: step must be >= 1 MHz", "e.g. 900:1800:60"
            )
        targets = range(lo, hi + 1, step)
        return tuple(sorted({_snap(within, t) for t in targets}, reverse=True))
    values = [_int(p, spec, what) for p in text.split(",") if p != ""]
    if not values:
        raise UsageError(f"bad {what} spec {spec!r}", f"accepted forms: {CLOCK_FORMS}")
    for v in values:
        if v not in table:
            raise UnsupportedClockError(
                f"{what} {v} MHz is not supported by this GPU",
                f"nearest supported: {nearest_supported(table, v)} MHz "
                f"(range {table[-1]}-{table[0]} MHz)",
            )
    return tuple(sorted(set(values), reverse=True))


def parse_memory_clocks(spec: str, caps: Capabilities) -> tuple[int | None, ...]:
    """Memory clocks (MHz, highest first) for ``spec``; ``(None,)`` for ``default``."""
    return resolve_clocks(spec, caps.memory_clocks_mhz, "mem")


def sm_table(caps: Capabilities, mem_mhz: int | None) -> tuple[int, ...]:
    """Supported SM clocks at a memory clock; ``None`` (default) uses the highest memory clock."""
    return caps.sm_clocks_mhz[mem_mhz if mem_mhz is not None else max(caps.memory_clocks_mhz)]


def parse_sm_clocks(
    spec: str, caps: Capabilities, mem_mhz: int | None = None
) -> tuple[int | None, ...]:
    """SM clocks (MHz, highest first) for ``spec`` at one memory clock; ``(None,)`` for default.

    The spec is checked against every SM clock the GPU supports at any memory clock (so an error
    names the nearest clock it supports at all); then explicit clocks not supported at
    ``mem_mhz`` are left out, and table forms resolve against ``mem_mhz``'s own table (possibly
    to nothing, e.g. a range above that memory clock's ceiling).
    """
    overall = resolve_clocks(spec, caps.sm_clocks_mhz_all, "sm")
    if overall == (None,):
        return overall
    table = sm_table(caps, mem_mhz)
    if _is_explicit(spec):
        return tuple(c for c in overall if c in table)
    return resolve_clocks(spec, table, "sm", empty_ok=True)


def _is_explicit(spec: str) -> bool:
    text = "".join(spec.split()).lower()
    return ":" not in text and text not in ("all", "default")


# --- power limits -------------------------------------------------------------------------------


def _float(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(
            f"bad power-limit spec {spec!r}: {text!r} is not a number of watts",
            f"accepted forms: {POWER_FORMS}",
        )
    return value


def parse_power_limits(spec: str, caps: Capabilities) -> tuple[float, ...]:
    """Power limits in W (highest first, rounded to mW) for ``spec``, each within constraints."""
    text = "".join(spec.split()).lower()
    lo_w, hi_w = caps.power_limit_w_min, caps.power_limit_w_max
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise UsageError(
                f"bad power-limit spec {spec!r}: a range needs a step",
                f"accepted forms: {POWER_FORMS}",
            )
        start, end, step = (_float(p, spec) for p in parts)
        if start > end or step <= 0:
            raise UsageError(
                f"bad power-limit range {spec!r}: need start <= end and step > 0",
                "e.g. 200:700:50",
            )
        n = math.floor((end - start) / step + 1e-9)
        values = [start + i * step for i in range(n + 1)]
    else:
        values = [_float(p, spec) for p in text.split(",") if p != ""]
        if not values:
            raise UsageError(f"bad power-limit spec {spec!r}", f"accepted forms: {POWER_FORMS}")
    for v in values:
        if not lo_w - 1e-9 <= v <= hi_w + 1e-9:
            raise PowerLimitOutOfRangeError(
                f"power limit {v:g} W is out of range for this GPU",
                f"choose {lo_w:g}-{hi_w:g} W (default {caps.power_limit_w_default:g} W)",
            )
    return tuple(sorted({round(v, 3) for v in values}, reverse=True))


# --- the space ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """The operating points of one sweep; build with :meth:`from_specs`.

    ``clock_pairs`` are (SM MHz, memory MHz) with None for "not locked"; ``power_limits_w`` are
    explicit limits in W. Mode ``clocks`` sweeps clock pairs at the default power limit,
    ``power`` sweeps limits with clocks unlocked (for sites that only allow capping), ``both``
    takes the cartesian product. :meth:`points` always starts with the baseline
    ``OperatingPoint()``, exactly once.
    """

    mode: str  # "clocks" | "power" | "both"
    clock_pairs: tuple[tuple[int | None, int | None], ...]
    power_limits_w: tuple[float, ...]
    power_limit_w_default: float
    sm_spec: str | None = None
    mem_spec: str | None = None
    power_spec: str | None = None

    @classmethod
    def from_specs(
        cls,
        caps: Capabilities,
        *,
        sm: str | None = None,
        mem: str | None = None,
        power: str | None = None,
    ) -> Space:
        """A space from the specs given (None: that dimension is not swept)."""
        if sm is None and mem is None and power is None:
            raise UsageError(
                "nothing to sweep", "give SM clocks, memory clocks or power limits to sweep"
            )
        clocks = sm is not None or mem is not None
        mode = "both" if clocks and power is not None else "clocks" if clocks else "power"
        pairs: list[tuple[int | None, int | None]] = []
        if clocks:
            for m in parse_memory_clocks(mem or "default", caps):
                pairs.extend((s, m) for s in parse_sm_clocks(sm or "default", caps, m))
            if not pairs:
                raise UsageError(
                    f"SM clocks {sm!r} are supported at none of memory clocks {mem!r}",
                    "pick SM clocks the GPU supports at those memory clocks "
                    "(`wattbench devices --clocks`)",
                )
        limits = parse_power_limits(power, caps) if power is not None else ()
        return cls(
            mode=mode,
            clock_pairs=tuple(dict.fromkeys(pairs)),
            power_limits_w=limits,
            power_limit_w_default=caps.power_limit_w_default,
            sm_spec=sm,
            mem_spec=mem,
            power_spec=power,
        )

    def points(self) -> list[OperatingPoint]:
        """Baseline first, then the sweep (memory, SM, power each highest first), no repeats."""
        pairs = self.clock_pairs if self.mode != "power" else ((None, None),)
        limits: tuple[float | None, ...] = self.power_limits_w if self.mode != "clocks" else (None,)
        out = dict.fromkeys([OperatingPoint()])
        for s, m in pairs:
            for p in limits:
                out.setdefault(OperatingPoint(s, m, p))
        return list(out)

    @property
    def knobs(self) -> frozenset[str]:
        """The settings this sweep changes: "sm", "mem" (only if memory clocks are swept) and
        "power". Nothing else is touched, so a site that only permits capping can sweep power."""
        out = set()
        if self.mode != "power":
            out.add("sm")
            if self.mem_spec is not None:
                out.add("mem")
        if self.mode != "clocks":
            out.add("power")
        return frozenset(out)

    @property
    def max_power_limit_w(self) -> float:
        """The highest power limit the sweep considers (W): Zeus's ``max_power_w``."""
        return max((self.power_limit_w_default, *self.power_limits_w))

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: the specs as given and what they resolved to."""
        sm_by_mem: dict[str, list[int | None]] = {}
        for s, m in self.clock_pairs:
            sm_by_mem.setdefault("default" if m is None else str(m), []).append(s)
        return {
            "mode": self.mode,
            "specs": {"sm": self.sm_spec, "mem": self.mem_spec, "power": self.power_spec},
            "sm_mhz_by_mem": sm_by_mem if self.mode != "power" else {},
            "power_limits_w": list(self.power_limits_w) if self.mode != "clocks" else [],
            "power_limit_w_default": self.power_limit_w_default,
            "max_power_limit_w": self.max_power_limit_w,
            "n_points": len(self.points()),
        }
