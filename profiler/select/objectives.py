"""Selection objectives: pick an operating point from a run's measurements.

Every objective is a small pure function over a sequence of :class:`Measurement` (per-iteration
``time_s`` in s and ``energy_j`` in J) that returns a :class:`Choice`; nothing here touches a
device or a file.

Rules shared by every objective:

* **Baseline**: the first measurement whose ``point.is_baseline`` (the swept knobs at driver
  defaults, the others as found).
  Savings and slowdowns are relative to it; without one they are ``None`` (and
  :func:`min_energy_within_slowdown` refuses to run).
* **Untrusted points**: a point flagged ``unstable`` or ``clock_missed`` (see
  :data:`UNTRUSTED_FLAGS`) is handled by the ``flagged`` argument: ``"avoid"`` (default) drops
  untrusted points whenever at least one trusted point exists in the input, and keeps them all
  otherwise; ``"exclude"`` always drops them (an error if nothing is left); ``"include"`` ignores
  flags. ``throttled`` is not untrusted: a power cap is *meant* to throttle.
* **Ties**: objective values are compared rounded to 12 significant digits (so that products that
  are mathematically equal tie); a tie goes to the lower time, then the lower energy, then the
  point order (driver default before any explicit setting, then lower SM clock, memory clock,
  power limit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wattbench.profiler.errors import UsageError
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.textfmt import percent

#: flags that make a point untrusted for selection
UNTRUSTED_FLAGS = frozenset({"unstable", "clock_missed"})

#: the accepted values of every objective's ``flagged`` argument
FLAG_POLICIES = ("avoid", "exclude", "include")

#: relative tolerance of the slowdown bound, so that a point exactly on the bound qualifies
SLOWDOWN_TOLERANCE_REL = 1e-9


@dataclass(frozen=True)
class Choice:
    """The point an objective chose, and what it saves against the baseline.

    ``saving_rel = 1 - E / E_base`` (energy per iteration; positive = saves energy) and
    ``slowdown_rel = T / T_base - 1`` (time per iteration; positive = slower); both ``None``
    when the run has no baseline. ``value`` is the objective's own figure at the chosen point
    (J for energy and Zeus cost, J*s for EDP, J*s^2 for ED²P).
    """

    objective: str
    chosen: Measurement
    baseline: Measurement | None
    value: float

    @property
    def saving_rel(self) -> float | None:
        if self.baseline is None or self.baseline.energy_j == 0:
            return None
        return 1.0 - self.chosen.energy_j / self.baseline.energy_j

    @property
    def slowdown_rel(self) -> float | None:
        if self.baseline is None or self.baseline.time_s == 0:
            return None
        return self.chosen.time_s / self.baseline.time_s - 1.0

    def __str__(self) -> str:
        m = self.chosen
        text = (
            f"{self.objective}: {m.point} -- {m.time_s * 1e3:.4g} ms/it, {m.energy_j:.4g} J/it, "
            f"{m.avg_power_w:.1f} W"
        )
        if m.flags:
            text += f" [{', '.join(m.flags)}]"
        saving, slowdown = self.saving_rel, self.slowdown_rel
        if saving is None or slowdown is None:
            return text + " (no baseline measured)"
        if m.point.is_baseline:
            return text + " (the baseline itself)"
        return (
            text + f"; saves {percent(saving)} energy at {percent(slowdown, signed=True)} time "
            "vs baseline"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary; the full measurement lives in the run record under ``point_key``."""
        m = self.chosen
        return {
            "objective": self.objective,
            "point_key": m.point.key,
            "point": m.point.to_json(),
            "value": self.value,
            "time_s": m.time_s,
            "energy_j": m.energy_j,
            "avg_power_w": m.avg_power_w,
            "flags": list(m.flags),
            "baseline_key": self.baseline.point.key if self.baseline is not None else None,
            "saving_rel": self.saving_rel,
            "slowdown_rel": self.slowdown_rel,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], points: dict[str, Measurement]) -> Choice:
        """Rebuild from :meth:`to_json` and the run's measurements by point key."""
        baseline_key = d.get("baseline_key")
        return cls(
            objective=d["objective"],
            chosen=points[d["point_key"]],
            baseline=points[baseline_key] if baseline_key is not None else None,
            value=d["value"],
        )


# --- helpers -------------------------------------------------------------------------------------


def find_baseline(measurements: Sequence[Measurement]) -> Measurement | None:
    """The first measurement at the baseline point, or None."""
    return next((m for m in measurements if m.point.is_baseline), None)


def is_trusted(m: Measurement) -> bool:
    """True when the measurement carries none of :data:`UNTRUSTED_FLAGS`."""
    return not UNTRUSTED_FLAGS.intersection(m.flags)


