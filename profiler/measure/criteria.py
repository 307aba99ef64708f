"""Stopping criteria as small named objects (NVBench style): when is warm-up over, when are
there enough trials."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass
class SteadyPower:
    """Warm-up ends when window-average power changes by less than ``rel_change`` for
    ``consecutive`` windows in a row, or after ``max_s`` seconds (then ``converged`` is False)."""

    rel_change: float = 0.01
    consecutive: int = 2
    window_s: float = 0.5
    min_s: float = 1.0
    max_s: float = 30.0
    _last_w: float | None = field(default=None, init=False)
    _streak: int = field(default=0, init=False)
    converged: bool = field(default=False, init=False)

    def add(self, power_w: float, elapsed_s: float) -> bool:
        """Feed one window's average power; True when warm-up is over."""
        if self._last_w is not None and self._last_w > 0:
            change = abs(power_w - self._last_w) / self._last_w
            self._streak = self._streak + 1 if change < self.rel_change else 0
        self._last_w = power_w
        if self._streak >= self.consecutive and elapsed_s >= self.min_s:
            self.converged = True
            return True
        return elapsed_s >= self.max_s


@dataclass
class RelativeSpread:
    """Trials stop once (max - min) / median of the values is below ``threshold`` after at least
    ``min_trials``, or at ``max_trials`` (then ``converged`` is False)."""

    threshold: float = 0.01
    min_trials: int = 3
    max_trials: int = 10
    values: list[float] = field(default_factory=list, init=False)

    def add(self, value: float) -> bool:
        self.values.append(value)
        if len(self.values) >= self.min_trials and self.spread <= self.threshold:
            return True
        return len(self.values) >= self.max_trials

    @property
    def spread(self) -> float:
        if len(self.values) < 2:
            return 0.0
        med = statistics.median(self.values)
        return (max(self.values) - min(self.values)) / med if med else float("inf")

    @property
    def converged(self) -> bool:
        return len(self.values) >= self.min_trials and self.spread <= self.threshold


@dataclass
class StandardErrorTarget:
    """Trials stop once the standard error of their mean, relative to the mean, is at most
    ``rel_target`` after at least ``min_trials``; or after ``max_trials`` or ``max_s`` seconds of
    trials (then ``converged`` is False and the larger standard error is reported, not hidden:
    noise never makes a point "unstable")."""

    rel_target: float = 0.002
    min_trials: int = 3
    max_trials: int = 30
    max_s: float = 10.0
    values: list[float] = field(default_factory=list, init=False)
    elapsed_s: float = field(default=0.0, init=False)

    def add(self, value: float, duration_s: float) -> bool:
        self.values.append(value)
        self.elapsed_s += duration_s
        if self.converged:
            return True
        return len(self.values) >= self.max_trials or self.elapsed_s >= self.max_s

    @property
    def sem_rel(self) -> float:
        """Standard error of the mean over the mean (inf with fewer than two values)."""
        n = len(self.values)
        if n < 2:
            return float("inf")
        mean = statistics.fmean(self.values)
        return statistics.stdev(self.values) / math.sqrt(n) / abs(mean) if mean else float("inf")

    @property
    def converged(self) -> bool:
        return len(self.values) >= self.min_trials and self.sem_rel <= self.rel_target


