"""The pytest plugin (``profiler/pytest_plugin``), through pytest itself: ``pytester`` runs inner
pytest sessions in this process, with the plugin loaded from its ``pytest11`` entry point and
pytest-benchmark beside it, against simulated GPUs (state in this test's own folder, set by
tests/conftest.py). Nothing is mocked: correctness failures come from a test-only family whose
implementation computes the wrong thing, checked by the real check machinery on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch  # imported before any inner run: see below

from wattbench.kernels.costs import Problem
from wattbench.profiler.errors import DriverNotFoundError, UsageError
from wattbench.profiler.pytest_plugin import fixture as _fixture  # before any inner run
from wattbench.profiler.pytest_plugin.cases import cases, problems
from wattbench.profiler.pytest_plugin.options import parse_objectives, parse_sweep
from wattbench.profiler.sim import spec, state
from wattbench.profiler.store import RunRecord

pytest_plugins = ["pytester"]

# pytester drops from sys.modules what an inner run imported first, and torch does not survive a
# second import into one process (it crashed at the next garbage collection): so torch, which the
# CPU correctness check uses, and the plugin's modules are imported here, before any inner run.

H100 = spec.load_builtin("h100-sxm")
SIM = "--wattbench-device=sim:h100-sxm"

ONE_CASE = """
def test_case(wattbench):
    result = wattbench("matmul", "vendor", "256x256x256", "bf16")
    assert result.run_record.is_file()
"""

# a family for tests only: matmul's inputs, reference and Work, with implementations that compute
# the wrong thing; checked for real on the CPU by the plugin's correctness check
BROKEN_FAMILY = """
import dataclasses

import pytest

from wattbench.kernels import catalog
from wattbench.kernels.family import Impl
from wattbench.kernels.matmul import family as mm


def _five_percent_high(inputs):
    import torch

    a, b, out = inputs["a"], inputs["b"], inputs.out

    def launch():
        torch.matmul(a, b, out=out)
        out.mul_(1.05)

    return launch


def _writes_nothing(inputs):
    return lambda: None


def _impl(name, make_launch):
    return Impl(name=name, description="test only", min_compute_capability={"fp32": (7, 0)},
                make_launch=make_launch, cpu_path="torch")


BROKEN = dataclasses.replace(
    mm.FAMILY,
    name="brokenmul",
    impls=(mm.FAMILY.baseline, _impl("high", _five_percent_high), _impl("idle", _writes_nothing)),
)


@pytest.fixture(autouse=True)
def _broken_family_in_the_catalog(monkeypatch):
    monkeypatch.setattr(catalog, "FAMILIES", (*catalog.FAMILIES, BROKEN))
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # hypothesis's plugin (where installed) imports hypothesis at every inner run's end: ~2 s each
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)


def bench_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def sim_state() -> state.SimState:
    return state.StateFile(state.state_path(H100.key, H100.source, 0)).read()


# --- option parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (None, None),
        ("none", None),
        (["sm=every:8"], {"sm": "every:8"}),
        ("sm=every:4;power=200:700:50", {"sm": "every:4", "power": "200:700:50"}),
        (["sm = 1980,1500 ;", "power=300,500"], {"sm": "1980,1500", "power": "300,500"}),
        ("mem=all;SM=all", {"mem": "all", "sm": "all"}),
    ],
)
def test_sweep_specs(given, parsed):
    assert parse_sweep(given) == parsed


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("every:4", "bad --wattbench-sweep part 'every:4'"),
        ("gpu=all", "knobs: sm, mem, power"),
        ("sm=", "bad --wattbench-sweep part 'sm='"),
        ("sm=all;sm=every:2", "gives sm twice"),
    ],
)
def test_bad_sweep_specs(given, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_sweep(given)


def test_objectives():
    assert parse_objectives(None) is None
    assert [o.name for o in parse_objectives(["energy", "zeus:0.5"])] == ["energy", "zeus:0.5"]
    with pytest.raises(UsageError):
        parse_objectives(["fastest"])


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ("--wattbench-sweep=clocks=all", "bad --wattbench-sweep part 'clocks=all'"),
        ("--wattbench-objective=fastest", "fastest"),
    ],
)
def test_malformed_options_are_one_usage_error(pytester, option, fragment):
    pytester.makepyfile(ONE_CASE)
    r = run(pytester, SIM, option)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([f"ERROR: wattbench: *{fragment}*"])


