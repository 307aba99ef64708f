"""Per-model points from every unit of a fleet run: the policy's arithmetic checked against an
independent computation over the same records, and outliers."""

from __future__ import annotations

import json
import statistics
from types import SimpleNamespace

import pytest

from tests.cli_run import wb
from wattbench.profiler.fleet import aggregate as agg
from wattbench.profiler.fleet.plan import load_plan
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.select.objectives import find_baseline, parse_objective
from wattbench.profiler.store.header import RecordSettings
from wattbench.profiler.store.points import PointsDocument

PLAN = """\
schema = "wattbench.fleet-plan/1"
run_id = "agg-1"
results = "{results}"
devices = "sim:4xh100-sxm"

[sweep]
strategy = "grid"
sm_clocks = "every:10"
objectives = ["energy", "slowdown:0.05"]

[[problems]]
kernel = "matmul"
shape = "4096x4096x4096"
dtype = "bf16"
"""


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agg")
    plan = tmp / "plan.toml"
    plan.write_text(PLAN.format(results=tmp / "results"))
    env = {"WATTBENCH_SIM_STATE_DIR": str(tmp / "sim"), "WATTBENCH_SIM_UNIT_VARIATION": "1"}
    r = wb("fleet", "node", str(plan), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return plan, env


@pytest.mark.parametrize("policy", ["median", "worst"])
def test_the_model_point_is_the_policys_best_over_every_unit(fleet_run, policy):
    plan_path, _env = fleet_run
    plan = load_plan(plan_path)
    doc = agg.aggregate(plan, policy)
    (energy,) = [g for g in doc["groups"] if g["objective"] == "energy"]
    assert energy["units_measured"] == energy["units_total"] == 4
    groups, _ = agg.collect_units(plan)
    (units,) = groups.values()
    records = [u.record for u in units]
    bases = [find_baseline(r.points) for r in records]
    keys = set.intersection(*({m.point.key for m in r.points} for r in records))
    combine = statistics.median if policy == "median" else max

    def ratio(key):  # the combined energy ratio, computed here independently
        return combine(
            next(m for m in r.points if m.point.key == key).energy_j / b.energy_j
            for r, b in zip(records, bases, strict=True)
        )

    assert energy["model_point"]["key"] == min(keys, key=ratio)
    savings = [u["saving_rel_at_model_point"] for u in energy["units"]]
    assert energy["saving_rel"] == {
        "min": min(savings), "median": statistics.median(savings), "max": max(savings)
    }  # fmt: skip
    assert energy["saving_rel"]["min"] < energy["saving_rel"]["max"]  # the units differ
    (bounded,) = [g for g in doc["groups"] if g["objective"] == "slowdown:0.05"]
    if policy == "worst":  # no unit is slower than the bound at the worst-case point
        assert bounded["slowdown_rel"]["max"] <= 0.05 + 1e-9


def test_the_cli_writes_the_document_and_prints_the_spread(fleet_run):
    plan_path, env = fleet_run
    r = wb("fleet", "aggregate", str(plan_path), env=env)
    assert r.returncode == 0, r.stderr
    assert "4/4 units, model point sm=" in r.stdout and "(min / median / max)" in r.stdout
    doc = json.loads((plan_path.parent / "results" / "agg-1" / "aggregate.json").read_text())
    assert doc["schema"] == "wattbench.fleet-aggregate/1" and doc["policy"] == "median"
    assert wb("fleet", "aggregate", str(plan_path), "--policy", "best", env=env).returncode == 2


def _m(key_mhz, t, e):
    return Measurement(OperatingPoint(sm_mhz=key_mhz), t, e)


def _unit(uuid, ratios):
    points = [_m(None, 1.0, 1.0)] + [_m(f, 1.0 + 0.1 * i, r) for i, (f, r) in enumerate(ratios)]
    settings = RecordSettings.from_json({"measurement": {}, "space": None, "objectives": []})
    record = SimpleNamespace(
        points=points, device=SimpleNamespace(serial=uuid), settings=settings, choices=lambda: {}
    )
    return agg.Unit("h", uuid, record)


def test_a_unit_far_from_the_others_at_the_model_point_is_an_outlier():
    units = [_unit(f"GPU-{i}", [(1410, 0.80 + 0.01 * i)]) for i in range(5)]
    units.append(_unit("GPU-odd", [(1410, 0.99)]))  # saves 1% where the others save ~20%
    g = agg._group("G", True, "p", units, 6, parse_objective("energy"), "median")
    assert g["model_point"]["sm_mhz"] == 1410 and g["units_measured"] == 6
    assert g["outliers"] == ["GPU-odd"]
    assert g["saving_rel"]["min"] == pytest.approx(0.01)


def _export(plan_path, env, *extra):
    r = wb("export", str(plan_path.parent / "results"), *extra, env=env)
    assert r.returncode == 0, r.stderr
    return r


def test_a_model_export_combines_every_unit_not_the_newest_one(fleet_run, tmp_path):
    plan_path, env = fleet_run
    out = tmp_path / "points.json"
    r = _export(plan_path, env, "-o", str(out))
    assert "model point from 4 units" in r.stderr
    doc = PointsDocument.load(out)
    (energy,) = [p for p in doc.points if p.objective == "energy"]
    assert energy.gpu_uuid is None and len(energy.source_runs) == 4
    model = agg.aggregate(load_plan(plan_path), "median")
    (group,) = [g for g in model["groups"] if g["objective"] == "energy"]
    assert energy.sm_mhz == group["model_point"]["sm_mhz"]
    assert energy.expected_energy_saving_rel == pytest.approx(group["saving_rel"]["median"])


def test_a_per_device_export_falls_back_to_the_model_for_an_unknown_unit(fleet_run, tmp_path):
    plan_path, env = fleet_run
    out = tmp_path / "points.json"
    _export(plan_path, env, "--per-device", "-o", str(out))
    doc = PointsDocument.load(out)
    own = [p for p in doc.points if p.gpu_uuid and p.objective == "energy"]
    assert len(own) == 4
    workload, name = own[0].workload, own[0].gpu_name
    assert doc.lookup(name, workload, "energy", gpu_uuid=own[1].gpu_uuid) == own[1]
    fallback = doc.lookup(name, workload, "energy", gpu_uuid="GPU-a-replaced-card")
    assert fallback.gpu_uuid is None and len(fallback.source_runs) == 4
    labels = tmp_path / "k8s"
    _export(plan_path, env, "--per-device", "--format", "k8s", "-o", str(labels))
    texts = [p.read_text() for p in labels.rglob("*label*")]
    assert texts and all('"wattbench.dev/simulated": "true"' in t for t in texts), texts


def test_equal_time_points_cost_a_synchronous_job_no_time_and_least_energy(fleet_run):
    plan_path, _ = fleet_run
    plan = load_plan(plan_path)
    (g,) = [x for x in agg.aggregate(plan)["groups"] if x["objective"] == "energy"]
    (units,) = agg.collect_units(plan)[0].values()
    key = g["model_point"]["key"]
    pace = max(next(m for m in u.record.points if m.point.key == key).time_s for u in units)
    assert g["equal_time_s"] == pytest.approx(pace)
    for u, entry in zip(units, g["units"], strict=True):
        fits = [m for m in u.record.points if m.time_s <= pace * (1 + 1e-9)]
        best = min(fits, key=lambda m: (m.energy_j, m.time_s))
        assert entry["equal_time_point"]["key"] == best.point.key
        assert entry["equal_time_saving_rel"] >= entry["saving_rel_at_model_point"] - 1e-12


def test_compare_and_plot_show_how_far_the_units_of_a_model_differ(fleet_run, tmp_path):
    plan_path, env = fleet_run
    tree = str(plan_path.parent / "results")
    r = wb("compare", tree, env=env)
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stdout.splitlines() if "4 units, baseline TFLOP/J" in x]
    assert "apart), energy saving" in line
    out = tmp_path / "plots"
    r = wb("plot", tree, "--kind", "spread", "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    (png,) = out.glob("*-spread.png")
    assert png.stat().st_size > 10_000
