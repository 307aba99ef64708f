"""The adaptive search: its logic on synthetic curves, then end to end on the simulated H100.

The first group drives the real ``run_sweep`` loop and the real strategy with a *fake measurer*
(a stand-in for ``PointMeasurer`` that returns a known curve plus seeded noise): the strategy is
pure logic over measurements, and a known curve is what lets a test say where the optimum is.
Everything after that runs the real measurement path on the simulated GPUs, through the CLI.
"""

from __future__ import annotations

import itertools
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest

from wattbench.profiler.cli.main import main
from wattbench.profiler.device import open_device
from wattbench.profiler.errors import UsageError
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.select.objectives import parse_objective
from wattbench.profiler.store import RunRecord, validate
from wattbench.profiler.sweep import Space
from wattbench.profiler.sweep.adaptive import AdaptiveSettings, AdaptiveStrategy, lines_of
from wattbench.profiler.sweep.run import merge_measurements, run_sweep
from wattbench.profiler.sweep.session import make_strategy
from wattbench.profiler.sweep.strategy import GridStrategy, passes_of, seq_of

L4_TWO_MEMORY_CLOCKS = "sim:" + str(Path(__file__).parent / "specs" / "l4-two-memory-clocks.toml")

TOP_MHZ = 1980  # the simulated H100's highest SM clock (what the baseline runs at)


@pytest.fixture(scope="module")
def h100_caps():
    return open_device("sim:h100-sxm").capabilities


# --- a fake measurer over known curves ------------------------------------------------------------


def measurement(point, energy_j, time_s, *, noise_rel=0.0, rng=None, temps=(50, 50)):
    """A Measurement with three trials around (energy_j, time_s)."""
    rng = rng or np.random.default_rng(0)
    es = [energy_j * (1 + rng.normal(0, noise_rel)) if noise_rel else energy_j for _ in range(3)]
    samples = [
        {"start_s": i, "end_s": i + 1.0, "iterations": 100, "energy_j": e, "time_s": time_s}
        for i, e in enumerate(es)
    ]
    e = sum(es) / 3
    return Measurement(
        point, time_s, e, sm_mhz_mean=point.sm_mhz or TOP_MHZ,
        temp_c_start=temps[0], temp_c_end=temps[1], iterations=100, trials=3,
        spread_rel=(max(es) - min(es)) / e, samples=samples,
    )  # fmt: skip


class FakeMeasurer:
    """Stands in for PointMeasurer (MOCK: the strategy under test is pure logic). ``curve(x)``
    gives (energy J, time s) at x: the SM clock (MHz), else the power limit (W); the baseline
    is the top clock. Noise is seeded; every call is logged."""

    actuator = None
    idle_power_w = None
    clock = types.SimpleNamespace(now_s=lambda: 0.0)  # no device time passes here

    def __init__(self, curve, *, noise_rel=0.001, seed=0):
        self.curve = curve
        self.noise_rel = noise_rel
        self.rng = np.random.default_rng(seed)
        self.log: list[OperatingPoint] = []

    def measure_idle(self):
        return 70.0

    def measure(self, point, *, settle=False):
        self.log.append(point)
        x = point.sm_mhz if point.sm_mhz is not None else point.power_limit_w
        e, t = self.curve(TOP_MHZ if x is None else x)
        return measurement(point, e, t, noise_rel=self.noise_rel, rng=self.rng)

    def revalue(self, measured):  # no thermal model: figures stay as measured
        return dict(measured)

    def adopt(self, measured):
        pass


class ListSink:
    def __init__(self):
        self.points = []
        self.status = None

    def add_point(self, m):
        self.points.append(m)

    def set_idle_power_w(self, w):
        pass

    def set_choices(self, choices):
        self.choices = choices

    def add_gpu_time_s(self, seconds):
        pass

    def finish(self, status):
        self.status = status


def sweep(space, curve, objectives=("energy",), settings=None, noise_rel=0.001, seed=0):
    objs = [parse_objective(o) for o in objectives]
    strategy = AdaptiveStrategy(space, objs, settings=settings)
    fake = FakeMeasurer(curve, noise_rel=noise_rel, seed=seed)
    result = run_sweep(fake, strategy, ListSink(), objs, max_power_w=space.max_power_limit_w)
    return result, fake.log, strategy


def bowl(opt_mhz, curvature=2.0):
    """Unimodal energy per iteration with its minimum at opt_mhz (0.2% higher 2 steps away, as
    on the simulated H100 near its optimum); time ~ 1 / clock."""
    return lambda f: (1.0 + curvature * ((f - opt_mhz) / 1000) ** 2, 1e-3 * TOP_MHZ / f)


