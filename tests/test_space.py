"""Operating-point spaces parsed against simulated devices' capabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wattbench.profiler.device import open_device
from wattbench.profiler.errors import PowerLimitOutOfRangeError, UnsupportedClockError, UsageError
from wattbench.profiler.measure.types import OperatingPoint
from wattbench.profiler.sweep import (
    Space,
    parse_memory_clocks,
    parse_power_limits,
    parse_sm_clocks,
    resolve_clocks,
)

L4_TWO_MEMORY_CLOCKS = "sim:" + str(Path(__file__).parent / "specs" / "l4-two-memory-clocks.toml")


@pytest.fixture(scope="module")
def caps_by_key(tmp_path_factory):
    """Capabilities of the simulated GPUs, with their state kept in a temporary folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATTBENCH_SIM_STATE_DIR", str(tmp_path_factory.mktemp("sim-state")))
        yield {
            k: open_device(s).capabilities
            for k, s in (("h100-sxm", "sim:h100-sxm"), ("l4", L4_TWO_MEMORY_CLOCKS))
        }


@pytest.fixture
def h100(caps_by_key):
    return caps_by_key["h100-sxm"]


@pytest.fixture
def l4(caps_by_key):
    return caps_by_key["l4"]


# --- SM clocks ------------------------------------------------------------------------------------


def test_sm_all(h100):
    clocks = parse_sm_clocks("all", h100)
    assert clocks == h100.sm_clocks_mhz[2619]
    assert clocks[0] == 1980 and clocks[-1] == min(h100.sm_clocks_mhz_all)


@pytest.mark.parametrize("k", [1, 2, 4, 7, 200])
def test_sm_every_k_keeps_both_ends(h100, k):
    table = h100.sm_clocks_mhz[2619]
    clocks = parse_sm_clocks(f"every:{k}", h100)
    assert clocks[0] == table[0] and clocks[-1] == table[-1]
    assert list(clocks) == sorted(set(clocks), reverse=True)
    assert set(table[::k]) <= set(clocks) <= set(table)
    assert len(clocks) in (len(table[::k]), len(table[::k]) + 1)


def test_sm_list(h100):
    assert parse_sm_clocks(" 1200, 1980,1500,1500 ", h100) == (1980, 1500, 1200)


def test_sm_unsupported_names_nearest(h100):
    with pytest.raises(UnsupportedClockError) as exc:
        parse_sm_clocks("1200,1234", h100)
    assert "1234 MHz is not supported" in str(exc.value)
    assert "nearest supported: 1230 or 1245 MHz" in str(exc.value)
    with pytest.raises(UnsupportedClockError, match="nearest supported: 1980 MHz"):
        parse_sm_clocks("2100", h100)


def test_sm_range(h100):
    clocks = parse_sm_clocks("900:1800", h100)
    assert clocks[0] == 1800 and clocks[-1] == 900
    assert all(900 <= c <= 1800 for c in clocks)
    assert len(clocks) == (1800 - 900) // 15 + 1
    # bounds need not be supported clocks
    assert parse_sm_clocks("901:929", h100) == (915,)


def test_sm_range_with_step_snaps(h100):
    assert parse_sm_clocks("900:1800:60", h100) == tuple(range(1800, 899, -60))
    # targets 1000, 1100, ... snap to the nearest supported clock (15-MHz steps from 1980)
    assert parse_sm_clocks("1000:1300:100", h100) == (1290, 1200, 1095, 1005)


def test_sm_range_errors(h100):
    with pytest.raises(UsageError, match="start above end"):
        parse_sm_clocks("1800:900", h100)
    with pytest.raises(UsageError, match="no supported SM clock in 2000-2100 MHz"):
        parse_sm_clocks("2000:2100", h100)
    with pytest.raises(UsageError, match="step must be >= 1"):
        parse_sm_clocks("900:1800:0", h100)


@pytest.mark.parametrize(
    "spec", ["", "fast", "every:", "every:x", "1:2:3:4", "900:abc", "1500;1800", "1.5e3"]
)
def test_sm_malformed_says_the_forms(h100, spec):
    with pytest.raises(UsageError) as exc:
        parse_sm_clocks(spec, h100)
    assert not isinstance(exc.value, UnsupportedClockError)
    assert exc.value.exit_code == 2
    assert "accepted forms" in str(exc.value)


def test_every_zero(h100):
    with pytest.raises(UsageError, match="K must be >= 1"):
        parse_sm_clocks("every:0", h100)


def test_sm_default(h100):
    assert parse_sm_clocks("default", h100) == (None,)


def test_sm_depends_on_memory_clock(l4):
    assert parse_sm_clocks("all", l4, 405)[0] == 1050
    assert parse_sm_clocks("all", l4, 6251)[0] == 2040
    # an explicit clock the GPU supports, but not at 405 MHz memory, is left out there
    assert parse_sm_clocks("1980,900", l4, 405) == (900,)
    assert parse_sm_clocks("1200:2040", l4, 405) == ()
    with pytest.raises(UnsupportedClockError):
        parse_sm_clocks("2100", l4, 405)


# --- memory clocks --------------------------------------------------------------------------------


