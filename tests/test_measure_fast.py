"""The fast measurement's parts: standard-error stopping, drift, the thermal fit and correction,
and a fast sweep end to end on a simulated GPU (the real measurement path, noise on)."""

from __future__ import annotations

import json
import math
import random

import pytest

from wattbench.kernels.costs import make_problem, work_of
from wattbench.profiler.cli.main import main
from wattbench.profiler.measure.criteria import Drift, StandardErrorTarget
from wattbench.profiler.measure.thermal import (
    ThermalFit,
    ThermalModel,
    WindowReading,
    load_model,
    save_model,
)
from wattbench.profiler.sim import physics
from wattbench.profiler.sim import spec as sim_spec


def test_standard_error_target_stops_on_the_mean_not_the_spread():
    crit = StandardErrorTarget(rel_target=0.002, min_trials=3, max_trials=50, max_s=100)
    rng = random.Random(1)
    n = 0
    while not crit.add(1.0 + rng.gauss(0, 0.01), 0.1):  # 1% noise per trial
        n += 1
    assert crit.converged and crit.sem_rel <= 0.002
    assert 15 <= len(crit.values) <= 50  # (0.01 / 0.002)^2 = 25 trials, give or take


def test_standard_error_target_gives_up_at_its_time_cap_without_converging():
    crit = StandardErrorTarget(rel_target=1e-6, min_trials=3, max_trials=1000, max_s=1.0)
    values = iter([1.0, 1.1, 0.9] * 100)
    while not crit.add(next(values), 0.25):
        pass
    assert not crit.converged and len(crit.values) == 4 and crit.elapsed_s == 1.0


def test_drift_is_a_trend_beyond_noise_and_noise_is_not_drift():
    rng = random.Random(2)
    times = [0.5 * i for i in range(10)]
    noisy = [1.0 + rng.gauss(0, 0.005) for _ in times]
    trend = [1.0 + 0.004 * t for t in times]  # +1.8% over the span
    assert not Drift().drifts(times, noisy)
    assert Drift().drifts(times, trend)
    assert not Drift().drifts(times[:2], trend[:2])  # too few to say


def _trajectory(t_ss, t0, tau, p_w, e_ss, k, n=12, dt=0.3, rng=None):
    """Windows of a point approaching ``t_ss`` from ``t0``; energy follows the leakage slope."""
    out = []
    for i in range(n):
        t = (i + 0.5) * dt
        temp = t_ss + (t0 - t_ss) * math.exp(-t / tau)
        noise = rng.gauss(0, 0.0005) if rng else 0.0
        out.append(WindowReading(t, round(temp), e_ss * (1 + k * (temp - t_ss)) + noise, p_w))
    return out


def test_the_fit_recovers_time_constant_resistance_ambient_and_leakage():
    ambient, r, tau, k = 30.0, 0.05, 1.5, 0.004
    fit = ThermalFit()
    rng = random.Random(3)
    t_prev = ambient + r * 100
    for p_w in (600, 300, 500, 200, 400):
        t_ss = ambient + r * p_w
        fit.add(_trajectory(t_ss, t_prev, tau, p_w, 1.0, k, rng=rng))
        t_prev = t_ss
    m = fit.model
    assert m.tau_s == pytest.approx(tau, rel=0.35)
    assert m.r_c_per_w == pytest.approx(r, rel=0.15)
    assert m.ambient_c == pytest.approx(ambient, abs=3)
    assert m.leak_rel_per_c == pytest.approx(k, rel=0.3)


def test_a_point_measured_cooler_than_it_runs_is_carried_up_to_its_steady_energy():
    ambient, r, tau, k = 30.0, 0.05, 1.5, 0.004
    fit = ThermalFit(prior=ThermalModel(tau, ambient, r, k, 0.0002, 10))
    windows = _trajectory(ambient + r * 600, ambient + r * 200, tau, 600, 1.0, k, n=6)
    raw = sum(w.energy_j for w in windows[-3:]) / 3
    corr = fit.correct(windows, trials=3)
    assert raw < 0.995  # measured cool: reads low
    assert corr.energy_j == pytest.approx(1.0, abs=0.003)  # carried to the steady state
    assert corr.rel > 0 and corr.rel_se > 0 and corr.temp_ss_source in ("trajectory", "model")


def test_models_persist_per_gpu_and_a_damaged_file_is_ignored(tmp_path):
    m = ThermalModel(1.2, 31.0, 0.04, 0.003, 0.001, 7)
    save_model(tmp_path, "GPU-abc", m)
    assert load_model(tmp_path, "GPU-abc") == m
    assert load_model(tmp_path, "GPU-other") == ThermalModel()
    (tmp_path / "GPU-abc.json").write_text("{broken")
    assert load_model(tmp_path, "GPU-abc") == ThermalModel()


def test_a_fast_sweep_measures_every_point_close_to_the_steady_state_truth(tmp_path):
    """H100 (unit variation off, noise on), the default adaptive search: the fast method's
    figures against the noise-free steady state of the simulator, point by point, and the
    fitted model against the spec."""
    out = tmp_path / "o"
    argv = ["sweep", "--device", "sim:h100-sxm", "--kernel", "matmul", "--shape",
            "8192x8192x8192", "--dtype", "bf16", "--measurement", "fast", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    (path,) = out.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["settings"]["measurement"]["method"] == "fast"
    spec = sim_spec.load_builtin("h100-sxm")
    w = work_of(make_problem("matmul", "8192x8192x8192", "bf16"))
    work = physics.Workload(w.flops, w.bytes, w.dtype)
    for p in doc["points"]:
        truth = physics.steady_state(spec, work, sm_lock_mhz=p["point"]["sm_mhz"])
        assert p["energy_j"] == pytest.approx(truth.energy_j, rel=0.01), p["point_key"]
        assert set(p["thermal"]) >= {"raw_energy_j", "rel", "rel_se", "temp_ss_c", "model"}
    model = doc["points"][-1]["thermal"]["model"]
    poles = spec.thermal.poles
    assert model["r_c_per_w"] == pytest.approx(sum(p.resistance_c_per_w for p in poles), rel=0.2)
    assert model["tau_s"] == pytest.approx(max(p.time_constant_s for p in poles), rel=0.5)
    # the model persists for this GPU and seeds the next fast sweep
    thermal = list((tmp_path.parent / tmp_path.name / "sim-state" / "thermal").glob("*.json"))
    assert len(thermal) == 1
