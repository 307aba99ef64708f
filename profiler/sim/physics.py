"""Time and power models of a simulated GPU: pure functions of a spec and an operating state.

Time (roofline at the effective clocks)::

    t_compute = flops / (peak[dtype] * compute_eff * sm_mhz / sm_mhz_max)
    t_dram    = bytes / (bandwidth * memory_eff * mem_mhz / mem_mhz_max)
    t_issue   = bytes / (bandwidth * memory_eff * sm_mhz / sm_mhz_bandwidth_saturation)
    t         = max(t_compute, t_dram, t_issue) + launch_overhead

``t_issue`` models the SMs' limit on generating memory traffic: below the saturation clock a
memory-bound kernel slows with the SM clock, above it the DRAM is the bottleneck.

Power (AccelWattch-style)::

    P = P_board + P_leak(V, T) + a_sm * P_dyn_max * (V / V_max)^2 * (f / f_max) + a_mem * P_mem

with ``V(f)`` flat at ``v_min`` below the knee clock, then linear to ``v_max``;
``P_leak = leakage_w * (V / V_max) * exp(leakage_per_c * (T - leakage_ref_c))``; ``P_board`` is
fixed so that the idle GPU draws ``idle_w`` at its idle steady-state temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wattbench.profiler.sim.spec import GpuSpec


@dataclass(frozen=True)
class Workload:
    """One iteration of a kernel as the simulator sees it.

    ``flops`` and ``bytes`` are per iteration; the efficiencies, when given, replace the spec's
    (a poorly tuned kernel reaches less of the peak).
    """

    flops: float
    bytes: float
    dtype: str
    compute_efficiency: float | None = None
    memory_efficiency: float | None = None


@dataclass(frozen=True)
class Timing:
    """Time of one iteration at given clocks and the activity factors it implies."""

    time_s: float
    sm_activity: float  # switching activity of the SMs, 0..1
    memory_activity: float  # fraction of peak DRAM bandwidth in use, 0..1
    compute_bound: bool


def iteration_timing(spec: GpuSpec, work: Workload, sm_mhz: float, mem_mhz: float) -> Timing:
    perf = spec.performance
    ceff = work.compute_efficiency or perf.compute_efficiency
    meff = work.memory_efficiency or perf.memory_efficiency
    peak_flops = spec.peak_tflops(work.dtype) * 1e12 * ceff * sm_mhz / spec.clocks.sm_mhz_max
    bw = perf.memory_bandwidth_gbs * 1e9 * meff
    t_compute = work.flops / peak_flops
    t_dram = work.bytes / (bw * mem_mhz / spec.clocks.memory_mhz_max)
    t_issue = work.bytes / (bw * min(1.0, sm_mhz / perf.sm_mhz_bandwidth_saturation))
    busy = max(t_compute, t_dram, t_issue)
    t = busy + perf.launch_overhead_us * 1e-6
    t_mem = max(t_dram, t_issue)
    sm_act = min(1.0, (t_compute + spec.power.sm_activity_memory_bound * t_mem) / t)
    mem_act = min(1.0, t_dram / t)
    return Timing(t, sm_act, mem_act, t_compute >= t_mem)


def voltage_v(spec: GpuSpec, sm_mhz: float) -> float:
    return spec.voltage.at(sm_mhz, spec.clocks.sm_mhz_max)


def leakage_w(spec: GpuSpec, sm_mhz: float, temp_c: float) -> float:
    p = spec.power
    v_rel = voltage_v(spec, sm_mhz) / spec.voltage.v_max
    return p.leakage_w * v_rel * math.exp(p.leakage_per_c * (temp_c - p.leakage_ref_c))


def dynamic_w(spec: GpuSpec, sm_mhz: float, sm_activity: float) -> float:
    v_rel = voltage_v(spec, sm_mhz) / spec.voltage.v_max
    return spec.power.dynamic_w * sm_activity * v_rel**2 * sm_mhz / spec.clocks.sm_mhz_max


def memory_w(spec: GpuSpec, mem_mhz: float, memory_activity: float) -> float:
    return spec.power.memory_w * memory_activity * mem_mhz / spec.clocks.memory_mhz_max


def board_w(spec: GpuSpec) -> float:
    """Constant board power (fans, VRM losses, HBM refresh ...) that makes idle draw ``idle_w``.

    Computed at the idle steady-state temperature, ambient + R * idle_w.
    """
    idle_mhz = spec.clocks.sm_mhz_idle
    temp = steady_temp_c(spec, spec.power.idle_w)
    rest = leakage_w(spec, idle_mhz, temp) + dynamic_w(spec, idle_mhz, spec.power.sm_activity_idle)
    if rest >= spec.power.idle_w:
        from wattbench.profiler.errors import SpecError

        raise SpecError(
            f"spec {spec.source}: field power.idle_w: {spec.power.idle_w:g} W is below the "
            f"modelled idle leakage + switching power ({rest:.1f} W)",
            "raise power.idle_w or lower power.leakage_w / power.sm_activity_idle",
        )
    return spec.power.idle_w - rest


def power_w(
    spec: GpuSpec,
    board: float,
    sm_mhz: float,
    mem_mhz: float,
    temp_c: float,
    sm_activity: float,
    memory_activity: float,
) -> float:
    """Total board power (W) at an operating state; ``board`` is :func:`board_w` of the spec."""
    return (
        board
        + leakage_w(spec, sm_mhz, temp_c)
        + dynamic_w(spec, sm_mhz, sm_activity)
        + memory_w(spec, mem_mhz, memory_activity)
    )


def steady_temp_c(spec: GpuSpec, p_w: float) -> float:
    return spec.thermal.ambient_c + spec.thermal.resistance_c_per_w * p_w
