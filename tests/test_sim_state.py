"""Spec-file validation and the simulated GPU's persistent state file."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from wattbench.profiler import jsonio
from wattbench.profiler.errors import SpecError
from wattbench.profiler.sim import gpu, physics, spec, state

# --- spec validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"power.idle_w": None}, "power.idle_w"),  # missing
        ({"clocks.sm_mhz_step": 7}, "clocks.sm_mhz_step"),  # does not divide max - min
        ({"clocks.sm_mhz_idle": 2000}, "clocks.sm_mhz_idle"),  # outside [min, max]
        ({"identity.architecture": "kepler"}, "identity.architecture"),  # unknown choice
        ({"identity.name": 5}, "identity.name"),  # wrong type
        ({"power.limit_w_default": 800}, "power.limit_w_default"),  # outside the constraints
        ({"voltage.v_min": 1.1}, "voltage.v_min"),  # above v_max
        ({"sensors.field_values": "yes"}, "sensors.field_values"),  # not a boolean
        ({"sensors.update_period_s": 2}, "sensors.update_period_s"),  # too big
        ({"sensors.energy_counter_period_s": 0.1}, "sensors.energy_counter_period_s"),  # old name
        ({"power.idel_w": 50}, "power.idel_w"),  # misspelt: unknown fields are refused
        ({"sensors.power_sample_window_s": 0.5}, "sensors.power_sample_window_s"),  # > period
        ({"power.data_dynamic_fraction": 1.5}, "power.data_dynamic_fraction"),  # above 1
        ({"performance.tflops.bf17": 1.0}, "performance.tflops.bf17"),  # unknown dtype
        ({"thermal.ambient_c": None}, "thermal.ambient_c"),
        ({"variability.voltage_sd_v": -1}, "variability.voltage_sd_v"),
    ],
)
def test_spec_errors_name_the_dotted_field(spec_variant, changes, field):
    path = spec_variant(changes)
    with pytest.raises(SpecError) as info:
        spec.load_file(path)
    text = str(info.value)
    assert f"field {field}:" in text
    assert str(path.resolve()) in text  # and the file
    assert info.value.remedy  # and what to do


def test_unchanged_spec_copy_loads(spec_variant):
    """The edit helper itself: an unchanged copy parses to the built-in spec."""
    s = spec.load_file(spec_variant({}))
    builtin = spec.load_builtin("h100-sxm")
    assert s.source != builtin.source
    assert dataclasses.replace(s, source=builtin.source) == builtin


def test_spec_toml_syntax_error_is_a_spec_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema_version = 1\nkey = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        spec.load_file(bad)
    with pytest.raises(SpecError, match="cannot read"):
        spec.load_file(tmp_path / "missing.toml")


# --- the state file ------------------------------------------------------------------------------


def _h100_state_path():
    s = spec.load_builtin("h100-sxm")
    return s, state.state_path(s.key, s.source, 0)


def test_state_path_follows_the_environment(tmp_path):
    _, path = _h100_state_path()
    assert path.parent == tmp_path / "sim-state"  # set by the autouse fixture
    assert path.name == "h100-sxm-0.json"


def test_settings_round_trip_through_the_file():
    s, path = _h100_state_path()
    g = gpu.SimulatedGpu(s, noise=False)
    g.update_settings(sm_locked_mhz=(1500, 1500), power_limit_mw=450_000)
    g.run(physics.Workload(1e12, 1e9, "bf16"), 100)
    g.save()
    again = state.StateFile(path).read()
    assert again.settings.sm_locked_mhz == (1500, 1500)
    assert again.settings.power_limit_mw == 450_000
    assert again.settings.mem_locked_mhz is None
    assert again.time_s == g.now_s
    assert again.energy_mj == g.energy_counter_mj()
    g2 = gpu.SimulatedGpu(s, noise=False)
    assert g2.sm_locked_mhz() == (1500, 1500)
    assert g2.power_limit_mw() == 450_000
    assert g2.energy_counter_mj() == g.energy_counter_mj()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff garbage \x93",
        b'{"settings": {"power_limit_mw": 450000, "sm_locked_mhz": [15',  # truncated
        b"not json at all",
    ],
    ids=["empty", "binary", "truncated", "text"],
)
def test_corrupt_state_file_falls_back_to_defaults(content):
    s, path = _h100_state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    g = gpu.SimulatedGpu(s, noise=False)
    assert g.sm_locked_mhz() is None
    assert g.mem_locked_mhz() is None
    assert g.power_limit_mw() == s.power.limit_w_default * 1000
    assert g.energy_counter_mj() == 0
    assert g.now_s == 0.0
    # ... and the next write replaces the corrupt file with a valid one.
    g.update_settings(power_limit_mw=500_000)
    assert json.loads(path.read_text())["settings"]["power_limit_mw"] == 500_000


@pytest.mark.parametrize(
    "content",
    [
        '{"settings": []}',
        "{}",
        "[]",
        "null",
        "42",
        '{"settings": {"sm_locked_mhz": 1500}}',
        '{"energy_mj": "lots"}',
    ],
)
def test_state_file_of_the_wrong_shape_falls_back_to_defaults(content):
    s, path = _h100_state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    g = gpu.SimulatedGpu(s, noise=False)
    assert g.sm_locked_mhz() is None
    assert g.power_limit_mw() == s.power.limit_w_default * 1000
    assert g.energy_counter_mj() == 0


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith((".json", ".lock")))


def test_atomic_writes_leave_no_temporary_files():
    s, path = _h100_state_path()
    g = gpu.SimulatedGpu(s, noise=False)
    for mhz in (1200, 1500, 1980):
        g.update_settings(sm_locked_mhz=(mhz, mhz))
        g.count_setter_call("nvmlDeviceSetGpuLockedClocks")
    g.save()
    assert _leftovers(path.parent) == []
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.stem + ".lock"]
    assert state.StateFile(path).read().setter_calls == {"nvmlDeviceSetGpuLockedClocks": 3}


def test_failed_write_keeps_the_old_file_and_no_temporary(monkeypatch):
    s, path = _h100_state_path()
    g = gpu.SimulatedGpu(s, noise=False)
    g.update_settings(power_limit_mw=450_000)
    before = path.read_bytes()

    real_fdopen = os.fdopen

    class HalfWriter:  # the temporary file gets half the document, then the writer dies
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.f.close()

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            raise OSError("disk full")

    monkeypatch.setattr(
        jsonio.os, "fdopen", lambda fd, *a, **k: HalfWriter(real_fdopen(fd, *a, **k))
    )
    with pytest.raises(OSError, match="disk full"):
        g.update_settings(power_limit_mw=300_000)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(path.parent) == []
    assert state.StateFile(path).read().settings.power_limit_mw == 450_000


def test_settings_written_by_another_handle_are_seen():
    """Two simulated GPUs on one state file (as two processes): changes show up on next read."""
    s, path = _h100_state_path()
    a = gpu.SimulatedGpu(s, noise=False)
    b = gpu.SimulatedGpu(s, noise=False)
    assert b.sm_locked_mhz() is None
    a.update_settings(sm_locked_mhz=(1200, 1200))
    # A different mtime is what tells b to re-read; force one in case the clock is coarse.
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert b.sm_locked_mhz() == (1200, 1200)


def test_change_detection_does_not_depend_on_timestamp_granularity():
    s, path = _h100_state_path()
    a = gpu.SimulatedGpu(s, noise=False)
    b = gpu.SimulatedGpu(s, noise=False)
    a.update_settings(sm_locked_mhz=(1200, 1200))
    old = os.stat(path)
    assert b.sm_locked_mhz() == (1200, 1200)
    a.update_settings(sm_locked_mhz=(1500, 1500))
    # What a filesystem with coarse timestamps does to two writes within one granule:
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert b.sm_locked_mhz() == (1500, 1500)
