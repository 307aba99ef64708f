"""The verify pass of a fleet run (profiler/fleet/verify.py): after adaptive sweeps, whose units
measure different points, the aggregation lists every unit's chosen points as candidates, the
node agent run again measures them on every unit, and the model point is then chosen from
what every unit measured back to back. Real node agents, subprocesses and files throughout."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import wb
from tests.test_fleet_node import gpu_records
from wattbench.profiler.fleet import slurm, verify
from wattbench.profiler.fleet.plan import load_plan
from wattbench.profiler.measure.types import OperatingPoint
from wattbench.profiler.report.runs import newest_complete
from wattbench.profiler.sweep.session import resume_request

PLAN = """\
schema = "wattbench.fleet-plan/1"
run_id = "{run_id}"
results = "{results}"
devices = "sim:4xh100-sxm"

[sweep]
strategy = "{strategy}"
objectives = ["energy", "slowdown:0.05"]
{extra}
[[problems]]
kernel = "matmul"
shape = "4096x4096x4096"
dtype = "bf16"
"""


def write_plan(tmp_path, run_id="verify-1", extra="", strategy="adaptive"):
    path = tmp_path / f"{run_id}.toml"
    results = tmp_path / "results"
    path.write_text(PLAN.format(run_id=run_id, results=results, extra=extra, strategy=strategy))
    return path


def test_the_candidates_are_measured_on_every_unit_and_choose_the_model_point(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("WATTBENCH_SIM_UNIT_VARIATION")  # four distinct units
    plan_path = write_plan(tmp_path)
    plan = load_plan(plan_path)
    assert plan.verify  # on by default for the adaptive search
    root = tmp_path / "results" / "verify-1"

    first = wb("fleet", "node", str(plan_path))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "verify pass" not in first.stdout  # no candidates listed yet
    agg = wb("fleet", "aggregate", str(plan_path))
    assert agg.returncode == 0, agg.stderr
    assert "verify pass pending: 0/4 units" in agg.stdout and "verify.json" in agg.stdout
    sweeps = [recs[0] for recs in gpu_records(tmp_path, "verify-1").values()]
    chosen = {c.chosen.point.key for r in sweeps for c in r.choices().values()}
    chosen.discard(OperatingPoint().key)
    listed = json.loads((root / "verify.json").read_text())
    assert listed["schema"] == verify.SCHEMA and len(listed["groups"]) == 1
    assert {p["key"] for p in listed["groups"][0]["points"]} == chosen
    status = wb("fleet", "status", str(plan_path))
    assert status.returncode == 1 and status.stdout.count("(to verify)") == 4

    second = wb("fleet", "node", str(plan_path))
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("1 skipped; verify pass: 1 complete") == 4
    records = gpu_records(tmp_path, "verify-1")
    for recs in records.values():
        assert [r.purpose for r in recs] == ["sweep", "verify"]
        check = recs[1]
        assert check.status == "complete"
        assert {m.point.key for m in check.points} == chosen | {OperatingPoint().key}
        assert newest_complete(recs)[0] is recs[0]  # compare / export keep the sweep

    doc = json.loads(wb("fleet", "aggregate", str(plan_path), "--json").stdout)
    for g in doc["groups"]:
        assert g["model_point_from"] == "verify" and g["note"] is None
        assert g["verify"]["units_verified"] == 4 and g["units_measured"] == 4
        assert g["model_point"]["key"] in chosen
        assert all(u["saving_rel_at_model_point"] is not None for u in g["units"])
    assert wb("fleet", "status", str(plan_path)).returncode == 0

    third = wb("fleet", "node", str(plan_path))
    assert third.returncode == 0 and third.stdout.count("verify pass: 1 skipped") == 4
    again = gpu_records(tmp_path, "verify-1")
    assert {u: [r.path for r in v] for u, v in again.items()} == {
        u: [r.path for r in v] for u, v in records.items()
    }


def test_a_verify_record_resumes_with_its_own_points(tmp_path):
    """A verify record names its points (strategy.points, purpose verify); resuming it asks for
    exactly those, whatever the plan's space says."""
    from wattbench.kernels.costs import make_problem
    from wattbench.profiler.device import open_device
    from wattbench.profiler.sweep.session import SweepRequest, sweep_problem

    points = (OperatingPoint(sm_mhz=1410), OperatingPoint(sm_mhz=1005, power_limit_w=500.0))
    request = SweepRequest(strategy="adaptive", sm="every:4", points=points)
    problem = make_problem("matmul", "4096x4096x4096", "bf16", "vendor")
    out = sweep_problem(open_device("sim:h100-sxm"), problem, request, out_dir=tmp_path / "runs")
    rec = out.record
    assert rec.purpose == "verify" and rec.status == "complete"
    assert [m.point for m in rec.points] == [OperatingPoint(), *points]
    assert rec.doc["settings"]["strategy"]["strategy"] == "grid"
    _, _, again = resume_request(rec)
    assert again.points == points and again.purpose == "verify"


def test_slurm_submits_the_verify_pass_after_the_aggregation(tmp_path):
    """With a verify pass, every node's job runs again after the aggregation job (which lists
    the candidates), and a final aggregation follows them (scripts only; nothing submitted)."""
    plan = load_plan(write_plan(tmp_path))
    result = slurm.plan_submission(plan, {"n1": 4, "n2": 4}, slurm.SlurmOptions())
    assert [j.node for j in result.jobs] == ["n1", "n2"]
    assert [j.node for j in result.verify_jobs] == ["n1", "n2"]
    assert result.aggregate is not None and result.final is not None
    script = result.aggregate.script
    assert script.index(" aggregate ") < script.index(" status ")  # candidates first
    grid = load_plan(write_plan(tmp_path, "verify-2", strategy="grid"))
    assert not slurm.plan_submission(grid, {"n1": 4}, slurm.SlurmOptions()).verify_jobs


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("sm=1410,mem=default,pl=default", True),
        ("sm=default,mem=1593,pl=412.5", True),
        ("sm=default,mem=default,pl=default", True),
        ("sm=1410", False),
        ("sm=14x0,mem=default,pl=default", False),
        ("pl=300,sm=1410,mem=default", False),
    ],
)
def test_operating_point_keys_read_back(key, ok):
    if ok:
        assert OperatingPoint.from_key(key).key == key
    else:
        with pytest.raises(ValueError):
            OperatingPoint.from_key(key)


def test_a_bad_verify_value_is_one_line(tmp_path):
    plan = write_plan(tmp_path, extra='verify = "yes"\n')
    r = wb("fleet", "node", str(plan))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert "sweep.verify" in r.stderr and "true or false" in r.stderr
