"""What a GPU's power sensors really do, measured observe-only around one load step.

The host polls every reading NVML offers (total-energy counter, GetPowerUsage, the instant and
1-s average power fields where supported, temperature) while the GPU idles, then runs a kernel
back to back, then idles again. From one such trace:

* **counter period**: the median interval between changes of the energy counter under load;
* **power over the same window**: the counter's mean power (energy over time between its first
  and last update in the steady second half of the load) beside the means of the power readings
  over that window, each as a ratio to the counter's;
* **step response**: for the counter's power and each reading, the delay from the load's start
  (and stop) until it covers 63% of the step (a reading that averages lags the counter);
* **temperature**: its rise over the load and the rate at the end;
* **data** (:func:`data_trace`): the same kernel on its random inputs, then on all-zero inputs,
  then on random inputs again, back to back (ABA: the mean of the two random phases cancels a
  steady drift of temperature, and so of leakage, across the three); each phase's counter power,
  clocks and temperature, and zeros' power over random's. Switching power depends on how many
  bits toggle, so zeros draw less: how much less is what ``sim fit`` turns into the spec's
  ``power.data_dynamic_fraction``.

Nothing is set: the load is a kernel launched as a sweep would launch it. On a simulated GPU the
same code runs on virtual time, and the simulator's exact energy of the load is reported beside
(``truth``) so the method itself is checked.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wattbench.profiler.device.device import Device
from wattbench.profiler.measure.clock import Clock
from wattbench.profiler.runners.base import Runner

#: the share of a step a reading must cover to count as having followed it (one time constant)
STEP_SHARE = 0.63


@dataclass(frozen=True)
class Sample:
    t_s: float
    phase: str  # idle, load, tail
    energy_j: float | None
    usage_w: float | None
    instant_w: float | None
    average_w: float | None
    temperature_c: float | None
    sm_mhz: float | None = None  # absent from traces written before clocks were polled
    mem_mhz: float | None = None


def _maybe(read: Callable[[], float]) -> float | None:
    try:
        return float(read())
    except Exception:  # a reading this GPU does not offer
        return None


def _sample(device: Device, clock: Clock, phase: str, *, powers: bool = True) -> Sample:
    """Every reading now (``powers=False``: not the instant and 1-s average power fields)."""
    return Sample(
        clock.now_s(),
        phase,
        _maybe(device.energy_j),
        _maybe(device.power_usage_w),
        _maybe(device.power_instant_w) if powers else None,
        _maybe(device.power_average_w) if powers else None,
        _maybe(device.temperature_c),
        _maybe(device.sm_clock_mhz),
        _maybe(device.mem_clock_mhz),
    )


def _load(
    runner: Runner, clock: Clock, seconds: float, poll: Callable[[], None], poll_s: float
) -> tuple[float, float]:
    """About ``seconds`` of the runner back to back (paced by one run), polled every ``poll_s``
    and once at each end; the load's (start, end) on ``clock``."""
    t0 = clock.now_s()
    runner.run(1)  # the pace: how many iterations make ``seconds``
    per_s = max(clock.now_s() - t0, 1e-7)
    start = clock.now_s()
    poll()
    runner.run_window(max(1, int(seconds / per_s)), poll, poll_s)
    end = clock.now_s()
    poll()
    return start, end


def trace(
    device: Device,
    runner: Runner,
    clock: Clock,
    *,
    idle_s: float = 2.0,
    load_s: float = 4.0,
    tail_s: float = 3.0,
    poll_s: float = 0.005,
) -> tuple[list[Sample], tuple[float, float]]:
    """Samples through idle, load and tail, and the load's (start, end) on ``clock``."""
    samples: list[Sample] = []
    phase = "idle"

    def poll() -> None:
        samples.append(_sample(device, clock, phase))

    def idle(seconds: float) -> None:
        end = clock.now_s() + seconds
        while clock.now_s() < end:
            clock.sleep(poll_s)
            poll()

    idle(idle_s)
    phase = "load"
    load = _load(runner, clock, load_s, poll, poll_s)
    phase = "tail"
    idle(tail_s)
    return samples, load


#: the phases of :func:`data_trace`, in order (ABA)
DATA_PHASES = ("random-a", "zeros", "random-b")


def data_trace(
    device: Device,
    runners: dict[str, Runner],
    clock: Clock,
    *,
    phase_s: float = 2.0,
    poll_s: float = 0.005,
) -> list[Sample]:
    """Samples over :data:`DATA_PHASES`, back to back with no idle between; ``runners`` maps
    ``"random"`` and ``"zeros"`` to runners of one kernel on those inputs (warmed up already)."""
    samples: list[Sample] = []
    for phase in DATA_PHASES:

        def poll(phase: str = phase) -> None:
            samples.append(_sample(device, clock, phase, powers=False))

        _load(runners[phase.split("-")[0]], clock, phase_s, poll, poll_s)
    return samples


def _phase_figures(samples: list[Sample]) -> dict[str, float | None]:
    """Counter power (W) between the first and last update in the phase's second half, and the
    means of the clocks (MHz) and temperature (C) there."""
    if not samples:
        return {"power_w": None, "sm_mhz": None, "mem_mhz": None, "temp_c": None}
    half = samples[0].t_s + (samples[-1].t_s - samples[0].t_s) / 2
    late = [s for s in samples if s.t_s >= half]
    updates = [b for a, b in itertools.pairwise(late) if b.energy_j != a.energy_j]
    power = None
    if len(updates) >= 2 and updates[-1].t_s > updates[0].t_s:
        first, last = updates[0], updates[-1]
        power = (last.energy_j - first.energy_j) / (last.t_s - first.t_s)  # type: ignore[operator]

    def mean(name: str) -> float | None:
        return _mean([v for s in late if (v := getattr(s, name)) is not None])

    return {
        "power_w": power,
        "sm_mhz": mean("sm_mhz"),
        "mem_mhz": mean("mem_mhz"),
        "temp_c": mean("temperature_c"),
    }


