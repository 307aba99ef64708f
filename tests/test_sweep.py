"""The main job end to end on a simulated H100: sweep, run file, choice, ground truth, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wattbench.kernels.costs import make_problem, work_of
from wattbench.profiler.cli.main import main
from wattbench.profiler.device import open_device
from wattbench.profiler.measure import Actuator, OperatingPoint, PointMeasurer
from wattbench.profiler.runners import SimulatedRunner
from wattbench.profiler.sim.gpu import VirtualClock
from wattbench.profiler.store import RunRecord, validate

SWEEP = [
    "sweep",
    "--device",
    "sim:h100-sxm",
    "--kernel",
    "matmul",
    "--shape",
    "8192x8192x8192",
    "--dtype",
    "bf16",
    "--quiet",
]


def _run_file(out: Path) -> Path:
    (path,) = out.glob("*.json")
    return path


def test_full_sm_sweep_is_fast_valid_and_finds_an_interior_optimum(tmp_path, capsys):
    c0 = time.process_time()
    # the grid measures every point (the default, adaptive, is tested in test_adaptive.py)
    assert main([*SWEEP, "--strategy", "grid", "--out", str(tmp_path)]) == 0
    cpu_s = time.process_time() - c0
    # The sweep runs in this process on the simulator's virtual clock, so its CPU time is what
    # counts (wall time on a shared machine says more about the other processes); about 14 s
    # of CPU on a loaded 2-core machine
    assert cpu_s < 20, f"full sweep took {cpu_s:.1f} s of CPU"
    out = capsys.readouterr().out
    assert "SIMULATED GPU" in out
    doc = json.loads(_run_file(tmp_path).read_text())
    assert validate(doc) == []
    assert doc["status"] == "complete" and doc["simulated"] is True
    record = RunRecord.load(_run_file(tmp_path))
    caps = open_device("sim:h100-sxm").capabilities
    clocks = caps.sm_clocks_mhz_all
    measured = {m.point.sm_mhz for m in record.points}
    assert measured == {None, *clocks}  # baseline + every supported SM clock
    choice = record.choices()["energy"]
    assert min(clocks) < choice.chosen.point.sm_mhz < max(clocks)
    assert choice.saving_rel > 0.05


def test_energy_per_iteration_matches_ground_truth_within_1pct():
    """With sensor noise on, every trial of every point agrees with the simulator's exact
    energy integral over the same window."""
    device = open_device("sim:h100-sxm")
    gpu = device.simulated
    assert gpu.noise
    problem = make_problem("matmul", "8192x8192x8192", "bf16")
    runner = SimulatedRunner(gpu, work_of(problem), keep_log=True)
    measurer = PointMeasurer(device, runner, VirtualClock(gpu), actuator=Actuator(device))
    measurer.measure_idle()
    clocks = device.capabilities.sm_clocks_mhz_all
    for sm in [None, *clocks[::4], clocks[-1]]:
        m = measurer.measure(OperatingPoint(sm_mhz=sm))
        for s in m.samples:
            truth = runner.truth_energy_per_iteration_j(s["start_s"], s["end_s"])
            assert s["energy_j"] == pytest.approx(truth, rel=0.01), (sm, s)
        window_truth = [
            runner.truth_energy_per_iteration_j(s["start_s"], s["end_s"]) for s in m.samples
        ]
        assert m.energy_j == pytest.approx(sum(window_truth) / len(window_truth), rel=0.01)


def test_sigint_keeps_finished_points_and_resume_completes(tmp_path):
    """A sweep interrupted by SIGINT in a real subprocess keeps every finished point; --resume
    finishes it without measuring those points again."""
    env = dict(os.environ)
    # slow each point down (long windows) so the signal lands mid-sweep
    cmd = [sys.executable, "-m", "wattbench.profiler.cli.main", *SWEEP, "--out", str(tmp_path)]
    slow = [*cmd, "--strategy", "grid", "--min-window-s", "3"]  # grid: all 111 points
    proc = subprocess.Popen(slow, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    path = None
    while time.monotonic() < deadline:
        files = list(tmp_path.glob("*.json"))
        if files:
            path = files[0]
            try:
                if len(json.loads(path.read_text())["points"]) >= 5:
                    break
            except (ValueError, KeyError):
                pass  # caught between writes is impossible (atomic replace), but be safe
        time.sleep(0.02)
    assert path is not None, "the sweep never wrote its run file"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    doc = json.loads(path.read_text())
    assert doc["status"] == "interrupted"
    done_before = {p["point_key"]: p for p in doc["points"]}
    assert 5 <= len(done_before) < 111
    state_dir = Path(env["WATTBENCH_SIM_STATE_DIR"])
    # the interrupted sweep put the GPU back to driver defaults
    state = json.loads(next(state_dir.glob("h100-sxm-*.json")).read_text())
    assert state["settings"]["sm_locked_mhz"] is None

    res = subprocess.run(
        [sys.executable, "-m", "wattbench.profiler.cli.main", "sweep", "--resume", str(path)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(path.read_text())
    assert doc["status"] == "complete"
    after = {p["point_key"]: p for p in doc["points"]}
    assert len(after) == 111
    for key, p in done_before.items():  # finished points were not measured again: their raw
        # readings are kept; their figures are carried by the final thermal model (fast method)
        assert after[key]["samples"] == p["samples"]
        assert after[key]["thermal"]["readings"] == p["thermal"]["readings"]
    # each part of the run says how its runner ran and which points it measured
    first, second = doc["settings"]["runner_parts"]
    assert set(first["point_keys"]) == set(done_before)
    assert set(second["point_keys"]) == set(after) - set(done_before)
    assert doc["settings"]["runner"] == second["runner"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--kernel", "nope"], "unknown kernel"),
        (["--shape", "8192x8192"], "malformed matmul shape"),
        (["--dtype", "int3"], "has no dtype"),
        (["--sm-clocks", "1501"], "nearest supported"),
        (["--power-limits", "100:300:50"], "200"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys, args, needle):
    argv = list(SWEEP)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_record_older_than_the_method_key_resumes_with_the_steady_method(tmp_path):
    """Records before the measurement method existed were measured steady; the default has
    since become fast, and resuming such a record must not switch method for its new points."""
    from wattbench.profiler.sweep.session import resume_request

    args = [*SWEEP, "--strategy", "grid", "--sm-clocks", "every:40", "--out", str(tmp_path)]
    assert main(args) == 0
    path = _run_file(tmp_path)
    doc = json.loads(path.read_text())
    assert doc["settings"]["measurement"]["method"] == "fast"  # today's default
    _, _, request = resume_request(RunRecord.load(path))
    assert request.settings.method == "fast"
    del doc["settings"]["measurement"]["method"]
    path.write_text(json.dumps(doc))
    _, _, request = resume_request(RunRecord.load(path))
    assert request.settings.method == "steady"