def candidates(measurements: Sequence[Measurement], flagged: str = "avoid") -> list[Measurement]:
    """The measurements an objective may choose from under the ``flagged`` policy (see module)."""
    if flagged not in FLAG_POLICIES:
        raise UsageError(
            f"unknown policy for flagged points: {flagged!r}",
            f"use one of {', '.join(FLAG_POLICIES)}",
        )
    if not measurements:
        raise UsageError(
            "no measurements to select from",
            "measure at least one operating point first (the run record has no points)",
        )
    if flagged == "include":
        return list(measurements)
    trusted = [m for m in measurements if is_trusted(m)]
    if trusted or flagged == "avoid":
        return trusted or list(measurements)
    raise UsageError(
        f"all {len(measurements)} measured points are flagged "
        f"({' or '.join(sorted(UNTRUSTED_FLAGS))})",
        "re-measure with longer windows or more trials, or allow flagged points",
    )


def point_order(p: OperatingPoint) -> tuple[tuple[int, float], ...]:
    """A total order on points: per field, the default (None) first, then ascending values."""
    return tuple(
        (0, 0.0) if v is None else (1, float(v)) for v in (p.sm_mhz, p.mem_mhz, p.power_limit_w)
    )


def _rounded(value: float) -> float:
    return float(f"{value:.12g}")


def _pick(
    name: str,
    measurements: Sequence[Measurement],
    cost: Callable[[Measurement], float],
    flagged: str,
    baseline: Measurement | None = None,
) -> Choice:
    """The candidate of least ``cost`` (ties: see module); baseline defaults to the input's."""
    pool = candidates(measurements, flagged)
    best = min(pool, key=lambda m: (_rounded(cost(m)), m.time_s, m.energy_j, point_order(m.point)))
    base = baseline if baseline is not None else find_baseline(measurements)
    return Choice(name, best, base, cost(best))


# --- objectives ----------------------------------------------------------------------------------


def min_energy(measurements: Sequence[Measurement], *, flagged: str = "avoid") -> Choice:
    """Minimum energy per iteration (J) -- the most work per joule."""
    return _pick("energy", measurements, lambda m: m.energy_j, flagged)


def min_edp(measurements: Sequence[Measurement], *, flagged: str = "avoid") -> Choice:
    """Minimum energy-delay product, energy_j * time_s (J*s)."""
    return _pick("edp", measurements, lambda m: m.energy_j * m.time_s, flagged)


def min_ed2p(measurements: Sequence[Measurement], *, flagged: str = "avoid") -> Choice:
    """Minimum energy-delay-squared product, energy_j * time_s**2 (J*s^2)."""
    return _pick("ed2p", measurements, lambda m: m.energy_j * m.time_s**2, flagged)


def zeus_cost(m: Measurement, eta: float, max_power_w: float) -> float:
    """Zeus's cost of one iteration in J: ``eta * energy + (1 - eta) * max_power_w * time``.

    From Zeus (You, Chung, Chowdhury, "Zeus: Understanding and Optimizing GPU Energy Consumption
    of DNN Training", NSDI'23) and its reference implementation (``zeus/utils/metric.py`` in
    ml-energy/zeus): time is priced at ``max_power_w``, the highest power limit considered (times
    the number of GPUs for a multi-GPU job), so that both terms are joules and ``eta`` in [0, 1]
    trades energy (eta = 1) against time (eta = 0).
    """
    return eta * m.energy_j + (1.0 - eta) * max_power_w * m.time_s


def _check_eta(eta: float) -> None:
    if not (isinstance(eta, int | float) and 0.0 <= eta <= 1.0):
        raise UsageError(
            f"Zeus eta must be in [0, 1], got {eta!r}",
            "eta = 1 minimises energy only, eta = 0 time only (e.g. zeus:0.5)",
        )


def min_zeus_cost(
    measurements: Sequence[Measurement],
    *,
    eta: float,
    max_power_w: float,
    flagged: str = "avoid",
) -> Choice:
    """Minimum Zeus cost (see :func:`zeus_cost`); ``max_power_w`` > 0 is in W."""
    _check_eta(eta)
    if not (
        isinstance(max_power_w, int | float) and max_power_w > 0 and math.isfinite(max_power_w)
    ):
        raise UsageError(
            f"Zeus max_power_w must be a positive number of watts, got {max_power_w!r}",
            "pass the highest power limit considered in the sweep",
        )
    return _pick(f"zeus:{eta:g}", measurements, lambda m: zeus_cost(m, eta, max_power_w), flagged)


