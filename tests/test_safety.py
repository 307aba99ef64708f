"""Safe actuation, end to end: real ``wattbench`` subprocesses against a simulated H100 whose
settings persist in its state file, real signals (SIGINT, SIGTERM, SIGHUP, SIGKILL), real
journal files. Nothing is mocked; the launch fault is the simulator's own injection switch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_run import CLI, wb

from wattbench.profiler.sim import spec, state
from wattbench.profiler.store import RunRecord

H100 = spec.load_builtin("h100-sxm")
DEFAULT_LIMIT_MW = int(H100.power.limit_w_default * 1000)
PROBLEM = ["--kernel", "matmul", "--shape", "4096x4096x4096", "--dtype", "bf16"]
# a long power sweep (a grid of 101 points): plenty of time to catch it with the limit lowered
LONG_POWER_SWEEP = [
    "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--power-limits", "200:700:5",
    "--strategy", "grid",
]  # fmt: skip


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sim_state() -> state.SimState:
    return state.StateFile(state.state_path(H100.key, H100.source, 0)).read()


def journal_dir() -> Path:
    return Path(os.environ["WATTBENCH_SIM_STATE_DIR"]) / "journal"


def journals() -> list[Path]:
    return sorted(journal_dir().glob("GPU-*.json"))


def wait_for(pred: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}:\n{err}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def limit_lowered() -> bool:
    lim = sim_state().settings.power_limit_mw
    return lim is not None and lim < DEFAULT_LIMIT_MW


def sm_locked() -> bool:
    return sim_state().settings.sm_locked_mhz is not None


def assert_original_settings() -> None:
    s = sim_state().settings
    assert s.power_limit_mw in (None, DEFAULT_LIMIT_MW), s
    assert s.sm_locked_mhz is None, s
    assert s.mem_locked_mhz is None, s


def kill9_with_limit_lowered(tmp_path: Path) -> None:
    proc = start(*LONG_POWER_SWEEP, "--out", str(tmp_path / "out"), "--quiet")
    wait_for(limit_lowered, proc, "the sweep lowered the power limit")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert limit_lowered(), "precondition: the killed sweep left the GPU changed"
    (journal,) = journals()
    assert json.loads(journal.read_text())["session"]["command"] == "sweep"


# --- crash recovery -------------------------------------------------------------------------------


def test_kill9_mid_sweep_then_reset_restores_originals(tmp_path):
    kill9_with_limit_lowered(tmp_path)
    r = wb("reset", "--device", "sim:h100-sxm")
    assert r.returncode == 0, r.stderr
    assert "interrupted `wattbench sweep`" in r.stdout
    assert "restored the journaled original settings" in r.stdout
    assert_original_settings()
    assert journals() == []


def test_kill9_then_the_next_sweep_restores_first_and_says_so(tmp_path):
    kill9_with_limit_lowered(tmp_path)
    # a clock-only sweep does not touch the power limit: only recovery can put it back
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--sm-clocks", "1980,1500",
        "--out", str(tmp_path / "out2"), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "was left changed by an interrupted `wattbench sweep`" in r.stderr
    assert "restored it from the journal: power limit 700 W" in r.stderr
    assert_original_settings()
    assert journals() == []


def test_observe_only_sweep_warns_about_a_crashed_run_and_changes_nothing(tmp_path):
    kill9_with_limit_lowered(tmp_path)
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--out", str(tmp_path / "o"), "--quiet",
        "--observe-only",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "was left changed by an interrupted" in r.stderr
    assert "wattbench reset --device sim:h100-sxm" in r.stderr
    assert limit_lowered()  # observe-only restores nothing


# --- restore without any reset --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "rc"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_signal_mid_sweep_restores(tmp_path, sig, rc):
    out = tmp_path / "out"
    proc = start(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--sm-clocks", "all",
        "--power-limits", "300,500", "--strategy", "grid", "--out", str(out), "--quiet",
    )  # fmt: skip
    wait_for(lambda: sm_locked() and limit_lowered(), proc, "clocks locked and limit lowered")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == rc, err
    assert "Traceback" not in err
    assert_original_settings()
    assert journals() == []
    (run,) = out.glob("*.json")
    rec = RunRecord.load(run)
    assert rec.status == "interrupted" and rec.points


def test_exception_inside_a_launch_restores_and_is_reported(tmp_path):
    out = tmp_path / "out"
    r = wb(
        *LONG_POWER_SWEEP, "--out", str(out), "--quiet",
        env={"WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S": "60"},
    )  # fmt: skip
    assert r.returncode == 1
    (line,) = r.stderr.splitlines()  # one line, no traceback
    assert line.startswith("wattbench: error: kernel launch failed: simulated failure injected")
    assert "continue with `wattbench sweep --resume" in line
    assert_original_settings()
    assert sim_state().setter_calls.get("nvmlDeviceSetPowerManagementLimit", 0) > 2
    assert journals() == []
    (run,) = out.glob("*.json")
    assert RunRecord.load(run).status == "interrupted"


def test_a_second_sweep_on_a_gpu_being_changed_is_refused(tmp_path):
    proc = start(*LONG_POWER_SWEEP, "--out", str(tmp_path / "a"), "--quiet")
    try:
        wait_for(limit_lowered, proc, "the first sweep started changing the GPU")
        r = wb(*LONG_POWER_SWEEP, "--out", str(tmp_path / "b"), "--quiet")
        assert r.returncode == 1
        assert "is being changed by another wattbench process: `wattbench sweep`" in r.stderr
        assert f"pid {proc.pid}" in r.stderr
        assert not (tmp_path / "b").exists() or not list((tmp_path / "b").glob("*.json"))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert_original_settings()


# --- observe-only ---------------------------------------------------------------------------------


def twenty_sm_clocks() -> str:
    clocks = sorted(H100.clocks.sm_clocks_mhz(), reverse=True)[:40:2]
    assert len(clocks) == 20
    return ",".join(map(str, clocks))


@pytest.mark.parametrize("how", ["env", "flag"])
def test_no_actuate_sweep_calls_no_setter_and_records_one_point(tmp_path, how):
    out = tmp_path / "out"
    env = {"WATTBENCH_NO_ACTUATE": "1"} if how == "env" else {}
    flag = ["--observe-only"] if how == "flag" else []
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--out", str(out), "--quiet", *flag,
        env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "observe-only" in r.stderr and "measuring the GPU as it is, as one point" in r.stderr
    assert sim_state().setter_calls == {}
    assert journals() == []
    (run,) = out.glob("*.json")
    rec = RunRecord.load(run)
    assert rec.status == "complete" and len(rec.points) == 1
    assert rec.points[0].energy_j > 0
    assert rec.doc["settings"]["space"]["mode"] == "observe-only"
    assert rec.points[0].in_force["power_limit_w"] == 700.0
    assert rec.doc["settings"]["found"]["at_driver_defaults"] is True


@pytest.mark.parametrize("how", ["env", "flag"])
def test_no_actuate_refuses_an_explicit_space(tmp_path, how):
    env = {"WATTBENCH_NO_ACTUATE": "1"} if how == "env" else {}
    flag = ["--observe-only"] if how == "flag" else []
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--sm-clocks", twenty_sm_clocks(),
        "--out", str(tmp_path / "out"), "--quiet", *flag, env=env,
    )  # fmt: skip
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert "--sm-clocks asks to change settings" in line and "drop --sm-clocks" in line
    assert sim_state().setter_calls == {}
    assert not (tmp_path / "out").exists()


def test_no_actuate_refuses_apply_and_reset_without_calling_setters():
    env = {"WATTBENCH_NO_ACTUATE": "1"}
    for args in (["apply", "--sm-mhz", "1500"], ["reset"]):
        r = wb(*args, "--device", "sim:h100-sxm", env=env)
        assert r.returncode == 2
        assert "WATTBENCH_NO_ACTUATE" in r.stderr
    assert sim_state().setter_calls == {}


# --- privilege preflight and shared GPUs ----------------------------------------------------------


def test_preflight_without_privileges_stops_before_measuring(tmp_path):
    out = tmp_path / "out"
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--sm-clocks", "every:8",
        "--out", str(out), env={"WATTBENCH_SIM_PRIVILEGE": "user"},
    )  # fmt: skip
    assert r.returncode == 1
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("wattbench: error:")]
    assert "may not change SM clocks" in line and "nothing was measured" in line
    assert "run as root" in line and "SYS_ADMIN" in line and "--observe-only" in line
    assert "--power-limits" not in line  # capping is not permitted either
    assert not list(out.glob("*.json")) if out.exists() else True
    assert_original_settings()
    assert journals() == []


def test_preflight_with_power_only_privilege_suggests_power_limit_mode(tmp_path):
    env = {"WATTBENCH_SIM_PRIVILEGE": "power-only"}
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--sm-clocks", "every:8",
        "--out", str(tmp_path / "a"), env=env,
    )  # fmt: skip
    assert r.returncode == 1
    assert "capping is permitted here" in r.stderr and "--power-limits" in r.stderr
    # ... and that mode works: a power-limit sweep touches no clock
    before = sim_state().setter_calls
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--power-limits", "300,500",
        "--out", str(tmp_path / "b"), "--quiet", env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    after = sim_state().setter_calls
    changed = {k for k in after if after[k] != before.get(k, 0)}
    assert changed == {"nvmlDeviceSetPowerManagementLimit"}, (before, after)
    assert_original_settings()


def plant_process(pid: int, used_bytes: int) -> None:
    with state.StateFile(state.state_path(H100.key, H100.source, 0)).locked() as st:
        st.processes = [{"pid": pid, "used_memory_bytes": used_bytes}]


def test_sweep_refuses_a_shared_gpu_unless_allowed(tmp_path):
    plant_process(4242, 3 * 2**30)
    args = ["sweep", "--device", "sim:h100-sxm", *PROBLEM, "--sm-clocks", "1980,1500", "--quiet"]
    r = wb(*args, "--out", str(tmp_path / "a"))
    assert r.returncode == 1
    assert "1 other process(es) use" in r.stderr and "pid 4242 (3072 MiB)" in r.stderr
    assert "--allow-shared" in r.stderr
    assert sim_state().setter_calls == {}  # refused before any change
    r = wb(*args, "--out", str(tmp_path / "b"), "--allow-shared")
    assert r.returncode == 0, r.stderr
    assert_original_settings()


# --- apply and reset ------------------------------------------------------------------------------


def test_apply_stays_survives_a_sweep_and_reset_undoes_it(tmp_path):
    r = wb("apply", "--device", "sim:h100-sxm", "--sm-mhz", "1500", "--power-limit-w", "450")
    assert r.returncode == 0, r.stderr
    s = sim_state().settings
    assert s.sm_locked_mhz == (1500, 1500) and s.power_limit_mw == 450_000
    (journal,) = journals()
    doc = json.loads(journal.read_text())
    assert doc["original"]["power_limit_w"] == 700 and doc["session"] is None
    assert doc["target"] == {"sm_mhz": 1500, "power_limit_w": 450.0}

    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--sm-clocks", "1980,1200",
        "--out", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = sim_state().settings  # the sweep put the applied point back, not the driver defaults
    assert s.sm_locked_mhz == (1500, 1500) and s.power_limit_mw == 450_000

    r = wb("reset", "--device", "sim:h100-sxm")
    assert r.returncode == 0, r.stderr
    assert "restored the journaled original settings" in r.stdout
    assert_original_settings()
    assert journals() == []


def test_reset_without_a_journal_sets_driver_defaults():
    r = wb("reset", "--device", "sim:h100-sxm")
    assert r.returncode == 0, r.stderr
    assert "no journal; set the driver defaults" in r.stdout
    assert_original_settings()
    assert journals() == []


def test_reset_without_device_finds_journaled_gpus():
    assert wb("apply", "--device", "sim:h100-sxm", "--power-limit-w", "500").returncode == 0
    r = wb("reset")
    assert r.returncode == 0, r.stderr
    assert "NVIDIA H100" in r.stdout
    assert_original_settings()


def test_export_then_apply_from_sets_exactly_the_chosen_point(tmp_path):
    out = tmp_path / "runs"
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *PROBLEM, "--sm-clocks", "every:6",
        "--power-limits", "400,700", "--objective", "energy", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (run,) = out.glob("*.json")
    chosen = RunRecord.load(run).choices()["energy"].chosen.point
    points = tmp_path / "points.json"
    r = wb("export", str(run), "-o", str(points))
    assert r.returncode == 0, r.stderr
    workload = "matmul-vendor-bf16-4096x4096x4096"
    r = wb("apply", "--device", "sim:h100-sxm", "--from", str(points), "--workload", workload)
    assert r.returncode == 0, r.stderr
    s = sim_state().settings
    want_sm = (chosen.sm_mhz, chosen.sm_mhz) if chosen.sm_mhz is not None else None
    assert s.sm_locked_mhz == want_sm
    # the simulator keeps a limit set to the default as None (the driver default), like NVML
    want_mw = int(chosen.power_limit_w * 1000) if chosen.power_limit_w else DEFAULT_LIMIT_MW
    assert s.power_limit_mw in ((want_mw,) if want_mw != DEFAULT_LIMIT_MW else (None, want_mw))
    assert wb("reset", "--device", "sim:h100-sxm").returncode == 0
    assert_original_settings()
