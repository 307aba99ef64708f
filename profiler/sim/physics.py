"""Time, power and governor models of a simulated GPU: pure functions of a spec, a unit and an
operating state (docs/sim-spec.md, "The model").

Time (roofline at the effective clocks)::

    t_compute = flops / (peak[dtype] * compute_eff * sm_mhz / sm_mhz_max)
    t_dram    = bytes / (bandwidth * memory_eff * mem_mhz / mem_mhz_max)
    t_issue   = bytes / (bandwidth * memory_eff * sm_mhz / sm_mhz_bandwidth_saturation)
    t         = max(t_compute, t_dram, t_issue) + launch_overhead

Power (AccelWattch-style)::

    P = P_board + P_leak(V, T) + a_sm * d * P_dyn[dtype] * (V / V_max)^2 * (f / f_max)
        + a_mem * P_mem
    d = 1 - data_dynamic_fraction * (1 - data_activity)

``V(f)`` is flat at ``v_min`` below the knee, then rises as ``x**exponent`` to ``v_max``, plus the
unit's voltage offset; ``P_leak = leakage_w * unit_scale * (V / V_max) * exp(k (T - T_ref))``;
``P_board`` is fixed so that the nominal idle GPU draws ``idle_w`` at its idle temperature.
``data_activity`` is 1 for random inputs and 0 for all-zero inputs.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from wattbench.kernels.work import Work
from wattbench.profiler.sim.spec import GpuSpec

# NVML clock-event reason bits (nvmlClocksEventReason*)
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
REASON_SW_THERMAL = 0x20

#: input distributions a workload may name, as switching activity relative to random data
INPUT_ACTIVITY = {"random": 1.0, "zeros": 0.0}


def input_activity(inputs: str) -> float:
    """Data activity of an input description: ``random``, ``zeros`` or ``activity=<0..1>``
    (a measured factor). Raises ValueError otherwise."""
    if inputs in INPUT_ACTIVITY:
        return INPUT_ACTIVITY[inputs]
    if inputs.startswith("activity="):
        try:
            a = float(inputs.split("=", 1)[1])
        except ValueError:
            a = math.nan
        if 0.0 <= a <= 1.0:
            return a
    raise ValueError(
        f"inputs {inputs!r}: use random, zeros, or activity=<factor 0..1> (measured, 1 = random)"
    )


@dataclass(frozen=True)
class Workload(Work):
    """One iteration of a kernel as the simulator sees it: its Work and how it runs.

    ``flops``, ``bytes`` and ``dtype`` are the Work's (per iteration; its rate methods apply);
    the efficiencies, when given, replace the spec's
    (a poorly tuned kernel reaches less of the peak); ``data_activity`` is the switching activity
    of the input data relative to random values (1 random, 0 all zeros); ``activity_scale``
    scales the SMs' switching activity for a kernel that keeps only part of its units busy (a
    synthetic load; 1 for real kernels).
    """

    compute_efficiency: float | None = None
    memory_efficiency: float | None = None
    data_activity: float = 1.0
    activity_scale: float = 1.0

    @classmethod
    def of(cls, work: Work, *, compute_efficiency: float | None = None) -> Workload:
        """A kernel's Work as the simulator runs it (random data, every unit busy), reaching
        ``compute_efficiency`` of the peak (None: the spec's)."""
        return cls(work.flops, work.bytes, work.dtype, compute_efficiency)


@dataclass(frozen=True)
class Unit:
    """How one physical unit departs from its model's nominal chip."""

    leakage_scale: float = 1.0
    voltage_offset_v: float = 0.0
    resistance_scale: float = 1.0


NOMINAL = Unit()


def unit_for(spec: GpuSpec, uuid: str) -> Unit:
    """The unit with this UUID: offsets drawn from the spec's spread, seeded by the UUID alone (the
    same UUID is the same unit in every process)."""
    v = spec.variability
    seed = int.from_bytes(hashlib.sha256(uuid.encode()).digest()[:8], "little")
    z = np.random.default_rng(seed).standard_normal(3)
    return Unit(
        leakage_scale=math.exp(v.leakage_rel_sd * float(z[0])),
        voltage_offset_v=v.voltage_sd_v * float(z[1]),
        resistance_scale=math.exp(v.thermal_resistance_rel_sd * float(z[2])),
    )


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
    sm_act *= work.activity_scale
    mem_act = min(1.0, t_dram / t)
    return Timing(t, sm_act, mem_act, t_compute >= t_mem)


def voltage_v(spec: GpuSpec, sm_mhz: float, unit: Unit = NOMINAL) -> float:
    return spec.voltage.at(sm_mhz, spec.clocks.sm_mhz_max) + unit.voltage_offset_v


def leakage_w(spec: GpuSpec, sm_mhz: float, temp_c: float, unit: Unit = NOMINAL) -> float:
    p = spec.power
    v_rel = voltage_v(spec, sm_mhz, unit) / spec.voltage.v_max
    scale = p.leakage_w * unit.leakage_scale
    return scale * v_rel * math.exp(p.leakage_per_c * (temp_c - p.leakage_ref_c))


def dynamic_w(
    spec: GpuSpec,
    sm_mhz: float,
    sm_activity: float,
    unit: Unit = NOMINAL,
    dtype: str | None = None,
    data_activity: float = 1.0,
) -> float:
    p = spec.power
    v_rel = voltage_v(spec, sm_mhz, unit) / spec.voltage.v_max
    data = 1.0 - p.data_dynamic_fraction * (1.0 - data_activity)
    full = p.dynamic_w_for(dtype) if dtype else p.dynamic_w
    return full * sm_activity * data * v_rel**2 * sm_mhz / spec.clocks.sm_mhz_max


def memory_w(spec: GpuSpec, mem_mhz: float, memory_activity: float) -> float:
    return spec.power.memory_w * memory_activity * mem_mhz / spec.clocks.memory_mhz_max


def board_w(spec: GpuSpec) -> float:
    """Constant board power (fans, VRM losses, HBM refresh ...) that makes the nominal idle GPU
    draw ``idle_w``, computed at the idle steady-state temperature, ambient + R * idle_w."""
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
    unit: Unit = NOMINAL,
    dtype: str | None = None,
    data_activity: float = 1.0,
) -> float:
    """Total board power (W) at an operating state; ``board`` is :func:`board_w` of the spec."""
    return (
        board
        + leakage_w(spec, sm_mhz, temp_c, unit)
        + dynamic_w(spec, sm_mhz, sm_activity, unit, dtype, data_activity)
        + memory_w(spec, mem_mhz, memory_activity)
    )


