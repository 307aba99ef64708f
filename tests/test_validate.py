"""`wattbench validate`: the acceptance run's flow, rehearsed here with --dry-run (a simulated GPU
answers NVML, kernels run in Triton's interpreter), its budget, journal and resume. The GPU
steps' timing needs CUDA and runs only on a GPU; here they must say what they would measure."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import wb
from wattbench.kernels.timing import GRAPH_MAX_LAUNCHES, graph_size
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.validate.steps import Budget, Journal, Step, run_steps
from wattbench.profiler.validate.targets import TARGETS

H100 = sim_spec.load_builtin("h100-sxm")


def _steps(folder):
    return [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]


def test_the_dry_run_runs_every_step_and_says_what_a_gpu_adds(tmp_path):
    out = tmp_path / "v"
    # the configs step compiles every Triton config (minutes on 2 cores): test_compile_sm90.py
    r = wb("validate", "--dry-run", "--out", str(out), "--skip", "configs", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "DRY RUN" in r.stdout and "SIMULATED" in r.stdout
    steps = {s["key"]: s for s in _steps(out)}
    assert steps["configs"]["status"] == "skipped" and "--skip" in steps["configs"]["summary"]
    assert steps["provenance"]["status"] == "info"
    # the interpreter's one config per autotuner, forced and checked at one shape per dtype
    assert steps["config-checks"]["status"] == "pass", steps["config-checks"]
    rows = json.loads((out / "config-checks.json").read_text())
    assert all(r["status"] == "pass" for r in rows)
    # every family with an autotuned Triton kernel at its smallest shape (the W4A16 GEMV at M = 3
    # is not autotuned); each (impl, dtype) once
    assert {r["family"] for r in rows} == {"matmul", "prefill", "prefill-full", "decode", "w8a8"}
    assert len({(r["family"], r["impl"], r["dtype"]) for r in rows}) == len(rows)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["simulated"] is True and prov["versions"]["wattbench"]
    checks = [s for k, s in steps.items() if k.startswith("correctness:")]
    assert len(checks) == 21 and all(s["status"] == "pass" for s in checks)
    for key in ("bandwidth", "anchor", *(f"target:{t.key}" for t in TARGETS)):
        assert steps[key]["status"] == "unavailable"
        assert steps[key]["summary"].startswith("needs a GPU: ")
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["dry_run"] and len(verdict["targets"]) == len(TARGETS)
    assert all(t["ratio"] is None for t in verdict["targets"])  # nothing claimed unmeasured
    assert "not measured: needs a GPU" in (out / "verdict.md").read_text()
    # the sensor step on the simulated H100 recovers the spec's sensor behaviour
    figures = steps["sensors"]["figures"]
    period = H100.sensors.energy_counter_period_s
    assert figures["counter_period_s"] == pytest.approx(period, rel=0.1)
    assert figures["usage_to_counter"] == pytest.approx(1.0, abs=0.02)
    assert figures["rise_s"]["usage"] > figures["rise_s"]["counter"]  # an average lags
    assert figures["temperature_rise_c"] > 0
    # zeros toggle fewer bits: at the simulated H100's 700 W cap (8192^3 bf16 holds it) the
    # saving goes into clock, not power
    data = figures["data"]
    assert data["zeros_to_random"] == pytest.approx(1.0, abs=0.02)
    assert data["zeros_to_random_sm_mhz"] > 1.05
    assert "zeros / random power" in steps["sensors"]["summary"]


def test_a_short_budget_skips_what_does_not_fit_and_resume_runs_only_the_rest(tmp_path):
    out = tmp_path / "v"
    skip = ("--skip", "configs")
    r = wb("validate", "--dry-run", "--out", str(out), "--budget-s", "12", *skip, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    first = {s["key"]: s for s in _steps(out)}
    skipped = [k for k, s in first.items() if s["status"] == "skipped"]
    over = [k for k in skipped if k != "configs"]  # configs: left out by --skip
    assert over and all("--resume" in first[k]["summary"] for k in over)
    assert first["provenance"]["status"] == "info"  # the first priority always fits
    again = wb("validate", "--dry-run", "--out", str(out), "--resume", *skip, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("(kept)") == len(first) - len(skipped)
    final = {s["key"]: s for s in _steps(out)}  # the last line of each key wins
    assert [k for k, s in final.items() if s["status"] == "skipped"] == ["configs"]


def test_without_a_gpu_the_real_run_is_one_line():
    r = wb("validate")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert "no CUDA device" in r.stderr and "--dry-run" in r.stderr


def test_a_failing_step_is_its_outcome_and_a_cut_line_runs_again(tmp_path):
    def boom(ctx):
        raise RuntimeError("kaput\nsecond line")

    steps = [
        Step("a", "a", 0, 0, boom),
        Step("b", "b", 0, 1, lambda ctx: {"status": "pass", "summary": "fine"}),
    ]
    got = run_steps(steps, None, Journal(tmp_path, resume=False), Budget(60))
    assert [g["status"] for g in got] == ["error", "pass"]
    assert got[0]["summary"].startswith("RuntimeError: kaput (") and "\n" not in got[0]["summary"]
    with (tmp_path / "steps.jsonl").open("a") as f:
        f.write('{"key": "c", "status": "pa')  # killed mid-write
    journal = Journal(tmp_path, resume=True)
    assert set(journal.kept) == {"b"}  # the error and the cut line run again


@pytest.mark.parametrize(
    ("one_s", "sets", "want"),
    [(1e-5, 1, 100), (1e-5, 3, 102), (1.0, 1, 1), (1e-9, 1, GRAPH_MAX_LAUNCHES), (1e-9, 7, 1022)],
)
def test_graph_size_lasts_a_millisecond_in_whole_rounds(one_s, sets, want):
    assert graph_size(one_s, sets) == want
