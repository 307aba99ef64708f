"""Selection objectives on hand-made measurements."""

from __future__ import annotations

import json

import pytest

from wattbench.profiler.errors import UsageError
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.select import (
    OBJECTIVES,
    Choice,
    min_ed2p,
    min_edp,
    min_energy,
    min_energy_within_slowdown,
    min_zeus_cost,
    pareto_front,
    parse_objective,
    zeus_cost,
)

BASE = OperatingPoint()


def meas(point: OperatingPoint, time_s: float, energy_j: float, *flags: str) -> Measurement:
    return Measurement(point, time_s, energy_j, flags=list(flags))


def sm(mhz: int) -> OperatingPoint:
    return OperatingPoint(sm_mhz=mhz)


@pytest.fixture
def run() -> list[Measurement]:
    """A U-shaped energy curve: baseline fastest, 1500 MHz cheapest, 900 MHz slow and costly."""
    return [
        meas(BASE, 1.00, 100.0),
        meas(sm(1800), 1.05, 90.0),
        meas(sm(1500), 1.20, 80.0),
        meas(sm(1200), 1.50, 85.0),
        meas(sm(900), 2.00, 95.0),
        meas(sm(1650), 1.10, 92.0),  # dominated by 1800 (slower and costlier)
    ]


def keys(ms: list[Measurement]) -> list[str]:
    return [m.point.key for m in ms]


# --- simple objectives ----------------------------------------------------------------------------


def test_min_energy(run):
    c = min_energy(run)
    assert c.chosen.point == sm(1500)
    assert c.baseline is run[0]
    assert c.saving_rel == pytest.approx(0.20)
    assert c.slowdown_rel == pytest.approx(0.20)
    assert c.value == 80.0
    assert c.objective == "energy"


def test_min_edp_and_ed2p(run):
    # EDP: 100, 94.5, 96, 127.5, 190, 101.2 -> 1800
    assert min_edp(run).chosen.point == sm(1800)
    # ED²P: 100, 99.2, 115.2, ... -> 1800
    assert min_ed2p(run).chosen.point == sm(1800)
    # ED²P weighs time more than EDP: make 1800 just a bit cheaper than baseline in EDP only
    ms = [meas(BASE, 1.0, 100.0), meas(sm(1500), 1.1, 90.0)]  # EDP 99 < 100, ED²P 108.9 > 100
    assert min_edp(ms).chosen.point == sm(1500)
    assert min_ed2p(ms).chosen.point == BASE


def test_empty_input_is_a_clear_error():
    for fn in (min_energy, min_edp, min_ed2p, pareto_front):
        with pytest.raises(UsageError, match="no measurements"):
            fn([])
    with pytest.raises(UsageError, match="no measurements"):
        min_zeus_cost([], eta=0.5, max_power_w=700)
    with pytest.raises(UsageError, match="no measurements"):
        min_energy_within_slowdown([], max_slowdown_rel=0.1)


def test_no_baseline_gives_none_relatives():
    c = min_energy([meas(sm(1500), 1.0, 10.0), meas(sm(1200), 2.0, 9.0)])
    assert c.chosen.point == sm(1200)
    assert c.baseline is None and c.saving_rel is None and c.slowdown_rel is None
    assert "no baseline" in str(c)
    assert c.to_json()["baseline_key"] is None


# --- Zeus -----------------------------------------------------------------------------------------


def test_zeus_cost_formula():
    m = meas(sm(1500), 2.0, 300.0)
    assert zeus_cost(m, 0.3, 700.0) == pytest.approx(0.3 * 300 + 0.7 * 700 * 2.0)


def test_zeus_eta_extremes(run):
    fastest = min_zeus_cost(run, eta=0.0, max_power_w=700.0)  # pure time * max power
    assert fastest.chosen.point == BASE
    assert fastest.value == pytest.approx(700.0)
    cheapest = min_zeus_cost(run, eta=1.0, max_power_w=700.0)  # pure energy
    assert cheapest.chosen.point == min_energy(run).chosen.point
    assert cheapest.objective == "zeus:1"


