"""`wattbench fleet report`: a year of a fleet's use, with and without the points. The
arithmetic is checked against a case computed by hand."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import wb
from wattbench.profiler.errors import UsageError
from wattbench.profiler.fleet import report as rep


def _group(problem, power_w, saving, slowdown, units=4):
    return {
        "gpu_name": "G", "simulated": True, "problem": problem, "objective": "energy",
        "units_total": units, "units_measured": units, "model_point": {"key": "sm=1410"},
        "baseline": {"time_s": 1e-3, "energy_j": power_w * 1e-3, "power_w": power_w},
        "saving_rel": {"min": 0, "median": saving, "max": 1},
        "slowdown_rel": {"min": 0, "median": slowdown, "max": 1},
    }  # fmt: skip


AGGREGATE = {
    "run_id": "r",
    "policy": "median",
    "groups": [_group("a", 500.0, 0.20, 0.10), _group("b", 400.0, 0.10, 0.05)],
}


def test_a_year_of_use_computed_by_hand():
    use = rep.FleetUse(
        objective="energy", utilisation=0.5, gpus={"G": 100}, mix={"a": 0.25, "b": 0.75},
        price_per_kwh=0.2, pue=1.5, intensity_g_per_kwh=300.0, renewable_share=0.4,
    )  # fmt: skip
    doc = rep.report(AGGREGATE, use)
    a, b = doc["rows"]
    # a: 8760 h x 0.5 x 100 GPUs x 0.25 = 109,500 GPU-h at 500 W = 54,750 kWh
    assert a["gpu_hours_default"] == pytest.approx(109_500)
    assert a["energy_kwh_default"] == pytest.approx(54_750)
    assert a["energy_kwh_points"] == pytest.approx(54_750 * 0.8)  # saves 20%
    assert a["gpu_hours_extra"] == pytest.approx(10_950)  # 10% slower
    # facility energy saved: 10,950 kWh x PUE 1.5 = 16,425 kWh; x 0.2 = 3,285;
    # carbon: 16,425 x 300 g x (1 - 0.4) = 2,956.5 kg
    assert a["facility_kwh_saved"] == pytest.approx(16_425)
    assert a["cost_saved"] == pytest.approx(3_285)
    assert a["carbon_kg_saved"] == pytest.approx(2_956.5)
    # b: 328,500 GPU-h at 400 W = 131,400 kWh; saves 13,140 kWh -> 19,710 facility kWh
    assert b["energy_kwh_default"] == pytest.approx(131_400)
    assert b["cost_saved"] == pytest.approx(3_942)
    assert b["carbon_kg_saved"] == pytest.approx(3_547.8)
    assert doc["totals"]["cost_saved"] == pytest.approx(7_227)
    assert doc["totals"]["gpu_hours_extra"] == pytest.approx(10_950 + 16_425)


def test_the_hourly_intensity_file_counts_by_its_mean(tmp_path):
    csv = tmp_path / "grid.csv"
    csv.write_text("hour,g_per_kwh\n" + "\n".join(f"{h},{100 + h % 2 * 200}" for h in range(24)))
    assert rep.mean_intensity(csv) == pytest.approx(200)
    with pytest.raises(UsageError):
        rep.mean_intensity(tmp_path / "none.csv")


@pytest.mark.parametrize(
    "bad",
    [
        {"utilisation": 0.0},
        {"pue": 0.9},
        {"renewable_share": 1.5},
        {"mix": {"a": 0.5, "b": 0.6}},
        {"mix": {"zzz": 1.0}},
        {"objective": "edp"},
    ],
)
def test_a_use_that_cannot_be_is_refused(bad):
    with pytest.raises(UsageError):
        rep.report(AGGREGATE, rep.FleetUse(**{"objective": "energy", **bad}))


def test_the_report_command_prints_and_plots_a_fleet_run(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'schema = "wattbench.fleet-plan/1"\nrun_id = "rep"\nresults = "{tmp_path}/results"\n'
        'devices = "sim:2xh100-sxm"\n[sweep]\nstrategy = "grid"\nsm_clocks = "1980,1410"\n'
        'objectives = ["energy"]\n'
        '[[problems]]\nkernel = "matmul"\nshape = "4096x4096x4096"\ndtype = "bf16"\n'
    )
    assert wb("fleet", "node", str(plan)).returncode == 0
    png = tmp_path / "year.png"
    r = wb("fleet", "report", str(plan), "--objective", "energy", "--gpus",
           "NVIDIA H100 80GB HBM3=1000", "--plot", str(png))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "SIMULATED" in r.stdout and "1000" in r.stdout and png.stat().st_size > 10_000
    doc = json.loads(wb("fleet", "report", str(plan), "--objective", "energy", "--json").stdout)
    assert doc["schema"] == "wattbench.fleet-report/1" and doc["rows"][0]["gpus"] == 2
    bad = wb("fleet", "report", str(plan), "--mix", "nonsense")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
