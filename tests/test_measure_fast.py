"""The fast measurement's parts: standard-error stopping, drift, the thermal fit and correction,
and a fast sweep end to end on a simulated GPU (the real measurement path, noise on)."""

from __future__ import annotations

import json
import math
import random

import pytest

from wattbench.kernels.costs import make_problem, work_of
from wattbench.profiler.cli.main import main
from wattbench.profiler.device import open_device
from wattbench.profiler.errors import MeasurementError
from wattbench.profiler.measure.criteria import Drift, Settled, StandardErrorTarget
from wattbench.profiler.measure.meter import EnergyMeter
from wattbench.profiler.measure.thermal import (
    ThermalFit,
    ThermalModel,
    WindowReading,
    load_model,
    save_model,
)
from wattbench.profiler.runners.simulated import SimulatedRunner
from wattbench.profiler.sim import physics
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim.gpu import VirtualClock


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


def _trajectory(t_ss, t0, tau, p_w, t_iter, g, n=12, dt=0.3, rng=None, sm_mhz=1000.0):
    """Windows of a point approaching ``t_ss`` from ``t0``; power follows the leakage slope
    ``g`` (W/C) around ``p_w`` at the steady state, energy = power x ``t_iter``."""
    out = []
    for i in range(n):
        t = (i + 0.5) * dt
        temp = t_ss + (t0 - t_ss) * math.exp(-t / tau)
        p = p_w + g * (temp - t_ss) + (rng.gauss(0, 0.2) if rng else 0.0)
        out.append(WindowReading(t, round(temp), p * t_iter, p, t_iter, False, sm_mhz))
    return out


def test_the_fit_recovers_time_constant_resistance_ambient_and_leakage():
    ambient, r, tau, g = 30.0, 0.05, 1.5, 0.5
    fit = ThermalFit()
    rng = random.Random(3)
    t_prev = ambient + r * 100
    for p_w in (600, 300, 500, 200, 400):
        t_ss = ambient + r * p_w
        fit.add(_trajectory(t_ss, t_prev, tau, p_w, 0.01, g, rng=rng))
        t_prev = t_ss
    m = fit.model
    assert m.tau_s == pytest.approx(tau, rel=0.35)
    assert m.r_c_per_w == pytest.approx(r, rel=0.15)
    assert m.ambient_c == pytest.approx(ambient, abs=3)
    assert m.leak_w_per_c == pytest.approx(g, rel=0.3)


def test_the_leakage_slope_follows_the_clock_when_the_clocks_span_enough():
    """Leakage scales with voltage, so its slope (W/C) is larger at high clocks: the fit's
    clock term finds that when the moving points span several hundred MHz."""
    ambient, r, tau = 30.0, 0.05, 1.5
    fit = ThermalFit()
    rng = random.Random(4)
    t_prev = ambient + r * 100
    for p_w, f in ((600, 1800), (200, 600), (500, 1500), (300, 900)):
        g = 0.3 + 0.2 * (f / 1000 - 1)
        t_ss = ambient + r * p_w
        fit.add(_trajectory(t_ss, t_prev, tau, p_w, 0.01, g, rng=rng, sm_mhz=f))
        t_prev = t_ss
    (g_low, _), (g_high, _) = (fit.model.leak_slope_w_per_c(f) for f in (600, 1800))
    assert g_low == pytest.approx(0.22, abs=0.05) and g_high == pytest.approx(0.46, abs=0.06)


def test_a_point_measured_cooler_than_it_runs_is_carried_up_to_its_steady_energy():
    ambient, r, tau, g = 30.0, 0.05, 1.5, 0.6
    model = ThermalModel(
        tau_s=tau, ambient_c=ambient, r_c_per_w=r, leak_w_per_c=g, leak_cov=[1e-4, 0, 0]
    )
    fit = ThermalFit(prior=model)
    windows = _trajectory(ambient + r * 600, ambient + r * 200, tau, 600, 0.01, g, n=6)
    raw = sum(w.energy_j for w in windows[-3:]) / 3
    corr = fit.correct(windows, trials=3)
    assert raw < 0.995 * 6.0  # measured cool: reads low
    assert corr.energy_j == pytest.approx(6.0, rel=0.003)  # carried to the steady state
    assert corr.rel > 0 and corr.rel_se > 0 and corr.temp_ss_source in ("trajectory", "model")


def test_a_point_at_the_power_cap_is_carried_in_time_not_power():
    """At the cap power is fixed and the clock gives way as the chip heats: the correction
    lengthens time per iteration (and energy with it) by the fitted relative slope."""
    model = ThermalModel(
        tau_s=1.0, ambient_c=30.0, r_c_per_w=0.05, cap_time_rel_per_c=0.001,
        cap_time_rel_per_c_se=0.0001,
    )  # fmt: skip
    fit = ThermalFit(prior=model)
    windows = [WindowReading(0.2 * i, 50.0, 7.0, 700.0, 0.01, True, 1500.0) for i in range(5)]
    corr = fit.correct(windows, trials=3)  # flat at 50 C, the model says 65 C
    assert corr.capped and corr.temp_ss_source == "model"
    assert corr.time_rel == pytest.approx(0.015) and corr.rel == pytest.approx(0.015)


