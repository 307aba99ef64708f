"""Stopping criteria as small named objects (NVBench style): when is warm-up over, when are
there enough trials."""

from __future__ import annotations

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