# --- pure logic on synthetic curves ---------------------------------------------------------------


@pytest.mark.parametrize("opt_mhz", [600, 1155, 1500, 1860])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_unimodal_curve_finds_the_minimum_in_a_quarter_of_the_grid(h100_caps, opt_mhz, seed):
    space = Space.from_specs(h100_caps, sm="all")
    result, log, _ = sweep(space, bowl(opt_mhz), noise_rel=0.001, seed=seed)
    assert log[0] == OperatingPoint()  # the baseline first
    assert len(log) <= 0.25 * len(space.points())
    chosen = result.choices["energy"].chosen.point
    assert chosen.key in {m.point.key for m in result.measurements}
    assert abs(chosen.sm_mhz - opt_mhz) <= 2 * 15  # within two clock steps


def test_monotone_curves_end_at_the_line_ends(h100_caps):
    space = Space.from_specs(h100_caps, sm="all")
    clocks = sorted(c for c in h100_caps.sm_clocks_mhz_all)
    down, log_down, _ = sweep(space, lambda f: (3000.0 / f, 1e-3), noise_rel=0.001)
    assert down.choices["energy"].chosen.point.sm_mhz in (None, clocks[-1])
    up, log_up, _ = sweep(space, lambda f: (f / 1000.0, 1e-3), noise_rel=0.001)
    assert up.choices["energy"].chosen.point.sm_mhz == clocks[0]
    assert max(len(log_down), len(log_up)) <= 0.2 * len(space.points())


def test_a_flat_curve_terminates_and_remeasures_within_bounds(h100_caps):
    space = Space.from_specs(h100_caps, sm="all")
    settings = AdaptiveSettings(max_passes=3)
    result, log, _ = sweep(space, lambda f: (1.0, 1e-3), noise_rel=0.002, settings=settings)
    assert len(log) <= 0.3 * len(space.points())
    passes = {m.point.key: passes_of(m) for m in result.measurements}
    assert max(passes.values()) <= 3
    assert any(p > 1 for p in passes.values())  # ties inside the noise were measured again


def test_a_difference_inside_the_noise_is_measured_again_back_to_back(h100_caps):
    """Two near-equal points at the bottom: the search re-measures instead of trusting them,
    and the re-measurement runs the two back to back."""
    space = Space.from_specs(h100_caps, sm="all")
    result, _, _ = sweep(space, bowl(1155, curvature=0.1), noise_rel=0.003)
    again = [m for m in result.measurements if passes_of(m) > 1]
    assert again
    seqs = sorted(seq_of(m) for m in again)
    assert any(b - a == 1 for a, b in itertools.pairwise(seqs))
    # with no noise at all, and no noise assumed, nothing needs measuring twice
    quiet = AdaptiveSettings(noise_floor_rel=0.0, thermal_rel_per_c=0.0)
    clean, _, _ = sweep(space, bowl(1150), noise_rel=0.0, settings=quiet)
    assert all(passes_of(m) == 1 for m in clean.measurements)


def test_slowdown_bound_finds_the_edge_and_every_objective_is_served(h100_caps):
    space = Space.from_specs(h100_caps, sm="all")
    curve = bowl(1155)  # energy optimum far below the 5% slowdown edge
    objectives = ("energy", "edp", "ed2p", "zeus:0.5", "slowdown:0.05")
    result, log, _ = sweep(space, curve, objectives=objectives)
    clocks = sorted(h100_caps.sm_clocks_mhz_all)
    base_t = curve(TOP_MHZ)[1]
    edge = min(c for c in clocks if curve(c)[1] <= base_t * 1.05)
    slow = result.choices["slowdown:0.05"]
    assert slow.chosen.point.sm_mhz == edge
    assert slow.slowdown_rel <= 0.05
    for name in objectives[:4]:  # each equals the best over the whole grid (noise is small)
        o = parse_objective(name)
        grid = [measurement(OperatingPoint(c), *curve(c)) for c in clocks]
        best = o(grid, max_power_w=space.max_power_limit_w).chosen.point.sm_mhz
        got = result.choices[name].chosen.point.sm_mhz or TOP_MHZ
        assert abs(got - best) <= 2 * 15, name
    assert len(set(log)) < 0.5 * len(space.points())


