"""`wattbench sim fit`: a spec fitted from sweep records and an acceptance run's sensor trace.
Made on a simulated GPU whose spec differs from the built-in one in every fitted field, the fit
starting from the built-in spec must recover the truth."""

from __future__ import annotations

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
