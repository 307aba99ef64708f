"""Physics of the simulated H100: DVFS energy curves, thermal slowdown and idle power.

Clocks are locked through pynvml (the path a sweep takes), sensor noise is off, and every
operating point runs on its own simulated GPU starting from the idle steady state, so the points
differ only in their SM clock. Energies are the simulator's exact integrals (``RunResult``); that
the NVML energy counter reports the same integral is tested in test_sim_nvml.py.
"""

from __future__ import annotations

import itertools

import pytest

from wattbench.kernels.work import Work
from wattbench.profiler.sim import gpu, nvml_lib, physics, spec

N = 8192
GEMM = physics.Workload(flops=2 * N**3, bytes=3 * N * N * 2, dtype="bf16")  # compute-bound
STREAM = physics.Workload(flops=2**28, bytes=2 * 2**30, dtype="fp32")  # memory-bound

SW_POWER_CAP = 0x4
SW_THERMAL_SLOWDOWN = 0x20


@pytest.fixture(scope="module")
def h100() -> spec.GpuSpec:
    return spec.load_builtin("h100-sxm")


def sweep(s: spec.GpuSpec, work: physics.Workload, iterations: int) -> dict[int, gpu.RunResult]:
    """Run ``work`` at every supported SM clock, each on a fresh GPU locked through pynvml, up to
    the clock where the default power limit starts to bind (at and above it, every clock is
    capped)."""
    clocks = sorted(s.clocks.sm_clocks_mhz())
    gpus = [gpu.SimulatedGpu(s, i, noise=False) for i in range(len(clocks))]
    nv = nvml_lib.load_pynvml(nvml_lib.SimulatedNvmlLibrary(gpus))
    nv.nvmlInit()
    results = {}
    try:
        for i, mhz in enumerate(clocks):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            nv.nvmlDeviceSetGpuLockedClocks(h, mhz, mhz)
            res = gpus[i].run(work, iterations)
            if res.reasons & SW_POWER_CAP:  # the cap binds from here up: stop the curve
                assert all(
                    gpus[i].run(work, iterations).reasons & SW_POWER_CAP for _ in range(1)
                ), mhz
                break
            # The clock held: no power cap or thermal slowdown distorts the curve.
            assert res.reasons == 0, (mhz, res.reasons)
            assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == mhz
            results[mhz] = res
    finally:
        nv.nvmlShutdown()
    return results


def assert_u_shaped(curve: dict[int, float]) -> int:
    """Strictly decreasing to one interior minimum, then increasing; returns its clock."""
    clocks = sorted(curve)
    values = [curve[c] for c in clocks]
    best = min(range(len(values)), key=values.__getitem__)
    assert 0 < best < len(values) - 1, f"minimum at the edge: {clocks[best]} MHz"
    # Allow a flat step only at the floating-point level.
    tol = 1e-9 * values[best]
    assert all(a > b - tol for a, b in itertools.pairwise(values[: best + 1]))
    assert all(b > a - tol for a, b in itertools.pairwise(values[best:]))
    # A real U, not a nearly flat line: both ends cost clearly more than the minimum.
    assert values[0] > 1.05 * values[best]
    assert values[-1] > 1.05 * values[best]
    return clocks[best]


def test_a_workload_is_the_kernels_work_as_the_simulator_runs_it(h100):
    """physics.Workload is a Work (one validation, the same rate methods); Workload.of keeps
    the Work's figures and adds the kernel's efficiencies."""
    work = Work(GEMM.flops, GEMM.bytes, GEMM.dtype)
    sim = physics.Workload.of(work, compute_efficiency=0.6)
    assert isinstance(sim, Work) and (sim.flops, sim.bytes, sim.dtype) == (
        work.flops,
        work.bytes,
        "bf16",
    )
    assert sim.compute_efficiency == 0.6 and sim.memory_efficiency is None
    steady = physics.steady_state(h100, sim)
    assert sim.tflops(steady.time_s) == work.tflops(steady.time_s) > 0
    assert physics.steady_state(h100, physics.Workload.of(work)).time_s < steady.time_s
    with pytest.raises(ValueError):
        physics.Workload(0, 0, "bf16")


def test_compute_bound_energy_per_flop_is_u_shaped(h100):
    gemm_sweep = sweep(h100, GEMM, 200)
    curve = {f: r.energy_j / (r.iterations * GEMM.flops) for f, r in gemm_sweep.items()}
    best = assert_u_shaped(curve)
    assert h100.clocks.sm_mhz_min < best < h100.clocks.sm_mhz_max
    # Time scales as 1/f for compute-bound work (roofline), up to the launch overhead.
    f_lo, f_hi = h100.clocks.sm_mhz_min, max(gemm_sweep)
    assert f_hi >= 1500  # the default 700 W cap binds only near the top
    ratio = gemm_sweep[f_lo].elapsed_s / gemm_sweep[f_hi].elapsed_s
    assert ratio == pytest.approx(f_hi / f_lo, rel=0.01)


def test_memory_bound_minimum_is_at_the_saturation_clock(h100):
    gemm_sweep, stream_sweep = sweep(h100, GEMM, 200), sweep(h100, STREAM, 20_000)
    gemm_curve = {f: r.energy_j / (r.iterations * GEMM.flops) for f, r in gemm_sweep.items()}
    stream_curve = {f: r.energy_j / (r.iterations * STREAM.bytes) for f, r in stream_sweep.items()}
    best_gemm = min(gemm_curve, key=gemm_curve.__getitem__)
    best_stream = assert_u_shaped(stream_curve)
    # a memory-bound kernel is cheapest where the SMs just saturate DRAM; no lower than a GEMM
    assert best_stream <= best_gemm
    assert abs(best_stream - h100.performance.sm_mhz_bandwidth_saturation) <= 15


