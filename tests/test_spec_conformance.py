"""Conformance of every built-in simulated GPU spec (``profiler/sim/specs/*.toml``;
CONTRIBUTING.md, "Add a simulated GPU spec").

The physics and NVML invariants test_sim_physics.py and test_sim_nvml.py pin down on the H100 in
detail, here on every spec, with the numbers taken from the spec itself: power rises with the SM
clock (in the model and through the energy counter), the governor holds a binding power limit,
the energy counter is the integral of the modelled power, idle power settles at the spec's, and
the NVML library answers the same set of calls (the chip-dependent ones by their documented rule).
A new spec file is in these tests with no edit here.
"""

from __future__ import annotations

import itertools
import math

import pytest

from wattbench.profiler.sim import gpu, nvml_lib, physics, spec

KEYS = spec.builtin_keys()
N = 8192
#: a dense bf16 GEMM: compute-bound on every modelled GPU
GEMM = physics.Workload(flops=2 * N**3, bytes=3 * N * N * 2, dtype="bf16")
#: a streaming fp32 kernel over 2 GiB: memory-bound
STREAM = physics.Workload(flops=2**28, bytes=2 * 2**30, dtype="fp32")
SW_POWER_CAP = 0x4
SW_THERMAL_SLOWDOWN = 0x20


def test_every_spec_file_is_a_builtin():
    from importlib import resources

    files = sorted(
        p.name[: -len(".toml")]
        for p in resources.files("wattbench.profiler.sim.specs").iterdir()
        if p.name.endswith(".toml")
    )
    assert files == sorted(KEYS) and len(KEYS) >= 5


@pytest.fixture(params=KEYS)
def s(request) -> spec.GpuSpec:
    return spec.load_builtin(request.param)


def model_power_w(s: spec.GpuSpec, work: physics.Workload, sm_mhz: float, temp_c: float) -> float:
    mem = s.clocks.memory_mhz_max
    t = physics.iteration_timing(s, work, sm_mhz, mem)
    return physics.power_w(
        s, physics.board_w(s), sm_mhz, mem, temp_c, t.sm_activity, t.memory_activity
    )


def tick_floor(s: spec.GpuSpec, t: float) -> float:
    period = s.sensors.energy_counter_period_s
    return math.floor(t / period + 1e-9) * period


def trace_energy_j(trace: list[gpu.Segment], t0: float, t1: float) -> float:
    return sum(
        seg.power_w * (min(seg.t_end, t1) - max(seg.t_start, t0))
        for seg in trace
        if seg.t_end > t0 and seg.t_start < t1
    )


def open_sim(s: spec.GpuSpec, **kwargs):
    g = gpu.SimulatedGpu(s, **kwargs)
    nv = nvml_lib.load_pynvml(nvml_lib.SimulatedNvmlLibrary([g]))
    nv.nvmlInit()
    return g, nv, nv.nvmlDeviceGetHandleByIndex(0)


# --- physics --------------------------------------------------------------------------------------


def test_modelled_power_rises_with_the_sm_clock(s):
    temp = s.thermal.ambient_c + 20
    for work in (GEMM, STREAM):
        watts = [model_power_w(s, work, f, temp) for f in sorted(s.clocks.sm_clocks_mhz())]
        assert all(b > a for a, b in itertools.pairwise(watts)), work


def test_measured_power_rises_with_the_locked_clock(s):
    """Through pynvml: clocks locked at five points below where the highest limit binds; the
    energy counter's mean power rises with the clock, and no cap or slowdown intervenes."""
    clocks = sorted(s.clocks.sm_clocks_mhz())
    temp = s.thermal.ambient_c + 30
    fits = [f for f in clocks if model_power_w(s, GEMM, f, temp) < 0.9 * s.power.limit_w_max]
    assert len(fits) >= 5
    chosen = [fits[round(i * (len(fits) - 1) / 4)] for i in range(5)]
    means = []
    for mhz in chosen:
        g, nv, h = open_sim(s, noise=False)
        try:
            nv.nvmlDeviceSetPowerManagementLimit(h, int(s.power.limit_w_max * 1000))
            nv.nvmlDeviceSetGpuLockedClocks(h, mhz, mhz)
            g.idle(0.05)
            t0, e0 = g.now_s, nv.nvmlDeviceGetTotalEnergyConsumption(h)
            res = g.run(GEMM, max(50, int(2.0 / g.run(GEMM, 1).elapsed_s)))
            assert res.reasons == 0, (mhz, res.reasons)
            assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == mhz
            t1 = tick_floor(s, g.now_s)
            means.append((nv.nvmlDeviceGetTotalEnergyConsumption(h) - e0) / 1e3 / (t1 - t0))
        finally:
            nv.nvmlShutdown()
    assert all(b > a for a, b in itertools.pairwise(means)), list(zip(chosen, means, strict=True))


