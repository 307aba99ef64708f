"""profiler/measure/ on its own, over a simulated GPU: the real device layer and the real pynvml
over the simulated NVML library (``open_device("sim:...")``), the simulator's virtual clock, and
the simulated runner (no kernel executes; the simulator's own log of every run is the truth the
meter is checked against). Expected values come from the built-in specs (update period, default
power limit, the governor's steady state) or from the simulator's exact energy integral."""

from __future__ import annotations

import pytest

from wattbench.kernels.costs import make_problem, work_of
from wattbench.profiler.device import open_device
from wattbench.profiler.measure.actuator import Actuator
from wattbench.profiler.measure.criteria import RelativeSpread, SteadyPower, t_critical
from wattbench.profiler.measure.measure import MeasureSettings, PointMeasurer
from wattbench.profiler.measure.meter import EnergyMeter, estimate_counter_period_s
from wattbench.profiler.measure.throttle import ClockHoldCheck
from wattbench.profiler.measure.types import RECORDED_FIELDS, Measurement, OperatingPoint
from wattbench.profiler.runners.simulated import SimulatedRunner
from wattbench.profiler.safety.journal import GpuSettings
from wattbench.profiler.sim import physics
from wattbench.profiler.sim.gpu import VirtualClock

#: a compute-bound problem that draws more than 400 W at the H100's top clock (bf16 matmul)
MATMUL = work_of(make_problem("matmul", "4096x4096x4096", "bf16"))


def _sim(key: str = "h100-sxm"):
    """(device, simulated GPU, its virtual clock, a runner of MATMUL that logs the truth)."""
    device = open_device(f"sim:{key}")
    gpu = device.simulated
    assert gpu is not None
    return device, gpu, VirtualClock(gpu), SimulatedRunner(gpu, MATMUL, keep_log=True)


def _workload() -> physics.Workload:
    return physics.Workload(MATMUL.flops, MATMUL.bytes, MATMUL.dtype)


# --- the meter ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["h100-sxm", "l4"])
def test_the_counter_period_is_found_from_the_counter_itself(key):
    """Polling the counter every 1 ms finds the spec's update period (100 ms on both cards)."""
    device, gpu, clock, _ = _sim(key)
    period = gpu.spec.sensors.update_period_s
    assert estimate_counter_period_s(device, clock) == pytest.approx(period, abs=2e-3)
    assert EnergyMeter(device, clock).counter_period_s == pytest.approx(period, abs=2e-3)


def test_a_counter_window_matches_the_simulators_integral():
    """A synchronised window starts and ends on counter updates, so its energy is the
    counter's difference over whole update periods: within 1% of the exact energy the
    simulator integrated over the same runs."""
    device, gpu, clock, runner = _sim()
    meter = EnergyMeter(device, clock)
    assert meter.source == "counter"  # the H100 has a total-energy counter
    w = meter.window(runner, batch_iters=40, min_s=1.0)
    truth = runner.truth_energy_per_iteration_j(w.start_s, w.end_s)
    assert w.end_s - w.start_s >= 1.0 and w.gpu_s is None
    assert w.energy_j / w.iterations == pytest.approx(truth, rel=0.01)
    assert w.sm_mhz and {mhz for _, mhz in w.sm_mhz} <= set(gpu.spec.clocks.sm_clocks_ascending)


def test_integrated_polled_power_agrees_with_the_simulators_integral():
    """Without the counter (as on pre-Volta GPUs) the meter integrates instantaneous power
    polled after every batch. Once the readings follow the load (a reading lags it by up to
    an update period, which is why windows come after warm-up), the same runs give energy
    within 1.5% of the exact integral: ten noisy readings a second, trapezoidal rule."""
    device, _, clock, runner = _sim()
    runner.run(5000)  # about 1 s of load: the power readings are the loaded GPU's
    meter = EnergyMeter(device, clock, use_counter=False)
    assert meter.source == "polled_power" and meter.counter_period_s == 0.0
    w = meter.window(runner, batch_iters=40, min_s=1.0)
    truth = runner.truth_energy_per_iteration_j(w.start_s, w.end_s)
    assert w.energy_j / w.iterations == pytest.approx(truth, rel=0.015)


def test_idle_power_is_the_spec_idle_draw():
    """An idle GPU's power from the counter: the model's power at the idle clocks, within the
    counter's noise (0.5%)."""
    device, gpu, clock, _ = _sim()
    meter = EnergyMeter(device, clock)
    idle_w = meter.idle_power_w(settle_s=1.0, window_s=2.0)
    assert idle_w == pytest.approx(gpu.instant_power_w(noisy=False), rel=0.005)
    assert 0 < idle_w < gpu.spec.power.limit_w_default / 4


# --- criteria -------------------------------------------------------------------------------------