def test_models_persist_per_gpu_and_a_damaged_file_is_ignored(tmp_path):
    m = ThermalModel(
        tau_s=1.2, ambient_c=31.0, r_c_per_w=0.04, leak_w_per_c=0.3, leak_w_per_c_per_ghz=0.1,
        leak_cov=[1e-4, 1e-4, -1e-5], n_points=7,
    )  # fmt: skip
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


def test_an_asynchronous_window_attributes_energy_by_time_for_long_launches():
    """16384^3 bf16 matmul on the simulated L4 (noise on): each launch lasts ~0.1 s and the
    counter moves every 100 ms. A window of a few launches, the host polling while the GPU
    works, gives energy per launch within 1% of the simulator's exact integral every time
    (and 0.3% on average): neither end waits for a launch to finish."""
    device = open_device("sim:l4")
    gpu = device.simulated
    runner = SimulatedRunner(
        gpu, work_of(make_problem("matmul", "16384x16384x16384", "bf16")), keep_log=True
    )
    runner.run(100)  # warm: the L4's heat sink settles in seconds
    meter = EnergyMeter(device, VirtualClock(gpu))
    errors = []
    for _ in range(8):
        w = meter.window_async(runner, 6)
        truth = runner.log[-1].energy_j / 6
        assert w.gpu_s == pytest.approx(runner.log[-1].end_s - runner.log[-1].start_s)
        assert len(w.sm_mhz) >= 3  # sampled while the GPU worked, not only between launches
        errors.append(w.energy_j / w.iterations / truth - 1)
    assert max(abs(e) for e in errors) < 0.01
    assert abs(sum(errors) / len(errors)) < 0.003


def test_a_window_too_short_for_two_counter_updates_says_so():
    device = open_device("sim:h100-sxm")
    gpu = device.simulated
    runner = SimulatedRunner(gpu, work_of(make_problem("matmul", "1024x1024x1024", "bf16")))
    meter = EnergyMeter(device, VirtualClock(gpu))
    with pytest.raises(ValueError, match="needs at least 2"):
        meter.window_async(runner, 1)
    # the measurer's path doubles the window twice, then says what to do
    with pytest.raises(MeasurementError, match="did not update") as info:
        meter.window_async_retrying(runner, 1)
    assert "--measurement steady" in info.value.remedy


def test_settled_waits_for_the_temperature_not_only_for_power():
    """At the power cap power is flat from the first window while the chip heats and its
    clock gives way: warm-up ends on the temperature, not on power. Over a span of twice the
    time constant, what is left to go is under a degree."""
    crit = Settled(span_s=4.0, max_s=30.0)
    t = 0.0
    while True:
        t += 0.3
        temp = round(80 - 40 * math.exp(-t / 2.0))
        if crit.add(t, temp, 7.0 * (1 + 0.001 * (temp - 40)), 0.01 * (1 + 0.001 * (temp - 40))):
            break
    assert crit.converged and 80 - 40 * math.exp(-t / 2.0) > 79.0


def test_a_fast_sweep_records_every_point_under_the_final_model_and_resumes(
    tmp_path, monkeypatch, capsys
):
    """Interrupted part way (the simulator's launch-fault switch) and resumed: the resumed
    sweep rebuilds its thermal model from the recorded readings on the recorded prior, a point
    is measured at most twice, and every recorded point is carried by the final model."""
    out = tmp_path / "o"
    argv = ["sweep", "--device", "sim:h100-sxm", "--kernel", "matmul", "--shape",
            "8192x8192x8192", "--dtype", "bf16", "--measurement", "fast",
            "--out", str(out)]  # fmt: skip
    monkeypatch.setenv("WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S", "40")
    assert main(argv) == 1
    monkeypatch.delenv("WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S")
    capsys.readouterr()
    (path,) = out.glob("*.json")
    before = json.loads(path.read_text())
    assert before["status"] == "interrupted" and before["settings"]["thermal_prior"] is not None
    assert main(["sweep", "--resume", str(path), "--quiet"]) == 0
    doc = json.loads(path.read_text())
    assert doc["status"] == "complete" and doc["settings"]["strategy"]["max_passes"] == 2
    models = [p["thermal"]["model"] for p in doc["points"]]
    assert all(m == models[0] for m in models)  # one model, the final one, for every point
    assert models[0]["n_points"] >= len(doc["points"])
    passes = [1 + max(s["pass"] for s in p["samples"]) for p in doc["points"]]
    assert max(passes) <= 2
    for p in doc["points"]:
        th = p["thermal"]
        assert p["energy_j"] == pytest.approx(th["raw_energy_j"] * (1 + th["rel"]))
        assert p["time_s"] == pytest.approx(th["raw_time_s"] * (1 + th["time_rel"]))