def min_energy_within_slowdown(
    measurements: Sequence[Measurement], *, max_slowdown_rel: float, flagged: str = "avoid"
) -> Choice:
    """Minimum energy among points with ``time_s / baseline.time_s - 1 <= max_slowdown_rel``.

    A point exactly on the bound qualifies (relative tolerance :data:`SLOWDOWN_TOLERANCE_REL`).
    If no candidate qualifies (the baseline itself may have been dropped as untrusted), the
    baseline is chosen. Needs a baseline measurement.
    """
    if not (
        isinstance(max_slowdown_rel, int | float)
        and max_slowdown_rel >= 0
        and math.isfinite(max_slowdown_rel)
    ):
        raise UsageError(
            f"slowdown bound must be a number >= 0, got {max_slowdown_rel!r}",
            "give the allowed slowdown as a fraction, e.g. slowdown:0.05 for 5%",
        )
    name = f"slowdown:{max_slowdown_rel:g}"
    pool = candidates(measurements, flagged)
    baseline = find_baseline(measurements)
    if baseline is None:
        raise UsageError(
            f"objective {name} needs the baseline but the run has none",
            "measure the baseline point too (sweeps include it first), or pick another objective",
        )
    limit_s = baseline.time_s * (1.0 + max_slowdown_rel) * (1.0 + SLOWDOWN_TOLERANCE_REL)
    within = [m for m in pool if m.time_s <= limit_s]
    if not within:
        return Choice(name, baseline, baseline, baseline.energy_j)
    return _pick(name, within, lambda m: m.energy_j, "include", baseline)


def pareto_front(
    measurements: Sequence[Measurement], *, flagged: str = "avoid"
) -> list[Measurement]:
    """The measurements not dominated in (time_s, energy_j), sorted by time (ties: energy, point).

    ``a`` dominates ``b`` when ``a`` is no worse in both and strictly better in one; points with
    identical time and energy do not dominate each other, so both stay on the front.
    """
    pool = sorted(
        candidates(measurements, flagged),
        key=lambda m: (m.time_s, m.energy_j, point_order(m.point)),
    )
    front: list[Measurement] = []
    for m in pool:  # ascending time: m is dominated iff an earlier point has lower energy, or
        # the same energy at a strictly lower time
        if any(
            f.energy_j < m.energy_j or (f.energy_j == m.energy_j and f.time_s < m.time_s)
            for f in front
        ):
            continue
        front.append(m)
    return front


# --- CLI names -----------------------------------------------------------------------------------

#: what --objective takes; a form without ":" is a parameterless objective, its own OBJECTIVES key
OBJECTIVE_FORMS = ("energy", "edp", "ed2p", "zeus:<eta in [0,1]>", "slowdown:<s >= 0>")


@dataclass(frozen=True)
class Objective:
    """A parsed objective name, ready to apply: ``Objective.parse("zeus:0.5")(measurements)``."""

    name: str  # canonical text, e.g. "zeus:0.5"
    kind: str  # a key of OBJECTIVES
    param: float | None = None

    def __call__(
        self,
        measurements: Sequence[Measurement],
        *,
        max_power_w: float | None = None,
        flagged: str = "avoid",
    ) -> Choice:
        """Apply it. ``max_power_w`` (W) is needed by ``zeus`` only."""
        fn = OBJECTIVES[self.kind]
        if self.kind == "zeus":
            if max_power_w is None:
                raise UsageError(
                    f"objective {self.name} needs max_power_w (the highest power limit considered)",
                    "pass the sweep's highest power limit (Space.max_power_limit_w)",
                )
            return fn(measurements, eta=self.param, max_power_w=max_power_w, flagged=flagged)
        if self.kind == "slowdown":
            return fn(measurements, max_slowdown_rel=self.param, flagged=flagged)
        return fn(measurements, flagged=flagged)


#: objective kind -> function (measurements, *, [param,] flagged) -> Choice
OBJECTIVES: dict[str, Callable[..., Choice]] = {
    "energy": min_energy,
    "edp": min_edp,
    "ed2p": min_ed2p,
    "zeus": min_zeus_cost,
    "slowdown": min_energy_within_slowdown,
}


def parse_objective(text: str) -> Objective:
    """Parse ``energy``, ``edp``, ``ed2p``, ``zeus:<eta>`` or ``slowdown:<s>`` (any case)."""
    forms = ", ".join(OBJECTIVE_FORMS)
    raw = text.strip().lower()
    kind, sep, arg = raw.partition(":")
    if kind in OBJECTIVES and kind in OBJECTIVE_FORMS and not sep:  # parameterless
        return Objective(kind, kind)
    if kind in ("zeus", "slowdown") and sep:
        try:
            value = float(arg)
        except ValueError:
            value = math.nan
        if kind == "zeus" and 0.0 <= value <= 1.0:
            return Objective(f"zeus:{value:g}", "zeus", value)
        if kind == "slowdown" and 0.0 <= value < math.inf:
            return Objective(f"slowdown:{value:g}", "slowdown", value)
        what = "eta in [0, 1]" if kind == "zeus" else "a slowdown fraction >= 0 (0.05 = 5%)"
        raise UsageError(f"bad objective {text!r}: {kind} needs {what}", f"valid forms: {forms}")
    raise UsageError(f"unknown objective {text!r}", f"valid forms: {forms}")