def test_memory_bound_time_is_flat_over_the_upper_clock_range(h100):
    stream_sweep = sweep(h100, STREAM, 200)
    c = h100.clocks
    mid = (c.sm_mhz_min + c.sm_mhz_max) / 2
    upper = [r.elapsed_s for f, r in stream_sweep.items() if f >= mid]
    assert len(upper) > 10
    assert max(upper) / min(upper) < 1.03
    # ... while at the bottom the SMs cannot issue loads fast enough: time grows as the
    # saturation clock over the SM clock (t_issue in the roofline model).
    ratio = stream_sweep[c.sm_mhz_min].elapsed_s / stream_sweep[c.sm_mhz_max].elapsed_s
    saturation = h100.performance.sm_mhz_bandwidth_saturation
    assert ratio == pytest.approx(saturation / c.sm_mhz_min, rel=0.02)


def hottest_valid_ambient_c(s: spec.GpuSpec) -> float:
    """The highest ambient (0.5 C steps) at which the idle GPU's modelled leakage and switching
    power still fit, with 1 W to spare, in the spec's idle_w (the rest is constant board power)."""
    p, idle_mhz = s.power, s.clocks.sm_mhz_idle
    for tenths in range(800, -200, -5):
        ambient = tenths / 10
        temp = ambient + s.thermal.resistance_c_per_w * p.idle_w
        rest = physics.leakage_w(s, idle_mhz, temp) + physics.dynamic_w(
            s, idle_mhz, p.sm_activity_idle
        )
        if rest < p.idle_w - 1.0:
            return ambient
    raise AssertionError("no ambient fits the idle power")


def test_thermal_slowdown_engages_when_hot(make_sim, spec_variant, h100):
    th = h100.thermal
    f_max = h100.clocks.sm_mhz_max
    mem = h100.clocks.memory_mhz_max
    # Raise the ambient as far as the idle-power calibration allows; precondition from the model:
    # the GEMM's steady temperature at full clock then lies above the slowdown threshold, while
    # the idle GPU's lies below it.
    idle_rise = th.resistance_c_per_w * h100.power.idle_w
    ambient = min(hottest_valid_ambient_c(h100), th.slowdown_c - 11 - idle_rise)
    assert ambient > th.ambient_c
    # a limit high enough that the power cap does not bind first
    changes = {
        "thermal.ambient_c": ambient,
        "power.limit_w_max": 2000,
        "power.limit_w_default": 2000,
    }
    hot = spec.load_file(spec_variant(changes))
    assert hot.thermal.ambient_c == ambient
    timing = physics.iteration_timing(hot, GEMM, f_max, mem)
    p_load = physics.power_w(
        hot,
        physics.board_w(hot),
        f_max,
        mem,
        th.slowdown_c,
        timing.sm_activity,
        timing.memory_activity,
    )
    assert physics.steady_temp_c(hot, p_load) > th.slowdown_c + 1
    assert physics.steady_temp_c(hot, hot.power.idle_w) < th.slowdown_c - 10

    g, nv, h = make_sim(hot, noise=False)
    first = g.run(GEMM, 5)  # starts from the idle steady state: below the threshold
    assert not first.reasons & SW_THERMAL_SLOWDOWN
    assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == f_max

    slowest_s = max(p.time_constant_s for p in th.poles)
    g.run(GEMM, int(10 * slowest_s / timing.time_s))  # 10 time constants under load
    temp = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
    reasons = nv.nvmlDeviceGetCurrentClocksEventReasons(h)
    sm = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
    assert g.temp_c > th.slowdown_c
    assert temp >= th.slowdown_c
    assert reasons & nv.nvmlClocksEventReasonSwThermalSlowdown == SW_THERMAL_SLOWDOWN
    assert not reasons & SW_POWER_CAP
    assert sm < f_max
    # The clock falls by slowdown_mhz_per_c per degree over the threshold (snapped down to the
    # clock table; the reading is rounded to a degree).
    expected = f_max - th.slowdown_mhz_per_c * (temp - th.slowdown_c)
    assert abs(sm - expected) <= th.slowdown_mhz_per_c + h100.clocks.sm_mhz_step


def test_idle_power_after_long_idle_matches_spec(make_sim, h100):
    g, nv, h = make_sim(h100, noise=False)
    g.run(GEMM, 20_000)  # tens of seconds under load: hot
    g.idle(0.3)  # the readings of the last second are idle ones ... but the die is still warm
    g.idle(0.7)
    hot_idle_w = nv.nvmlDeviceGetPowerUsage(h) / 1000
    g.idle(10 * max(p.time_constant_s for p in h100.thermal.poles))
    idle_w = nv.nvmlDeviceGetPowerUsage(h) / 1000
    assert idle_w == pytest.approx(h100.power.idle_w, rel=0.03)
    assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == h100.clocks.sm_mhz_idle
    assert nv.nvmlDeviceGetCurrentClocksEventReasons(h) == nv.nvmlClocksEventReasonGpuIdle
    # Leakage grows with temperature: the still-hot GPU idles above its cool idle power.
    assert hot_idle_w > idle_w * 1.05