def test_steady_power_needs_a_streak_of_small_changes_and_the_minimum_time():
    crit = SteadyPower(rel_change=0.01, consecutive=2, min_s=1.0, max_s=30.0)
    assert not crit.add(300.0, 0.5)  # nothing to compare with yet
    assert not crit.add(330.0, 1.0)  # +10%: the streak starts over
    assert not crit.add(331.0, 1.5)  # +0.3%: one small change
    assert crit.add(331.5, 2.0) and crit.converged  # two in a row, after min_s
    early = SteadyPower(rel_change=0.01, consecutive=1, min_s=5.0)
    assert not early.add(300.0, 0.5) and not early.add(300.0, 1.0)  # steady, but too soon
    capped = SteadyPower(rel_change=0.01, max_s=3.0)
    assert not capped.add(300.0, 1.0) and not capped.add(400.0, 2.0)
    assert capped.add(300.0, 3.0) and not capped.converged  # gave up at max_s


def test_relative_spread_is_max_minus_min_over_the_median():
    crit = RelativeSpread(threshold=0.01, min_trials=3, max_trials=5)
    assert not crit.add(1.00) and not crit.add(1.02)
    assert crit.spread == pytest.approx(0.02 / 1.01)  # the median of two is their mean
    assert not crit.add(0.99)  # (1.02 - 0.99) / 1.00 = 3%
    assert crit.spread == pytest.approx(0.03)
    assert not crit.add(1.00) and crit.add(1.00)  # stops at max_trials, unconverged
    assert not crit.converged and len(crit.values) == 5
    tight = RelativeSpread(threshold=0.01, min_trials=3)
    assert not tight.add(2.0) and not tight.add(2.01) and tight.add(2.005)
    assert tight.converged and tight.spread == pytest.approx(0.01 / 2.005)


def test_t_critical_is_the_table_value_scaled_by_z():
    assert t_critical(3.0, 1) == pytest.approx(235.8)
    assert t_critical(3.0, 11) == pytest.approx(3.96)  # between 10 and 12: the lower dof's
    assert t_critical(1.5, 2) == pytest.approx(19.21 / 2)
    assert t_critical(3.0, 61) == 3.0 and t_critical(3.0, 0) == float("inf")


# --- throttle detection ---------------------------------------------------------------------------


def test_clock_hold_flags_from_clocks_and_reasons():
    check = ClockHoldCheck(tolerance_mhz=15)
    locked = OperatingPoint(sm_mhz=1500)
    assert check.flags(locked, 1485, []) == []  # 15 MHz below: within tolerance
    assert check.flags(locked, 1484, []) == ["clock_missed"]
    # the cap at a point that did not set a limit is news; at a power-limit point it is expected
    assert check.flags(OperatingPoint(), 1980, ["sw_power_cap"]) == ["power_capped"]
    assert check.flags(OperatingPoint(power_limit_w=300.0), 1200, ["sw_power_cap"]) == []
    assert check.flags(
        OperatingPoint(), 1980, ["hw_thermal_slowdown", "hw_power_brake_slowdown"]
    ) == [
        "thermal_throttled",
        "hw_slowdown",
    ]


def test_a_clock_the_power_limit_cannot_hold_is_flagged_on_the_simulated_gpu():
    """SM 1980 MHz under a 300 W limit: the governor gives way (SwPowerCap) to the clock the
    physics model's steady state predicts, so the point is flagged clock_missed (not
    power_capped: the point set the limit itself)."""
    device, gpu, clock, runner = _sim()
    settings = MeasureSettings(method="steady", warmup_min_s=1.0, min_window_s=0.5)
    measurer = PointMeasurer(
        device, runner, clock, settings, actuator=Actuator(device, frozenset({"sm", "power"}))
    )
    point = OperatingPoint(sm_mhz=1980, power_limit_w=300.0)
    m = measurer.measure(point)
    truth = physics.steady_state(gpu.spec, _workload(), sm_lock_mhz=1980, limit_w=300.0)
    assert truth.sm_mhz < 1980 - 15  # the model cannot hold the clock at this limit
    assert "sw_power_cap" in m.reasons
    assert m.flags == ["clock_missed"]
    assert m.sm_mhz_min < 1980 - 15 and m.avg_power_w == pytest.approx(300.0, rel=0.03)
    measurer.actuator.restore()


# --- what a Measurement records -------------------------------------------------------------------


