"""The shared simulated node: the NVML switch, the simulator service on the wall clock, loads.

Every test runs the real pieces: the real pynvml module in processes of their own (routed by the
installed ``.pth`` hook), the service as a real background process on a Unix socket, signals.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time

import pytest

from tests.cli_run import wb
from tests.shared_node import SharedNode, needs_hook, ok
from wattbench.profiler.sim import physics
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim.gpu import SimulatedGpu
from wattbench.profiler.sim.realtime import Load, PacedNode

H100 = sim_spec.load_builtin("h100-sxm")
GEMM = physics.Workload(flops=2 * 8192**3, bytes=3 * 2 * 8192**2, dtype="bf16")


@pytest.fixture
def shared(tmp_path):
    node = SharedNode(tmp_path)
    yield node
    node.stop()


# --- the pacing, on a clock the test drives -------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _paced(units: int = 1):
    clock = FakeClock()
    gpus = [SimulatedGpu(H100, i, persist=False, noise=False) for i in range(units)]
    return clock, gpus, PacedNode(gpus, clock=clock)


def test_virtual_time_follows_the_wall_clock_and_idles_without_load():
    clock, (g,), node = _paced()
    t0, e0 = g.now_s, g.energy_j
    clock.t += 2.5
    node.catch_up()
    assert g.now_s == pytest.approx(t0 + 2.5, abs=1e-9)
    assert (g.energy_j - e0) / 2.5 < 1.2 * H100.power.idle_w  # idle the whole time


def test_a_duty_cycle_load_is_busy_for_its_share_of_every_period():
    clock, _, node = _paced()
    load = node.submit(0, Load(GEMM, seconds=3.0, duty=0.3, period_s=0.1))
    for _ in range(70):  # uneven steps, some smaller than a period, some straddling several
        clock.t += 0.0437
        node.catch_up()
    assert load.finished.is_set()
    assert load.busy_s == pytest.approx(0.9, rel=1e-6)  # 30 periods x 0.03 s
    t_iter = physics.iteration_timing(H100, GEMM, 1980, 2619).time_s
    assert load.done_iterations >= load.busy_s / t_iter * 0.99 * H100.clocks.sm_mhz_min / 1980


def test_a_load_of_iterations_takes_as_long_as_the_governed_clock_says():
    clock, (g,), node = _paced()
    load = node.submit(0, Load(GEMM, iterations=1000))
    steps = 0
    while not load.finished.is_set():
        clock.t += node.next_wake_s() or 1e-4
        node.catch_up()
        steps += 1
    assert load.done_iterations == pytest.approx(1000)
    steady = physics.steady_state(H100, GEMM)  # the default limit binds: the clock gives way
    assert load.busy_s == pytest.approx(1000 * steady.time_s, rel=0.03)
    # the pacer wakes when the work is due, not a whole pace period later
    assert g.now_s - (load.start_s + load.busy_s) < 1e-6


def test_rounding_never_leaves_a_step_too_small_to_advance():
    """A period boundary a hair away (float rounding) once made the pacer spin forever."""
    clock, (g,), node = _paced()
    node.submit(0, Load(GEMM, seconds=math.inf, duty=0.5, period_s=0.1))
    for dt in (0.05 - 1e-13, 1e-13, 0.05, 0.1 / 3, 0.1 / 3, 0.1 / 3):
        clock.t += dt
        node.catch_up()  # returns: no infinite loop
    assert g.now_s == pytest.approx(node.target_s(0), abs=1e-9)


def test_loads_on_one_unit_run_one_after_another_and_cancel_cleanly():
    clock, _, node = _paced()
    first = node.submit(0, Load(GEMM, iterations=100))
    second = node.submit(0, Load(GEMM, seconds=math.inf))
    clock.t += 0.3  # 100 iterations take ~0.14 s
    node.catch_up()
    assert first.finished.is_set() and second.start_s == pytest.approx(first.start_s + first.busy_s)
    node.cancel(second)
    assert second.cancelled and node.active_loads() == 0


# --- the service, across processes ---------------------------------------------------------------

_READ = """
import json, pynvml
pynvml.nvmlInit()
out = []
for i in range(pynvml.nvmlDeviceGetCount()):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    out.append({"uuid": pynvml.nvmlDeviceGetUUID(h), "serial": pynvml.nvmlDeviceGetSerial(h),
                "pci": pynvml.nvmlDeviceGetPciInfo(h).busId,
                "energy_mj": pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
                "power_mw": pynvml.nvmlDeviceGetPowerUsage(h),
                "limit_mw": pynvml.nvmlDeviceGetPowerManagementLimit(h)})
