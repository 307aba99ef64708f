"""Every row of the bad-input list: one clear line, the right exit code (2 usage, 1 runtime), no
traceback, nothing changed on the GPU. Each case runs ``wattbench`` as a real subprocess against
a simulated H100.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_run import wb

from wattbench.profiler.sim import spec, state
from wattbench.profiler.store.points import POINTS_SCHEMA

H100 = spec.load_builtin("h100-sxm")
SIM = ["--device", "sim:h100-sxm"]
PROBLEM = ["--kernel", "matmul", "--shape", "256x256x256", "--dtype", "bf16"]


def assert_one_error(r: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("wattbench: error:")]
    assert len(errors) == 1, r.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def no_setter_called() -> bool:
    return state.StateFile(state.state_path(H100.key, H100.source, 0)).read().setter_calls == {}


CASES = {
    "unknown device": (
        ["sweep", "--device", "sim:h999", *PROBLEM],
        2,
        ["no built-in simulated GPU named 'h999'", "sim:h100-sxm"],
    ),
    "unknown device index": (
        ["sweep", "--device", "GPU-ffffffff", *PROBLEM],
        2,
        ["no GPU with UUID GPU-ffffffff", "wattbench devices"],
    ),
    "unsupported SM clock": (
        ["sweep", *SIM, *PROBLEM, "--sm-clocks", "1501"],
        2,
        ["SM clock 1501 MHz is not supported", "nearest supported: 1500 or 1515 MHz"],
    ),
    "unsupported memory clock": (
        ["sweep", *SIM, *PROBLEM, "--mem-clocks", "1234"],
        2,
        ["memory clock 1234 MHz is not supported", "nearest supported: 2619 MHz"],
    ),
    "power limit out of range (sweep)": (
        ["sweep", *SIM, *PROBLEM, "--power-limits", "50"],
        2,
        ["power limit 50 W is out of range", "choose 200-700 W"],
    ),
    "power limit out of range (apply)": (
        ["apply", *SIM, "--power-limit-w", "900"],
        2,
        ["power limit 900 W is out of range", "choose 200-700 W"],
    ),
    "unsupported SM clock (apply)": (
        ["apply", *SIM, "--sm-mhz", "1501"],
        2,
        ["SM clock 1501 MHz is not supported", "nearest supported: 1500 or 1515 MHz"],
    ),
    "unknown kernel": (
        ["sweep", *SIM, "--kernel", "conv", "--shape", "8x8x8", "--dtype", "bf16"],
        2,
        ["unknown kernel 'conv'", "matmul"],
    ),
    "unknown implementation": (
        ["sweep", *SIM, *PROBLEM, "--impl", "handwritten-asm"],
        2,
        ["no implementation 'handwritten-asm'", "vendor"],
    ),
    "unknown dtype": (
        ["sweep", *SIM, "--kernel", "matmul", "--shape", "8x8x8", "--dtype", "fp12"],
        2,
        ["no dtype 'fp12'", "bf16"],
    ),
    "malformed shape": (
        ["sweep", *SIM, "--kernel", "matmul", "--shape", "64x64", "--dtype", "bf16"],
        2,
        ["malformed matmul shape '64x64'", "MxNxK"],
    ),
    "zero dimension": (
        ["sweep", *SIM, "--kernel", "matmul", "--shape", "0x64x64", "--dtype", "bf16"],
        2,
        ["0x64x64"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument(case):
    args, code, fragments = CASES[case]
    assert_one_error(wb(*args), code, *fragments)
    assert no_setter_called()


def test_malformed_spec_file_names_the_field(spec_variant):
    path = spec_variant({"power.idle_w": None})
    line = assert_one_error(wb("sweep", "--device", f"sim:{path}", *PROBLEM), 2, "idle_w")
    assert str(path) in line or path.name in line


def test_spec_file_with_a_wrong_value_names_the_field(spec_variant):
    path = spec_variant({"power.limit_w_default": "lots"})
    assert_one_error(wb("sweep", "--device", f"sim:{path}", *PROBLEM), 2, "limit_w_default")


def test_corrupt_result_file(tmp_path):
    run = tmp_path / "run.json"
    run.write_text('{"schema": "wattbench.run/1", "points": [', encoding="utf-8")
    assert_one_error(wb("sweep", "--resume", str(run)), 2, "not valid JSON", str(run))


def test_result_file_of_another_schema_version(tmp_path):
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"schema": "wattbench.run/99", "points": []}), encoding="utf-8")
    assert_one_error(wb("sweep", "--resume", str(run)), 2, str(run), "wattbench.run/99")


def test_corrupt_operating_point_file(tmp_path):
    pts = tmp_path / "points.json"
    pts.write_text("{not json", encoding="utf-8")
    r = wb("apply", *SIM, "--from", str(pts), "--workload", "w")
    assert_one_error(r, 2, f"operating-point file {pts} is not valid JSON")
    assert no_setter_called()


def test_operating_point_file_of_another_schema_version(tmp_path):
    pts = tmp_path / "points.json"
    pts.write_text(json.dumps({"schema": "wattbench.points/7", "points": []}), encoding="utf-8")
    r = wb("apply", *SIM, "--from", str(pts), "--workload", "w")
    assert_one_error(r, 2, "'wattbench.points/7'", POINTS_SCHEMA)


def test_operating_point_file_without_the_workload(tmp_path):
    pts = tmp_path / "points.json"
    entry = {
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "workload": "matmul-vendor-bf16-64x64x64",
        "objective": "energy",
        "sm_mhz": 1500,
        "mem_mhz": None,
        "power_limit_w": None,
    }
    pts.write_text(json.dumps({"schema": POINTS_SCHEMA, "points": [entry]}), encoding="utf-8")
    r = wb("apply", *SIM, "--from", str(pts), "--workload", "attention-x")
    assert_one_error(r, 2, "no workload 'attention-x'", "matmul-vendor-bf16-64x64x64")
    assert no_setter_called()


def test_output_directory_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    r = wb("sweep", *SIM, *PROBLEM, "--out", str(blocker / "results"))
    assert_one_error(r, 2, "output directory", "is not writable", "--out")
    assert no_setter_called()


def test_unreadable_journal(tmp_path):
    jdir = Path(os.environ["WATTBENCH_SIM_STATE_DIR"]) / "journal"
    jdir.mkdir(parents=True)
    # the simulated H100's UUID, as `wattbench devices --json` reports it
    devices = json.loads(wb("devices", "--json", *SIM).stdout)
    uuid = devices["simulated"][0]["uuid"]
    (jdir / f"{uuid}.json").write_text("{garbage", encoding="utf-8")
    r = wb("sweep", *SIM, *PROBLEM, "--sm-clocks", "1980", "--out", str(tmp_path))
    assert_one_error(r, 1, "journal", "is unreadable", "--ignore-journal")
    assert no_setter_called()
    r = wb("reset", *SIM, "--ignore-journal")
    assert r.returncode == 0, r.stderr
    assert not (jdir / f"{uuid}.json").exists()


def test_nothing_to_apply_and_missing_problem():
    assert_one_error(wb("apply", *SIM), 2, "nothing to apply")
    assert_one_error(wb("sweep", *SIM), 2, "missing --kernel, --shape, --dtype")


def test_simulated_point_is_not_applied_to_a_real_gpu():
    # the real-GPU side cannot exist here, so the rule is tested on its own; `apply --from`
    # calls it with the entry's flag and whether the opened device is simulated
    from wattbench.profiler.errors import UsageError
    from wattbench.profiler.safety.apply import check_source

    with pytest.raises(UsageError, match="chosen on a simulated GPU") as info:
        check_source(True, False, "matmul-vendor-bf16-8192x8192x8192")
    assert info.value.exit_code == 2 and "sweep the workload on this GPU" in str(info.value)
    check_source(True, True, "w")  # simulated on simulated: fine
    check_source(False, False, "w")  # measured on real: fine
    check_source(False, True, "w")  # a real point replayed on a simulated GPU: harmless