def test_a_sweep_the_gpu_cannot_do_stops_the_run_once(pytester, tmp_path):
    pytester.makepyfile(ONE_CASE + ONE_CASE.replace("test_case", "test_case_2"))
    r = run(pytester, SIM, "--wattbench-sweep=sm=5000", f"--wattbench-out={tmp_path / 'runs'}")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stdout.fnmatch_lines(["*wattbench: error: SM clock 5000 MHz is not supported*nearest*"])
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_no_device_and_no_gpu_names_the_simulated_choices(pytester):
    try:
        from wattbench.profiler.device import visible_real_indices

        if visible_real_indices():
            pytest.skip("a real GPU is visible: it is the default device here")
    except DriverNotFoundError:
        pass
    pytester.makepyfile(ONE_CASE)
    r = run(pytester)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stdout.fnmatch_lines(
        ["*no --wattbench-device given*sim:a100-pcie, sim:a100-sxm, sim:h100-sxm*"]
    )


# --- inert when unused ---------------------------------------------------------------------------


def test_plugin_is_inert_without_the_fixture(pytester):
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    r = run(pytester, "-v")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["plugins:*wattbench-*"])  # loaded from its entry point
    assert "wattbench:" not in r.stdout.str()  # no header, no summary
    assert not state.state_dir().exists()  # no simulated GPU was ever opened


def test_markers_are_registered(pytester):
    r = run(pytester, "--markers")
    r.stdout.fnmatch_lines(["@pytest.mark.quick:*", "@pytest.mark.full:*"])


# --- a case end to end ---------------------------------------------------------------------------


def test_case_on_a_simulated_gpu_sweep(pytester, tmp_path):
    pytester.makepyfile(ONE_CASE)
    out, runs = tmp_path / "out.json", tmp_path / "runs"
    r = run(
        pytester, SIM, "--wattbench-sweep=sm=1980,1500,1200", "--wattbench-objective=energy",
        f"--wattbench-out={runs}", f"--benchmark-json={out}",
    )  # fmt: skip
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["*1 run record(s) in*", "SIMULATED GPU: no kernel was executed*"])
    doc = bench_json(out)
    gpu = doc["machine_info"]["gpu"]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["simulated"] is True
    assert gpu["uuid"].startswith("GPU-") and gpu["versions"]["wattbench"]
    (bench,) = doc["benchmarks"]
    assert bench["group"] == "matmul-bf16-256x256x256"
    info = bench["extra_info"]
    (record_path,) = runs.glob("*.json")
    record = RunRecord.load(record_path)
    assert info["run_record"] == str(record_path)
    assert record.status == "complete"
    assert record.doc["settings"]["space"]["n_points"] == 4  # baseline + 3 clocks
    baseline = next(m for m in record.points if m.point.is_baseline)
    # the stats are the baseline trials' per-iteration times (virtual clock), in seconds
    stats = bench["stats"]
    assert stats["data"] == pytest.approx([s["time_s"] for s in baseline.samples])
    assert stats["rounds"] == baseline.trials and stats["median"] == pytest.approx(baseline.time_s)
    assert info["simulated"] is True and info["mode"] == "sweep"
    assert info["problem"]["label"] == "matmul-vendor-bf16-256x256x256"
    assert info["energy_j"] == pytest.approx(baseline.energy_j)
    assert info["avg_power_w"] == pytest.approx(baseline.avg_power_w)
    assert info["tflops"] == pytest.approx(baseline.tflops)
    assert info["tflop_per_j"] == pytest.approx(baseline.tflop_per_j)
    assert info["operating_point"]["point_key"] == "sm=default,mem=default,pl=default"
    chosen = record.choices()["energy"].chosen
    assert set(info["optimum"]) == {"energy"}
    assert info["optimum"]["energy"]["point_key"] == chosen.point.key
    assert info["optimum"]["energy"]["energy_j"] == pytest.approx(chosen.energy_j)
    assert info["correctness"]["status"] == "pass" and info["correctness"]["where"] == "cpu"
    assert info["correctness"]["rel_error"] < info["correctness"]["tolerance_rel_fro"]
    assert any("SIMULATED GPU" in n for n in info["notes"])
    # the sweep locked clocks and put them back
    assert sim_state().setter_calls.get("nvmlDeviceSetGpuLockedClocks", 0) >= 1
    assert sim_state().settings.sm_locked_mhz is None
    compare = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stderr
    assert "benchmark 'matmul-bf16-256x256x256'" in compare.stdout and "test_case" in compare.stdout


