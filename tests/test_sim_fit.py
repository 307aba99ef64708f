"""`wattbench sim fit`: a spec fitted from sweep records and an acceptance run's sensor trace.
Made on a simulated GPU whose spec differs from the built-in one in every fitted field, the fit
starting from the built-in spec must recover the truth."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources

import pytest

from tests.cli_run import wb
from wattbench.profiler.sim.spec import load_file

TRUTH = {  # field line in the built-in h100-sxm spec -> the truth's value
    r"^key = \"h100-sxm\"": 'key = "h100-truth"',
    r"^dynamic_w = 1140 ": "dynamic_w = 1000 ",
    r"^exponent = 2.0 ": "exponent = 2.6 ",
    r"^compute_efficiency = 0.89": "compute_efficiency = 0.80",
    r"^update_period_s = 0.1 ": "update_period_s = 0.05 ",
    r"^power_average_s = 1.0 ": "power_average_s = 0.5 ",
    r"^ambient_c = 33 ": "ambient_c = 28 ",
    r"^time_constant_s = 1.0": "time_constant_s = 2.0",
    r"^idle_w = 70 ": "idle_w = 80 ",
    r"^data_dynamic_fraction = 0.33 ": "data_dynamic_fraction = 0.20 ",
}


def test_the_fit_recovers_a_known_spec(tmp_path):
    text = (resources.files("wattbench.profiler.sim") / "specs" / "h100-sxm.toml").read_text()
    for pattern, line in TRUTH.items():
        text, n = re.subn(pattern, line, text, flags=re.M)
        assert n == 1, pattern
    truth_path = tmp_path / "truth.toml"
    truth_path.write_text(text)
    truth = load_file(truth_path)
    dev = f"sim:{truth_path}"
    r = wb("sweep", "--device", dev, "--kernel", "matmul", "--shape", "8192x8192x8192",
           "--dtype", "bf16", "--strategy", "grid", "--sm-clocks", "every:3",
           "--out", str(tmp_path / "runs"), "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    # the fit reads the sensor trace; the configs step (every Triton config compiled, minutes on
    # two cores) is tests/kernels/test_compile_sm90.py's
    v = wb("validate", "--dry-run", "--device", dev, "--out", str(tmp_path / "val"),
           "--skip", "configs", timeout=600)  # fmt: skip
    assert v.returncode == 0, v.stdout + v.stderr
    out = tmp_path / "fitted.toml"
    f = wb("sim", "fit", str(tmp_path / "runs"), "--sensors", str(tmp_path / "val"),
           "--base", "h100-sxm", "-o", str(out), "--json")  # fmt: skip
    assert f.returncode == 0, f.stderr
    doc = json.loads(f.stdout)
    fitted = load_file(out)  # a spec the simulator loads
    assert fitted.performance.compute_efficiency == pytest.approx(0.80, abs=0.01)
    assert fitted.power.idle_w == pytest.approx(80, abs=1)
    assert fitted.power.data_dynamic_fraction == pytest.approx(0.20, abs=0.03)
    assert fitted.power.dynamic_w == pytest.approx(1000, rel=0.03)
    assert fitted.voltage.exponent == pytest.approx(2.6, abs=0.1)
    assert fitted.sensors.update_period_s == pytest.approx(0.05, rel=0.1)
    assert fitted.sensors.power_average_s == pytest.approx(0.5, abs=0.1)
    assert fitted.thermal.ambient_c == pytest.approx(28, abs=2)
    r_total = truth.thermal.resistance_c_per_w
    assert fitted.thermal.resistance_c_per_w == pytest.approx(r_total, rel=0.1)
    assert fitted.thermal.poles[-1].time_constant_s == pytest.approx(2.0, rel=0.3)
    base_rms = max(abs(p["base_power_rel"]) for p in doc["points"])
    fit_rms = max(abs(p["fitted_power_rel"]) for p in doc["points"])
    assert fit_rms < 0.01 < base_rms  # the fitted spec reproduces the points, the base did not
    again = wb("sim", "fit", str(tmp_path / "runs"), "-o", str(out))
    assert again.returncode == 2 and "exists" in again.stderr


def test_too_few_points_is_one_line(tmp_path):
    r = wb("sweep", "--device", "sim:h100-sxm", "--kernel", "matmul", "--shape", "4096x4096x4096",
           "--dtype", "bf16", "--strategy", "grid", "--sm-clocks", "1980,1410",
           "--out", str(tmp_path / "runs"), "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    f = wb("sim", "fit", str(tmp_path / "runs"), "-o", str(tmp_path / "x.toml"))
    assert f.returncode == 2 and len(f.stderr.splitlines()) == 1
    assert "usable points" in f.stderr


def _data_trace(tmp_path, limit_w: int) -> tuple[dict, object]:
    """A zeros-vs-random trace on a simulated H100 (nominal unit) whose truth has data share
    0.20 and a power limit of ``limit_w``, and the truth's spec."""
    from wattbench.kernels.costs import make_problem, work_of
    from wattbench.profiler.device import open_device
    from wattbench.profiler.sweep.session import make_runner
    from wattbench.profiler.validate import sensors

    text = (resources.files("wattbench.profiler.sim") / "specs" / "h100-sxm.toml").read_text()
    for pattern, line in {
        r"^key = \"h100-sxm\"": f'key = "h100-data-{limit_w}"',
        r"^data_dynamic_fraction = 0.33 ": "data_dynamic_fraction = 0.20 ",
        r"^limit_w_max = 700": f"limit_w_max = {limit_w}",
        r"^limit_w_default = 700": f"limit_w_default = {limit_w}",
        # the nominal unit: the fit's model is the spec's chip (sim fit fits the unit's power
        # from its sweep records before this share)
        r"^leakage_rel_sd = 0.35": "leakage_rel_sd = 0",
        r"^voltage_sd_v = 0.015": "voltage_sd_v = 0",
    }.items():
        text, n = re.subn(pattern, line, text, flags=re.M)
        assert n == 1, pattern
    path = tmp_path / f"truth-{limit_w}.toml"
    path.write_text(text)
    device = open_device(f"sim:{path}", observe_only=True)
    problem = make_problem("matmul", "8192x8192x8192", "bf16", "vendor")
    runner, clock = make_runner(device, problem)
    zeros, _ = make_runner(device, problem, data="zeros")
    runner.run(1)
    zeros.run(1)
    samples = sensors.data_trace(device, {"random": runner, "zeros": zeros}, clock)
    trace = {"work": work_of(problem).to_json(), "data_samples": [s.__dict__ for s in samples]}
    return trace, load_file(path)