def test_the_governor_holds_a_binding_power_limit(s):
    c = s.clocks
    temp = s.thermal.ambient_c + 30
    low, high = (
        model_power_w(s, GEMM, c.sm_mhz_min, temp),
        model_power_w(s, GEMM, c.sm_mhz_max, temp),
    )
    limit_w = min(max((low + high) / 2, s.power.limit_w_min), s.power.limit_w_max)
    assert high > 1.1 * limit_w, "the GEMM at full clock must draw over the limit"
    g, nv, h = open_sim(s, noise=True, record_trace=True)
    try:
        nv.nvmlDeviceSetPowerManagementLimit(h, int(limit_w * 1000))
        assert nv.nvmlDeviceGetEnforcedPowerLimit(h) == int(limit_w * 1000)
        t0, e0 = tick_floor(s, g.now_s), nv.nvmlDeviceGetTotalEnergyConsumption(h)
        iters = int(4.0 / physics.iteration_timing(s, GEMM, c.sm_mhz_max, c.memory_mhz_max).time_s)
        g.run(GEMM, max(iters, 100))
        t1 = tick_floor(s, g.now_s)
        assert t1 - t0 > 3.0
        mean_w = (nv.nvmlDeviceGetTotalEnergyConsumption(h) - e0) / 1e3 / (t1 - t0)
        assert mean_w <= limit_w * (1 + 3 * s.sensors.energy_noise_rel)
        reasons = nv.nvmlDeviceGetCurrentClocksEventReasons(h)
        assert reasons & SW_POWER_CAP and not reasons & SW_THERMAL_SLOWDOWN
        sm = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
        assert sm < c.sm_mhz_max and sm in c.sm_clocks_mhz()
        # the highest clock that fits: within a few clock steps' worth of power below the limit
        step_w = model_power_w(s, GEMM, sm + c.sm_mhz_step, g.temp_c) - model_power_w(
            s, GEMM, sm, g.temp_c
        )
        assert step_w > 0 and mean_w >= limit_w - 3 * step_w
    finally:
        nv.nvmlShutdown()


def test_the_energy_counter_is_the_integral_of_the_modelled_power(s):
    g, nv, h = open_sim(s, noise=True, record_trace=True)
    try:
        t0, e0 = g.now_s, nv.nvmlDeviceGetTotalEnergyConsumption(h)
        g.idle(1.013)
        g.run(GEMM, 300)
        g.idle(0.77)
        g.run(STREAM, 800)
        g.idle(3.3)
        t1, e1 = g.now_s, nv.nvmlDeviceGetTotalEnergyConsumption(h)
        assert t1 - t0 > 5.0 and e1 > e0
        expected = trace_energy_j(g.trace, tick_floor(s, t0), tick_floor(s, t1))
        assert (e1 - e0) / 1e3 == pytest.approx(expected, rel=2e-3)
    finally:
        nv.nvmlShutdown()


def test_idle_power_settles_at_the_spec_and_idle_clock(s):
    g, nv, h = open_sim(s, noise=False)
    try:
        g.idle(10 * max(p.time_constant_s for p in s.thermal.poles))
        assert nv.nvmlDeviceGetPowerUsage(h) / 1e3 == pytest.approx(s.power.idle_w, rel=0.03)
        assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == s.clocks.sm_mhz_idle
        assert nv.nvmlDeviceGetCurrentClocksEventReasons(h) == nv.nvmlClocksEventReasonGpuIdle
    finally:
        nv.nvmlShutdown()


# --- NVML: the same calls answer on every spec ----------------------------------------------------