def test_power_limit_and_product_spaces(h100_caps):
    l4 = open_device(L4_TWO_MEMORY_CLOCKS).capabilities
    power = Space.from_specs(h100_caps, power="200:700:10")
    (line,), extras = lines_of(power)
    assert line.axis == "power" and len(line.points) == 51 and extras == []
    # energy falls with the limit down to 330 W, then rises
    result, log, _ = sweep(power, lambda w: (1.0 + ((w - 330) / 300) ** 2, 1e-3 * 700 / w))
    assert abs(result.choices["energy"].chosen.point.power_limit_w - 330) <= 20
    assert len(log) <= 0.4 * len(power.points())
    mem = Space.from_specs(l4, sm="all", mem="all")
    lines, _ = lines_of(mem)
    assert [ln.axis for ln in lines] == ["sm", "sm"]
    assert {ln.points[0].mem_mhz for ln in lines} == set(l4.memory_clocks_mhz)
    both = Space.from_specs(h100_caps, sm="all", power="300,500")
    lines, _ = lines_of(both)
    assert [(ln.axis, ln.points[0].power_limit_w) for ln in lines] == [("sm", 500), ("sm", 300)]
    result, log, _ = sweep(both, bowl(1155))
    assert len(log) < 0.3 * len(both.points())
    assert abs(result.choices["energy"].chosen.point.sm_mhz - 1155) <= 30
    long_power = Space.from_specs(h100_caps, sm="1980,1500", power="200:700:50")
    assert [ln.axis for ln in lines_of(long_power)[0]] == ["power", "power"]


def test_the_strategy_is_a_pure_function_of_what_was_measured(h100_caps):
    space = Space.from_specs(h100_caps, sm="all")
    objs = [parse_objective("energy"), parse_objective("slowdown:0.05")]
    # replaying every prefix of the run with a fresh strategy proposes exactly what was measured
    sink = ListSink()
    fake = FakeMeasurer(bowl(1155), noise_rel=0.001)
    run_sweep(fake, AdaptiveStrategy(space, objs), sink, objs, max_power_w=700)
    done: dict[str, Measurement] = {}
    for m in sink.points:
        assert AdaptiveStrategy(space, objs).next_point(done) == m.point
        done[m.point.key] = m
    assert AdaptiveStrategy(space, objs).next_point(done) is None


def test_settings_are_checked_and_round_trip():
    with pytest.raises(UsageError, match="coarse_points"):
        AdaptiveSettings(coarse_points=2)
    with pytest.raises(UsageError, match="tolerance_steps"):
        AdaptiveSettings(tolerance_steps=1)
    s = AdaptiveSettings(max_passes=2, thermal_rel_per_c=0.0)
    assert AdaptiveSettings.from_json({"strategy": "adaptive", **s.to_json(), "x": 1}) == s
    with pytest.raises(UsageError, match="unknown sweep strategy"):
        make_strategy("random", None, [OperatingPoint()])
    assert isinstance(make_strategy("adaptive", None, [OperatingPoint()]), GridStrategy)


def test_merge_keeps_every_pass_and_takes_the_latest_figures():
    p = OperatingPoint(1500)
    old = measurement(p, 1.0, 1e-3, temps=(40, 45))
    old.samples = [{**s, "pass": 0, "seq": 4} for s in old.samples]
    new = measurement(p, 1.1, 1e-3, temps=(60, 60))
    new.samples = [{**s, "pass": 1, "seq": 9} for s in new.samples]
    m = merge_measurements(old, new)
    assert m.energy_j == pytest.approx(1.1) and (m.temp_c_start, m.temp_c_end) == (60, 60)
    assert len(m.samples) == 6 and passes_of(m) == 2 and seq_of(m) == 9
    assert m.warmup_s == old.warmup_s + new.warmup_s
    with pytest.raises(ValueError):
        merge_measurements(old, measurement(OperatingPoint(1200), 1.0, 1e-3))


# --- end to end on the simulated GPUs ------------------------------------------------------------

PROBLEM = ["--kernel", "matmul", "--shape", "8192x8192x8192", "--dtype", "bf16", "--quiet"]
ALL = ["energy", "edp", "ed2p", "zeus:0.5", "slowdown:0.05"]


def run_cli(out: Path, *args: str) -> RunRecord:
    assert main(["sweep", *PROBLEM, "--out", str(out), *args]) == 0
    (path,) = out.glob("*.json")
    doc = json.loads(path.read_text())
    assert validate(doc) == []
    return RunRecord.load(path)


def sm_of(m: Measurement) -> float:
    """The clock the point ran at (a lock above the power-capped clock runs at the capped one)."""
    return m.sm_mhz_mean