def test_zeus_in_between(run):
    # eta 0.5, max power 100 W: 0.5 E + 50 T -> 100, 97.5, 100, 117.5, 147.5, 101 -> 1800
    assert min_zeus_cost(run, eta=0.5, max_power_w=100.0).chosen.point == sm(1800)


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_zeus_eta_out_of_range(run, eta):
    with pytest.raises(UsageError, match=r"eta must be in \[0, 1\]"):
        min_zeus_cost(run, eta=eta, max_power_w=700.0)


def test_zeus_bad_max_power(run):
    with pytest.raises(UsageError, match="max_power_w"):
        min_zeus_cost(run, eta=0.5, max_power_w=0)


# --- slowdown bound -------------------------------------------------------------------------------


def test_slowdown_bound(run):
    c = min_energy_within_slowdown(run, max_slowdown_rel=0.10)
    # within 10%: baseline, 1800 (5%), 1650 (10%) -> 1800 has least energy
    assert c.chosen.point == sm(1800)
    assert c.slowdown_rel == pytest.approx(0.05)
    assert c.objective == "slowdown:0.1"
    # looser bound reaches the global minimum
    assert min_energy_within_slowdown(run, max_slowdown_rel=0.5).chosen.point == sm(1500)


def test_slowdown_exact_boundary_qualifies():
    # 1.1 / 1.0 - 1 is 0.10000000000000009 in floating point: still on the bound
    ms = [meas(BASE, 1.0, 100.0), meas(sm(1500), 1.1, 80.0), meas(sm(1200), 1.1000001, 70.0)]
    c = min_energy_within_slowdown(ms, max_slowdown_rel=0.1)
    assert c.chosen.point == sm(1500)


def test_slowdown_nothing_but_baseline_qualifies(run):
    c = min_energy_within_slowdown(run, max_slowdown_rel=0.01)
    assert c.chosen is run[0]
    assert c.saving_rel == 0.0 and c.slowdown_rel == 0.0
    assert "baseline itself" in str(c)
    # zero slowdown allowed: only points as fast as the baseline
    assert min_energy_within_slowdown(run, max_slowdown_rel=0).chosen is run[0]


def test_slowdown_baseline_flagged_and_nothing_else_qualifies():
    ms = [meas(BASE, 1.0, 100.0, "unstable"), meas(sm(1500), 1.5, 80.0)]
    c = min_energy_within_slowdown(ms, max_slowdown_rel=0.1)
    assert c.chosen is ms[0]


def test_slowdown_needs_a_baseline():
    with pytest.raises(UsageError, match="needs the baseline"):
        min_energy_within_slowdown([meas(sm(1500), 1.0, 1.0)], max_slowdown_rel=0.1)


def test_slowdown_negative_is_an_error(run):
    with pytest.raises(UsageError, match=">= 0"):
        min_energy_within_slowdown(run, max_slowdown_rel=-0.1)


# --- Pareto front ---------------------------------------------------------------------------------


def test_pareto_front(run):
    front = pareto_front(run)
    assert keys(front) == keys([run[0], run[1], run[2]])  # baseline, 1800, 1500; sorted by time
    times = [m.time_s for m in front]
    assert times == sorted(times)


def test_pareto_front_equal_coordinates():
    ms = [
        meas(sm(1500), 1.0, 10.0),
        meas(sm(1200), 1.0, 10.0),  # identical: neither dominates
        meas(sm(900), 1.0, 12.0),  # same time, more energy: dominated
        meas(sm(600), 2.0, 10.0),  # same energy, slower: dominated
    ]
    assert keys(pareto_front(ms)) == [sm(1200).key, sm(1500).key]


# --- ties -----------------------------------------------------------------------------------------