#: read-only calls NVML tools make, by pynvml wrapper; (nv, h, gpu) -> anything
CALLS = {
    "GetName": lambda nv, h: nv.nvmlDeviceGetName(h),
    "GetUUID": lambda nv, h: nv.nvmlDeviceGetUUID(h),
    "GetSerial": lambda nv, h: nv.nvmlDeviceGetSerial(h),
    "GetPciInfo": lambda nv, h: nv.nvmlDeviceGetPciInfo(h),
    "GetCudaComputeCapability": lambda nv, h: nv.nvmlDeviceGetCudaComputeCapability(h),
    "GetArchitecture": lambda nv, h: nv.nvmlDeviceGetArchitecture(h),
    "GetMemoryInfo": lambda nv, h: nv.nvmlDeviceGetMemoryInfo(h),
    "GetMemoryInfo_v2": lambda nv, h: nv.nvmlDeviceGetMemoryInfo(h, version=nv.nvmlMemory_v2),
    "GetPersistenceMode": lambda nv, h: nv.nvmlDeviceGetPersistenceMode(h),
    "GetComputeMode": lambda nv, h: nv.nvmlDeviceGetComputeMode(h),
    "GetDisplayMode": lambda nv, h: nv.nvmlDeviceGetDisplayMode(h),
    "GetPowerUsage": lambda nv, h: nv.nvmlDeviceGetPowerUsage(h),
    "GetTotalEnergyConsumption": lambda nv, h: nv.nvmlDeviceGetTotalEnergyConsumption(h),
    "GetPowerManagementLimit": lambda nv, h: nv.nvmlDeviceGetPowerManagementLimit(h),
    "GetPowerManagementDefaultLimit": lambda nv, h: nv.nvmlDeviceGetPowerManagementDefaultLimit(h),
    "GetPowerManagementLimitConstraints": (
        lambda nv, h: nv.nvmlDeviceGetPowerManagementLimitConstraints(h)
    ),
    "GetEnforcedPowerLimit": lambda nv, h: nv.nvmlDeviceGetEnforcedPowerLimit(h),
    "GetClockInfo": lambda nv, h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
    "GetMaxClockInfo": lambda nv, h: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM),
    "GetSupportedMemoryClocks": lambda nv, h: nv.nvmlDeviceGetSupportedMemoryClocks(h),
    "GetSupportedGraphicsClocks": lambda nv, h: nv.nvmlDeviceGetSupportedGraphicsClocks(
        h, nv.nvmlDeviceGetSupportedMemoryClocks(h)[0]
    ),
    "GetTemperature": lambda nv, h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
    "GetUtilizationRates": lambda nv, h: nv.nvmlDeviceGetUtilizationRates(h),
    "GetPerformanceState": lambda nv, h: nv.nvmlDeviceGetPerformanceState(h),
    "GetCurrentClocksEventReasons": lambda nv, h: nv.nvmlDeviceGetCurrentClocksEventReasons(h),
    "GetTotalEccErrors": lambda nv, h: nv.nvmlDeviceGetTotalEccErrors(
        h, nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_VOLATILE_ECC
    ),
    "GetPcieThroughput": lambda nv, h: nv.nvmlDeviceGetPcieThroughput(
        h, nv.NVML_PCIE_UTIL_TX_BYTES
    ),
    "GetEncoderUtilization": lambda nv, h: nv.nvmlDeviceGetEncoderUtilization(h),
    "GetComputeRunningProcesses": lambda nv, h: nv.nvmlDeviceGetComputeRunningProcesses(h),
    "IsMigDeviceHandle": lambda nv, h: nv.nvmlDeviceIsMigDeviceHandle(h),
    "GetMigMode": lambda nv, h: nv.nvmlDeviceGetMigMode(h),
    "GetC2cModeInfoV": lambda nv, h: nv.nvmlDeviceGetC2cModeInfoV(h),
    "GetFanSpeed": lambda nv, h: nv.nvmlDeviceGetFanSpeed(h),
    "GetDriverModel": lambda nv, h: nv.nvmlDeviceGetDriverModel(h),
}
#: calls NVML answers NOT_SUPPORTED on every built-in board (passively cooled; Linux)
NEVER = {"GetFanSpeed", "GetDriverModel"}


def expected_not_supported(s: spec.GpuSpec) -> set[str]:
    """The documented chip rules: MIG on compute capability 8.0 / 9.0 only, C2C from Hopper."""
    out = set(NEVER)
    if s.identity.compute_capability not in nvml_lib.MIG_CAPABLE_CC:
        out.add("GetMigMode")
    if s.identity.architecture_id < nvml_lib.ARCH_HOPPER:
        out.add("GetC2cModeInfoV")
    return out


def test_the_nvml_library_answers_the_same_calls(s):
    g, nv, h = open_sim(s, noise=False)
    try:
        not_supported = set()
        for phase in ("idle", "busy"):
            if phase == "busy":
                g.run(GEMM, 50)
            for name, call in CALLS.items():
                try:
                    call(nv, h)
                except nv.NVMLError_NotSupported:
                    not_supported.add(name)
        assert not_supported == expected_not_supported(s)
        assert sorted(g.spec.clocks.memory_mhz) == sorted(nv.nvmlDeviceGetSupportedMemoryClocks(h))
    finally:
        nv.nvmlShutdown()


def test_the_setters_answer_within_the_spec_ranges(s):
    _, nv, h = open_sim(s, noise=False)
    try:
        lo, hi = nv.nvmlDeviceGetPowerManagementLimitConstraints(h)
        assert (lo, hi) == (s.power.limit_w_min * 1000, s.power.limit_w_max * 1000)
        nv.nvmlDeviceSetPowerManagementLimit(h, lo)
        assert nv.nvmlDeviceGetPowerManagementLimit(h) == lo
        with pytest.raises(nv.NVMLError_InvalidArgument):
            nv.nvmlDeviceSetPowerManagementLimit(h, hi + 1000)
        f = s.clocks.sm_mhz_min
        nv.nvmlDeviceSetGpuLockedClocks(h, f, f)
        nv.nvmlDeviceResetGpuLockedClocks(h)
        m = s.clocks.memory_mhz_max
        nv.nvmlDeviceSetMemoryLockedClocks(h, m, m)
        nv.nvmlDeviceResetMemoryLockedClocks(h)
    finally:
        nv.nvmlShutdown()
