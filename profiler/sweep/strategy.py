"""Sweep strategies: which operating point to measure next.

A strategy sees what has been measured (by point key) and proposes the next point, or None when
it is done. Proposing a point that is already measured asks for it to be measured again; the
sweep records the new pass with the earlier ones (``sweep/run.py``). :func:`passes_of` tells how
many passes a measurement holds, :func:`seq_of` when its latest one was made. A strategy must be
a pure function of what has been measured, so that a resumed run continues exactly as an
uninterrupted one would. The grid strategy walks a fixed list; the adaptive search
(``sweep/adaptive.py``) implements the same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from wattbench.profiler.measure.types import Measurement, OperatingPoint, Sample


def passes_of(m: Measurement) -> int:
    """How many times the point was measured (1 + the highest ``"pass"`` tag of its samples)."""
    return 1 + max((int(s.get("pass", 0)) for s in m.samples), default=0)


def latest_samples(m: Measurement) -> list[Sample]:
    """The samples of the point's latest pass (whose figures the measurement carries)."""
    last = passes_of(m) - 1
    return [s for s in m.samples if int(s.get("pass", 0)) == last]


def seq_of(m: Measurement) -> int | None:
    """The run-wide number of the point's latest measurement (None: samples not tagged)."""
    seqs = [s["seq"] for s in latest_samples(m) if "seq" in s]
    return int(seqs[0]) if seqs else None


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