def characterise_data(samples: list[Sample]) -> dict[str, Any]:
    """Per phase of :func:`data_trace` its figures; ``random`` (the mean of the two random
    phases), ``zeros``, ``zeros_to_random`` (power ratio; None without counter updates) and
    ``zeros_to_random_sm_mhz`` (SM clock ratio: under a power cap zeros' saving goes into
    clock rather than power)."""
    phases = {p: _phase_figures([s for s in samples if s.phase == p]) for p in DATA_PHASES}
    a, b = phases["random-a"], phases["random-b"]

    def both(x: float | None, y: float | None) -> float | None:
        return (x + y) / 2 if x is not None and y is not None else None

    def over(x: float | None, y: float | None) -> float | None:
        return x / y if x is not None and y else None

    random = {k: both(a[k], b[k]) for k in a}
    zeros = phases["zeros"]
    ratio = over(zeros["power_w"], random["power_w"])
    clocks = over(zeros["sm_mhz"], random["sm_mhz"])
    return {
        "phases": phases,
        "random": random,
        "zeros": zeros,
        "zeros_to_random": ratio,
        "zeros_to_random_sm_mhz": clocks,
    }


def counter_updates(samples: list[Sample]) -> list[tuple[float, float]]:
    """(time, energy J) of each counter update as first seen (the first value read is not one:
    when it was written is unknown)."""
    changes = []
    last = None
    for s in samples:
        if s.energy_j is not None and s.energy_j != last:
            if last is not None:
                changes.append((s.t_s, s.energy_j))
            last = s.energy_j
    return changes


def _counter_power(samples: list[Sample]) -> list[tuple[float, float]]:
    """(time, power) between consecutive counter changes: the counter's own power trace."""
    return [
        ((t0 + t1) / 2, (e1 - e0) / (t1 - t0))
        for (t0, e0), (t1, e1) in itertools.pairwise(counter_updates(samples))
        if t1 > t0
    ]


def _delay(series: list[tuple[float, float]], at: float, before: float, after: float) -> float:
    """Seconds from ``at`` until ``series`` first covers :data:`STEP_SHARE` of the step from
    ``before`` to ``after`` (NaN if it never does)."""
    level = before + STEP_SHARE * (after - before)
    rising = after > before
    for t, v in series:
        if t >= at and (v >= level if rising else v <= level):
            return t - at
    return float("nan")


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def characterise(samples: list[Sample], load: tuple[float, float]) -> dict[str, Any]:
    """The figures of the module docstring from one trace (stable keys, SI units)."""
    start, end = load
    during = [s for s in samples if start <= s.t_s <= end]
    changes = [b.t_s for a, b in itertools.pairwise(during) if b.energy_j != a.energy_j]
    period = (
        statistics.median(b - a for a, b in itertools.pairwise(changes))
        if len(changes) > 2
        else None
    )
    steady = [s for s in during if s.t_s >= start + (end - start) / 2]
    counted = [s for s in steady if s.energy_j is not None]
    out: dict[str, Any] = {
        "counter_period_s": period,
        "samples": len(samples),
        "load_s": end - start,
    }
    # each update as first seen: the counter's mean power between the first and the last
    updates = [b for a, b in itertools.pairwise(counted) if b.energy_j != a.energy_j]
    counter_w = None
    if len(updates) >= 2 and updates[-1].t_s > updates[0].t_s:
        first, last = updates[0], updates[-1]
        counter_w = (last.energy_j - first.energy_j) / (last.t_s - first.t_s)  # type: ignore[operator]
    out["counter_power_w"] = counter_w
    idle = [s for s in samples if s.phase == "idle"]
    tail = [s for s in samples if s.phase == "tail" and s.t_s >= end + 2.0]
    series: dict[str, list[tuple[float, float]]] = {"counter": _counter_power(samples)}
    for name in ("usage_w", "instant_w", "average_w"):
        values = [getattr(s, name) for s in steady if getattr(s, name) is not None]
        mean = _mean(values)
        out[f"{name[:-2]}_mean_w"] = mean
        out[f"{name[:-2]}_to_counter"] = mean / counter_w if mean and counter_w else None
        series[name[:-2]] = [
            (s.t_s, getattr(s, name)) for s in samples if getattr(s, name) is not None
        ]
    rise, fall = {}, {}
    for name, points in series.items():
        lo = _mean([v for t, v in points if t < start])
        hi = _mean([v for t, v in points if start + (end - start) / 2 <= t <= end])
        after = _mean([v for t, v in points if t >= end + 2.0])
        if lo is not None and hi is not None:
            rise[name] = _delay(points, start, lo, hi)
        if hi is not None and after is not None:
            fall[name] = _delay(points, end, hi, after)
    out["rise_s"], out["fall_s"] = rise, fall
    temps = [(s.t_s, s.temperature_c) for s in during if s.temperature_c is not None]
    if len(temps) >= 2:
        out["temperature_rise_c"] = temps[-1][1] - temps[0][1]
        late = [x for x in temps if x[0] >= end - 1.0]
        out["temperature_rate_c_per_s_at_end"] = (
            (late[-1][1] - late[0][1]) / (late[-1][0] - late[0][0])
            if len(late) >= 2 and late[-1][0] > late[0][0]
            else None
        )
    out["idle_power_w"] = _mean([s.usage_w for s in idle if s.usage_w is not None])
    out["tail_power_w"] = _mean([s.usage_w for s in tail if s.usage_w is not None])
    return out
