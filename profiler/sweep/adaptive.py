"""Adaptive search: the optimal point of every objective in a fraction of the grid's measurements.

The space is cut into *lines*: runs of points that differ along one axis only (the SM clock, or
the power limit in a power-limit sweep), sorted ascending. A clock sweep over one memory clock is
one line; memory x SM clocks give one line per memory clock; clocks x power limits one line per
value of the shorter dimension, along the longer one. Points off every line (an unlocked clock
inside a clock sweep) and lines of at most ``coarse_points`` points are measured in full.

Per line: a coarse pass measures ``coarse_points`` evenly spaced points (both ends included,
highest first, as the grid runs). Then, for each objective in turn, a bracket refinement: take
the best measured point ``m`` of the line and its nearest measured neighbours ``a < m < b``; if
``b - a <= tolerance_steps`` the objective is done, else measure a golden-section probe in the
larger of ``(a, m)``, ``(m, b)`` and repeat. Objectives share every measurement (a probe for EDP
can become the energy search's neighbour), and the final choice is made by the objective
functions of ``select/objectives.py`` over all measured points, so the chosen point is always
one actually measured. For a unimodal cost (energy vs clock usually is) the bracket keeps the
optimum; a monotone cost ends at a line end, a flat one anywhere on the flat.

Noise: points are compared with their measured spread, using the figures of each point's latest
pass. A figure's relative standard error is ``sqrt(sd^2 / n + noise_floor_rel^2 + (k * dT)^2)``:
``sd`` is the relative standard deviation of the cost over the pass's ``n`` trials, and ``dT``
how far the GPU's temperature moved during the pass (``k = thermal_rel_per_c``; a pass measured
while the GPU heats or cools is not at steady state, and leakage follows temperature). Two
energy figures are further apart in error by ``k`` times the difference of the temperatures
their passes ran at. When the best point and its closer neighbour differ by less than
``significance_z`` combined standard errors, both are measured again, back to back, in the
grid's order (a *confirmation run*; a point that has had ``max_passes`` passes is left out);
after that the figures decide. Per objective the same check settles the overall best point
against the best of every other line and every point off the lines, the baseline included, so
that a baseline measured first, from idle, is measured again once the GPU is warm if it matters.

Slowdown bound ``slowdown:<s>``: points slower than ``(1 + s)`` times the baseline rank after
every point within the bound (by time among themselves), so the search closes in on the least
energy within the bound, which lies at the energy optimum or at the bound's edge. Untrusted
points (``select.objectives.UNTRUSTED_FLAGS``) rank after trusted ones, as selection avoids them.

The strategy keeps no state between calls: :meth:`AdaptiveStrategy.next_point` replays the
search over what has been measured, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from wattbench.profiler.errors import UsageError
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.select.objectives import (
    SLOWDOWN_TOLERANCE_REL,
    Objective,
    is_trusted,
    parse_objective,
    point_order,
)
from wattbench.profiler.sweep.space import Space
from wattbench.profiler.sweep.strategy import Strategy, latest_samples, passes_of, seq_of

#: golden-section fraction: a probe goes this far into the larger side of the bracket
GOLDEN = (3.0 - math.sqrt(5.0)) / 2.0  # 0.381966...


@dataclass(frozen=True)
class AdaptiveSettings:
    """Knobs of the adaptive search (recorded in run files under ``settings.strategy``).

    ``coarse_points``: points of the first pass per line (>= 3, ends included);
    ``tolerance_steps``: stop when an objective's bracket spans at most this many steps along
    the line (>= 2: the best point's neighbours on both sides are measured);
    ``significance_z``: a difference counts when above this many combined standard errors;
    ``noise_floor_rel``: relative noise of any pass that its own trials cannot show;
    ``thermal_rel_per_c``: relative error per degree C the temperature moved during a pass;
    ``max_passes``: measurements of one point at most (1: never re-measure).
    """

    coarse_points: int = 5
    tolerance_steps: int = 2
    significance_z: float = 2.0
    noise_floor_rel: float = 0.001
    thermal_rel_per_c: float = 0.005
    max_passes: int = 3

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.coarse_points, int) and self.coarse_points >= 3):
            problems.append(f"coarse_points must be an integer >= 3, not {self.coarse_points!r}")
        if not (isinstance(self.tolerance_steps, int) and self.tolerance_steps >= 2):
            problems.append(
                f"tolerance_steps must be an integer >= 2, not {self.tolerance_steps!r}"
            )
        if not (self.significance_z >= 0 and math.isfinite(self.significance_z)):
            problems.append(f"significance_z must be >= 0, not {self.significance_z!r}")
        for name in ("noise_floor_rel", "thermal_rel_per_c"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                problems.append(f"{name} must be >= 0, not {value!r}")
        if not (isinstance(self.max_passes, int) and self.max_passes >= 1):
            problems.append(f"max_passes must be an integer >= 1, not {self.max_passes!r}")
        if problems:
            raise UsageError(
                "bad adaptive search settings: " + "; ".join(problems),
                "use the defaults (AdaptiveSettings()) or fix the values named",
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_method(cls, method: str) -> AdaptiveSettings:
        """The defaults for a measurement method: with "fast" a point is measured at most twice
        (its second pass is held until it has settled, and the figures compared are each
        carried to their own steady temperature); "steady" keeps its three passes."""
        return cls(max_passes=2) if method == "fast" else cls()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AdaptiveSettings:
        """From a recorded ``settings.strategy`` dict (other keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Line:
    """Points that differ along ``axis`` ("sm" or "power") only, ascending along it."""

    axis: str
    points: tuple[OperatingPoint, ...]

    def describe(self) -> dict[str, Any]:
        p = self.points[0]
        fixed = {"sm_mhz": p.sm_mhz, "mem_mhz": p.mem_mhz, "power_limit_w": p.power_limit_w}
        del fixed["sm_mhz" if self.axis == "sm" else "power_limit_w"]
        return {"axis": self.axis, "fixed": fixed, "n_points": len(self.points)}


def lines_of(space: Space) -> tuple[list[Line], list[OperatingPoint]]:
    """The space's lines and the points on none of them (see module); baseline excluded."""
    by_line: dict[tuple, list[OperatingPoint]] = {}
    extras: list[OperatingPoint] = []
    if space.mode == "power":
        axis = "power"
    elif space.mode == "clocks":
        axis = "sm"
    else:  # both: search along the longer dimension
        n_sm = len({s for s, _ in space.clock_pairs if s is not None})
        axis = "power" if len(space.power_limits_w) > n_sm else "sm"
    for p in space.points():
        if p.is_baseline:
            continue
        value = p.sm_mhz if axis == "sm" else p.power_limit_w
        if value is None:
            extras.append(p)
            continue
        rest = (p.mem_mhz, p.power_limit_w) if axis == "sm" else (p.sm_mhz, p.mem_mhz)
        by_line.setdefault(rest, []).append(p)
    key = (lambda p: p.sm_mhz) if axis == "sm" else (lambda p: p.power_limit_w)
    lines = [Line(axis, tuple(sorted(pts, key=key))) for pts in by_line.values()]
    return lines, extras


# --- costs ---------------------------------------------------------------------------------------


def cost_function(objective: Objective, max_power_w: float) -> Callable[[float, float], float]:
    """The objective's figure of one (energy J, time s) pair, as ``select.objectives`` ranks it
    (a slowdown bound ranks by energy; its bound is applied by :class:`_Ranker`)."""
    kind, param = objective.kind, objective.param
    if kind in ("energy", "slowdown"):
        return lambda e, t: e
    if kind == "edp":
        return lambda e, t: e * t
    if kind == "ed2p":
        return lambda e, t: e * t * t
    if kind == "zeus":
        if param is None:
            raise ValueError(f"objective {objective.name!r} has no eta (zeus:<eta>)")
        eta = param
        return lambda e, t: eta * e + (1.0 - eta) * max_power_w * t
    raise ValueError(f"the adaptive search has no cost for objective kind {kind!r}")


def _rel_error(m: Measurement, fn: Callable[[float, float], float]) -> tuple[float, float]:
    """(figure, relative sd over the latest pass's trials / sqrt(trials)) of ``fn`` at ``m``."""
    mean = fn(m.energy_j, m.time_s)
    vals = [fn(s["energy_j"], s["time_s"]) for s in latest_samples(m)]
    if len(vals) < 2 or not mean:
        return mean, 0.0
    return mean, statistics.stdev(vals) / abs(mean) / math.sqrt(len(vals))


def _corrected(m: Measurement) -> bool:
    """Whether ``m`` was carried to its steady temperature (fast method), with its error."""
    return "rel_se" in m.thermal and "noise_rel" in m.thermal


def _mid_temp_c(m: Measurement) -> float:
    """The GPU's temperature (C) midway through the point's latest pass."""
    return (m.temp_c_start + m.temp_c_end) / 2


def measurement_order(p: OperatingPoint) -> tuple:
    """The order a confirmation run measures points in: the baseline, then the grid's order
    (memory clock, SM clock, power limit, each highest first; unlocked counts as highest)."""
    return (
        not p.is_baseline,
        tuple(-(math.inf if v is None else v) for v in (p.mem_mhz, p.sm_mhz, p.power_limit_w)),
    )


class _Need(Exception):
    """Raised inside the replay: ``point`` must be measured (again) before the search goes on."""

    def __init__(self, point: OperatingPoint) -> None:
        self.point = point


class _Ranker:
    """Orders measured points for one objective and says whether an order is trustworthy."""

    def __init__(
        self,
        objective: Objective,
        max_power_w: float,
        baseline: Measurement,
        settings: AdaptiveSettings,
    ) -> None:
        self.fn = cost_function(objective, max_power_w)
        self.s = settings
        #: how many factors of time the objective's figure holds beyond energy (E t: 1, E t^2:
        #: 2; Zeus's mix counted as 1): at the power cap a thermal correction moves time and
        #: energy together, so its error enters the figure once per factor
        self.t_power = {"edp": 1, "ed2p": 2, "zeus": 1}.get(objective.kind, 0)
        self.limit_s: float | None = None
        if objective.kind == "slowdown":
            if objective.param is None:
                raise ValueError(f"objective {objective.name!r} has no bound (slowdown:<s>)")
            self.limit_s = (
                baseline.time_s * (1.0 + objective.param) * (1.0 + SLOWDOWN_TOLERANCE_REL)
            )

    def _error(self, m: Measurement, fn, energy: bool = True) -> tuple[float, float]:
        """(figure, relative standard error): trial spread, noise floor and, for energy
        figures, ``thermal_rel_per_c`` times how far the temperature moved during the pass."""
        value, sd = _rel_error(m, fn)
        s = self.s
        if _corrected(m):  # fast method: the correction's own uncertainty, beyond trial noise
            rel_se, noise = float(m.thermal["rel_se"]), float(m.thermal["noise_rel"])
            model = math.sqrt(max(rel_se * rel_se - noise * noise, 0.0))
            capped = bool(m.thermal.get("capped"))
            if energy:
                thermal = model * (1 + self.t_power if capped else 1)
                sd = max(sd, noise)  # no smaller than the sweep's pooled window noise says
            else:  # a time figure is corrected only at the cap (where the clock gives way)
                thermal = model if capped else 0.0
        else:
            thermal = s.thermal_rel_per_c * abs(m.temp_c_end - m.temp_c_start) if energy else 0.0
        return value, math.sqrt(sd * sd + s.noise_floor_rel**2 + thermal * thermal)

    def _within(self, m: Measurement) -> tuple[bool, bool]:
        """(within the slowdown bound, sure of it)."""
        if self.limit_s is None:
            return True, True
        _, err = self._error(m, lambda e, t: t, energy=False)
        margin = abs(m.time_s - self.limit_s) / self.limit_s
        return m.time_s <= self.limit_s, margin > self.s.significance_z * err

    def rank(self, m: Measurement) -> tuple[int, float]:
        """(class, figure): 0 trusted within the bound (figure = cost), 1 trusted beyond it
        (figure = time), 2 untrusted (figure = cost); lower is better."""
        if not is_trusted(m):
            return 2, self.fn(m.energy_j, m.time_s)
        if self.limit_s is not None and m.time_s > self.limit_s:
            return 1, m.time_s
        return 0, self.fn(m.energy_j, m.time_s)

    def margin(self, a: Measurement, b: Measurement) -> float:
        """How far apart ``a`` and ``b`` rank, in combined standard errors (inf: apart for
        sure, e.g. one untrusted; 0: in different classes but either could be on either side
        of the slowdown bound). The error of the pair includes ``thermal_rel_per_c`` times the
        difference of the temperatures the two passes ran at."""
        (ka, _), (kb, _) = self.rank(a), self.rank(b)
        if ka != kb:
            sure = self._within(a)[1] and self._within(b)[1]
            return math.inf if ka == 2 or kb == 2 or sure else 0.0
        fn = self.fn if ka != 1 else (lambda e, t: t)
        va, ea = self._error(a, fn, energy=ka != 1)
        vb, eb = self._error(b, fn, energy=ka != 1)
        pair = 0.0  # corrected figures are each at their own steady temperature already
        if ka != 1 and not (_corrected(a) and _corrected(b)):
            pair = self.s.thermal_rel_per_c * abs(_mid_temp_c(a) - _mid_temp_c(b))
        scale = (abs(va) + abs(vb)) / 2 or 1.0
        return abs(va - vb) / scale / (math.sqrt(ea * ea + eb * eb + pair * pair) or 1e-12)

    def decided(self, a: Measurement, b: Measurement) -> bool:
        """Whether the order of ``a`` and ``b`` is outside their noise."""
        return self.margin(a, b) > self.s.significance_z

    def best(self, ms: Mapping[OperatingPoint, Measurement]) -> OperatingPoint:
        return min(ms, key=lambda p: (*self.rank(ms[p]), point_order(p)))


# --- the strategy ---------------------------------------------------------------------------------


class AdaptiveStrategy(Strategy):
    """Bracket-and-refine search over ``space`` for ``objectives`` (see module)."""

    name = "adaptive"

    def __init__(
        self,
        space: Space,
        objectives: Sequence[Objective] = (),
        *,
        max_power_w: float | None = None,
        settings: AdaptiveSettings | None = None,
    ) -> None:
        self.space = space
        self.objectives = tuple(objectives) or (parse_objective("energy"),)
        self.max_power_w = max_power_w if max_power_w is not None else space.max_power_limit_w
        self.settings = settings or AdaptiveSettings()
        self.lines, self.extras = lines_of(space)
        self.baseline = OperatingPoint()
        for o in self.objectives:
            cost_function(o, self.max_power_w)  # unknown kind: fail now, not mid-sweep

    def planned(self) -> None:
        return None  # depends on what is measured

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            **self.settings.to_json(),
            "lines": [line.describe() for line in self.lines],
            "extras": [p.key for p in self.extras],
            "grid_points": len(self.space.points()),
        }

    def next_point(self, measured: Mapping[str, Measurement]) -> OperatingPoint | None:
        try:
            _Replay(self, measured).run()
        except _Need as need:
            return need.point
        return None


class _Replay:
    """One replay of the search over what has been measured; raises :class:`_Need`."""

    def __init__(self, strategy: AdaptiveStrategy, measured: Mapping[str, Measurement]) -> None:
        self.st = strategy
        self.s = strategy.settings
        self.measured = measured
        self.last_seq = max((q for m in measured.values() if (q := seq_of(m))), default=0)

    def get(self, p: OperatingPoint) -> Measurement:
        m = self.measured.get(p.key)
        if m is None:
            raise _Need(p)
        return m

    def run(self) -> None:
        st, k = self.st, self.s.coarse_points
        baseline = self.get(st.baseline)
        for p in st.extras:
            self.get(p)
        for line in st.lines:
            n = len(line.points)
            idx = range(n) if n <= k else {round(j * (n - 1) / (k - 1)) for j in range(k)}
            for i in sorted(idx, reverse=True):
                self.get(line.points[i])
        rankers = [_Ranker(o, st.max_power_w, baseline, self.s) for o in st.objectives]
        for ranker in rankers:
            for line in st.lines:
                if len(line.points) > k:
                    self.refine(line, ranker)
            self.cross_check(ranker)

    def refine(self, line: Line, ranker: _Ranker) -> None:
        """Need the next point this objective wants on ``line``; return when its bracket is
        within the tolerance and the best point's order against its neighbours is settled."""
        pts = line.points
        have = {i: self.measured[p.key] for i, p in enumerate(pts) if p.key in self.measured}
        best = min(have, key=lambda i: (*ranker.rank(have[i]), i))
        lower = [i for i in have if i < best]
        upper = [i for i in have if i > best]
        lo = max(lower) if lower else best
        hi = min(upper) if upper else best
        unsure = [i for i in (lo, hi) if i != best and not ranker.decided(have[best], have[i])]
        if unsure:  # the closer competitor first: settle the best against it
            rival = min(unsure, key=lambda i: (ranker.margin(have[best], have[i]), i))
            self.confirm([pts[best], pts[rival]])
        if hi - lo <= self.s.tolerance_steps:
            return
        left, right = best - lo, hi - best
        if right >= left:
            x = min(best + max(1, round(GOLDEN * right)), hi - 1)
        else:
            x = max(best - max(1, round(GOLDEN * left)), lo + 1)
        raise _Need(pts[x])

    def cross_check(self, ranker: _Ranker) -> None:
        """Settle the overall best against the best of every other line and every extra point
        (the baseline among them)."""
        local = {}
        for line in self.st.lines:
            ms = {p: self.measured[p.key] for p in line.points if p.key in self.measured}
            b = ranker.best(ms)
            local[b] = ms[b]
        for p in (self.st.baseline, *self.st.extras):
            local[p] = self.measured[p.key]
        top = ranker.best(local)
        for p in sorted(local, key=measurement_order):
            if p != top and not ranker.decided(local[top], local[p]):
                self.confirm([top, p])

    def confirm(self, points: Sequence[OperatingPoint]) -> None:
        """Need the next point of a confirmation run over ``points``: each that has passes left
        (fewer than ``max_passes``), measured back to back in :func:`measurement_order`.
        Return once the run is complete, or when no point has passes left."""
        group = sorted(set(points), key=measurement_order)
        ms = {p: self.measured[p.key] for p in group}
        by_seq = {seq_of(m): p for p, m in ms.items()}
        tail: list[OperatingPoint] = []  # the last measurements, if they are group points in order
        seq = self.last_seq
        while seq in by_seq and (not tail or group.index(by_seq[seq]) < group.index(tail[0])):
            tail.insert(0, by_seq[seq])
            seq -= 1
        left = [p for p in group if passes_of(ms[p]) < self.s.max_passes]
        run = [p for p in group if p in tail or p in left]
        if tail == run:
            return
        if run[: len(tail)] == tail:
            raise _Need(run[len(tail)])
        if left:
            raise _Need(left[0])