def test_default_sweep_is_adaptive_and_close_to_the_grid(tmp_path, capsys):
    objectives = [x for o in ALL for x in ("--objective", o)]
    grid = run_cli(tmp_path / "grid", "--device", "sim:h100-sxm", "--strategy", "grid", *objectives)
    default = run_cli(tmp_path / "default", "--device", "sim:h100-sxm")
    out = capsys.readouterr().out
    assert "strategy adaptive:" in out and "the grid has 111 points" in out
    assert default.doc["settings"]["strategy"]["strategy"] == "adaptive"
    n_grid = len(grid.points)
    assert n_grid == 111
    assert len(default.points) <= 0.30 * n_grid  # distinct points
    # every pass counted; on the calibrated H100 the cap-bound top clocks run alike and are
    # measured again before they are told apart
    assert sum(passes_of(m) for m in default.points) <= 0.50 * n_grid
    every = run_cli(tmp_path / "every", "--device", "sim:h100-sxm", *objectives)
    g, a = grid.choices(), every.choices()
    for name in ALL[:4]:  # within a few clock steps of the grid's choice
        assert abs(sm_of(a[name].chosen) - sm_of(g[name].chosen)) <= 3 * 15, name
    # the energy curve is flat at its bottom: the default sweep's choice costs at most 0.5% more
    assert default.choices()["energy"].value <= 1.005 * g["energy"].value
    # slowdown: time is what the bound is on, and time is not biased by the GPU's temperature:
    # the choice sits at the edge of the bound as the grid's measurements place it
    base_t = next(m for m in grid.points if m.point.is_baseline).time_s
    edge = min(sm_of(m) for m in grid.points if m.time_s <= 1.05 * base_t)
    for rec in (default, every):
        c = rec.choices()["slowdown:0.05"]
        assert c.slowdown_rel <= 0.05 + 1e-9
        assert abs(sm_of(c.chosen) - edge) <= 3 * 15


def test_power_limit_sweep_end_to_end(tmp_path):
    args = ["--device", "sim:h100-sxm", "--power-limits", "200:700:10", "--objective", "energy"]
    grid = run_cli(tmp_path / "grid", *args, "--strategy", "grid")
    ada = run_cli(tmp_path / "ada", *args)
    assert sum(passes_of(m) for m in ada.points) <= 0.5 * len(grid.points)
    assert all(m.point.sm_mhz is None for m in ada.points)  # a power sweep locks no clock
    g = grid.choices()["energy"].chosen.point.power_limit_w
    a = ada.choices()["energy"].chosen.point.power_limit_w
    assert abs(a - g) <= 30


def test_interrupted_adaptive_sweep_resumes_deterministically(tmp_path, monkeypatch, capsys):
    """A launch fault stops an adaptive sweep part way (the simulator's own fault switch);
    --resume continues with exactly the point the strategy proposes for the recorded
    measurements, keeps every recorded pass, and finishes."""
    out = tmp_path / "out"
    monkeypatch.setenv("WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S", "90")
    # a launch failure is a runtime error: one line, exit 1, saying how to resume
    argv = ["sweep", "--device", "sim:h100-sxm", *PROBLEM, "--measurement", "steady"]
    assert main([*argv, "--out", str(out)]) == 1
    monkeypatch.delenv("WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S")
    (path,) = out.glob("*.json")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("wattbench: error: kernel launch failed")
    assert f"continue with `wattbench sweep --resume {path}`" in line
    before = RunRecord.load(path)
    assert before.status == "interrupted" and 3 <= len(before.points) < 20
    settings = before.doc["settings"]
    space = Space.from_specs(open_device("sim:h100-sxm").capabilities, sm="all")
    objectives = [parse_objective(o) for o in settings["objectives"]]
    strategy = AdaptiveStrategy(
        space, objectives, settings=AdaptiveSettings.from_json(settings["strategy"])
    )
    measured = {m.point.key: m for m in before.points}
    expected_next = strategy.next_point(measured)
    assert expected_next is not None
    n_before = sum(passes_of(m) for m in before.points)

    assert main(["sweep", "--resume", str(path), "--quiet"]) == 0
    after = RunRecord.load(path)
    assert after.status == "complete"
    by_key = {m.point.key: m for m in after.points}
    first_new = {k for k, m in by_key.items() for s in m.samples if s["seq"] == n_before + 1}
    assert first_new == {expected_next.key}
    for key, m in measured.items():  # recorded passes kept, as a prefix
        assert by_key[key].samples[: len(m.samples)] == m.samples
    assert strategy.next_point(by_key) is None
    seqs = sorted(s["seq"] for m in after.points for s in m.samples if "seq" in s)
    assert sorted(set(seqs)) == list(range(1, sum(passes_of(m) for m in after.points) + 1))
    assert math.isfinite(after.choices()["energy"].value)
