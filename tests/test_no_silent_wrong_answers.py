"""Regression tests for answers that were wrong in silence (one per case of the reliability
issue; the simulator-clock wedge is in test_sim_calibration.py, signals in test_signals_nvml.py).

Everything runs the real CLI as a subprocess or in process, over the simulated GPUs, with real
files; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_run import CLI, wb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattbench.profiler.cli.main import main
from wattbench.profiler.store import RunRecord

SMALL = ["--kernel", "matmul", "--shape", "2048x2048x2048", "--dtype", "bf16"]
CLOCKS = ["--sm-clocks", "1200,1500,1800", "--strategy", "grid"]


def one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("wattbench: error: ")
    return line


def runs(out: Path) -> list[RunRecord]:
    return [RunRecord.load(p) for p in sorted(out.glob("*.json"))]


# --- 1. settings left by `apply` are stated, never passed off as driver defaults ----------------


def test_a_sweep_after_apply_says_what_it_measured_under(tmp_path):
    assert wb("apply", "--device", "sim:h100-sxm", "--power-limit-w", "300").returncode == 0
    out = tmp_path / "out"
    r = wb("sweep", "--device", "sim:h100-sxm", *SMALL, *CLOCKS, "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "is not at driver defaults: power limit 300 W (default 700 W)" in r.stderr
    assert "--from-defaults" in r.stderr
    baseline = next(ln for ln in r.stdout.splitlines() if ln.startswith("baseline"))
    assert "baseline: limit 300 W (as found)" in baseline
    assert "driver defaults" not in r.stdout
    (rec,) = runs(out)
    found = rec.doc["settings"]["found"]
    assert found["power_limit_w"] == 300 and found["at_driver_defaults"] is False
    assert found["sources"]["power"] == "read from the GPU"
    assert {m.in_force["power_limit_w"] for m in rec.points} == {300.0}
    assert all(m.in_force["as_found"] == ["mem", "power"] for m in rec.points)
    # the exported point carries the limit it was measured under, not "default limit"
    e = wb("export", str(out))
    assert e.returncode == 0, e.stderr
    assert {p["power_limit_w"] for p in json.loads(e.stdout)["points"]} == {300.0}


def test_from_defaults_sweeps_from_driver_defaults_and_puts_the_applied_limit_back(tmp_path):
    assert wb("apply", "--device", "sim:h100-sxm", "--power-limit-w", "300").returncode == 0
    out = tmp_path / "out"
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *SMALL, *CLOCKS, "--from-defaults",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "baseline: driver defaults" in r.stdout
    (rec,) = runs(out)
    assert {m.in_force["power_limit_w"] for m in rec.points} == {700.0}
    assert rec.doc["settings"]["actuated_knobs"] == ["power", "sm"]
    d = wb("devices", "--device", "sim:h100-sxm", "--json")
    assert json.loads(d.stdout)["simulated"][0]["reading"]["power_limit_w"] == 300


def test_devices_warns_when_a_crashed_sweep_left_the_gpu_changed(tmp_path):
    proc = subprocess.Popen(
        [*CLI, "sweep", "--device",
         "sim:h100-sxm", *SMALL, "--power-limits", "200:700:5", "--strategy", "grid",
         "--out", str(tmp_path / "o"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    journal = Path(os.environ["WATTBENCH_SIM_STATE_DIR"]) / "journal"
    deadline = time.monotonic() + 60
    while not list(journal.glob("GPU-*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    r = wb("devices", "--device", "sim:h100-sxm")
    assert r.returncode == 0
    assert "left changed by an interrupted `wattbench sweep`" in r.stderr
    assert "wattbench reset --device sim:h100-sxm" in r.stderr


# --- 4. problems that cannot fit are refused before any launch ---------------------------------


@pytest.mark.parametrize("shape", ["1000000000x1000000000x1000000000", "300000x300000x300000"])
def test_a_problem_larger_than_gpu_memory_is_refused_at_once(tmp_path, shape):
    t0 = time.monotonic()
    r = wb("sweep", "--device", "sim:h100-sxm", "--kernel", "matmul", "--shape", shape,
           "--dtype", "bf16", "--out", str(tmp_path / "o"), timeout=60)  # fmt: skip
    line = one_line_error(r)
    assert "GiB for its operands and results, more than the 79.6 GiB" in line
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "o").exists()


# --- 5. --resume trusts nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [["--kernel", "w8a8"], ["--device", "sim:a100-sxm"], ["--power-limits", "300"],
              ["--spread", "0.02"], ["--strategy", "grid"]],
)  # fmt: skip
def test_resume_refuses_options_it_would_ignore(tmp_path, extra):
    out = tmp_path / "o"
    assert wb("sweep", "--device", "sim:h100-sxm", *SMALL, *CLOCKS, "--out", str(out),
              "--quiet").returncode == 0  # fmt: skip
    (path,) = out.glob("*.json")
    line = one_line_error(wb("sweep", "--resume", str(path), *extra))
    assert extra[0] in line and "cannot change it" in line


def test_resume_refuses_a_record_edited_to_another_problem(tmp_path):
    out = tmp_path / "o"
    assert wb("sweep", "--device", "sim:h100-sxm", *SMALL, *CLOCKS, "--out", str(out),
              "--quiet").returncode == 0  # fmt: skip
    (path,) = out.glob("*.json")
    doc = json.loads(path.read_text())
    doc["problem"]["shape"] = [4096, 4096, 4096]
    doc["status"] = "interrupted"
    path.write_text(json.dumps(doc))
    line = one_line_error(wb("sweep", "--resume", str(path)))
    assert "was edited or damaged" in line
    assert json.loads(path.read_text()) == doc


# --- 6 / 7. numbers and environment validated before anything runs ------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["--spread", "0"], "--spread"),
        (["--spread", "-1"], "--spread"),
        (["--spread", "nan"], "--spread"),
        (["--max-trials", "0"], "--max-trials"),
        (["--min-window-s", "-1"], "--min-window-s"),
        (["--sm-clocks", ""], "--sm-clocks"),
        (["--power-limits", " "], "--power-limits"),
    ],
)
def test_sweep_numeric_options_are_usage_errors(tmp_path, args, says):
    r = wb("sweep", "--device", "sim:h100-sxm", *SMALL, *args, "--out", str(tmp_path / "o"))
    assert says in one_line_error(r)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["check", "--kernel", "matmul", "--shape", "8x8x8", "--dtype", "fp16", "--reps", "0"],
         "--reps"),
        (["check", "--kernel", "matmul", "--shape", "8x8x8", "--dtype", "fp16", "--warmup", "-1"],
         "--warmup"),
        (["apply", "--device", "sim:h100-sxm", "--power-limit-w", "-5"], "--power-limit-w"),
        (["apply", "--device", "sim:h100-sxm", "--sm-mhz", "abc"], "--sm-mhz"),
    ],
)  # fmt: skip
def test_other_numeric_options_are_usage_errors(args, says):
    assert says in one_line_error(wb(*args))


@pytest.mark.parametrize(
    "name, value",
    [
        ("WATTBENCH_SIM_PRIVILEGE", "bogus"),
        ("WATTBENCH_SIM_SEED", "abc"),
        ("WATTBENCH_SIM_SEED", "-3"),
        ("WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S", "abc"),
        ("WATTBENCH_SIM_UNIT_VARIATION", "maybe"),
    ],
)
def test_bad_environment_values_are_one_line_usage_errors(tmp_path, name, value):
    r = wb("sweep", "--device", "sim:h100-sxm", *SMALL, "--out", str(tmp_path / "o"),
           env={name: value})  # fmt: skip
    assert f"{name}={value!r}" in one_line_error(r)


@pytest.mark.parametrize("command", [["devices"], ["sweep", "--device", "sim:h100-sxm", *SMALL]])
def test_a_state_folder_that_is_a_file_is_refused(tmp_path, command):
    blocker = tmp_path / "state-file"
    blocker.write_text("")
    r = wb(*command, env={"WATTBENCH_SIM_STATE_DIR": str(blocker)})
    assert "WATTBENCH_SIM_STATE_DIR" in one_line_error(r)


@pytest.mark.parametrize(
    "field, value",
    [
        ("clocks.sm_mhz_max", 1_980_000_000),  # Hz
        ("power.limit_w_max", 700_000),  # mW
        ("power.idle_w", 70_000),  # mW
        ("performance.memory_bandwidth_gbs", 3.35e12),  # B/s
        ("clocks.sm_mhz_maxx", 1980),  # misspelt
    ],
)
def test_spec_values_in_the_wrong_unit_or_misspelt_are_refused(spec_variant, field, value):
    path = spec_variant({field: value})
    line = one_line_error(wb("devices", "--device", f"sim:{path}"))
    assert field in line


def test_rank_by_an_objective_no_run_has_is_refused(tmp_path):
    out = tmp_path / "o"
    assert wb("sweep", "--device", "sim:h100-sxm", *SMALL, *CLOCKS, "--out", str(out),
              "--quiet").returncode == 0  # fmt: skip
    for cmd in (["plot", str(out), "-o", str(tmp_path / "p")], ["compare", str(out)]):
        line = one_line_error(wb(*cmd, "--rank-by", "nope"))
        assert "--rank-by nope" in line and "energy" in line


def test_export_dash_means_standard_output(tmp_path):
    out = tmp_path / "o"
    assert wb("sweep", "--device", "sim:h100-sxm", *SMALL, *CLOCKS, "--out", str(out),
              "--quiet").returncode == 0  # fmt: skip
    r = subprocess.run(
        [*CLI, "export", str(out), "-o", "-"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == "wattbench.points/1"
    assert not (tmp_path / "-").exists()


# --- 8. output that told less than it knew ------------------------------------------------------


def test_labels_are_never_cut_and_show_every_knob(tmp_path):
    out = tmp_path / "o"
    r = wb(
        "sweep", "--device", "sim:h100-sxm", *SMALL, "--sm-clocks", "1500",
        "--power-limits", "400,650", "--strategy", "grid", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith(("energy", "edp", "slowdown"))]
    assert rows and all(ln.rstrip().endswith(("W", "]")) for ln in rows), rows
    assert any("SM 1500 MHz, limit " in ln for ln in rows)
    assert "-0.0%" not in r.stdout


def test_ctrl_c_says_where_the_points_are_and_how_to_resume(tmp_path):
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [*CLI, "sweep", "--device",
         "sim:h100-sxm", *SMALL, "--power-limits", "200:700:5", "--strategy", "grid",
         "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        recs = list(out.glob("*.json"))
        if recs and json.loads(recs[0].read_text() or "{}").get("points"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    (path,) = out.glob("*.json")
    assert f"continue with `wattbench sweep --resume {path}`" in err
    assert "interrupted; the GPU was restored" in err


def test_two_memory_clock_series_have_distinct_legend_entries(tmp_path):
    from wattbench.profiler.report.compare import compare_group
    from wattbench.profiler.report.plot import _series
    from wattbench.profiler.report.runs import group_runs, load_runs

    spec = Path(__file__).parent / "specs" / "l4-two-memory-clocks.toml"
    out = tmp_path / "o"
    r = wb("sweep", "--device", f"sim:{spec}", "--kernel", "matmul", "--shape", "1x4096x4096",
           "--dtype", "bf16", "--mem-clocks", "all", "--sm-clocks", "every:12", "--strategy",
           "grid", "--out", str(out), "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (group,) = group_runs(load_runs([out]))
    labels = [label for s in _series(group, compare_group(group)) for label, _, _ in s.lines()]
    assert len(labels) == 2 and len(set(labels)) == 2
    assert all("memory" in label for label in labels)


# --- 9. set-up: user output stays out of the checkout -------------------------------------------


def test_runs_go_to_the_default_folder_not_the_working_directory(tmp_path):
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    r = subprocess.run(
        [*CLI, "sweep", "--device",
         "sim:h100-sxm", *SMALL, *CLOCKS, "--quiet"],
        cwd=cwd, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert list(cwd.iterdir()) == []
    default = Path(os.environ["WATTBENCH_RESULTS_DIR"])
    assert len(list(default.glob("*.json"))) == 1
    c = subprocess.run(
        [*CLI, "compare"],
        cwd=cwd, capture_output=True, text=True,
    )  # fmt: skip
    assert c.returncode == 0, c.stderr


# --- fuzz: numeric options and shapes never give a traceback or a hang ---------------------------

NUMBER_TEXT = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet="0123456789.-+eE x,:", max_size=12),
)
SHAPE_TEXT = st.one_of(
    st.lists(st.integers(-5, 10**12), min_size=1, max_size=4).map(lambda v: "x".join(map(str, v))),
    st.text(alphabet="0123456789xX,@ -abcl", max_size=20),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    option=st.sampled_from(["--spread", "--max-trials", "--min-window-s", "--sm-clocks",
                            "--power-limits"]),
    value=NUMBER_TEXT,
    shape=SHAPE_TEXT,
)  # fmt: skip
def test_fuzz_sweep_options_and_shapes(tmp_path, capsys, option, value, shape):
    """In process, observe-only where a space is not asked for (one point): every outcome is a
    return code 0/1/2 or argparse's exit 2 -- never an exception -- within bounded time."""
    argv = ["sweep", "--device", "sim:h100-sxm", "--kernel", "matmul", "--shape", shape,
            "--dtype", "bf16", option, value, "--max-trials", "2", "--quiet",
            "--out", str(tmp_path / "o")]  # fmt: skip
    if option == "--max-trials":
        argv = argv[:-5] + argv[-3:]
    t0 = time.monotonic()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 1, 2), err
    assert "Traceback" not in err
    if code != 0:
        assert err.strip().splitlines()[-1].startswith("wattbench: error: "), err
    assert time.monotonic() - t0 < 60