def test_ties_go_to_lower_time_then_point_order():
    ms = [meas(sm(1500), 2.0, 10.0), meas(sm(1800), 1.0, 10.0)]
    assert min_energy(ms).chosen.point == sm(1800)  # same energy, lower time
    ms = [meas(sm(1800), 1.0, 10.0), meas(sm(1500), 1.0, 10.0), meas(BASE, 1.0, 10.0)]
    assert min_energy(ms).chosen.point == BASE  # all equal: default first, then lower clock
    assert min_energy(ms[:2]).chosen.point == sm(1500)
    assert min_energy(list(reversed(ms[:2]))).chosen.point == sm(1500)  # input order irrelevant


def test_ties_at_float_rounding():
    # EDPs 0.3 and 0.30000000000000004 are equal to 12 digits: a tie, so the lower time wins
    ms = [meas(sm(1500), 2.0, 0.15), meas(sm(1800), 1.0, 0.1 + 0.2)]
    assert ms[0].energy_j * ms[0].time_s < ms[1].energy_j * ms[1].time_s
    assert min_edp(ms).chosen.point == sm(1800)


# --- flagged points -------------------------------------------------------------------------------


def test_flagged_points_avoided_when_trusted_alternative_exists(run):
    run[2].flags.append("unstable")  # 1500, the energy minimum
    assert min_energy(run).chosen.point == sm(1200)
    assert min_energy(run, flagged="include").chosen.point == sm(1500)
    assert sm(1500).key not in keys(pareto_front(run))
    run[2].flags[:] = ["throttled"]  # throttling is expected under power caps: still trusted
    assert min_energy(run).chosen.point == sm(1500)


def test_all_flagged():
    ms = [meas(BASE, 1.0, 10.0, "clock_missed"), meas(sm(1500), 1.2, 9.0, "unstable")]
    assert min_energy(ms).chosen.point == sm(1500)  # avoid: nothing trusted, keep all
    with pytest.raises(UsageError, match="flagged"):
        min_energy(ms, flagged="exclude")
    with pytest.raises(UsageError, match="avoid, exclude, include"):
        min_energy(ms, flagged="sometimes")


# --- Choice ---------------------------------------------------------------------------------------


def test_choice_str_and_json(run):
    c = min_energy(run)
    text = str(c)
    assert text.startswith("energy: SM 1500 MHz")
    assert "saves 20.0% energy at +20.0% time" in text
    d = json.loads(json.dumps(c.to_json()))
    assert d["point_key"] == "sm=1500,mem=default,pl=default"
    assert d["baseline_key"] == BASE.key
    assert d["saving_rel"] == pytest.approx(0.2)
    assert d["slowdown_rel"] == pytest.approx(0.2)
    back = Choice.from_json(d, {m.point.key: m for m in run})
    assert back == c


# --- parsing --------------------------------------------------------------------------------------


def test_parse_objective(run):
    assert parse_objective("energy")(run) == min_energy(run)
    assert parse_objective(" EDP ")(run) == min_edp(run)
    assert parse_objective("ed2p")(run) == min_ed2p(run)
    z = parse_objective("zeus:0.50")
    assert z.name == "zeus:0.5" and z.param == 0.5
    assert z(run, max_power_w=100.0) == min_zeus_cost(run, eta=0.5, max_power_w=100.0)
    s = parse_objective("slowdown:0.1")
    assert s(run) == min_energy_within_slowdown(run, max_slowdown_rel=0.1)
    assert set(OBJECTIVES) == {"energy", "edp", "ed2p", "zeus", "slowdown"}


def test_zeus_objective_needs_max_power(run):
    with pytest.raises(UsageError, match="max_power_w"):
        parse_objective("zeus:0.5")(run)


@pytest.mark.parametrize(
    "text", ["", "power", "energy:1", "zeus", "zeus:", "zeus:1.5", "zeus:x", "slowdown:-1", "edp2"]
)
def test_parse_objective_errors_name_the_valid_forms(text):
    with pytest.raises(UsageError) as exc:
        parse_objective(text)
    assert "energy, edp, ed2p, zeus:<eta in [0,1]>, slowdown:<s >= 0>" in str(exc.value)
    assert exc.value.exit_code == 2
