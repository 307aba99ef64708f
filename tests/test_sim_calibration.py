"""The simulated GPUs against published real-GPU observations, and the model structure behind
them: the calibration file, `wattbench sim check` / `sim units`, units of a node, thermal poles,
virtual time that cannot stall."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wattbench.profiler.cli.main import main
from wattbench.profiler.device import open_device
from wattbench.profiler.sim import calibration, physics, spec
from wattbench.profiler.sim.calibration import experiments
from wattbench.profiler.sim.gpu import SimulatedGpu

OBSERVATIONS = calibration.load_observations()
GEMM = physics.Workload(2 * 8192**3, 3 * 8192**2 * 2, "bf16")


def test_the_calibration_file_covers_enough_published_data():
    assert len(OBSERVATIONS) >= 15
    assert len({o.gpu for o in OBSERVATIONS}) >= 3
    assert len({o.id for o in OBSERVATIONS}) == len(OBSERVATIONS)
    assert {o.gpu for o in OBSERVATIONS} <= set(spec.builtin_keys())
    for o in OBSERVATIONS:
        assert o.source and o.published and o.band_note, o.id


@pytest.mark.parametrize("obs", OBSERVATIONS, ids=[o.id for o in OBSERVATIONS])
def test_simulated_gpu_reproduces_published_observation(obs):
    (verdict,) = calibration.check(spec.load_builtin(obs.gpu), [obs])
    assert verdict.ok, str(verdict)


def test_sim_check_prints_every_observation_in_band(capsys):
    assert main(["sim", "check"]) == 0
    out = capsys.readouterr().out
    for o in OBSERVATIONS:
        assert o.id in out
    assert "OUT OF BAND" not in out


def test_sim_check_a_user_spec_against_a_model_and_fail_when_out_of_band(tmp_path, capsys):
    text = (Path(spec.__file__).parent / "specs" / "h100-sxm.toml").read_text()
    mine = tmp_path / "mine.toml"
    mine.write_text(text.replace('key = "h100-sxm"', 'key = "mine"'))
    assert main(["sim", "check", "--device", f"sim:{mine}"]) == 2  # no observations of "mine"
    assert "--as" in capsys.readouterr().err
    assert main(["sim", "check", "--device", f"sim:{mine}", "--as", "h100-sxm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(o["in_band"] for o in doc["gpus"][0]["observations"])
    # the same GPU with half the switching power no longer reaches the cap: the check says so
    mine.write_text(text.replace("dynamic_w = 1140", "dynamic_w = 570"))
    assert main(["sim", "check", "--device", f"sim:{mine}", "--as", "h100-sxm"]) == 1
    out = capsys.readouterr().out
    assert "h100-gemm-power-capped" in out and "OUT OF BAND" in out


def test_h100_random_gemm_is_power_capped_and_zeros_run_faster():
    s = spec.load_builtin("h100-sxm")
    rnd = experiments.sustained(s, {"dtype": "bf16", "shape": [8192] * 3})
    zero = experiments.sustained(s, {"dtype": "bf16", "shape": [8192] * 3, "inputs": "zeros"})
    assert rnd["power_capped"] == 1.0 and rnd["power_w"] >= 680
    assert 1550 <= rnd["sm_mhz"] <= 1850
    assert zero["tflops"] >= 1.08 * rnd["tflops"]


def test_units_of_a_node_differ_and_keep_their_identity_across_processes(monkeypatch):
    monkeypatch.setenv("WATTBENCH_SIM_UNIT_VARIATION", "1")
    s = spec.load_builtin("h100-sxm")
    gpus = [SimulatedGpu(s, i, noise=False, persist=False) for i in range(8)]
    assert len({g.uuid for g in gpus}) == len({g.serial for g in gpus}) == 8
    assert len({g.pci_bus_id for g in gpus}) == 8
    powers = [physics.steady_state(s, GEMM, sm_lock_mhz=1200, unit=g.unit).power_w for g in gpus]
    mean = sum(powers) / 8
    assert 0.03 <= (max(powers) - min(powers)) / mean <= 0.30  # a spread, not identical units
    code = (
        "from wattbench.profiler.sim import spec; from wattbench.profiler.sim.gpu import "
        "SimulatedGpu; g = SimulatedGpu(spec.load_builtin('h100-sxm'), 3, persist=False); "
        "print(g.uuid, g.unit.leakage_scale, g.unit.voltage_offset_v)"
    )
    env = {**os.environ, "WATTBENCH_SIM_UNIT_VARIATION": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [
        gpus[3].uuid,
        repr(gpus[3].unit.leakage_scale),
        repr(gpus[3].unit.voltage_offset_v),
    ]
    # switched off: every unit is the nominal chip
    assert SimulatedGpu(s, 3, persist=False, unit_variation=False).unit == physics.NOMINAL


def test_sim_units_reports_each_units_energy_optimal_clock(capsys):
    assert main(["sim", "units", "--device", "sim:8xh100-sxm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    units = doc["units"]
    assert len(units) == 8 and len({u["uuid"] for u in units}) == 8
    clocks = spec.load_builtin("h100-sxm").clocks.sm_clocks_mhz()
    for u in units:
        assert u["optimal_sm_mhz"] in clocks and 0 < u["optimal_saving"] < 1
    assert main(["sim", "units", "--device", "sim:8xh100-sxm"]) == 0
    assert "SIMULATED" in capsys.readouterr().out


def test_a_node_selection_opens_distinct_units():
    a = open_device("sim:8xh100-sxm:3")
    b = open_device("sim:8xh100-sxm:5")
    assert a.identity.uuid != b.identity.uuid
    assert open_device("sim:h100-sxm").identity.uuid == open_device("sim:8xh100-sxm").identity.uuid


@pytest.mark.parametrize("sel", ["sim:8xh100-sxm:8", "sim:0xh100-sxm", "sim:65xh100-sxm"])
def test_bad_node_selections_are_usage_errors(sel, capsys):
    assert main(["devices", "--device", sel]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_thermal_poles_give_the_published_fast_and_slow_response():
    s = spec.load_builtin("a100-pcie")
    r = experiments.step_response(s, {"activity_scale": 0.3})
    # most of the rise comes within a fraction of a second (die), the rest over seconds (sink)
    assert r["temp_c_on_0.4"] - r["temp_c_idle"] >= 0.5 * (r["temp_c_on_4"] - r["temp_c_idle"])
    assert r["temp_c_on_4"] > r["temp_c_on_1"]


@pytest.mark.parametrize("exponent", [20, 30, 40])
def test_virtual_time_never_stalls(exponent):
    """Time is counted in integer sensor ticks: at 2^20, 2^30, 2^40 s of virtual time a run and
    an idle still finish and advance the clock (a float 'next tick' once computed next == now)."""
    s = spec.load_builtin("h100-sxm")
    g = SimulatedGpu(s, noise=False, persist=False)
    g.now_s = 2.0**exponent + 0.2
    g._tick = int(g.now_s / s.sensors.update_period_s) + 1
    t0, e0 = g.now_s, g.energy_counter_mj()
    g.run(GEMM, 500)
    g.idle(1.0)
    assert g.now_s > t0 and g.energy_counter_mj() > e0


def test_state_file_near_the_old_wedge_time_is_harmless(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTBENCH_SIM_STATE_DIR", str(tmp_path))
    (tmp_path / "h100-sxm-0.json").write_text(json.dumps({"time_s": 1048576.2}))
    code = (
        "from wattbench.profiler.sim import spec, physics; from wattbench.profiler.sim.gpu import "
        "SimulatedGpu; g = SimulatedGpu(spec.load_builtin('h100-sxm'), noise=False); "
        "g.run(physics.Workload(1e12, 1e9, 'bf16'), 1000); g.idle(1.0); print(g.now_s)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert float(out.stdout) > 1048576.2