def test_without_a_sweep_the_gpu_is_measured_as_it_is(pytester, tmp_path):
    pytester.makepyfile(ONE_CASE)
    out = tmp_path / "out.json"
    r = run(pytester, SIM, f"--wattbench-out={tmp_path}", f"--benchmark-json={out}")
    r.assert_outcomes(passed=1)
    info = bench_json(out)["benchmarks"][0]["extra_info"]
    assert info["mode"] == "current-state" and set(info["optimum"]) == {
        "energy", "edp", "slowdown:0.05"
    }  # fmt: skip
    assert RunRecord.load(info["run_record"]).doc["settings"]["space"]["n_points"] == 1
    assert sim_state().setter_calls == {}


@pytest.mark.parametrize("how", ["option", "env"])
def test_observe_only_changes_nothing(pytester, tmp_path, monkeypatch, how):
    pytester.makepyfile(ONE_CASE)
    out = tmp_path / "out.json"
    args = [SIM, "--wattbench-sweep=sm=every:8", f"--wattbench-out={tmp_path}"]
    if how == "option":
        args.append("--wattbench-observe-only")
    else:
        monkeypatch.setenv("WATTBENCH_NO_ACTUATE", "1")
    r = run(pytester, *args, f"--benchmark-json={out}")
    r.assert_outcomes(passed=1)
    info = bench_json(out)["benchmarks"][0]["extra_info"]
    assert info["mode"] == "observe-only"
    assert any("ignoring the requested space" in n for n in info["notes"])
    assert len(RunRecord.load(info["run_record"]).points) == 1
    assert sim_state().setter_calls == {}


def test_benchmark_compare_matches_machine_info(pytester, tmp_path):
    pytester.makepyfile(ONE_CASE)
    common = [SIM, f"--wattbench-out={tmp_path}", f"--benchmark-storage=file://{tmp_path}/b"]
    run(pytester, *common, "--benchmark-autosave").assert_outcomes(passed=1)
    r = run(pytester, *common, "--benchmark-compare", "--benchmark-compare-fail=mean:50%")
    r.assert_outcomes(passed=1)
    assert "Comparing against benchmarks from" in r.stdout.str() + r.stderr.str()
    # the GPU is part of machine_info both when the saved run is loaded and when saving
    assert "machine_info is different" not in r.stdout.str() + r.stderr.str()


def cuda_available() -> bool:
    return torch.cuda.is_available()


@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU (torch sees none here)")
def test_case_on_a_real_gpu_observed(pytester, tmp_path, monkeypatch):
    """The real-GPU path (CUDA-event times, correctness on the GPU), changing nothing."""
    monkeypatch.setenv("WATTBENCH_NO_ACTUATE", "1")
    pytester.makepyfile(ONE_CASE.replace("256x256x256", "2048x2048x2048"))
    out = tmp_path / "out.json"
    r = run(
        pytester, "--wattbench-device=0", f"--wattbench-out={tmp_path}", f"--benchmark-json={out}"
    )
    r.assert_outcomes(passed=1)
    doc = bench_json(out)
    (bench,) = doc["benchmarks"]
    info = bench["extra_info"]
    assert info["simulated"] is False and doc["machine_info"]["gpu"]["simulated"] is False
    assert info["time_source"].startswith("CUDA events")
    assert bench["stats"]["rounds"] == _fixture.TIMING_REPS and bench["stats"]["iterations"] >= 1
    # timed as the energy loop runs it: input sets rotated through, together twice the L2
    assert info["l2"]["policy"] == "rotate" and info["l2"]["covered"]
    batch = bench["stats"]["iterations"]
    assert f"{batch} back-to-back launches; L2 rotate:" in info["time_source"]
    assert info["correctness"]["status"] == "pass"
    assert info["correctness"]["where"].startswith("cuda")
    assert info["energy_j"] > 0 and info["mode"] == "current-state"