def work_power_w(
    spec: GpuSpec,
    board: float,
    work: Workload | None,
    sm_mhz: float,
    mem_mhz: float,
    temp_c: float,
    unit: Unit = NOMINAL,
) -> float:
    """Power running ``work`` (None: idle) at these clocks and temperature."""
    if work is None:
        return power_w(spec, board, sm_mhz, mem_mhz, temp_c, spec.power.sm_activity_idle, 0.0, unit)
    t = iteration_timing(spec, work, sm_mhz, mem_mhz)
    return power_w(
        spec,
        board,
        sm_mhz,
        mem_mhz,
        temp_c,
        t.sm_activity,
        t.memory_activity,
        unit,
        work.dtype,
        work.data_activity,
    )


def steady_temp_c(spec: GpuSpec, p_w: float, unit: Unit = NOMINAL) -> float:
    return spec.thermal.ambient_c + spec.thermal.resistance_c_per_w * unit.resistance_scale * p_w


@dataclass(frozen=True)
class Governed:
    """What the clock governor picks: SM and memory clock (MHz), reason bits, power (W)."""

    sm_mhz: int
    mem_mhz: int
    reasons: int
    power_w: float


def govern(
    spec: GpuSpec,
    board: float,
    work: Workload,
    *,
    requested_sm_mhz: int,
    mem_mhz: int,
    temp_c: float,
    limit_w: float,
    unit: Unit = NOMINAL,
) -> Governed:
    """The clock ``work`` runs at: the requested clock capped by the memory clock's ceiling, by
    thermal slowdown above ``slowdown_c`` and by the power limit (the highest supported clock
    whose power fits, SwPowerCap; the floor if none fits)."""
    clocks = spec.clocks.sm_clocks_ascending
    snap_down = spec.clocks.snap_down
    top = snap_down(requested_sm_mhz)
    top = min(top, snap_down(spec.clocks.sm_mhz_max_per_memory.get(mem_mhz, top)))
    reasons = 0
    th = spec.thermal
    if temp_c > th.slowdown_c:
        cap = snap_down(spec.clocks.sm_mhz_max - th.slowdown_mhz_per_c * (temp_c - th.slowdown_c))
        if cap < top:
            top, reasons = cap, REASON_SW_THERMAL

    def power(f: int) -> float:
        return work_power_w(spec, board, work, f, mem_mhz, temp_c, unit)

    p_top = power(top)
    if p_top <= limit_w:
        return Governed(top, mem_mhz, reasons, p_top)
    # Power is monotonic in the SM clock: bisect for the highest clock that fits.
    hi = bisect.bisect_right(clocks, top) - 1
    lo, best = 0, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if power(clocks[mid]) <= limit_w:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    f = clocks[best]
    return Governed(f, mem_mhz, reasons | REASON_SW_POWER_CAP, power(f))


@dataclass(frozen=True)
class SteadyState:
    """A workload held at one setting until temperature settles (noise-free model truth)."""

    sm_mhz: int
    time_s: float  # per iteration
    power_w: float
    energy_j: float  # per iteration
    temp_c: float
    reasons: int


def steady_state(
    spec: GpuSpec,
    work: Workload,
    *,
    sm_lock_mhz: int | None = None,
    mem_mhz: int | None = None,
    limit_w: float | None = None,
    unit: Unit = NOMINAL,
) -> SteadyState:
    """Steady state of ``work`` run back to back under a clock lock / power limit (defaults: none,
    the default limit): the governor's clock at the temperature that its own power produces."""
    board = board_w(spec)
    mem = mem_mhz or spec.clocks.memory_mhz_max
    req = sm_lock_mhz or spec.clocks.sm_mhz_max
    lim = spec.power.limit_w_default if limit_w is None else limit_w
    temp = steady_temp_c(spec, spec.power.idle_w, unit)
    for _ in range(200):
        g = govern(
            spec, board, work, requested_sm_mhz=req, mem_mhz=mem, temp_c=temp, limit_w=lim,
            unit=unit,
        )  # fmt: skip
        new = steady_temp_c(spec, g.power_w, unit)
        if abs(new - temp) < 1e-6:
            break
        temp = new
    t = iteration_timing(spec, work, g.sm_mhz, mem).time_s
    return SteadyState(g.sm_mhz, t, g.power_w, g.power_w * t, temp, g.reasons)
