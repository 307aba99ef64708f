"""Experiments that reproduce published observations on a simulated GPU.

Each experiment runs a fresh simulated GPU (state in this process only, sensor noise off, the
nominal unit unless it studies units) and reads it through pynvml over the simulated NVML
library, as a user's tool would; it returns named figures (units in the names). Times in seconds.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from typing import Any

from wattbench.kernels.matmul.family import work as gemm_work
from wattbench.profiler.sim import physics
from wattbench.profiler.sim.gpu import SimulatedGpu
from wattbench.profiler.sim.nvml_lib import (
    FI_DEV_POWER_INSTANT,
    SimulatedNvmlLibrary,
    load_pynvml,
)
from wattbench.profiler.sim.spec import GpuSpec


class Rig:
    """A fresh simulated GPU and a pynvml module over it."""

    def __init__(self, spec: GpuSpec, index: int = 0, *, unit_variation: bool = False) -> None:
        self.spec = spec
        self.gpu = SimulatedGpu(
            spec, index, noise=False, unit_variation=unit_variation, persist=False
        )
        self.nv = load_pynvml(SimulatedNvmlLibrary([self.gpu]))
        self.nv.nvmlInit()
        self.handle = self.nv.nvmlDeviceGetHandleByIndex(0)
        self.flops_done = 0.0  # what the "application" knows it ran

    # readings, as NVML gives them
    def power_usage_w(self) -> float:
        return self.nv.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def power_reading_w(self) -> float:
        """The latest single reading: NVML_FI_DEV_POWER_INSTANT where the GPU has it, else
        nvmlDeviceGetPowerUsage (GA100 and older report the latest reading there)."""
        if self.spec.sensors.field_values:
            (fv,) = self.nv.nvmlDeviceGetFieldValues(self.handle, [FI_DEV_POWER_INSTANT])
            if fv.nvmlReturn == 0:
                return fv.value.uiVal / 1000.0
        return self.power_usage_w()

    def energy_j(self) -> float:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0

    def sm_mhz(self) -> int:
        return self.nv.nvmlDeviceGetClockInfo(self.handle, self.nv.NVML_CLOCK_SM)

    def temp_c(self) -> int:
        return self.nv.nvmlDeviceGetTemperature(self.handle, self.nv.NVML_TEMPERATURE_GPU)

    def reasons(self) -> int:
        return self.nv.nvmlDeviceGetCurrentClocksEventReasons(self.handle)

    def run_for(self, work: physics.Workload, seconds: float) -> None:
        """Run ``work`` back to back for about ``seconds`` (whole iterations)."""
        end = self.gpu.now_s + seconds
        while end - self.gpu.now_s > 1e-9:
            sm, mem, _, _ = self.gpu.governed_clock(work)
            t_iter = physics.iteration_timing(self.spec, work, sm, mem).time_s
            n = max(1, min(10**9, math.floor((end - self.gpu.now_s) / t_iter)))
            self.gpu.run(work, n)
            self.flops_done += n * work.flops
            if n == 1:
                break


def workload(params: dict[str, Any], default_shape=(8192, 8192, 8192)) -> physics.Workload:
    """A GEMM workload from an observation's params: dtype, shape [m, n, k], inputs, activity
    (FLOPs and bytes as the matmul family counts them)."""
    w = gemm_work(tuple(params.get("shape", default_shape)), params.get("dtype", "fp32"))
    return physics.Workload(
        flops=w.flops,
        bytes=w.bytes,
        dtype=w.dtype,
        data_activity=physics.input_activity(params.get("inputs", "random")),
        activity_scale=float(params.get("activity_scale", 1.0)),
    )


def _settings(rig: Rig, params: dict[str, Any]) -> None:
    lock = params.get("sm_lock_mhz")
    if lock:
        rig.gpu.update_settings(sm_locked_mhz=(int(lock), int(lock)))
    limit = params.get("power_limit_w")
    if limit:
        rig.gpu.update_settings(power_limit_mw=int(limit * 1000))


def idle(spec: GpuSpec, params: dict[str, Any]) -> dict[str, float]:
    """Idle until steady (120 s), then read nvmlDeviceGetPowerUsage and the temperature."""
    rig = Rig(spec)
    rig.gpu.idle(120.0)
    return {"power_w": rig.power_usage_w(), "temp_c": float(rig.temp_c())}


def sustained(spec: GpuSpec, params: dict[str, Any], *, rig: Rig | None = None) -> dict[str, float]:
    """Run the workload for 60 s from idle; figures over the last 10 s: power from the energy
    counter, SM clock polled each second, TFLOP/s, temperature, whether SwPowerCap was set."""
    rig = rig or Rig(spec)
    _settings(rig, params)
    work = workload(params)
    rig.gpu.idle(30.0)
    rig.run_for(work, 50.0)
    e0, t0 = rig.energy_j(), rig.gpu.now_s
    flops0 = rig.flops_done
    clocks, reasons = [], 0
    for _ in range(10):
        rig.run_for(work, 1.0)
        clocks.append(rig.sm_mhz())
        reasons |= rig.reasons()
    dt = rig.gpu.now_s - t0
    return {
        "power_w": (rig.energy_j() - e0) / dt,
        "sm_mhz": statistics.fmean(clocks),
        "tflops": (rig.flops_done - flops0) / dt / 1e12,
        "temp_c": float(rig.temp_c()),
        "power_capped": 1.0 if reasons & physics.REASON_SW_POWER_CAP else 0.0,
    }


def zeros_speedup(spec: GpuSpec, params: dict[str, Any]) -> dict[str, float]:
    """Sustained throughput with all-zero inputs over that with random inputs."""
    rnd = sustained(spec, {**params, "inputs": "random"})
    zero = sustained(spec, {**params, "inputs": "zeros"})
    return {"speedup": zero["tflops"] / rnd["tflops"]}


def input_power(spec: GpuSpec, params: dict[str, Any]) -> dict[str, float]:
    """Power with random inputs over power with all-zero inputs, minus 1 (same settings)."""
    rnd = sustained(spec, {**params, "inputs": "random"})
    zero = sustained(spec, {**params, "inputs": "zeros"})
    return {"power_increase_rel": rnd["power_w"] / zero["power_w"] - 1.0}


def step_response(spec: GpuSpec, params: dict[str, Any]) -> dict[str, float]:
    """Temperature after a load step from idle (at 0.1 / 0.4 / 1 / 2 / 4 s) and after the load
    stops (0.4 / 1 / 2.5 s), as nvmlDeviceGetTemperature reports it; and the load's power over
    its last second."""
    rig = Rig(spec)
    work = workload(params, default_shape=(2048, 2048, 2048))
    on_s = float(params.get("on_s", 6.0))
    rig.gpu.idle(120.0)
    out: dict[str, float] = {"temp_c_idle": float(rig.temp_c())}
    start = rig.gpu.now_s
    for at in (0.1, 0.4, 1.0, 2.0, 4.0):
        rig.run_for(work, start + at - rig.gpu.now_s)
        out[f"temp_c_on_{at:g}"] = float(rig.temp_c())
    rig.run_for(work, start + on_s - 1.0 - rig.gpu.now_s)
    e0, t0 = rig.energy_j(), rig.gpu.now_s
    rig.run_for(work, start + on_s - rig.gpu.now_s)
    out["load_power_w"] = (rig.energy_j() - e0) / (rig.gpu.now_s - t0)
    stop = rig.gpu.now_s
    for at in (0.4, 1.0, 2.5):
        rig.gpu.idle(stop + at - rig.gpu.now_s)
        out[f"temp_c_off_{at:g}"] = float(rig.temp_c())
    return out


def update_period(spec: GpuSpec, params: dict[str, Any]) -> dict[str, float]:
    """Poll every 1 ms for 5 s under a square-wave load (37 ms on, 37 ms off) and take the median
    interval between changes of the energy counter and of the power reading."""
    rig = Rig(spec)
    work = workload(params, default_shape=(1024, 1024, 1024))
    counter, reading = [], []
    last_e, last_p = rig.energy_j(), rig.power_reading_w()
    t_end = rig.gpu.now_s + 5.0
    phase_start, on = rig.gpu.now_s, True
    while rig.gpu.now_s < t_end:
        if rig.gpu.now_s - phase_start >= 0.037:
            phase_start, on = rig.gpu.now_s, not on
        if on:
            rig.run_for(work, 0.001)
        else:
            rig.gpu.idle(0.001)
        e, p = rig.energy_j(), rig.power_reading_w()
        if e != last_e:
            counter.append(rig.gpu.now_s)
        if p != last_p:
            reading.append(rig.gpu.now_s)
        last_e, last_p = e, p
    return {
        "energy_counter_s": statistics.median(b - a for a, b in itertools.pairwise(counter)),
        "power_reading_s": statistics.median(b - a for a, b in itertools.pairwise(reading)),
    }


def sample_window(spec: GpuSpec, params: dict[str, Any]) -> dict[str, float]:
    """How much of each update period a power reading averages: start a load ``u`` ms before a
    reading is published (found by watching the energy counter change) and see what fraction of
    the step the reading shows; a boxcar of width w shows ``min(u / w, 1)``."""
    rig = Rig(spec)
    work = workload(params, default_shape=(512, 512, 512))
    rig.gpu.idle(5.0)
    idle_w = rig.power_reading_w()
    rig.run_for(work, 2.0)
    load_w = rig.power_reading_w()
    estimates = []
    for u_ms in range(2, 60, 2):
        rig.gpu.idle(1.0)
        _next_update(rig)  # align on a counter update (a tick), to within 0.1 ms
        t0 = rig.gpu.now_s
        _next_update(rig)
        period = rig.gpu.now_s - t0
        rig.gpu.idle(max(0.0, period - u_ms / 1000.0))
        before = rig.energy_j()
        while rig.energy_j() == before:
            rig.run_for(work, 0.0001)
        frac = (rig.power_reading_w() - idle_w) / (load_w - idle_w)
        if 0.15 < frac < 0.85:
            estimates.append(u_ms / 1000.0 / frac)
    if not estimates:
        raise RuntimeError("no reading showed part of the step; the window is not measurable")
    return {"window_s": statistics.median(estimates)}


def _next_update(rig: Rig) -> None:
    """Idle in 0.1 ms steps until the energy counter changes."""
    before = rig.energy_j()
    while rig.energy_j() == before:
        rig.gpu.idle(0.0001)


def power_usage_rise(spec: GpuSpec, params: dict[str, Any]) -> dict[str, float]:
    """Rise time of nvmlDeviceGetPowerUsage after a load step: from the first reading that shows
    10% of the change to the first that shows 90% (polled every 10 ms; 0 when one update
    shows it all)."""
    rig = Rig(spec)
    work = workload(params, default_shape=(1024, 1024, 1024))
    rig.gpu.idle(10.0)
    idle_w = rig.power_usage_w()
    start = rig.gpu.now_s
    trace = []
    while rig.gpu.now_s - start < 3.0:
        rig.run_for(work, 0.01)
        trace.append((rig.gpu.now_s - start, rig.power_usage_w()))
    final_w = trace[-1][1]
    t10 = next(t for t, p in trace if p - idle_w >= 0.1 * (final_w - idle_w))
    t90 = next(t for t, p in trace if p - idle_w >= 0.9 * (final_w - idle_w))
    return {"rise_s": t90 - t10}


def node_spread(spec: GpuSpec, params: dict[str, Any]) -> dict[str, float]:
    """``units`` units of one node (each its own UUID and offsets) under the same sustained
    workload: the spread of their clocks and throughput."""
    n = int(params.get("units", 8))
    clocks, rates = [], []
    for i in range(n):
        r = sustained(spec, params, rig=Rig(spec, i, unit_variation=True))
        clocks.append(r["sm_mhz"])
        rates.append(r["tflops"])
    return {
        "sm_mhz_range_rel": (max(clocks) - min(clocks)) / statistics.fmean(clocks),
        "tflops_range_rel": (max(rates) - min(rates)) / statistics.fmean(rates),
    }


EXPERIMENTS: dict[str, Callable[[GpuSpec, dict[str, Any]], dict[str, float]]] = {
    "idle": idle,
    "sustained": sustained,
    "zeros_speedup": zeros_speedup,
    "input_power": input_power,
    "step_response": step_response,
    "update_period": update_period,
    "sample_window": sample_window,
    "power_usage_rise": power_usage_rise,
    "node_spread": node_spread,
}
