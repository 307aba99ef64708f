"""Measure one problem at one operating point.

Procedure (per point): apply the point; calibrate a batch size so one batch lasts about
``batch_s``; warm up until window-average power is steady (:class:`SteadyPower`); then repeat
trials -- each a window of at least ``max(min_window_s, min_counter_updates * counter period)``
-- until the relative spread of energy per iteration is under the threshold
(:class:`RelativeSpread`). Figures are means over trials; flags come from :class:`ClockHoldCheck`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from wattbench.profiler.device import Device
from wattbench.profiler.measure.actuator import Actuator
from wattbench.profiler.measure.clock import Clock
from wattbench.profiler.measure.criteria import Drift, RelativeSpread, Settled, SteadyPower
from wattbench.profiler.measure.meter import EnergyMeter, Window
from wattbench.profiler.measure.thermal import ThermalFit, WindowReading
from wattbench.profiler.measure.throttle import ClockHoldCheck
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.runners.base import Runner
from wattbench.profiler.safety.journal import GpuSettings

#: measurement methods (``MeasureSettings.method``)
METHODS = ("steady", "fast")
#: fast method: the span (s) a settling point must be flat over before the sweep's model
#: knows the time constant
SETTLE_SPAN_UNKNOWN_TAU_S = 3.0


@dataclass
class MeasureSettings:
    """Knobs of the measurement procedure (all recorded in run files). Times in seconds."""

    min_window_s: float = 1.0
    min_counter_updates: int = 10
    batch_s: float = 0.01  # target duration of one batch of launches (device-synchronised)
    poll_s: float = 0.05  # sensor polling interval within a window
    warmup_rel_change: float = 0.01
    warmup_window_s: float = 0.5
    #: at least this long at each point before measuring: the temperature that sets leakage power
    #: settles in seconds on published traces (A100 PCIe load step: 46 C reached at +3.6 s, then
    #: flat; Yang et al., SC'24 artifact) and energy readings stabilise "from 5 seconds onward"
    #: (ML.ENERGY blog, 2026); a point measured cooler than it runs reads low on energy
    warmup_min_s: float = 5.0
    warmup_max_s: float = 30.0
    spread_threshold: float = 0.01
    min_trials: int = 3
    max_trials: int = 10
    clock_tolerance_mhz: int = 15
    idle_settle_s: float = 2.0
    idle_window_s: float = 2.0
    #: "fast" (default): short asynchronous windows from the start, each point carried to its
    #: steady temperature by the sweep's thermal model (``measure/thermal.py``), trials until
    #: the standard error is small; "steady" (the old method, for comparison): warm up until
    #: power is steady, then synchronised trials until their spread is small
    method: str = "fast"
    #: fast: target relative standard error of a point's (corrected) energy per iteration
    sem_target_rel: float = 0.003
    #: fast: shortest window (s) of GPU time
    fast_window_s: float = 0.25
    #: fast: counter updates inside one window at least (energy is attributed between them)
    fast_min_updates: int = 3
    #: fast: at most this long (s) in trial windows at one point
    trial_max_s: float = 6.0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class PointMeasurer:
    """Measures points of one problem on one device; holds what is measured once per run."""

    device: Device
    runner: Runner
    clock: Clock
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    actuator: Actuator | None = None  # None: observe-only, points are not applied
    idle_power_w: float | None = None
    #: the settings of the knobs the actuator does not touch (None: driver defaults)
    found: GpuSettings | None = None
    #: the sweep's thermal model (fast method); set by the caller to start from a prior
    thermal: ThermalFit = field(default_factory=ThermalFit)

    def __post_init__(self) -> None:
        self.meter = EnergyMeter(self.device, self.clock, poll_s=self.settings.poll_s)

    def measure_idle(self) -> float:
        """Idle power (W) at the current settings; stored for above-idle energy."""
        s = self.settings
        self.idle_power_w = self.meter.idle_power_w(s.idle_settle_s, s.idle_window_s)
        return self.idle_power_w

    def window_s(self, t_iter_s: float, batch: int) -> float:
        """Trial window: long enough for ``min_counter_updates`` counter updates, and so long
        that aligning its ends on counter updates (to within one alignment batch each) costs
        under a quarter of the spread threshold."""
        s = self.settings
        align_s = max(1, batch // 4) * t_iter_s
        return max(
            s.min_window_s,
            s.min_counter_updates * self.meter.counter_period_s,
            4 * align_s / s.spread_threshold,
        )

    def _calibrate_batch(self) -> tuple[int, float]:
        """(iterations per batch so one batch lasts about ``batch_s``, seconds per iteration)."""
        self.runner.run(1)  # first launch may compile or autotune
        iters = 1
        while True:
            t0 = self.clock.now_s()
            self.runner.run(iters)
            dt = self.clock.now_s() - t0
            if dt >= self.settings.batch_s / 4 or iters >= 1 << 20:
                per_iter = dt / iters
                return max(1, round(self.settings.batch_s / max(per_iter, 1e-9))), per_iter
            iters *= 4

    def _warm_up(self, batch: int, trial_window_s: float) -> float:
        """Run until power is steady on the time scale of a trial (windows of at least a
        quarter trial), or for ``warmup_max_s`` (at least two trials)."""
        s = self.settings
        window = max(s.warmup_window_s, trial_window_s / 4)
        crit = SteadyPower(
            rel_change=s.warmup_rel_change,
            window_s=window,
            min_s=s.warmup_min_s,
            max_s=max(s.warmup_max_s, 2 * trial_window_s),
        )
        t0 = self.clock.now_s()
        while True:
            p = self.meter.average_power_w(self.runner, batch, window)
            if crit.add(p, self.clock.now_s() - t0):
                return self.clock.now_s() - t0

    def measure(self, point: OperatingPoint, *, settle: bool = False) -> Measurement:
        """Apply ``point`` (unless observe-only) and measure it. ``settle`` (fast method): hold
        the point until it has settled before its trials, as for the baseline."""
        s = self.settings
        if s.method not in METHODS:
            raise ValueError(f"unknown measurement method {s.method!r}; use one of {METHODS}")
        if self.actuator is not None:
            self.actuator.apply(point)
        if s.method == "fast":
            m = self._measure_fast(point, settle)
            m.in_force = self.in_force(point)
            return m
        batch, t_iter_s = self._calibrate_batch()
        window_s = self.window_s(t_iter_s, batch)
        temp_start = self.device.temperature_c()
        warmup_s = self._warm_up(batch, window_s)
        crit = RelativeSpread(s.spread_threshold, s.min_trials, s.max_trials)
        windows: list[Window] = []
        while True:
            w = self.meter.window(self.runner, batch, window_s)
            windows.append(w)
            if crit.add(w.energy_j / w.iterations):
                break
        temp_end = self.device.temperature_c()
        m = self._summarise(point, windows, crit, warmup_s, temp_start, temp_end)
        m.in_force = self.in_force(point)
        return m

    def fast_window_iterations(self, t_iter_s: float) -> int:
        """Iterations of one fast window: at least ``fast_window_s`` and ``fast_min_updates``
        counter update periods (plus half a period, so that many updates fall inside it) of
        GPU time, whatever the kernel's duration (energy is attributed by time)."""
        s = self.settings
        window_s = max(s.fast_window_s, (s.fast_min_updates + 0.5) * self.meter.counter_period_s)
        return max(1, math.ceil(window_s / max(t_iter_s, 1e-9)))

    def _measure_fast(self, point: OperatingPoint, settle: bool) -> Measurement:
        """Asynchronous windows back to back from the moment the point is applied. The first
        window (clocks and power ramping to the point) is never a trial. The baseline, which
        every saving and the slowdown bound are measured against, and a point measured again
        (``settle``: it can still win) are first held until they have settled (:class:`Settled`:
        temperature, energy and time per iteration flat); other points are not waited for.
        Trials stop once the standard error of the energy carried to the steady temperature is
        below ``sem_target_rel`` (at least ``min_trials``), or after ``trial_max_s``."""
        s = self.settings
        t0 = self.clock.now_s()
        _, t_iter_s = self._calibrate_batch()
        iters = self.fast_window_iterations(t_iter_s)
        temp_start = self.device.temperature_c()
        windows: list[Window] = []
        readings: list[WindowReading] = []

        def take() -> Window:
            w = self.meter.window_async_retrying(self.runner, iters)
            windows.append(w)
            readings.append(_reading(w, t0))
            return w

        take()
        if point.is_baseline or settle:
            tau = self.thermal.model.tau_s
            # twice the time constant when the model knows it; else a span long enough for
            # the published time constants (seconds: Yang et al.'s A100 step) to show
            span = max(1.0, 2 * tau) if tau else SETTLE_SPAN_UNKNOWN_TAU_S
            crit = Settled(span_s=span, max_s=s.warmup_max_s)
            while True:
                w, r = take(), readings[-1]
                if crit.add(r.t_s, r.temp_c, r.energy_j, w.duration_s / w.iterations):
                    break
        warmup_s = self.clock.now_s() - t0
        trials = 0
        trial_s = 0.0
        while True:
            w = take()
            trials += 1
            trial_s += w.duration_s
            if trials >= s.min_trials:
                # on the total: more trials shrink the noise part, and the model's part too as
                # the point nears its steady temperature (the correction's dT shrinks)
                corr = self.thermal.correct(readings, trials)
                if corr.rel_se <= s.sem_target_rel or trial_s >= s.trial_max_s:
                    break
            elif trial_s >= s.trial_max_s:
                break
        self.thermal.add(readings)
        trial_windows = windows[-trials:]
        spread = RelativeSpread(float("inf"), 1, trials)  # reported, never a stop or a flag
        for w in trial_windows:
            spread.add(w.energy_j / w.iterations)
        m = self._summarise(
            point, trial_windows, spread, warmup_s, temp_start, self.device.temperature_c()
        )
        m.thermal = {
            "readings": [r.to_json() for r in readings],
            "trials": trials,
            "raw_time_s": m.time_s,
        }
        return self._apply_correction(m)

    def _apply_correction(self, m: Measurement) -> Measurement:
        """``m`` (fast method) with its energy figures carried to its steady temperature by the
        current thermal model, from the raw readings it keeps; flags "unstable" on drift."""
        readings = [WindowReading.from_json(r) for r in m.thermal["readings"]]
        trials = int(m.thermal["trials"])
        corr = self.thermal.correct(readings, trials)
        trial_readings = readings[-trials:]
        carried = self.thermal.carry(trial_readings, corr.temp_ss_c)
        drift = Drift(threshold_rel=max(2 * self.settings.sem_target_rel, 0.002))
        flags = [f for f in m.flags if f != "unstable"]
        if drift.drifts([r.t_s for r in trial_readings], carried):
            flags.append("unstable")
        raw_time_s = float(m.thermal["raw_time_s"])
        time_s = raw_time_s * (1 + corr.time_rel)
        out = dataclasses.replace(m, flags=flags)
        self._set_figures(out, corr.energy_j, time_s)
        out.thermal = {
            **corr.to_json(),
            "model": self.thermal.model.to_json(),
            "readings": m.thermal["readings"],
            "trials": trials,
            "raw_time_s": raw_time_s,
        }
        if "earlier_readings" in m.thermal:
            out.thermal["earlier_readings"] = m.thermal["earlier_readings"]
        return out

    def revalue(self, measured: Mapping[str, Measurement]) -> dict[str, Measurement]:
        """Every fast-method measurement carried to its steady temperature by the CURRENT
        thermal model (which has learnt from every point since); others as they are. The
        adaptive search decides on these, and the run's choices are made on them."""
        return {
            k: self._apply_correction(m) if m.thermal.get("readings") else m
            for k, m in measured.items()
        }

    def adopt(self, measured: Mapping[str, Measurement]) -> None:
        """Rebuild the sweep's thermal fit from the readings of a resumed run's points, on top
        of the prior the measurer was given."""
        points = [
            [WindowReading.from_json(r) for r in rows]
            for m in measured.values()
            if m.thermal.get("readings")
            for rows in (*m.thermal.get("earlier_readings", []), m.thermal["readings"])
        ]
        if points:
            self.thermal = ThermalFit.of_points(self.thermal.prior, points)

    def in_force(self, point: OperatingPoint) -> dict[str, Any]:
        """Every knob in force at ``point``: swept knobs as the point sets them, the others as
        found; the power limit as the GPU reports it."""
        knobs = self.actuator.knobs if self.actuator is not None else frozenset()
        found = self.found or GpuSettings()
        return {
            "sm_mhz": point.sm_mhz if "sm" in knobs else found.sm_mhz,
            "mem_mhz": point.mem_mhz if "mem" in knobs else found.mem_mhz,
            "power_limit_w": self.device.power_limit_w(),
            "power_limit_w_default": self.device.capabilities.power_limit_w_default,
            "as_found": sorted({"sm", "mem", "power"} - knobs),
        }

    def _summarise(
        self,
        point: OperatingPoint,
        windows: list[Window],
        crit: RelativeSpread,
        warmup_s: float,
        temp_start: int,
        temp_end: int,
    ) -> Measurement:
        energy = statistics.fmean(w.energy_j / w.iterations for w in windows)
        time_s = statistics.fmean(w.duration_s / w.iterations for w in windows)
        sm = [x for w in windows for x in w.sm_mhz]
        mem = [x for w in windows for x in w.mem_mhz]
        reasons = sorted(set().union(*(w.reasons for w in windows)))
        sm_min = min(m for _, m in sm)
        flags = ClockHoldCheck(self.settings.clock_tolerance_mhz).flags(point, sm_min, reasons)
        if not crit.converged:
            flags.append("unstable")
        m = Measurement(
            point=point,
            time_s=time_s,
            energy_j=energy,
            sm_mhz_mean=_weighted_mean(sm),
            sm_mhz_min=sm_min,
            mem_mhz_mean=_weighted_mean(mem),
            mem_mhz_min=min(m for _, m in mem),
            temp_c_start=temp_start,
            temp_c_end=temp_end,
            reasons=reasons,
            iterations=windows[-1].iterations,
            trials=len(windows),
            spread_rel=crit.spread,
            window_s=statistics.fmean(w.duration_s for w in windows),
            warmup_s=warmup_s,
            energy_source=self.meter.source,
            flags=flags,
            samples=[
                {
                    "start_s": w.start_s,
                    "end_s": w.end_s,
                    "iterations": w.iterations,
                    "energy_j": w.energy_j / w.iterations,
                    "time_s": w.duration_s / w.iterations,
                }
                for w in windows
            ],
        )
        self._set_figures(m, energy, time_s)  # power, energy above idle, rates
        return m

    def _set_figures(self, m: Measurement, energy_j: float, time_s: float) -> None:
        """Set ``m``'s energy and time per iteration and every figure derived from them (power,
        energy above idle, TFLOP/s, GB/s, TFLOP/J)."""
        work = self.runner.work
        m.energy_j, m.time_s = energy_j, time_s
        m.avg_power_w = energy_j / time_s
        if self.idle_power_w is not None:
            m.energy_above_idle_j = energy_j - self.idle_power_w * time_s
        m.tflops = work.flops / time_s / 1e12
        m.gbs = work.bytes / time_s / 1e9
        m.tflop_per_j = work.flops / 1e12 / energy_j if energy_j > 0 else None


def _reading(w: Window, t0_s: float) -> WindowReading:
    """What the thermal model needs of a window; ``t0_s``: when the point's settings took hold."""
    temp = w.temp_mean_c
    return WindowReading(
        t_s=(w.start_s + w.end_s) / 2 - t0_s,
        temp_c=float(temp) if temp is not None else float("nan"),
        energy_j=w.energy_j / w.iterations,
        power_w=w.energy_j / max(w.duration_s, 1e-12),
        time_s=w.duration_s / w.iterations,
        capped="sw_power_cap" in w.reasons,
        sm_mhz=_weighted_mean(w.sm_mhz) if w.sm_mhz else 0.0,
    )


def _weighted_mean(samples: list[tuple[float, int]]) -> float:
    total = sum(dt for dt, _ in samples)
    return sum(dt * v for dt, v in samples) / total