print(json.dumps(out))
"""


@needs_hook
def test_a_poller_in_another_process_sees_the_load_as_it_runs(shared):
    load = shared.popen(
        """
        import time
        from wattbench.profiler.sim import client
        with client.load("matmul", "8192x8192x8192", "bf16"):
            print("started", flush=True)
            time.sleep(4)
        """
    )
    assert load.stdout.readline().strip() == "started"
    time.sleep(1.5)  # the 1-s average power has caught up
    poll = shared.run(
        """
        import json, time, pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        e0, t0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h), time.time()
        time.sleep(1.0)
        e1, t1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h), time.time()
        print(json.dumps({"power_w": pynvml.nvmlDeviceGetPowerUsage(h) / 1000,
                          "counter_w": (e1 - e0) / 1000 / (t1 - t0),
                          "sm_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                          "util": pynvml.nvmlDeviceGetUtilizationRates(h).gpu}))
        """
    )
    seen = json.loads(ok(poll))
    assert load.wait(timeout=30) == 0
    steady = physics.steady_state(H100, GEMM)
    # a frozen copy would read idle (~60-75 W); the poller sees the GEMM at the power cap
    assert seen["power_w"] == pytest.approx(steady.power_w, rel=0.05)
    assert seen["counter_w"] == pytest.approx(steady.power_w, rel=0.12)  # 0.1-s counter ticks
    assert seen["sm_mhz"] == steady.sm_mhz
    assert seen["util"] == 100


@needs_hook
def test_eight_processes_of_a_multiprocessing_pool_see_eight_distinct_units(tmp_path):
    node = SharedNode(tmp_path, node="8xh100-sxm")
    try:
        out = node.run(
            """
            import json, multiprocessing as mp

            def read(i):
                import pynvml
                pynvml.nvmlInit()
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                return [pynvml.nvmlDeviceGetUUID(h), pynvml.nvmlDeviceGetSerial(h)]

            if __name__ == "__main__":
                with mp.get_context("spawn").Pool(4) as pool:
                    print(json.dumps(pool.map(read, range(8))))
            """
        )
        units = json.loads(ok(out))
    finally:
        node.stop()
    assert len({u for u, _ in units}) == 8 and len({s for _, s in units}) == 8
    eight = [SimulatedGpu(H100, i, persist=False) for i in range(8)]
    assert [u for u, _ in units] == [g.uuid for g in eight]  # the cards of sim:8xh100-sxm


@needs_hook
def test_settings_and_counters_agree_across_processes_and_outlive_them(shared):
    ok(
        shared.run(
            """
            import pynvml
            pynvml.nvmlInit()
            pynvml.nvmlDeviceSetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByIndex(0), 450000)
            """
        )
    )
    first = json.loads(ok(shared.run(_READ)))[0]
    second = json.loads(ok(shared.run(_READ)))[0]
    assert first["limit_mw"] == second["limit_mw"] == 450000
    assert second["energy_mj"] >= first["energy_mj"]
    # the service stops (SIGTERM saves); a new one starts on demand from the saved state
    shared.stop()
    third = json.loads(ok(shared.run(_READ)))[0]
    assert third["limit_mw"] == 450000 and third["energy_mj"] >= second["energy_mj"]
    assert third["uuid"] == first["uuid"]


@needs_hook
def test_a_client_killed_mid_load_loses_nothing_and_its_load_ends(shared):
    victim = shared.popen(
        """
        import time
        from wattbench.profiler.sim import client
        with client.load("matmul", "8192x8192x8192", "bf16"):
            print("started", flush=True)
            time.sleep(60)
        """
    )
    assert victim.stdout.readline().strip() == "started"
    before = json.loads(ok(shared.run(_READ)))[0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    time.sleep(1.5)  # the 1-s average drains
    after = json.loads(ok(shared.run(_READ)))[0]
    assert after["energy_mj"] > before["energy_mj"]
    assert after["power_mw"] < 150_000  # the load ended with its process: idle again
    status = wb("sim", "status", env=shared.env)
    assert "0 load(s)" in status.stdout, status.stdout


@needs_hook
def test_a_tool_outlives_a_killed_service_which_comes_back_from_its_saved_state(shared):
    tool = shared.popen(
        """
        import sys, time, pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        pynvml.nvmlDeviceSetPowerManagementLimit(h, 500000)
        print(pynvml.nvmlDeviceGetTotalEnergyConsumption(h), flush=True)
        sys.stdin.readline()  # the test kills the service meanwhile
        print(pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
              pynvml.nvmlDeviceGetPowerManagementLimit(h), flush=True)
        """
    )
    first = int(tool.stdout.readline())
    killed = shared.service_pid()
    os.kill(killed, signal.SIGKILL)
    time.sleep(0.2)
    tool.stdin.write("go\n")
    tool.stdin.flush()
    energy_mj, limit_mw = map(int, tool.stdout.readline().split())
    assert tool.wait(timeout=30) == 0, tool.stderr.read()
    assert shared.service_pid() not in (None, killed)  # a new service, started on demand
    assert limit_mw == 500000  # the setting survived the crash
    assert energy_mj >= first  # the counter never goes back


@needs_hook
def test_the_service_stops_by_itself_when_idle(tmp_path):
    node = SharedNode(tmp_path, idle_s=1.0)
    try:
        ok(node.run(_READ))
        pid = node.service_pid()
        assert pid is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and node.service_pid() is not None:
            time.sleep(0.1)
        assert node.service_pid() is None  # gone, and its socket and pid file with it
        assert not list((node.state / "shared").glob("*.sock"))
    finally:
        node.stop()


@needs_hook
def test_a_bad_switch_value_is_one_line_and_no_gpu(shared):
    proc = shared.run(
        """
        import pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            print("refused:", exc.value)
        """,
        WATTBENCH_SIM_NVML="h999",
    )
    out = ok(proc)
    assert "refused: 12" in out  # NVML_ERROR_LIBRARY_NOT_FOUND: never the real driver
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "WATTBENCH_SIM_NVML='h999'" in lines[0], proc.stderr


def test_without_the_switch_wattbench_still_says_there_is_no_driver(tmp_path):
    env = {"WATTBENCH_SIM_NVML": ""}
    r = wb("devices", "--device", "0", env=env)
    assert r.returncode == 1 and "no NVIDIA driver" in r.stderr, r.stderr


@needs_hook
def test_with_the_switch_wattbench_lists_the_shared_units_as_simulated(shared):
    r = wb("devices", "--json", env=shared.env)
    doc = json.loads(r.stdout)
    assert doc["real"] == [] and not doc["driver"]["found"]  # real GPUs: still the real driver
    assert [e["selection"] for e in doc["shared"]] == ["shared:0"]
    assert all(e["simulated"] and e["shared"] for e in doc["shared"])
    assert doc["shared"][0]["reading"]["power_limit_w"] == 700
    text = wb("devices", env=shared.env).stdout
    assert "Shared simulated node (WATTBENCH_SIM_NVML=h100-sxm)" in text
    assert "[shared:0] NVIDIA H100 80GB HBM3 [simulated]" in text


@needs_hook
def test_sim_run_sets_the_switch_for_one_command_and_its_children(shared):
    env = {**shared.env, "WATTBENCH_SIM_NVML": ""}
    script = (
        "import subprocess, sys; print(subprocess.run([sys.executable, '-c', "
        "'import pynvml; pynvml.nvmlInit(); print(pynvml.nvmlDeviceGetCount())'], "
        "capture_output=True, text=True).stdout.strip())"
    )
    r = wb("sim", "run", "--node", "h100-sxm", "--", os.sys.executable, "-c", script, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    assert wb("sim", "run", env=env).returncode == 2
    missing = wb("sim", "run", "--", "no-such-command-here", env=env)
    assert missing.returncode == 127 and "cannot run" in missing.stderr


@needs_hook
def test_sim_load_runs_its_iterations_in_wall_time(shared):
    t0 = time.monotonic()
    r = wb("sim", "load", "--iterations", "700", env=shared.env)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "700.0 iterations in" in r.stdout and "SIMULATED" in r.stdout
    busy = float(r.stdout.split(" iterations in ")[1].split(" s busy")[0])
    assert busy == pytest.approx(700 * physics.steady_state(H100, GEMM).time_s, rel=0.03)
    assert wall >= busy  # it took at least as long as the GPU did
    bad = wb("sim", "load", "--duty", "1.5", env=shared.env)
    assert bad.returncode == 2 and "--duty" in bad.stderr


def test_the_coverage_list_in_the_docs_is_the_code():
    from pathlib import Path

    from wattbench.profiler.sim import nvml_lib

    text = (Path(__file__).parents[1] / "docs" / "nvml-tools.md").read_text()
    section = text.split("## Coverage", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(nvml\w+)`", section))
    assert listed == set(nvml_lib._EXPORTS)