def test_memory_clocks(l4, h100):
    assert parse_memory_clocks("all", l4) == (6251, 405)
    assert parse_memory_clocks("default", l4) == (None,)
    assert parse_memory_clocks("405", l4) == (405,)
    assert parse_memory_clocks("every:5", l4) == (6251, 405)
    assert parse_memory_clocks("400:1000", l4) == (405,)
    assert parse_memory_clocks("all", h100) == (2619,)
    with pytest.raises(
        UnsupportedClockError, match=r"memory clock 5000 MHz.*nearest supported: 405 or 6251 MHz"
    ):
        parse_memory_clocks("5000", l4)


def test_resolve_clocks_directly():
    assert resolve_clocks("every:2", [100, 200, 300, 400]) == (400, 200, 100)
    assert resolve_clocks("150:350:100", [100, 200, 300, 400]) == (300, 200)
    # target 250 is as near 200 as 300: ties snap to the lower clock
    assert resolve_clocks("100:300:150", [100, 200, 300]) == (200, 100)


# --- power limits ---------------------------------------------------------------------------------


def test_power_range(h100):
    limits = parse_power_limits("200:700:50", h100)
    assert limits == tuple(float(w) for w in range(700, 199, -50))
    assert all(isinstance(w, float) for w in limits)
    assert parse_power_limits("200:690:50", h100)[0] == 650.0  # end not on the grid
    assert parse_power_limits("300:400:33.3", h100) == (399.9, 366.6, 333.3, 300.0)


def test_power_list(h100):
    assert parse_power_limits("450, 300,700", h100) == (700.0, 450.0, 300.0)


def test_power_out_of_range(h100, l4):
    with pytest.raises(PowerLimitOutOfRangeError) as exc:
        parse_power_limits("100:700:50", h100)
    assert "100 W is out of range" in str(exc.value)
    assert "choose 200-700 W (default 700 W)" in str(exc.value)
    with pytest.raises(PowerLimitOutOfRangeError, match="choose 40-72 W"):
        parse_power_limits("80", l4)


@pytest.mark.parametrize("spec", ["", "lots", "200:700", "700:200:50", "200:700:0", "200:700:-5"])
def test_power_malformed(h100, spec):
    with pytest.raises(UsageError) as exc:
        parse_power_limits(spec, h100)
    assert not isinstance(exc.value, PowerLimitOutOfRangeError)


# --- the space ------------------------------------------------------------------------------------


def _check_baseline_first_once(points):
    assert points[0] == OperatingPoint()
    assert sum(p.is_baseline for p in points) == 1
    assert len(set(points)) == len(points)


def test_clock_space(l4):
    space = Space.from_specs(l4, sm="every:8", mem="all")
    points = space.points()
    _check_baseline_first_once(points)
    assert space.mode == "clocks"
    assert all(p.power_limit_w is None for p in points)
    assert {p.mem_mhz for p in points[1:]} == {6251, 405}
    assert max(p.sm_mhz for p in points if p.mem_mhz == 405) == 1050
    n_expected = len(parse_sm_clocks("every:8", l4, 6251)) + len(
        parse_sm_clocks("every:8", l4, 405)
    )
    assert len(points) == 1 + n_expected


def test_power_space(h100):
    space = Space.from_specs(h100, power="200:700:100")
    points = space.points()
    _check_baseline_first_once(points)
    assert space.mode == "power"
    assert [p.power_limit_w for p in points[1:]] == [700.0, 600.0, 500.0, 400.0, 300.0, 200.0]
    assert all(p.sm_mhz is None and p.mem_mhz is None for p in points)
    assert space.max_power_limit_w == 700.0


def test_both_is_cartesian(h100):
    space = Space.from_specs(h100, sm="1980,1500,1200", power="300,500")
    points = space.points()
    _check_baseline_first_once(points)
    assert space.mode == "both"
    assert len(points) == 1 + 3 * 2
    assert OperatingPoint(1500, None, 300.0) in points


def test_baseline_not_repeated(h100):
    space = Space.from_specs(h100, sm="default", mem="default")
    assert space.points() == [OperatingPoint()]
    space = Space.from_specs(h100, sm="1980", mem="default")
    assert space.points() == [OperatingPoint(), OperatingPoint(1980)]


def test_mem_only_space(l4):
    points = Space.from_specs(l4, mem="all").points()
    assert points == [OperatingPoint(), OperatingPoint(None, 6251), OperatingPoint(None, 405)]


def test_explicit_sm_supported_at_no_memory_clock(l4):
    with pytest.raises(UsageError, match="supported at none of memory clocks"):
        Space.from_specs(l4, sm="1980", mem="405")


def test_nothing_to_sweep(h100):
    with pytest.raises(UsageError, match="nothing to sweep"):
        Space.from_specs(h100)


def test_describe_is_json(l4):
    space = Space.from_specs(l4, sm="1500,900", mem="all", power="50:70:10")
    d = json.loads(json.dumps(space.describe()))
    assert d["mode"] == "both"
    assert d["specs"] == {"sm": "1500,900", "mem": "all", "power": "50:70:10"}
    assert d["sm_mhz_by_mem"] == {"6251": [1500, 900], "405": [900]}
    assert d["power_limits_w"] == [70.0, 60.0, 50.0]
    assert d["max_power_limit_w"] == 72.0
    assert d["n_points"] == len(space.points()) == 1 + 3 * 3
