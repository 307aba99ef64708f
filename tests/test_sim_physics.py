"""Physics of the simulated H100: DVFS energy curves, thermal slowdown and idle power.

Clocks are locked through pynvml (the path a sweep takes), sensor noise is off, and every
operating point runs on its own simulated GPU starting from the idle steady state, so the points
differ only in their SM clock. Energies are the simulator's exact integrals (``RunResult``); that
the NVML energy counter reports the same integral is tested in test_sim_nvml.py.
"""

from __future__ import annotations

import pytest

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
    """Run ``work`` at every supported SM clock, each on a fresh GPU locked through pynvml."""
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
    assert all(a > b - tol for a, b in zip(values[:best], values[1 : best + 1], strict=True))
    assert all(b > a - tol for a, b in zip(values[best:-1], values[best + 1 :], strict=True))
    # A real U, not a nearly flat line: both ends cost clearly more than the minimum.
    assert values[0] > 1.05 * values[best]
    assert values[-1] > 1.05 * values[best]
    return clocks[best]


@pytest.fixture(scope="module")
def gemm_sweep(h100, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("WATTBENCH_SIM_STATE_DIR", str(tmp_path_factory.mktemp("gemm")))
    return sweep(h100, GEMM, 200)


@pytest.fixture(scope="module")
def stream_sweep(h100, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("WATTBENCH_SIM_STATE_DIR", str(tmp_path_factory.mktemp("stream")))
    return sweep(h100, STREAM, 200)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_compute_bound_energy_per_flop_is_u_shaped(gemm_sweep, h100):
    curve = {f: r.energy_j / (r.iterations * GEMM.flops) for f, r in gemm_sweep.items()}
    best = assert_u_shaped(curve)
    assert h100.clocks.sm_mhz_min < best < h100.clocks.sm_mhz_max
    # Time scales as 1/f for compute-bound work (roofline), up to the launch overhead.
    f_lo, f_hi = h100.clocks.sm_mhz_min, h100.clocks.sm_mhz_max
    ratio = gemm_sweep[f_lo].elapsed_s / gemm_sweep[f_hi].elapsed_s
    assert ratio == pytest.approx(f_hi / f_lo, rel=0.01)


def test_memory_bound_minimum_is_at_a_lower_clock(gemm_sweep, stream_sweep):
    gemm_curve = {f: r.energy_j / (r.iterations * GEMM.flops) for f, r in gemm_sweep.items()}
    stream_curve = {f: r.energy_j / (r.iterations * STREAM.bytes) for f, r in stream_sweep.items()}
    best_gemm = min(gemm_curve, key=gemm_curve.__getitem__)
    best_stream = assert_u_shaped(stream_curve)
    assert best_stream < best_gemm


def test_memory_bound_time_is_flat_over_the_upper_clock_range(stream_sweep, h100):
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


def test_thermal_slowdown_engages_when_hot(make_sim, spec_variant, h100):
    th = h100.thermal
    f_max = h100.clocks.sm_mhz_max
    # Raise the ambient so that the GEMM's steady temperature at full clock is 10 C above the
    # slowdown threshold, while the idle GPU stays below it.
    mem = h100.clocks.memory_mhz_max
    timing = physics.iteration_timing(h100, GEMM, f_max, mem)
    p_hot = physics.power_w(
        h100,
        physics.board_w(h100),
        f_max,
        mem,
        th.slowdown_c,
        timing.sm_activity,
        timing.memory_activity,
    )
    ambient = round(th.slowdown_c + 10 - th.resistance_c_per_w * p_hot, 1)
    assert ambient + th.resistance_c_per_w * h100.power.idle_w < th.slowdown_c - 2
    hot = spec.load_file(spec_variant({"thermal.ambient_c": ambient}))
    assert hot.thermal.ambient_c == ambient

    g, nv, h = make_sim(hot, noise=False)
    first = g.run(GEMM, 100)  # starts from the idle steady state: below the threshold
    assert not first.reasons & SW_THERMAL_SLOWDOWN
    assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == f_max

    t_iter = physics.iteration_timing(hot, GEMM, f_max, mem).time_s
    g.run(GEMM, int(6 * th.time_constant_s / t_iter))  # >= 6 time constants under load
    temp = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
    reasons = nv.nvmlDeviceGetCurrentClocksEventReasons(h)
    sm = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
    assert temp > th.slowdown_c
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
    g.idle(2.0)
    hot_idle_w = nv.nvmlDeviceGetPowerUsage(h) / 1000
    g.idle(10 * h100.thermal.time_constant_s)
    idle_w = nv.nvmlDeviceGetPowerUsage(h) / 1000
    assert idle_w == pytest.approx(h100.power.idle_w, rel=0.03)
    assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == h100.clocks.sm_mhz_idle
    assert nv.nvmlDeviceGetCurrentClocksEventReasons(h) == nv.nvmlClocksEventReasonGpuIdle
    # Leakage grows with temperature: the still-hot GPU idles above its cool idle power.
    assert hot_idle_w > idle_w * 1.05