def test_a_shared_gpu_is_refused_once_unless_allowed(pytester, tmp_path):
    with state.StateFile(state.state_path(H100.key, H100.source, 0)).locked() as st:
        st.processes = [{"pid": 4242, "used_memory_bytes": 2**30}]
    pytester.makepyfile(ONE_CASE)
    r = run(pytester, SIM, f"--wattbench-out={tmp_path}")
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.stdout.fnmatch_lines(["*1 other process(es) use*pid 4242*--wattbench-allow-shared*"])
    r = run(pytester, SIM, f"--wattbench-out={tmp_path}", "--wattbench-allow-shared")
    r.assert_outcomes(passed=1)


def test_architecture_skips_with_the_reason(pytester, tmp_path):
    pytester.makepyfile(
        "def test_fp8(wattbench):\n    wattbench('matmul', 'vendor', '256x256x256', 'fp8')\n"
    )
    r = run(pytester, "--wattbench-device=sim:a100-sxm", f"--wattbench-out={tmp_path}", "-rs")
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines(["*fp8 needs compute capability >= 8.9 (simulated *A100*: 8.0)*"])


def test_a_wrong_result_fails_the_test_with_the_error_figure(pytester, tmp_path):
    pytester.makeconftest(BROKEN_FAMILY)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("impl", ["vendor", "high", "idle"])
        def test_case(wattbench, impl):
            wattbench("brokenmul", impl, "64x48x32", "fp32")
        """
    )
    out, runs = tmp_path / "out.json", tmp_path / "runs"
    r = run(pytester, SIM, f"--wattbench-out={runs}", f"--benchmark-json={out}")
    r.assert_outcomes(passed=1, failed=2)
    r.stdout.fnmatch_lines(
        [
            "*brokenmul-high-fp32-64x48x32: relative Frobenius error 0.05 exceeds the tolerance "
            "1e-05 (float64 reference on cpu, kernel on cpu)*",
            "*brokenmul-idle-fp32-64x48x32: relative Frobenius error nan exceeds*",
        ]
    )
    # failed cases are neither measured nor in pytest-benchmark's JSON
    (bench,) = bench_json(out)["benchmarks"]
    assert bench["extra_info"]["problem"]["impl"] == "vendor"
    assert len(list(runs.glob("*.json"))) == 1


def test_benchmark_disable_checks_without_measuring(pytester, tmp_path):
    pytester.makeconftest(BROKEN_FAMILY)
    pytester.makepyfile(
        "def test_case(wattbench):\n    wattbench('brokenmul', 'high', '64x48x32', 'fp32')\n"
    )
    r = run(pytester, SIM, f"--wattbench-out={tmp_path / 'runs'}", "--benchmark-disable")
    r.assert_outcomes(failed=1)
    assert not (tmp_path / "runs").exists()


# --- suite parametrisation -----------------------------------------------------------------------


def test_cases_have_readable_ids_and_markers():
    quick = problems("matmul", ["8192x8192x8192"], dtypes=["bf16"], impls=["triton"])
    full = problems("matmul", ["odd"], dtypes=["fp16"])
    params = cases(full, quick)
    by_id = {p.id: p for p in params}
    first = params[0]
    assert first.id == "matmul-triton-bf16-8192x8192x8192"
    assert {m.name for m in first.marks} == {"quick", "full"}
    assert first.values == (Problem("matmul", "triton", (8192, 8192, 8192), "bf16"),)
    assert {m.name for m in by_id["matmul-vendor-fp16-67x45x93"].marks} == {"full"}
    # only the (impl, dtype) pairs an implementation declares: no tf32 cupy, no fp8 cublas-cupy
    assert all(p.values[0].dtype in ("fp16", "bf16") for p in params)
    impls = {p.values[0].impl for p in params if p.values[0].dtype == "fp16"}
    assert impls == {"vendor", "triton", "cupy", "cublas-cupy"}
    assert len(params) == len(by_id) == 1 + 3 * 4
