"""Sweep strategies: which operating point to measure next.

A strategy sees what has been measured (by point key) and proposes the next point, or None when
it is done. The grid strategy walks a fixed list; an adaptive search implements the same
interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from wattbench.profiler.measure.types import Measurement, OperatingPoint


class Strategy(ABC):
    name: str

    @abstractmethod
    def next_point(self, measured: Mapping[str, Measurement]) -> OperatingPoint | None:
        """The next point to measure given ``measured`` (point key -> Measurement)."""

    @abstractmethod
    def planned(self) -> int | None:
        """How many points this strategy will measure in all, if known (for progress bars)."""

    def describe(self) -> dict:
        return {"strategy": self.name}


class GridStrategy(Strategy):
    """Every point of a fixed list, in order (the baseline first, as spaces put it)."""

    name = "grid"

    def __init__(self, points: Sequence[OperatingPoint]) -> None:
        if not points:
            raise ValueError("a grid needs at least one point")
        self.points = list(dict.fromkeys(points))

    def next_point(self, measured: Mapping[str, Measurement]) -> OperatingPoint | None:
        for p in self.points:
            if p.key not in measured:
                return p
        return None

    def planned(self) -> int:
        return len(self.points)

    def describe(self) -> dict:
        return {"strategy": self.name, "points": [p.key for p in self.points]}