@dataclass
class Settled:
    """A point has settled when, over its readings of the last ``span_s`` seconds (at least
    ``min_windows`` of them), the temperature moved by at most ``temp_tol_c`` (NVML reports whole
    degrees) and neither energy nor time per iteration drifts (:class:`Drift`); or after
    ``max_s`` seconds (then ``converged`` is False). For warm-up where it matters: the baseline
    (under a power cap its clock keeps falling while it heats, at constant power) and a point
    measured again because it can still win."""

    span_s: float = 1.0
    min_windows: int = 4
    temp_tol_c: float = 1.0
    drift: Drift = field(default_factory=lambda: Drift(threshold_rel=0.003))
    max_s: float = 30.0
    readings: list[tuple[float, float, float, float]] = field(default_factory=list, init=False)
    converged: bool = field(default=False, init=False)

    def add(self, t_s: float, temp_c: float, energy_j: float, time_s: float) -> bool:
        """Feed one window (its middle in s since the point was applied, mean temperature,
        energy and time per iteration); True when warm-up is over."""
        self.readings.append((t_s, temp_c, energy_j, time_s))
        in_span = sum(1 for r in self.readings if r[0] >= t_s - self.span_s)
        recent = self.readings[-max(in_span, self.min_windows) :]
        if len(recent) >= self.min_windows and recent[-1][0] - recent[0][0] >= self.span_s * 0.75:
            temps = [r[1] for r in recent]
            times = [r[0] for r in recent]
            if max(temps) - min(temps) <= self.temp_tol_c and not any(
                self.drift.drifts(times, [r[i] for r in recent]) for i in (2, 3)
            ):
                self.converged = True
                return True
        return t_s >= self.max_s


@dataclass(frozen=True)
class Drift:
    """A trend across trials that noise cannot explain: the least-squares change of the values
    over the trials' span, relative to their mean, is above ``threshold_rel`` and more than ``z``
    of its own standard errors. Only drift (and clocks that did not hold) makes a point
    "unstable"."""

    threshold_rel: float = 0.005
    z: float = 3.0

    def change_rel(self, times_s: list[float], values: list[float]) -> tuple[float, float]:
        """(change over the span / mean, its standard error); (0, inf) with < 3 values."""
        n = len(values)
        if n < 3:
            return 0.0, float("inf")
        t_mean, v_mean = statistics.fmean(times_s), statistics.fmean(values)
        sxx = sum((t - t_mean) ** 2 for t in times_s)
        if sxx <= 0 or v_mean == 0:
            return 0.0, float("inf")
        slope = sum((t - t_mean) * (v - v_mean) for t, v in zip(times_s, values, strict=True)) / sxx
        resid = [v - v_mean - slope * (t - t_mean) for t, v in zip(times_s, values, strict=True)]
        se_slope = math.sqrt(sum(r * r for r in resid) / (n - 2) / sxx)
        span = max(times_s) - min(times_s)
        return slope * span / abs(v_mean), se_slope * span / abs(v_mean)

    def drifts(self, times_s: list[float], values: list[float]) -> bool:
        """True for a change beyond ``threshold_rel`` that is significant at the two-sided
        level of ``z`` normal standard errors, judged with Student's t for the ``n - 2``
        degrees of freedom the trend's standard error rests on (with 3 trials that is 1, and a
        normal ``z = 3`` would call one noisy point in five a drift)."""
        change, se = self.change_rel(times_s, values)
        return (
            abs(change) > self.threshold_rel
            and abs(change) > t_critical(self.z, len(values) - 2) * se
        )


#: two-sided Student's t critical values at the normal z = 3 level (p = 0.0027), by degrees of
#: freedom (standard tables); between entries the next lower dof's (conservative) is used
_T_AT_Z3 = {1: 235.8, 2: 19.21, 3: 9.22, 4: 6.62, 5: 5.51, 6: 4.90, 7: 4.53, 8: 4.28, 9: 4.09,
            10: 3.96, 12: 3.77, 15: 3.59, 20: 3.42, 30: 3.27, 60: 3.13}  # fmt: skip


def t_critical(z: float, dof: int) -> float:
    """The t value with the two-sided tail of ``z`` normal standard errors for ``dof`` degrees
    of freedom: tabulated for z = 3, scaled in proportion for other z (an approximation that
    is exact in the normal limit); ``z`` itself beyond 60 dof."""
    if dof < 1:
        return math.inf
    if dof > 60:
        return z
    key = max(k for k in _T_AT_Z3 if k <= dof)
    return _T_AT_Z3[key] * z / 3.0
