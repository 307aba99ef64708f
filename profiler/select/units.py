"""Several units of one GPU model as one: the operating point that serves them all.

Each unit is normalised to its own baseline: at every operating point measured on *every* unit,
the unit's time and energy as ratios to its own driver-default figures. A **policy** combines
the units point by point -- ``median`` the median unit's ratios, ``worst`` the largest ratios of
any unit (the slowest time, the highest energy: a slowdown bound then holds for every unit) --
and the ratios are scaled back by the median baseline, so that any objective can choose among
the combined points exactly as it chooses among one unit's. Pure functions; no files.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Protocol

from wattbench.profiler.errors import UsageError
from wattbench.profiler.measure.types import Measurement
from wattbench.profiler.select.objectives import Choice, Objective, find_baseline

POLICIES = ("median", "worst")


@dataclasses.dataclass(frozen=True)
class Combined:
    """The combined points (one per point every usable unit measured) and the median baseline."""

    measurements: list[Measurement]
    usable: list[int]  # indices of the units with a usable baseline
    baseline_time_s: float
    baseline_energy_j: float
    baseline_power_w: float | None


def combine(units: Sequence[Sequence[Measurement]], policy: str = "median") -> Combined:
    if policy not in POLICIES:
        raise UsageError(f"unknown policy {policy!r}", f"use {' or '.join(POLICIES)}")
    bases = [find_baseline(u) for u in units]
    usable = [i for i, b in enumerate(bases) if b is not None and b.time_s > 0 and b.energy_j > 0]
    if not usable:
        return Combined([], [], 0.0, 0.0, None)
    by_key = [{m.point.key: m for m in units[i]} for i in range(len(units))]
    common = set.intersection(*(set(by_key[i]) for i in usable))
    pick = statistics.median if policy == "median" else max
    t0 = statistics.median(bases[i].time_s for i in usable)  # type: ignore[union-attr]
    e0 = statistics.median(bases[i].energy_j for i in usable)  # type: ignore[union-attr]
    p0 = statistics.median(bases[i].energy_j / bases[i].time_s for i in usable)  # type: ignore[union-attr]
    out = []
    for key in sorted(common):
        t = pick(by_key[i][key].time_s / bases[i].time_s for i in usable)  # type: ignore[union-attr]
        e = pick(by_key[i][key].energy_j / bases[i].energy_j for i in usable)  # type: ignore[union-attr]
        flags = sorted({f for i in usable for f in by_key[i][key].flags})
        first = by_key[usable[0]][key]
        out.append(dataclasses.replace(first, time_s=t * t0, energy_j=e * e0, flags=flags))
    return Combined(out, usable, t0, e0, p0)


def at_point(unit: Sequence[Measurement], key: str) -> tuple[float, float] | None:
    """(saving, slowdown) of one unit at the point ``key`` against its own baseline."""
    base = find_baseline(unit)
    m = next((x for x in unit if x.point.key == key), None)
    if base is None or m is None or base.energy_j <= 0 or base.time_s <= 0:
        return None
    return 1.0 - m.energy_j / base.energy_j, m.time_s / base.time_s - 1.0


class PowerLimitsSeen(Protocol):
    """What a run's settings say of power limits (``store.header.RecordSettings`` is one)."""

    @property
    def space_max_power_limit_w(self) -> float | None: ...  # W, the highest limit swept

    @property
    def found_power_limit_w(self) -> float | None: ...  # W, the limit the sweep found


def zeus_max_power_w(settings: Sequence[PowerLimitsSeen]) -> float:
    """Zeus prices time at the highest power limit considered: the highest of the runs' spaces
    (``space_max_power_limit_w``), else the limit they found, else 1 W (with no power limit
    swept the price scales every point alike, so the ranking stands)."""
    spaces = [s.space_max_power_limit_w or 0.0 for s in settings]
    found = [s.found_power_limit_w or 0.0 for s in settings]
    return float(max(spaces, default=0.0) or max(found, default=0.0) or 1.0)


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """An objective's point for several units as one, and each unit's (saving, slowdown) there
    (None for a unit that lacks the point or a baseline)."""

    combined: Combined
    choice: Choice | None
    at_units: list[tuple[float, float] | None]

    def median(self, which: int) -> float | None:
        """Median over the units of the saving (0) or the slowdown (1) at the model point."""
        got = [x[which] for x in self.at_units if x is not None]
        return statistics.median(got) if got else None


def model_choice(
    units: Sequence[Sequence[Measurement]], objective: Objective, *, policy: str, max_power_w: float
) -> ModelChoice:
    """:func:`combine` the units, let ``objective`` choose among the combined points, and say
    where every unit stands at that point."""
    combined = combine(units, policy)
    if not combined.measurements:
        return ModelChoice(combined, None, [None] * len(units))
    choice = objective(combined.measurements, max_power_w=max_power_w)
    key = choice.chosen.point.key
    return ModelChoice(combined, choice, [at_point(u, key) for u in units])
