"""Run a sweep: measure every point a strategy proposes, record each as it completes, choose.

The record is written after every point, so an interruption loses at most the point in flight;
with ``measured`` (from a record being resumed) finished points are not measured again. Putting
the GPU's settings back is not done here but by the caller's actuation session
(``profiler/safety/guard.py``), which knows the settings found before the run.

Re-measurement: a strategy may propose a point it has already measured (the adaptive search
does, to compare two points measured back to back when their figures differ by less than their
noise). Every pass's trial samples are tagged with ``"pass"`` (0 = the point's first) and
``"seq"`` (1 = the run's first measurement, counting every pass of every point), and a
re-measured point keeps one entry in the record whose figures are those of its latest pass
(:func:`merge_measurements`); the earlier passes' samples stay in ``samples``. The GPU's state
(its temperature above all) drifts between passes, so only the latest pass is comparable with
what was measured just before and after it. A resumed run sees exactly what an uninterrupted
one saw.

Fast measurement (``MeasureSettings.method == "fast"``): before every decision the strategy sees
every point re-evaluated with the sweep's current thermal model (``PointMeasurer.revalue``), a
re-measured point is held until it has settled (it can still win, so it is worth the wait), and
the choices and the record's final figures use the model as it stands at the end. A resumed run
rebuilds the model from the recorded readings first (``PointMeasurer.adopt``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wattbench.profiler.measure.measure import PointMeasurer
from wattbench.profiler.measure.types import Measurement
from wattbench.profiler.select.objectives import Choice, Objective
from wattbench.profiler.sweep.strategy import Strategy, passes_of

#: a strategy that asks for one point more often than this is broken (guards an endless loop)
MAX_PASSES_PER_POINT = 16


class RecordSink(Protocol):
    """What the sweep needs of a run record (implemented by ``store.RunRecord``)."""

    def add_point(self, measurement: Measurement) -> None: ...

    def set_idle_power_w(self, idle_power_w: float) -> None: ...

    def set_choices(self, choices: Mapping[str, Choice]) -> None: ...

    def add_gpu_time_s(self, seconds: float) -> None: ...

    def finish(self, status: str) -> None: ...


@dataclass
class SweepResult:
    measurements: list[Measurement]
    choices: dict[str, Choice] = field(default_factory=dict)
    idle_power_w: float | None = None

    @property
    def baseline(self) -> Measurement | None:
        return next((m for m in self.measurements if m.point.is_baseline), None)


def tag_samples(m: Measurement, pass_index: int, seq: int) -> Measurement:
    """``m`` with its samples tagged as pass ``pass_index`` and run-wide measurement ``seq``."""
    m.samples = [{**s, "pass": pass_index, "seq": seq} for s in m.samples]
    return m


def merge_measurements(old: Measurement, new: Measurement) -> Measurement:
    """A later pass ``new`` of ``old``'s point: ``new``'s figures, every pass's samples.

    Time, energy, power, clocks, flags, trials and ``spread_rel`` are the latest pass's; its
    samples follow the earlier passes' (as tagged by :func:`tag_samples`); ``warmup_s`` is the
    total warm-up spent at the point over all passes.
    """
    if old.point != new.point:
        raise ValueError(f"cannot merge measurements of {old.point} and {new.point}")
    merged = dataclasses.replace(new, samples=[*old.samples, *new.samples])
    merged.warmup_s = old.warmup_s + new.warmup_s
    if "readings" in old.thermal and "readings" in new.thermal:
        # the thermal fit learnt from every pass: keep the earlier passes' readings, so that a
        # resumed run rebuilds the same fit
        earlier = [*old.thermal.get("earlier_readings", []), old.thermal["readings"]]
        merged.thermal = {**new.thermal, "earlier_readings": earlier}
    return merged


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
    with the GPU at driver defaults. A proposed point that is already measured is measured
    again (:func:`merge_measurements`).
    """
    done: dict[str, Measurement] = dict(measured or {})
    for m in done.values():
        if on_point:
            on_point(m, True)
    measurer.adopt(done)
    status = "interrupted"
    t0_s = measurer.clock.now_s()
    try:
        if idle_power_w is None:
            if measurer.actuator is not None:
                measurer.actuator.restore()
            idle_power_w = measurer.measure_idle()
            record.set_idle_power_w(idle_power_w)
        else:
            measurer.idle_power_w = idle_power_w
        while (point := strategy.next_point(measurer.revalue(done))) is not None:
            old = done.get(point.key)
            if old is not None and passes_of(old) >= MAX_PASSES_PER_POINT:
                raise RuntimeError(
                    f"strategy {strategy.name!r} asked for {point} a {MAX_PASSES_PER_POINT + 1}th "
                    "time; it does not terminate"
                )
            seq = 1 + sum(passes_of(x) for x in done.values())
            m = measurer.measure(point, settle=old is not None)
            m = tag_samples(m, passes_of(old) if old else 0, seq)
            if old is not None:
                m = merge_measurements(old, m)
            done[point.key] = m
            record.add_point(m)
            if on_point:
                on_point(m, False)
        final = measurer.revalue(done)
        for key, m in final.items():
            if m is not done[key]:
                record.add_point(m)
        measurements = list(final.values())
        choices = {o.name: o(measurements, max_power_w=max_power_w) for o in objectives}
        record.set_choices(choices)
        status = "complete"
        return SweepResult(measurements, choices, idle_power_w)
    finally:
        record.add_gpu_time_s(measurer.clock.now_s() - t0_s)
        record.finish(status)