@pytest.mark.parametrize(("limit_w", "regime"), [(700, "power cap"), (1500, "same clock")])
def test_the_data_share_is_recovered_capped_and_uncapped(tmp_path, monkeypatch, limit_w, regime):
    """At the cap the zeros phase runs faster at the same power (the share comes from the clock
    step); with the cap out of reach both run at the top clock and the power difference is the
    data's. The base differs from the truth only in the share (0.33)."""
    from wattbench.profiler.validate import fit as fitting

    monkeypatch.setenv("WATTBENCH_SIM_STATE_DIR", str(tmp_path / "state"))
    trace, truth = _data_trace(tmp_path, limit_w)
    raw = copy.deepcopy(truth.raw)
    raw["power"]["data_dynamic_fraction"] = 0.33
    got, skipped = {}, {}
    fitting._fit_data(trace, raw, "test", lambda p, v, how: got.update({p: (v, how)}),
                      lambda p, why: skipped.update({p: why}))  # fmt: skip
    assert not skipped, skipped
    value, how = got["power.data_dynamic_fraction"]
    assert value == pytest.approx(0.20, abs=0.03) and regime in how


def test_a_data_share_the_rest_of_the_model_cannot_carry_is_not_fitted(tmp_path, monkeypatch):
    from wattbench.profiler.validate import fit as fitting

    monkeypatch.setenv("WATTBENCH_SIM_STATE_DIR", str(tmp_path / "state"))
    trace, truth = _data_trace(tmp_path, 1500)
    raw = copy.deepcopy(truth.raw)
    raw["power"]["dynamic_w"] = truth.power.dynamic_w / 2  # the model far below the measurement
    got, skipped = {}, {}
    fitting._fit_data(trace, raw, "test", lambda p, v, how: got.update({p: v}),
                      lambda p, why: skipped.update({p: why}))  # fmt: skip
    assert not got
    assert "fit the power model first" in skipped["power.data_dynamic_fraction"]
    old = {"work": trace["work"]}  # a trace from before the zeros phase
    fitting._fit_data(old, raw, "test", lambda *a: None, lambda p, why: skipped.update({p: why}))
    assert "no zeros phase" in skipped["power.data_dynamic_fraction"]
