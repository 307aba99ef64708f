"""Energy over a measurement window: the NVML total-energy counter, else integrated polled power.

Two kinds of window:

* :meth:`EnergyMeter.window` (synchronised, the "steady" method): batches run device-synchronised;
  the window starts and ends on an observed counter update (short batches until the value
  changes) and lasts at least ``min_counter_updates`` update periods. Without a counter
  (pre-Volta), instantaneous power is polled after every batch and integrated (trapezoidal rule).
* :meth:`EnergyMeter.window_async` (the "fast" method): launches queued ahead, the host polls the
  sensors while the GPU works (``runner.run_window``), and energy is *time-attributed*: the mean
  power between the first and the last counter update observed while the GPU was busy, times the
  GPU's own time for the window's iterations. Neither end waits for a launch to finish, so the
  window's length does not depend on the kernel's duration; each update is seen at most one
  polling period late, at both ends alike.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field

from wattbench.profiler.device import Device
from wattbench.profiler.errors import MeasurementError
from wattbench.profiler.measure.clock import Clock
from wattbench.profiler.runners.base import Runner

#: how often the host polls the energy counter during an asynchronous window (s)
ASYNC_POLL_S = 1e-3


class TooFewUpdates(ValueError):
    """An asynchronous window saw fewer than two sensor updates while the GPU was busy."""


@dataclass
class Window:
    """One measured stretch of back-to-back iterations. ``duration_s`` is the time the
    iterations took: host clock for a synchronised window, the GPU's own for an asynchronous
    one (``gpu_s``)."""

    start_s: float
    end_s: float
    iterations: int
    energy_j: float  # total over the window (J): measured, or mean power x duration_s
    sm_mhz: list[tuple[float, int]] = field(default_factory=list)  # (duration_s, MHz)
    mem_mhz: list[tuple[float, int]] = field(default_factory=list)
    reasons: set[str] = field(default_factory=set)
    temps_c: list[int] = field(default_factory=list)  # polled with the clocks
    gpu_s: float | None = None  # the GPU's own time for the iterations (asynchronous windows)
    #: asynchronous windows: the span (s) between the first and last counter updates seen
    attributed_s: float | None = None

    @property
    def duration_s(self) -> float:
        return self.gpu_s if self.gpu_s is not None else self.end_s - self.start_s

    @property
    def temp_mean_c(self) -> float | None:
        return sum(self.temps_c) / len(self.temps_c) if self.temps_c else None


def estimate_counter_period_s(device: Device, clock: Clock, max_s: float = 3.0) -> float:
    """Median interval between observed energy-counter updates (polled every 1 ms)."""
    changes: list[float] = []
    last = device.energy_j()
    start = clock.now_s()
    while len(changes) < 6 and clock.now_s() - start < max_s:
        clock.sleep(0.001)
        e = device.energy_j()
        if e != last:
            changes.append(clock.now_s())
            last = e
    if len(changes) < 3:
        return 0.1  # NVML documents 20-100 ms; assume the slowest
    return statistics.median(b - a for a, b in itertools.pairwise(changes))


class EnergyMeter:
    """Measures windows on one device. ``source`` is "counter" or "polled_power"."""

    def __init__(
        self,
        device: Device,
        clock: Clock,
        *,
        poll_s: float = 0.05,
        use_counter: bool | None = None,
    ) -> None:
        self.device = device
        self.clock = clock
        self.poll_s = poll_s
        if use_counter is None:
            use_counter = device.capabilities.has_energy_counter
        self.source = "counter" if use_counter else "polled_power"
        self.counter_period_s = estimate_counter_period_s(device, clock) if use_counter else 0.0

    # --- building blocks -------------------------------------------------------------------------

    def _run_until_counter_changes(self, runner: Runner, iters: int) -> tuple[float, int]:
        """Run batches of ``iters`` until the counter moves; (new value J, iterations run)."""
        before = self.device.energy_j()
        ran = 0
        while True:
            runner.run(iters)
            ran += iters
            e = self.device.energy_j()
            if e != before:
                return e, ran

    def average_power_w(self, runner: Runner, batch_iters: int, seconds: float) -> float:
        """Average power while running for about ``seconds`` (unaligned; for warm-up)."""
        t0 = self.clock.now_s()
        if self.source == "counter":
            e0 = self.device.energy_j()
            while self.clock.now_s() - t0 < seconds:
                runner.run(batch_iters)
            return (self.device.energy_j() - e0) / max(self.clock.now_s() - t0, 1e-12)
        return self.window(runner, batch_iters, seconds).energy_j / seconds

    def window(self, runner: Runner, batch_iters: int, min_s: float) -> Window:
        """Run at least ``min_s`` seconds of back-to-back batches and measure them."""
        align_iters = max(1, batch_iters // 4)
        if self.source == "counter":
            e0, _ = self._run_until_counter_changes(runner, align_iters)
        else:
            e0 = 0.0
        t0 = self.clock.now_s()
        w = Window(t0, t0, 0, 0.0)
        last_t, last_p = t0, self.device.power_instant_w() if self.source != "counter" else 0.0
        next_poll, last_sample = t0, t0
        energy_polled = 0.0
        while self.clock.now_s() - t0 < min_s:
            runner.run(batch_iters)
            w.iterations += batch_iters
            now = self.clock.now_s()
            if self.source != "counter":
                p = self.device.power_instant_w()
                energy_polled += 0.5 * (p + last_p) * (now - last_t)
                last_p = p
            if now >= next_poll or now - t0 >= min_s:
                self._sample(w, now - last_sample)
                next_poll, last_sample = now + self.poll_s, now
            last_t = now
        if self.source == "counter":
            e1, ran = self._run_until_counter_changes(runner, align_iters)
            w.iterations += ran
            w.energy_j = e1 - e0
        else:
            w.energy_j = energy_polled
        w.end_s = self.clock.now_s()
        return w

    def window_async(
        self, runner: Runner, iterations: int, *, poll_s: float = ASYNC_POLL_S
    ) -> Window:
        """Queue ``iterations`` launches, poll while the GPU works, attribute energy by time
        (see module). Needs at least two counter updates (or power readings) seen while the GPU
        was busy: size ``iterations`` for several update periods."""
        t0 = self.clock.now_s()
        w = Window(t0, t0, iterations, 0.0)
        seen: list[tuple[float, float]] = []  # (host time, counter J or power W)
        last_e: float | None = None
        next_sample_s, last_sample_s = t0, None

        def poll() -> None:
            nonlocal last_e, next_sample_s, last_sample_s
            now = self.clock.now_s()
            if self.source == "counter":
                e = self.device.energy_j()
                if last_e is not None and e != last_e:
                    seen.append((now, e))  # an update, seen at most one poll late
                last_e = e
            else:
                seen.append((now, self.device.power_instant_w()))
            if now >= next_sample_s:
                dt = now - last_sample_s if last_sample_s is not None else self.poll_s
                self._sample(w, dt)
                next_sample_s, last_sample_s = now + self.poll_s, now

        gpu_s = runner.run_window(iterations, poll, poll_s)
        w.end_s = self.clock.now_s()
        w.gpu_s = gpu_s
        if not w.sm_mhz:
            self._sample(w, gpu_s)  # the window was shorter than one sample period
        if len(seen) < 2 or seen[-1][0] <= seen[0][0]:
            raise TooFewUpdates(
                f"an asynchronous window of {gpu_s:.3f} s saw {len(seen)} sensor updates; "
                "it needs at least 2 (make the window longer than two update periods)"
            )
        span = seen[-1][0] - seen[0][0]
        if self.source == "counter":
            power_w = (seen[-1][1] - seen[0][1]) / span
        else:
            power_w = (
                sum(0.5 * (pa + pb) * (tb - ta) for (ta, pa), (tb, pb) in itertools.pairwise(seen))
                / span
            )
        w.attributed_s = span
        w.energy_j = power_w * gpu_s
        return w

    def window_async_retrying(self, runner: Runner, iterations: int, tries: int = 3) -> Window:
        """:meth:`window_async`, doubling the window when it saw too few sensor updates (the
        counter period was misjudged); after ``tries`` a :class:`MeasurementError`."""
        for _ in range(tries):
            try:
                return self.window_async(runner, iterations)
            except TooFewUpdates:
                iterations *= 2
        raise MeasurementError(
            f"the GPU's energy counter did not update during {tries} windows of up to "
            f"{iterations // 2} iterations",
            "run with --measurement steady, or check that the GPU reports energy "
            "(`wattbench devices`)",
        )

    def _sample(self, w: Window, dt_s: float) -> None:
        d = self.device
        w.sm_mhz.append((max(dt_s, 1e-9), d.sm_clock_mhz()))
        w.mem_mhz.append((max(dt_s, 1e-9), d.mem_clock_mhz()))
        w.reasons.update(d.clock_event_reasons().names)
        w.temps_c.append(d.temperature_c())

    def idle_power_w(self, settle_s: float = 1.0, window_s: float = 2.0) -> float:
        """Average power of the idle GPU over ``window_s`` after ``settle_s`` of idling."""
        self.clock.sleep(settle_s)
        if self.source != "counter":
            samples = []
            t0 = self.clock.now_s()
            while self.clock.now_s() - t0 < window_s:
                samples.append(self.device.power_instant_w())
                self.clock.sleep(min(0.05, window_s / 20))
            return statistics.fmean(samples)
        step = max(self.counter_period_s / 10, 0.001)

        def wait_tick() -> float:
            before = self.device.energy_j()
            while True:
                self.clock.sleep(step)
                e = self.device.energy_j()
                if e != before:
                    return e

        e0 = wait_tick()
        t0 = self.clock.now_s()
        self.clock.sleep(window_s)
        e1 = wait_tick()
        return (e1 - e0) / (self.clock.now_s() - t0)
