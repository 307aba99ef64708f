"""The real pynvml module (nvidia-ml-py) driven against the simulated NVML library.

Every call here goes through pynvml's own wrappers (ctypes arguments, byref outputs, return-code
checks, the two-call INSUFFICIENT_SIZE protocol), so these tests pin down what any NVML client
sees from a simulated GPU. Expected values come from the spec file and the physics model, never
from a previous run of the simulator.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest

from wattbench.profiler.device import open_device
from wattbench.profiler.errors import NoPermissionError
from wattbench.profiler.sim import gpu, nvml_lib, physics, spec, state

N = 8192
#: A dense bf16 GEMM C = A @ B with 8192^3 shapes: compute-bound on every modelled GPU.
GEMM = physics.Workload(flops=2 * N**3, bytes=3 * N * N * 2, dtype="bf16")
#: A streaming fp32 kernel over 2 GiB (read + write of 1 GiB): memory-bound.
STREAM = physics.Workload(flops=2**28, bytes=2 * 2**30, dtype="fp32")

SW_POWER_CAP = 0x4
SW_THERMAL_SLOWDOWN = 0x20


def tick_floor(spec_: spec.GpuSpec, t: float) -> float:
    """The last energy-counter update tick at or before virtual time ``t``."""
    period = spec_.sensors.energy_counter_period_s
    return math.floor(t / period + 1e-9) * period


def trace_energy_j(trace: list[gpu.Segment], t0: float, t1: float) -> float:
    """Integral of the modelled power over [t0, t1] (segments are constant-power stretches)."""
    return sum(
        s.power_w * (min(s.t_end, t1) - max(s.t_start, t0))
        for s in trace
        if s.t_end > t0 and s.t_start < t1
    )


def trace_mean_power_w(trace: list[gpu.Segment], t0: float, t1: float) -> float:
    return trace_energy_j(trace, t0, t1) / (t1 - t0)


def model_power_w(s: spec.GpuSpec, work: physics.Workload, sm_mhz: float, temp_c: float) -> float:
    """Modelled board power of ``work`` at an SM clock and temperature (top memory clock)."""
    mem = s.clocks.memory_mhz_max
    t = physics.iteration_timing(s, work, sm_mhz, mem)
    return physics.power_w(
        s, physics.board_w(s), sm_mhz, mem, temp_c, t.sm_activity, t.memory_activity
    )


def nearest_clock(table: list[int], mhz: int) -> int:
    dist = sorted(table, key=lambda c: abs(c - mhz))
    assert abs(dist[0] - mhz) != abs(dist[1] - mhz), "choose a value without a tie"
    return dist[0]


# --- 1. energy counter ----------------------------------------------------------------------------


def test_energy_counter_equals_integral_of_modelled_power(sim_nvml):
    """Counter deltas match the exact integral of the modelled power within 0.1%, noise on.

    NVML publishes the total-energy counter only every ``energy_counter_period_s`` (the simulator
    models this), so a read at time t holds the energy up to the last update tick <= t, not up to
    t. The expected value is therefore the integral up to that tick; with the window ends aligned
    this way, the remaining difference is the counter's per-update noise, which averages out over
    a long window (hundreds of updates).
    """
    g, nv, h = sim_nvml
    s = g.spec
    reads = [(g.now_s, nv.nvmlDeviceGetTotalEnergyConsumption(h))]

    def phase(action) -> None:
        action()
        reads.append((g.now_s, nv.nvmlDeviceGetTotalEnergyConsumption(h)))

    phase(lambda: g.idle(2.013))
    phase(lambda: g.run(GEMM, 2500))
    phase(lambda: g.idle(0.77))
    phase(lambda: g.run(STREAM, 4000))
    phase(lambda: g.run(GEMM, 700))
    phase(lambda: g.idle(4.321))
    phase(lambda: g.run(STREAM, 1234))
    phase(lambda: g.run(GEMM, 3333))
    phase(lambda: g.idle(1.5))

    counters = [c for _, c in reads]
    assert all(isinstance(c, int) for c in counters)
    assert counters == sorted(counters), "the energy counter must never decrease"
    assert reads[-1][0] > 15.0, "the window must be long"

    # Whole window, and a window that starts mid-way (after the first workload).
    for (ta, ca), (tb, cb) in ((reads[0], reads[-1]), (reads[2], reads[-1])):
        measured_j = (cb - ca) / 1000.0
        expected_j = trace_energy_j(g.trace, tick_floor(s, ta), tick_floor(s, tb))
        assert measured_j == pytest.approx(expected_j, rel=1e-3)


def test_energy_counter_updates_only_at_ticks(sim_nvml):
    g, nv, h = sim_nvml
    period = g.spec.sensors.energy_counter_period_s
    g.idle(1.0)
    before = nv.nvmlDeviceGetTotalEnergyConsumption(h)
    c = g.spec.clocks
    t_iter = physics.iteration_timing(g.spec, GEMM, c.sm_mhz_max, c.memory_mhz_max).time_s
    assert t_iter < period / 4
    g.run(GEMM, 1)  # ends well before the next tick
    assert nv.nvmlDeviceGetTotalEnergyConsumption(h) == before
    g.idle(period)  # crosses the next tick
    assert nv.nvmlDeviceGetTotalEnergyConsumption(h) > before


# --- 2. power limit -------------------------------------------------------------------------------


def test_binding_power_limit_holds(sim_nvml):
    g, nv, h = sim_nvml
    s = g.spec
    limit_w = 400.0
    max_mhz = s.clocks.sm_mhz_max
    # Precondition from the model: the GEMM at full clock draws well over the limit.
    assert model_power_w(s, GEMM, max_mhz, g.temp_c) > limit_w * 1.2

    nv.nvmlDeviceSetPowerManagementLimit(h, int(limit_w * 1000))
    assert nv.nvmlDeviceGetPowerManagementLimit(h) == limit_w * 1000
    assert nv.nvmlDeviceGetEnforcedPowerLimit(h) == limit_w * 1000
    t0, e0 = g.now_s, nv.nvmlDeviceGetTotalEnergyConsumption(h)
    assert t0 == tick_floor(s, t0)
    g.run(GEMM, 3000)
    t1 = tick_floor(s, g.now_s)
    assert t1 - t0 > 3.0, "the work must last several seconds"
    mean_w = (nv.nvmlDeviceGetTotalEnergyConsumption(h) - e0) / 1000.0 / (t1 - t0)

    # The counter carries energy_noise_rel per update; 3 sigma of one update bounds the mean.
    assert mean_w <= limit_w * (1 + 3 * s.sensors.energy_noise_rel)

    reasons = nv.nvmlDeviceGetCurrentClocksEventReasons(h)
    assert reasons & nv.nvmlClocksEventReasonSwPowerCap == SW_POWER_CAP
    assert not reasons & SW_THERMAL_SLOWDOWN
    sm = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
    assert sm < max_mhz
    assert sm in s.clocks.sm_clocks_mhz()
    # The governor keeps the highest clock that fits: one step up would exceed the limit,
    # so the mean power sits within about one clock step's worth of power below the limit.
    step_w = model_power_w(s, GEMM, sm + s.clocks.sm_mhz_step, g.temp_c) - model_power_w(
        s, GEMM, sm, g.temp_c
    )
    assert step_w > 0
    assert mean_w >= limit_w - 3 * step_w


def test_default_power_limit_caps_random_gemm_but_not_zeros(make_sim):
    """As on a real H100 SXM: a dense GEMM on random data runs into the 700 W cap, the same GEMM
    on all-zero inputs switches less and runs at a higher clock."""
    g, nv, h = make_sim("h100-sxm", noise=False)
    s = g.spec
    assert nv.nvmlDeviceGetPowerManagementLimit(h) == s.power.limit_w_default * 1000
    g.run(GEMM, 3000)
    assert nv.nvmlDeviceGetCurrentClocksEventReasons(h) & SW_POWER_CAP
    random_mhz = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
    assert random_mhz < s.clocks.sm_mhz_max
    zeros = physics.Workload(GEMM.flops, GEMM.bytes, GEMM.dtype, data_activity=0.0)
    g.run(zeros, 3000)
    assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) > random_mhz


# --- 3. setters' argument checks ------------------------------------------------------------------


def test_locked_clocks_out_of_range_are_invalid_arguments(sim_nvml):
    g, nv, h = sim_nvml
    c = g.spec.clocks
    tdp, unlimited = nv.NVML_CLOCK_LIMIT_ID_TDP, nv.NVML_CLOCK_LIMIT_ID_UNLIMITED
    nv.nvmlDeviceSetGpuLockedClocks(h, 1200, 1200)
    bad_pairs = [
        (c.sm_mhz_min, c.sm_mhz_max + c.sm_mhz_step),  # max above the range
        (c.sm_mhz_min, c.sm_mhz_max + 1),
        (c.sm_mhz_min - 1, c.sm_mhz_max),  # min below the range
        (1500, 1200),  # min > max
        (1200, tdp),  # numeric mixed with symbolic
        (tdp, 1500),
        (1200, unlimited),
    ]
    for lo, hi in bad_pairs:
        with pytest.raises(nv.NVMLError_InvalidArgument):
            nv.nvmlDeviceSetGpuLockedClocks(h, lo, hi)
    assert g.sm_locked_mhz() == (1200, 1200), "a refused call must not change the lock"


def test_locked_clocks_snap_to_supported_and_unlimited_unlocks(sim_nvml):
    g, nv, h = sim_nvml
    c = g.spec.clocks
    table = c.sm_clocks_mhz()
    light = STREAM  # far below any power limit: the clock that runs is the locked one

    for lo, hi in ((1507, 1507), (1000, 1510), (c.sm_mhz_min, c.sm_mhz_max)):
        nv.nvmlDeviceSetGpuLockedClocks(h, lo, hi)
        want = (nearest_clock(table, lo), nearest_clock(table, hi))
        assert g.sm_locked_mhz() == want
        g.run(light, 10)
        assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == want[1]

    nv.nvmlDeviceSetGpuLockedClocks(h, 1507, 1507)
    unlimited = nv.NVML_CLOCK_LIMIT_ID_UNLIMITED
    nv.nvmlDeviceSetGpuLockedClocks(h, unlimited, unlimited)
    assert g.sm_locked_mhz() is None
    g.run(light, 10)
    assert nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) == c.sm_mhz_max

    nv.nvmlDeviceSetGpuLockedClocks(h, 1200, 1200)
    nv.nvmlDeviceResetGpuLockedClocks(h)
    assert g.sm_locked_mhz() is None


def test_memory_locked_clocks_and_power_limit_ranges(sim_nvml):
    g, nv, h = sim_nvml
    mem = g.spec.clocks.memory_mhz
    p = g.spec.power
    for lo, hi in ((min(mem) - 1, max(mem)), (min(mem), max(mem) + 1), (max(mem), min(mem) - 1)):
        with pytest.raises(nv.NVMLError_InvalidArgument):
            nv.nvmlDeviceSetMemoryLockedClocks(h, lo, hi)
    assert g.mem_locked_mhz() is None
    nv.nvmlDeviceSetMemoryLockedClocks(h, max(mem), max(mem))
    assert g.mem_locked_mhz() == (max(mem), max(mem))
    nv.nvmlDeviceResetMemoryLockedClocks(h)
    assert g.mem_locked_mhz() is None

    lo_mw, hi_mw = nv.nvmlDeviceGetPowerManagementLimitConstraints(h)
    assert (lo_mw, hi_mw) == (p.limit_w_min * 1000, p.limit_w_max * 1000)
    for bad in (lo_mw - 1, hi_mw + 1, 0):
        with pytest.raises(nv.NVMLError_InvalidArgument):
            nv.nvmlDeviceSetPowerManagementLimit(h, bad)
    assert nv.nvmlDeviceGetPowerManagementLimit(h) == p.limit_w_default * 1000
    for ok in (lo_mw, hi_mw):
        nv.nvmlDeviceSetPowerManagementLimit(h, ok)
        assert nv.nvmlDeviceGetPowerManagementLimit(h) == ok


@pytest.mark.skipif(
    not (resources.files("wattbench.profiler.sim.specs") / "l4.toml").is_file(),
    reason="needs the l4 spec (two memory clocks)",
)
def test_memory_locked_clock_snaps_to_supported(make_sim):
    two = Path(__file__).parent / "specs" / "l4-two-memory-clocks.toml"
    g, nv, h = make_sim(spec.load_file(two), noise=False)
    mem = sorted(g.spec.clocks.memory_mhz)
    assert len(mem) >= 2
    just_above_low = mem[0] + 1
    want = nearest_clock(mem, just_above_low)
    nv.nvmlDeviceSetMemoryLockedClocks(h, just_above_low, just_above_low)
    assert g.mem_locked_mhz() == (want, want)


# --- 4. the two-call protocol, missing functions, initialisation ----------------------------------


def test_supported_clock_tables_through_two_call_protocol(sim_nvml):
    g, nv, h = sim_nvml
    c = g.spec.clocks
    mems = nv.nvmlDeviceGetSupportedMemoryClocks(h)
    assert mems == sorted(c.memory_mhz, reverse=True)
    assert c.sm_mhz_step == 15
    for m in mems:
        table = nv.nvmlDeviceGetSupportedGraphicsClocks(h, m)
        top = c.sm_mhz_max_per_memory.get(m, c.sm_mhz_max)
        assert table == list(range(top, c.sm_mhz_min - 1, -15))
        assert table[-1] == c.sm_mhz_min
        assert len(table) == (top - c.sm_mhz_min) // 15 + 1
    with pytest.raises(nv.NVMLError_NotFound):
        nv.nvmlDeviceGetSupportedGraphicsClocks(h, max(mems) - 1)


def test_insufficient_size_answer_at_the_c_level(sim_nvml):
    """The first call of the protocol answers INSUFFICIENT_SIZE with the count needed."""
    g, nv, h = sim_nvml
    fn = nv.nvmlLib.nvmlDeviceGetSupportedGraphicsClocks
    mem = g.spec.clocks.memory_mhz_max
    need = len(g.spec.clocks.sm_clocks_mhz(mem))
    count = ctypes.c_uint(0)
    assert fn(h, ctypes.c_uint(mem), ctypes.byref(count), None) == nv.NVML_ERROR_INSUFFICIENT_SIZE
    assert count.value == need
    small = (ctypes.c_uint * 3)()
    count = ctypes.c_uint(3)
    assert fn(h, ctypes.c_uint(mem), ctypes.byref(count), small) == nv.NVML_ERROR_INSUFFICIENT_SIZE
    assert count.value == need
    full = (ctypes.c_uint * need)()
    assert fn(h, ctypes.c_uint(mem), ctypes.byref(count), full) == nv.NVML_SUCCESS
    assert list(full) == g.spec.clocks.sm_clocks_mhz(mem)


def test_unimplemented_function_is_function_not_found(sim_nvml):
    _, nv, h = sim_nvml
    with pytest.raises(nv.NVMLError_FunctionNotFound):
        nv.nvmlDeviceGetBAR1MemoryInfo(h)


def test_calls_before_init_and_after_shutdown_are_uninitialized():
    g = gpu.SimulatedGpu(spec.load_builtin("h100-sxm"), noise=False)
    nv = nvml_lib.load_pynvml(nvml_lib.SimulatedNvmlLibrary([g]))
    with pytest.raises(nv.NVMLError_Uninitialized):
        nv.nvmlDeviceGetCount()
    with pytest.raises(nv.NVMLError_Uninitialized):
        nv.nvmlDeviceGetHandleByIndex(0)
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    assert nv.nvmlDeviceGetCount() == 1
    nv.nvmlShutdown()
    with pytest.raises(nv.NVMLError_Uninitialized):
        nv.nvmlDeviceGetPowerUsage(h)


# --- 5. privileges --------------------------------------------------------------------------------

#: Valid arguments (for an H100) for every setter the simulated library has.
SETTER_ARGS = {
    "nvmlDeviceSetGpuLockedClocks": (1500, 1500),
    "nvmlDeviceResetGpuLockedClocks": (),
    "nvmlDeviceSetMemoryLockedClocks": (2619, 2619),
    "nvmlDeviceResetMemoryLockedClocks": (),
    "nvmlDeviceSetPowerManagementLimit": (400_000,),
    "nvmlDeviceSetPersistenceMode": (0,),
}


def test_setter_table_covers_every_simulated_setter():
    assert set(SETTER_ARGS) == set(nvml_lib.SETTERS)


def test_user_privilege_refuses_every_setter(monkeypatch, make_sim):
    monkeypatch.setenv("WATTBENCH_SIM_PRIVILEGE", "user")
    g, nv, h = make_sim("h100-sxm")
    for name, args in SETTER_ARGS.items():
        with pytest.raises(nv.NVMLError_NoPermission):
            getattr(nv, name)(h, *args)
    assert g.sm_locked_mhz() is None
    assert g.mem_locked_mhz() is None
    assert nv.nvmlDeviceGetPowerManagementLimit(h) == g.spec.power.limit_w_default * 1000
    # Refused calls are counted all the same.
    calls = state.StateFile(g._file.path).read().setter_calls
    assert calls == dict.fromkeys(SETTER_ARGS, 1)


def test_power_only_privilege_allows_only_the_power_limit(monkeypatch, make_sim):
    monkeypatch.setenv("WATTBENCH_SIM_PRIVILEGE", "power-only")
    g, nv, h = make_sim("h100-sxm")
    nv.nvmlDeviceSetPowerManagementLimit(h, 450_000)
    assert nv.nvmlDeviceGetPowerManagementLimit(h) == 450_000
    for name, args in SETTER_ARGS.items():
        if name != "nvmlDeviceSetPowerManagementLimit":
            with pytest.raises(nv.NVMLError_NoPermission):
                getattr(nv, name)(h, *args)
    assert g.sm_locked_mhz() is None


def test_device_layer_explains_missing_privilege(monkeypatch):
    monkeypatch.setenv("WATTBENCH_SIM_PRIVILEGE", "user")
    dev = open_device("sim:h100-sxm")
    with pytest.raises(NoPermissionError) as info:
        dev.lock_sm_clocks(1500)
    text = str(info.value)
    assert "root" in text
    assert "CAP_SYS_ADMIN" in text
    assert "--observe-only" in text
    assert dev.simulated is not None and dev.simulated.sm_locked_mhz() is None


# --- 6. state across processes --------------------------------------------------------------------

_CHILD_PRELUDE = """
import json
from wattbench.profiler.sim import gpu, nvml_lib, physics, spec
g = gpu.SimulatedGpu(spec.load_builtin("h100-sxm"), noise=True)
nv = nvml_lib.load_pynvml(nvml_lib.SimulatedNvmlLibrary([g]))
nv.nvmlInit()
h = nv.nvmlDeviceGetHandleByIndex(0)
work = physics.Workload({flops}, {bytes}, "{dtype}")
out = {{"t_start": g.now_s, "e_start": nv.nvmlDeviceGetTotalEnergyConsumption(h)}}
"""

_CHILD_SET = """
nv.nvmlDeviceSetGpuLockedClocks(h, 1140, 1140)
nv.nvmlDeviceSetPowerManagementLimit(h, 450000)
g.run(work, 500)
g.idle(0.5)
"""

_CHILD_CHECK = """
out["limit_mw"] = nv.nvmlDeviceGetPowerManagementLimit(h)
out["run_e_start"] = nv.nvmlDeviceGetTotalEnergyConsumption(h)
res = g.run(work, 2000)
out["sm_mhz"] = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
out["run_reasons"] = res.reasons
g.idle(0.5)
"""

_CHILD_END = """
out["t_end"] = g.now_s
out["e_end"] = nv.nvmlDeviceGetTotalEnergyConsumption(h)
{shutdown}
print(json.dumps(out))
"""


def _child(body: str, *, shutdown: bool = True) -> dict:
    """Run a fresh Python process on the simulated H100; returns what it printed (JSON)."""
    prelude = _CHILD_PRELUDE.format(flops=GEMM.flops, bytes=GEMM.bytes, dtype=GEMM.dtype)
    end = _CHILD_END.format(shutdown="nv.nvmlShutdown()" if shutdown else "")
    code = textwrap.dedent(prelude + body + end)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ),  # carries this test's WATTBENCH_SIM_STATE_DIR
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_settings_and_energy_counter_persist_across_processes():
    s = spec.load_builtin("h100-sxm")
    # Precondition from the model: at 1140 MHz the GEMM fits under 450 W even at the hottest
    # temperature before thermal slowdown, so a clock of 1140 MHz shows the lock, not a cap.
    assert model_power_w(s, GEMM, 1140, s.thermal.slowdown_c) < 450
    assert model_power_w(s, GEMM, s.clocks.sm_mhz_max, s.thermal.ambient_c) > 450

    first = _child(_CHILD_SET)
    second = _child(_CHILD_CHECK)

    assert second["limit_mw"] == 450_000
    assert second["sm_mhz"] == 1140
    assert not second["run_reasons"] & SW_POWER_CAP
    # Virtual time and the energy counter continue where the first process left them.
    assert first["e_start"] == 0
    assert first["e_end"] > first["e_start"]
    assert second["t_start"] >= first["t_end"]
    assert second["e_start"] >= first["e_end"]
    assert second["e_end"] > second["run_e_start"] >= second["e_start"]

    path = state.state_path(s.key, s.source, 0)
    calls = state.StateFile(path).read().setter_calls
    assert calls == {"nvmlDeviceSetGpuLockedClocks": 1, "nvmlDeviceSetPowerManagementLimit": 1}


def test_energy_counter_monotonic_when_a_process_exits_without_shutdown():
    first = _child(_CHILD_SET, shutdown=False)
    second = _child("")
    assert first["e_end"] > 0
    assert second["t_start"] >= first["t_end"]
    assert second["e_start"] >= first["e_end"]


# --- 7. field values and power averaging ----------------------------------------------------------


def test_power_field_values_and_scopes(sim_nvml):
    g, nv, h = sim_nvml
    assert g.spec.sensors.field_values
    g.run(GEMM, 500)
    fields = [nv.NVML_FI_DEV_POWER_INSTANT, nv.NVML_FI_DEV_POWER_AVERAGE]
    values = nv.nvmlDeviceGetFieldValues(h, fields)
    for v, fid in zip(values, fields, strict=True):
        assert v.fieldId == fid
        assert v.nvmlReturn == nv.NVML_SUCCESS
        assert v.valueType == nv.NVML_VALUE_TYPE_UNSIGNED_INT
        assert v.value.uiVal > g.spec.power.idle_w * 1000
    scoped = nv.nvmlDeviceGetFieldValues(h, [(fid, 1) for fid in fields])  # scope MODULE
    assert [v.nvmlReturn for v in scoped] == [nv.NVML_ERROR_NOT_SUPPORTED] * 2


def _idle_then_burst(g, nv, h) -> tuple[int, int, int]:
    """Idle long, then a heavy load well under 1 s; (usage mW, instant mW, average mW)."""
    g.idle(5.0)
    s = g.spec
    t_iter = physics.iteration_timing(s, GEMM, s.clocks.sm_mhz_max, s.clocks.memory_mhz_max).time_s
    burst = g.run(GEMM, math.ceil(0.25 / t_iter))
    assert 0.2 < burst.elapsed_s < 0.5
    usage = nv.nvmlDeviceGetPowerUsage(h)
    inst, avg = nv.nvmlDeviceGetFieldValues(
        h, [nv.NVML_FI_DEV_POWER_INSTANT, nv.NVML_FI_DEV_POWER_AVERAGE]
    )
    return usage, inst.value.uiVal, avg.value.uiVal


def readings_w(g: gpu.SimulatedGpu, n: int) -> list[float]:
    """What the last ``n`` sensor updates published: each the mean power over the sample window
    that ends on its tick (part-time sampling), from the recorded trace."""
    sn = g.spec.sensors
    last_tick = math.floor(g.now_s / sn.update_period_s + 1e-9)
    ticks = [(last_tick - i) * sn.update_period_s for i in range(n)]
    return [trace_mean_power_w(g.trace, t - sn.power_sample_window_s, t) for t in ticks]


def test_power_usage_is_a_one_second_average_on_h100(make_sim):
    g, nv, h = make_sim("h100-sxm", noise=False, record_trace=True)
    sn = g.spec.sensors
    assert sn.power_average_s == 1.0 and sn.update_period_s == 0.1
    usage, inst, avg = _idle_then_burst(g, nv, h)
    last10 = readings_w(g, 10)
    assert usage == pytest.approx(1000 * sum(last10) / 10, abs=1)
    assert avg == usage
    assert inst == pytest.approx(1000 * last10[0], abs=1)
    # Most of the last second was idle: the average lags far behind the instant reading.
    idle_mw = 1000 * next(s.power_w for s in reversed(g.trace) if not s.busy)
    assert (inst - usage) > 0.5 * (inst - idle_mw)


def test_power_readings_sample_part_of_each_period(make_sim):
    """A reading averages only the last 25 ms of its 100 ms period: a load that stops 40 ms
    before a tick is invisible to it (Yang et al.: 'only 25% of the runtime is sampled')."""
    g, nv, h = make_sim("h100-sxm", noise=False, record_trace=True)
    g.idle(5.0)
    idle_w = readings_w(g, 1)[0]
    period = g.spec.sensors.update_period_s
    g.idle(period - (g.now_s % period) + 0.001)  # just after a tick
    t_iter = physics.iteration_timing(g.spec, GEMM, 1000, g.spec.clocks.memory_mhz_max).time_s
    g.run(GEMM, max(1, int(0.05 / t_iter)))  # ~50 ms of load, then idle to the next tick
    g.idle(period - (g.now_s % period) + 0.001)
    (fv,) = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])
    # (a little above idle: the die is still warm, and leakage grows with temperature)
    assert idle_w <= fv.value.uiVal / 1000 < 1.1 * idle_w
    # ... while the energy counter saw all of it
    assert trace_energy_j(g.trace, g.now_s - 0.1, g.now_s) > 2 * idle_w * 0.1


def test_power_usage_is_instantaneous_without_averaging(make_sim):
    """On GA100 (power_average_s = 0) GetPowerUsage is the latest reading."""
    s = spec.load_builtin("a100-sxm")
    assert s.sensors.power_average_s == 0
    g, nv, h = make_sim(s, noise=False, record_trace=True)
    usage, inst, _ = _idle_then_burst(g, nv, h)
    assert usage == inst == pytest.approx(1000 * readings_w(g, 1)[0], abs=1)
    assert usage > 1000 * trace_mean_power_w(g.trace, g.now_s - 1.0, g.now_s) * 1.5


# --- what NVML tools (Zeus, codecarbon, nvitop, gpustat) read ----------------------------------


def test_the_calls_nvml_tools_make_answer_through_pynvml(make_sim):
    """Every call the NVML tools in the issue make, through pynvml's own wrappers, on the
    simulated H100: idle first, then while a GEMM runs."""
    g, nv, h = make_sim("h100-sxm", noise=False)
    assert nv.nvmlDeviceGetPersistenceMode(h) == nv.NVML_FEATURE_ENABLED
    assert nv.nvmlDeviceGetComputeMode(h) == nv.NVML_COMPUTEMODE_DEFAULT
    assert nv.nvmlDeviceGetDisplayMode(h) == nv.NVML_FEATURE_DISABLED
    assert nv.nvmlDeviceGetDisplayActive(h) == nv.NVML_FEATURE_DISABLED
    assert nv.nvmlDeviceGetMigMode(h) == [0, 0]
    assert not nv.nvmlDeviceIsMigDeviceHandle(h).value
    assert nv.nvmlDeviceGetC2cModeInfoV(h).isC2cEnabled == 0
    for err in (nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED):
        assert nv.nvmlDeviceGetTotalEccErrors(h, err, nv.NVML_VOLATILE_ECC) == 0
    assert nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES) == 0
    assert nv.nvmlDeviceGetEncoderUtilization(h)[0] == 0
    assert nv.nvmlDeviceGetDecoderUtilization(h)[0] == 0
    with pytest.raises(nv.NVMLError_NotSupported):
        nv.nvmlDeviceGetFanSpeed(h)  # an SXM module has no fan
    with pytest.raises(nv.NVMLError_NotSupported):
        nv.nvmlDeviceGetDriverModel(h)  # Windows only
    mem = nv.nvmlDeviceGetMemoryInfo(h, version=nv.nvmlMemory_v2)
    assert mem.total == g.spec.identity.memory_total_mib * 2**20 == mem.free + mem.used
    g.idle(2.0)
    assert nv.nvmlDeviceGetUtilizationRates(h).gpu == 0
    assert nv.nvmlDeviceGetPerformanceState(h) == nv.NVML_PSTATE_8
    temp = nv.nvmlDeviceGetTemperatureV(h, nv.NVML_TEMPERATURE_GPU)
    assert temp == nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
    g.run(GEMM, 2000)  # ~2.9 s of GEMMs at the cap
    util = nv.nvmlDeviceGetUtilizationRates(h)
    assert util.gpu == 100 and 0 < util.memory < 100  # compute-bound: DRAM partly busy
    assert nv.nvmlDeviceGetPerformanceState(h) == nv.NVML_PSTATE_0
    assert nv.nvmlDeviceGetTemperatureV(h, nv.NVML_TEMPERATURE_GPU) > temp
    g.idle(0.5)  # half of the last second busy
    assert nv.nvmlDeviceGetUtilizationRates(h).gpu == 50


def test_mig_c2c_and_struct_versions_follow_the_chip(make_sim):
    """MIG exists on compute capability 8.0 / 9.0 parts only (A100, H100, H200; not L4); C2C
    from Hopper on; a versioned struct with the wrong version is refused as NVML does."""
    _, nv, h = make_sim("l4")
    with pytest.raises(nv.NVMLError_NotSupported):
        nv.nvmlDeviceGetMigMode(h)
    with pytest.raises(nv.NVMLError_NotSupported):
        nv.nvmlDeviceGetC2cModeInfoV(h)
    _, nv_a, h_a = make_sim("a100-sxm")
    assert nv_a.nvmlDeviceGetMigMode(h_a) == [0, 0]
    with pytest.raises(nv.NVMLError_ArgumentVersionMismatch):
        nv.nvmlDeviceGetMemoryInfo(h, version=0x01000028)
    with pytest.raises(nv.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetTotalEccErrors(h, 7, nv.NVML_VOLATILE_ECC)
