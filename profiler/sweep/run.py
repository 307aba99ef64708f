"""Run a sweep: measure every point a strategy proposes, record each as it completes, choose.

The record is written after every point, so an interruption loses at most the point in flight;
with ``measured`` (from a record being resumed) finished points are not measured again. Putting
the GPU's settings back is not done here but by the caller's actuation session
(``profiler/safety/guard.py``), which knows the settings found before the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wattbench.profiler.measure.measure import PointMeasurer
from wattbench.profiler.measure.types import Measurement
from wattbench.profiler.select.objectives import Choice, Objective
from wattbench.profiler.sweep.strategy import Strategy


class RecordSink(Protocol):
    """What the sweep needs of a run record (implemented by ``store.RunRecord``)."""

    def add_point(self, measurement: Measurement) -> None: ...

    def set_idle_power_w(self, idle_power_w: float) -> None: ...

    def set_choices(self, choices: Mapping[str, Choice]) -> None: ...

    def finish(self, status: str) -> None: ...


@dataclass
class SweepResult:
    measurements: list[Measurement]
    choices: dict[str, Choice] = field(default_factory=dict)
    idle_power_w: float | None = None

    @property
    def baseline(self) -> Measurement | None:
        return next((m for m in self.measurements if m.point.is_baseline), None)


def run_sweep(
    measurer: PointMeasurer,
    strategy: Strategy,
    record: RecordSink,
    objectives: Sequence[Objective],
    *,
    max_power_w: float,
    measured: Mapping[str, Measurement] | None = None,
    idle_power_w: float | None = None,
    on_point: Callable[[Measurement, bool], None] | None = None,
) -> SweepResult:
    """Measure until the strategy is done; ``on_point(m, resumed)`` reports progress.

    ``idle_power_w`` is reused from a resumed record; otherwise idle power is measured first,
    with the GPU at driver defaults.
    """
    done: dict[str, Measurement] = dict(measured or {})
    for m in done.values():
        if on_point:
            on_point(m, True)
    status = "interrupted"
    try:
        if idle_power_w is None:
            if measurer.actuator is not None:
                measurer.actuator.restore()
            idle_power_w = measurer.measure_idle()
            record.set_idle_power_w(idle_power_w)
        else:
            measurer.idle_power_w = idle_power_w
        while (point := strategy.next_point(done)) is not None:
            m = measurer.measure(point)
            done[point.key] = m
            record.add_point(m)
            if on_point:
                on_point(m, False)
        measurements = list(done.values())
        choices = {o.name: o(measurements, max_power_w=max_power_w) for o in objectives}
        record.set_choices(choices)
        status = "complete"
        return SweepResult(measurements, choices, idle_power_w)
    finally:
        record.finish(status)