def test_a_measurement_records_every_knob_in_force():
    """Only the SM clock is swept: the memory clock and the power limit are as found, the
    limit read back from the GPU (the H100's default, 700 W)."""
    device, gpu, clock, runner = _sim()
    settings = MeasureSettings(method="steady", warmup_min_s=1.0, min_window_s=0.5)
    found = GpuSettings(sm_mhz=None, mem_mhz=None, power_limit_w=700.0)
    measurer = PointMeasurer(
        device, runner, clock, settings, actuator=Actuator(device, frozenset({"sm"})), found=found
    )
    m = measurer.measure(OperatingPoint(sm_mhz=1410))
    measurer.actuator.restore()
    default_w = gpu.spec.power.limit_w_default
    assert m.in_force == {
        "sm_mhz": 1410,
        "mem_mhz": None,
        "power_limit_w": default_w,
        "power_limit_w_default": default_w,
        "as_found": ["mem", "power"],
    }
    assert m.effective_point == OperatingPoint(sm_mhz=1410)  # the limit found is the default
    assert m.settings_text == "SM 1410 MHz"  # the limit as found is the default: not a knob
    assert m.energy_source == "counter" and m.trials >= settings.min_trials
    assert m.flags == [] and m.sm_mhz_min == 1410
    truth = physics.steady_state(gpu.spec, _workload(), sm_lock_mhz=1410)
    assert m.time_s == pytest.approx(truth.time_s, rel=1e-3)  # locked: time is the model's
    assert m.tflops == pytest.approx(MATMUL.flops / m.time_s / 1e12)
    assert m.tflop_per_j == pytest.approx(MATMUL.flops / 1e12 / m.energy_j)


def test_a_fast_measurement_records_its_distance_from_the_steady_state():
    """A point measured from cold (the fast method does not wait for it) reads low on energy:
    the thermal model carries it up to its steady temperature and records how far (``rel``),
    from which readings, and to which temperature; the carried energy and that temperature are
    close to the simulator's steady-state truth for the point."""
    device, gpu, clock, runner = _sim()
    settings = MeasureSettings(method="fast")
    measurer = PointMeasurer(
        device, runner, clock, settings, actuator=Actuator(device, frozenset({"sm"}))
    )
    measurer.measure_idle()
    m = measurer.measure(OperatingPoint(sm_mhz=1500))  # below the power cap
    measurer.actuator.restore()
    th = m.thermal
    truth = physics.steady_state(gpu.spec, _workload(), sm_lock_mhz=1500)
    assert truth.sm_mhz == 1500 and m.flags == []
    assert th["raw_energy_j"] < m.energy_j  # carried up: measured cooler than it runs
    assert th["rel"] == pytest.approx(m.energy_j / th["raw_energy_j"] - 1, rel=1e-6)
    assert th["temp_mean_c"] < th["temp_ss_c"]
    assert th["temp_ss_c"] == pytest.approx(truth.temp_c, abs=3.0)
    assert m.energy_j == pytest.approx(truth.energy_j, rel=0.005)
    # the correction moves the figure towards the steady-state truth
    assert abs(th["raw_energy_j"] / truth.energy_j - 1) > abs(m.energy_j / truth.energy_j - 1)
    assert len(th["readings"]) > th["trials"] >= settings.min_trials  # the first window kept


# --- error cases ----------------------------------------------------------------------------------


def test_an_unknown_method_is_refused_before_anything_runs():
    device, gpu, clock, runner = _sim()
    measurer = PointMeasurer(device, runner, clock, MeasureSettings(method="slow"))
    before = gpu.now_s
    with pytest.raises(ValueError, match="unknown measurement method 'slow'"):
        measurer.measure(OperatingPoint())
    assert gpu.now_s == before and runner.log == []


def test_a_window_of_no_iterations_is_refused():
    device, _, clock, runner = _sim()
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        EnergyMeter(device, clock).window_async(runner, 0)


# --- the Measurement type -------------------------------------------------------------------------


def test_a_measurement_needs_only_its_point_time_and_energy():
    m = Measurement(OperatingPoint(sm_mhz=1200), time_s=2e-3, energy_j=0.9)
    assert m.avg_power_w == pytest.approx(450.0)  # energy / time unless given
    assert (m.energy_source, m.sm_mhz_mean, m.flags, m.in_force) == ("unknown", 0.0, [], {})
    given = Measurement(OperatingPoint(), time_s=1e-3, energy_j=0.5, avg_power_w=480.0)
    assert given.avg_power_w == 480.0
    back = Measurement.from_json(m.to_json())
    assert back == m and set(RECORDED_FIELDS) <= set(m.to_json())


def test_a_recorded_point_missing_a_field_is_refused():
    """Defaults are for measurements made in code: a record's point lacking one of the fields
    every record has held is damaged, and reading it says which."""
    d = Measurement(OperatingPoint(), time_s=1e-3, energy_j=0.5).to_json()
    del d["sm_mhz_mean"]
    with pytest.raises(ValueError, match="sm_mhz_mean"):
        Measurement.from_json(d)
    # nor does a NaN power turn into the default energy / time when read back
    nan = Measurement(OperatingPoint(), time_s=1e-3, energy_j=0.5).to_json()
    nan["avg_power_w"] = float("nan")
    with pytest.raises(ValueError, match=r"avg_power_w .* not a finite number"):
        Measurement.from_json(nan)
