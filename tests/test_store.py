"""Run records: round trip, point-by-point durability, validation errors, resume."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time

import pytest

from wattbench.kernels.work import Work
from wattbench.profiler.device import open_device
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.select import min_ed2p, min_energy, min_energy_within_slowdown
from wattbench.profiler.store import (
    REMEDY,
    SCHEMA_ID,
    RecordError,
    RecordExistsError,
    RunRecord,
    collect_versions,
    default_run_path,
    device_json,
    json_schema,
    load,
    validate,
)
from wattbench.profiler.sweep import Space

PROBLEM = {"family": "matmul", "impl": "vendor", "shape": [8192, 8192, 8192], "dtype": "bf16"}
FLOPS = 2 * 8192**3


@pytest.fixture(autouse=True)
def _sim_state(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTBENCH_SIM_STATE_DIR", str(tmp_path / "sim-state"))


@pytest.fixture
def header():
    device = open_device("sim:h100-sxm")
    space = Space.from_specs(device.capabilities, sm="every:20")
    return {
        "device": device_json(device),
        "versions": collect_versions(device.identity),
        "problem": PROBLEM,
        "work": Work(flops=FLOPS, bytes=3 * 2 * 8192**2, dtype="bf16"),
        "settings": {
            "measurement": {"min_window_s": 1.0, "max_trials": 5, "spread_rel_max": 0.02},
            "space": space.describe(),
            "objectives": ["energy", "ed2p", "slowdown:0.1"],
        },
        "simulated": True,
        "idle_power_w": 80.5,
    }


def meas(point: OperatingPoint, time_s: float, energy_j: float, *flags: str) -> Measurement:
    """A point as a sweep records it on the H100 (idle 80.5 W): clocks, temperatures, the
    figures derived from the problem's work."""
    return Measurement(
        point,
        time_s,
        energy_j,
        energy_above_idle_j=energy_j - 80.5 * time_s,
        sm_mhz_mean=float(point.sm_mhz or 1980),
        sm_mhz_min=point.sm_mhz or 1980,
        mem_mhz_mean=2619.0,
        mem_mhz_min=2619,
        temp_c_start=40,
        temp_c_end=55,
        reasons=["sw_power_cap"] if point.power_limit_w else [],
        trials=3,
        spread_rel=0.004,
        energy_source="counter",
        flags=list(flags),
        tflops=FLOPS / time_s / 1e12,
        tflop_per_j=FLOPS / 1e12 / energy_j,
    )


POINTS = [
    meas(OperatingPoint(), 1.4e-3, 0.98),
    meas(OperatingPoint(1680), 1.5e-3, 0.86),
    meas(OperatingPoint(1380), 1.7e-3, 0.80),
    meas(OperatingPoint(1080), 2.1e-3, 0.84, "unstable"),
    meas(OperatingPoint(None, None, 400.0), 1.9e-3, 0.81, "throttled"),
]


def full_record(path, header) -> RunRecord:
    record = RunRecord.create(path, **header)
    for m in POINTS:
        record.add_point(m)
    record.set_choices(
        [
            min_energy(POINTS),
            min_ed2p(POINTS),
            min_energy_within_slowdown(POINTS, max_slowdown_rel=0.1),
        ]
    )
    record.finish("complete")
    return record


def no_temp_files(folder) -> bool:
    return not [p for p in os.listdir(folder) if p.endswith(".tmp")]


# --- round trip -----------------------------------------------------------------------------------


def test_round_trip(tmp_path, header):
    path = tmp_path / "run.json"
    record = full_record(path, header)
    back = load(path)
    assert back.doc == record.doc
    assert back.status == "complete"
    assert back.points == POINTS
    assert back.choices() == {
        "energy": min_energy(POINTS),
        "ed2p": min_ed2p(POINTS),
        "slowdown:0.1": min_energy_within_slowdown(POINTS, max_slowdown_rel=0.1),
    }
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA_ID == "wattbench.run/1"
    assert doc["simulated"] is True
    assert doc["device"]["spec_source"] == "builtin:h100-sxm"
    assert doc["device"]["spec"]["clocks"]["sm_mhz_max"] == 1980  # the raw TOML table
    assert doc["problem"] == PROBLEM
    assert doc["work"] == {"flops": 2 * 8192**3, "bytes": 3 * 2 * 8192**2, "dtype": "bf16"}
    assert doc["baseline_key"] == "sm=default,mem=default,pl=default"
    assert doc["idle_power_w"] == 80.5
    assert doc["points"][1]["point_key"] == "sm=1680,mem=default,pl=default"
    assert doc["choices"]["energy"]["point_key"] == "sm=1380,mem=default,pl=default"
    assert set(doc["versions"]) >= {"wattbench", "python", "numpy", "pynvml", "driver"}
    assert doc["versions"]["driver"] == header["device"]["driver_version"]
    for key in ("created_utc", "updated_utc"):
        stamp = dt.datetime.fromisoformat(doc[key])
        assert stamp.utcoffset() == dt.timedelta(0)
    assert doc["updated_utc"] >= doc["created_utc"]


def test_typed_header_accessors(tmp_path, header):
    """RunRecord.device / problem / work / settings read the file's header with types and units;
    the values come from the simulated H100's spec and the header written."""
    path = tmp_path / "run.json"
    full_record(path, header)
    rec = load(path)
    dev = rec.device
    assert (dev.name, dev.simulated, dev.selection) == (
        "NVIDIA H100 80GB HBM3",
        True,
        "sim:h100-sxm",
    )
    assert dev.uuid == header["device"]["uuid"] and dev.uuid.startswith("GPU-")
    assert dev.spec_source == "builtin:h100-sxm"
    assert dev.spec is not None and dev.spec["power"]["limit_w_default"] == 700
    problem = rec.problem
    assert (problem.family, problem.impl, problem.dtype) == ("matmul", "vendor", "bf16")
    assert problem.dims == (8192, 8192, 8192) and problem.shape_text == "8192x8192x8192"
    assert problem.to_json() == PROBLEM
    work = rec.work
    assert (work.flops, work.bytes, work.dtype) == (2.0 * 8192**3, 6.0 * 8192**2, "bf16")
    assert work.arithmetic_intensity == pytest.approx(8192 / 3)
    s = rec.settings
    assert s.objectives == ("energy", "ed2p", "slowdown:0.1")
    assert s.space_max_power_limit_w == 700.0  # the spec's default limit: no power limit swept
    assert s.space is not None and s.space["specs"]["sm"] == "every:20"
    assert rec.simulated is True and rec.baseline_key == "sm=default,mem=default,pl=default"
    assert rec.point_count == len(POINTS) and rec.choice_names == ("energy", "ed2p", "slowdown:0.1")
    assert rec.idle_power_w == 80.5 and rec.gpu_time_s is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.settings.purpose = "verify"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.space["n_points"] = 0  # type: ignore[index]  # a read-only view of the document


def test_accessors_read_older_records(tmp_path, header):
    """Keys newer than the schema's required ones read as an older record means them: no
    purpose is a sweep, no strategy a grid, no measurement method steady, nothing found."""
    path = tmp_path / "run.json"
    RunRecord.create(path, **header)  # the header has none of those keys
    s = load(path).settings
    assert (s.purpose, s.strategy_name, s.method) == ("sweep", "grid", "steady")
    assert (s.strategy, s.found, s.thermal_prior, s.from_defaults) == (None, None, None, False)
    assert s.strategy_point_keys == () and s.found_power_limit_w is None
    header["settings"] = {
        **header["settings"],
        "purpose": "verify",
        "strategy": {"strategy": "points", "points": ["sm=1380,mem=default,pl=default"]},
        "found": {"power_limit_w": 650.0},
        "measurement": {"method": "fast"},
        "from_defaults": True,
    }
    path = tmp_path / "verify.json"
    RunRecord.create(path, **header)
    s = load(path).settings
    assert (s.purpose, s.strategy_name, s.method, s.from_defaults) == (
        "verify",
        "points",
        "fast",
        True,
    )
    assert s.strategy_point_keys == ("sm=1380,mem=default,pl=default",)
    assert s.found_power_limit_w == 650.0 and load(path).purpose == "verify"


def test_every_add_point_leaves_a_valid_file(tmp_path, header):
    path = tmp_path / "run.json"
    record = RunRecord.create(path, **header)
    assert load(path).points == []
    for n, m in enumerate(POINTS, start=1):
        record.add_point(m)
        on_disk = load(path)
        assert on_disk.points == POINTS[:n]
        assert on_disk.status == "running"
        assert validate(on_disk.doc) == []
        assert no_temp_files(tmp_path)


def test_failed_write_keeps_the_previous_file(tmp_path, header, monkeypatch):
    path = tmp_path / "run.json"
    record = RunRecord.create(path, **header)
    record.add_point(POINTS[0])

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(RecordError, match="No space left on device"):
        record.add_point(POINTS[1])
    monkeypatch.undo()
    assert load(path).points == POINTS[:1]
    assert no_temp_files(tmp_path)


def test_re_measured_point_replaces_the_old_one(tmp_path, header):
    record = RunRecord.create(tmp_path / "run.json", **header)
    record.add_point(POINTS[1])
    again = meas(OperatingPoint(1680), 1.5e-3, 0.85)
    record.add_point(again)
    assert load(record.path).points == [again]


# --- resume ---------------------------------------------------------------------------------------


def test_resume_keys(tmp_path, header):
    path = tmp_path / "run.json"
    record = RunRecord.create(path, **header)
    for m in POINTS[:3]:
        record.add_point(m)
    record.finish("interrupted")
    resumed = RunRecord.resume(path)
    assert resumed.status == "running" == load(path).status
    assert resumed.measured_keys() == {m.point.key for m in POINTS[:3]}
    space = Space.from_specs(open_device("sim:h100-sxm").capabilities, sm="1680,1380,1080")
    todo = [p for p in space.points() if p.key not in resumed.measured_keys()]
    assert todo == [OperatingPoint(1080)]
    resumed.add_point(POINTS[3])
    assert load(path).points == POINTS[:4]


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda d: d["problem"].update(family="w8a8", dtype="int8"), "was edited or damaged"),
        (lambda d: d["problem"].update(impl="nope"), "cannot make"),
        (lambda d: d["points"][1].update(tflops=1.0), "point 1"),
    ],
)
def test_resume_refuses_a_record_that_disagrees_with_itself(tmp_path, header, edit, says):
    path = tmp_path / "run.json"
    record = RunRecord.create(path, **header)
    for m in POINTS[:3]:
        record.add_point(m)
    record.finish("interrupted")
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(RecordError, match=says):
        RunRecord.resume(path)
    assert json.loads(path.read_text()) == doc  # nothing was appended or rewritten


@pytest.mark.parametrize("field", ["energy_j", "time_s", "avg_power_w"])
@pytest.mark.parametrize("value", [0, -0.5])
def test_non_positive_figures_are_refused(tmp_path, header, field, value):
    path = tmp_path / "run.json"
    record = RunRecord.create(path, **header)
    record.add_point(POINTS[0])
    doc = json.loads(path.read_text())
    doc["points"][0][field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(RecordError, match=field):
        load(path)


def test_the_runner_says_at_the_end_what_it_learnt(tmp_path, header):
    """settings.runner is rewritten when a sweep (or a resumed part of it) ends (a real GPU's
    runner knows only then whether it captured a CUDA graph), each part kept with the points it
    measured in settings.runner_parts; the rest of the header is unchanged."""
    path = tmp_path / "run.json"
    record = full_record(path, {**header, "settings": {**header["settings"], "runner": {}}})
    before = json.loads(path.read_text())
    described = {"runner": "gpu", "cuda_graph_state": "captured (9 launches per replay)"}
    record.set_runner(described, ["a", "b"])
    record.set_runner({**described, "cuda_graph_state": "not tried yet"}, ["c"])  # a resumed part
    after = json.loads(path.read_text())
    assert after["settings"]["runner"]["cuda_graph_state"] == "not tried yet"  # the latest
    parts = after["settings"].pop("runner_parts")
    assert parts == [
        {"runner": described, "point_keys": ["a", "b"]},
        {"runner": {**described, "cuda_graph_state": "not tried yet"}, "point_keys": ["c"]},
    ]
    after["settings"]["runner"] = before["settings"]["runner"]
    assert {k: v for k, v in after.items() if k != "updated_utc"} == {
        k: v for k, v in before.items() if k != "updated_utc"
    }
    assert validate(after) == []


def test_idle_power_set_later(tmp_path, header):
    header["idle_power_w"] = None
    record = RunRecord.create(tmp_path / "run.json", **header)
    assert load(record.path).idle_power_w is None
    record.set_idle_power_w(81.25)
    assert load(record.path).idle_power_w == 81.25


def test_create_refuses_an_existing_file(tmp_path, header):
    path = tmp_path / "run.json"
    RunRecord.create(path, **header)
    with pytest.raises(RecordError, match="already exists") as exc:
        RunRecord.create(path, **header)
    assert "--resume" in str(exc.value)


def test_finish_status_checked(tmp_path, header):
    record = RunRecord.create(tmp_path / "run.json", **header)
    with pytest.raises(ValueError):
        record.finish("running")


def test_choice_must_name_a_recorded_point(tmp_path, header):
    record = RunRecord.create(tmp_path / "run.json", **header)
    record.add_point(POINTS[0])
    with pytest.raises(ValueError, match="not in the record"):
        record.set_choices([min_energy(POINTS)])


def test_bad_header_is_a_caller_bug(tmp_path, header):
    header["problem"] = {"family": "matmul"}
    with pytest.raises(ValueError, match="'impl' is a required property"):
        RunRecord.create(tmp_path / "run.json", **header)
    assert not (tmp_path / "run.json").exists()


# --- load errors ----------------------------------------------------------------------------------


def _expect_record_error(path, *fragments):
    with pytest.raises(RecordError) as exc:
        load(path)
    text = str(exc.value)
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text
    assert exc.value.exit_code == 2
    return text


def test_corrupt_file(tmp_path, header):
    path = tmp_path / "run.json"
    full_record(path, header)
    path.write_text(path.read_text()[:200])
    _expect_record_error(path, "is not valid JSON", "damaged", REMEDY)
    path.write_bytes(b"\xff\xfe\x00garbage")
    _expect_record_error(path, "cannot read run record", REMEDY)


def test_missing_file(tmp_path):
    _expect_record_error(tmp_path / "nope.json", "no run record at", REMEDY)


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        (None, "is not a wattbench run record"),
        ("wattbench.devices/1", "is a 'wattbench.devices' file, not a wattbench run record"),
        ("wattbench.run/2", "has schema 'wattbench.run/2'; this wattbench reads 'wattbench.run/1'"),
        ("wattbench.run/0", "this wattbench reads 'wattbench.run/1'"),
        ("wattbench.run/x", "this wattbench reads 'wattbench.run/1'"),
    ],
)
def test_other_schema(tmp_path, header, schema, fragment):
    path = tmp_path / "run.json"
    doc = full_record(path, header).doc
    if schema is None:
        del doc["schema"]
    else:
        doc["schema"] = schema
    path.write_text(json.dumps(doc))
    text = _expect_record_error(path, fragment, REMEDY)
    assert ("upgrade wattbench" in text) == (schema == "wattbench.run/2")


def test_not_an_object(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("[1, 2, 3]")
    _expect_record_error(path, "is not a wattbench run record")


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("points"), "'points' is a required property"),
        (lambda d: d["points"][2].pop("energy_j"), "points/2: 'energy_j' is a required property"),
        (lambda d: d.update(status="paused"), "status: 'paused' is not one of"),
        (lambda d: d["work"].update(flops="many"), "work/flops: 'many' is not of type"),
        (lambda d: d["choices"]["energy"].pop("value"), "'value' is a required property"),
    ],
)
def test_missing_or_wrong_keys(tmp_path, header, mutate, fragment):
    path = tmp_path / "run.json"
    doc = copy.deepcopy(full_record(path, header).doc)
    mutate(doc)
    path.write_text(json.dumps(doc))
    _expect_record_error(path, "is invalid", fragment, REMEDY)


def test_inconsistent_points(tmp_path, header):
    path = tmp_path / "run.json"
    doc = full_record(path, header).doc
    doc["points"][1]["point_key"] = doc["points"][0]["point_key"]
    path.write_text(json.dumps(doc))
    _expect_record_error(path, "point 1 has a wrong or repeated point_key")
    doc = full_record(tmp_path / "run2.json", header).doc
    doc["points"][2]["bogus_field"] = 1
    path.write_text(json.dumps(doc))
    _expect_record_error(path, "point 2 is not a valid measurement")
    doc = full_record(tmp_path / "run3.json", header).doc
    del doc["points"][2]  # the energy choice's point
    path.write_text(json.dumps(doc))
    _expect_record_error(path, "choice 'energy' names a point that is not in it")


# --- unwritable output ----------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unwritable_dir(tmp_path, header):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(RecordError) as exc:
            RunRecord.create(folder / "run.json", **header)
    finally:
        folder.chmod(0o700)
    assert "cannot write run record" in str(exc.value)
    assert "Permission denied" in str(exc.value)
    assert "pass --out" in str(exc.value)


def test_permission_denied_message(tmp_path, header, monkeypatch):
    """The same path as test_unwritable_dir, for runs as root (which may write anywhere)."""

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(RecordError) as exc:
        RunRecord.create(tmp_path / "run.json", **header)
    assert str(exc.value) == (
        f"cannot write run record {tmp_path / 'run.json'}: Permission denied -- "
        "pass --out a folder you can write to (or fix its permissions)"
    )


def test_output_folder_is_a_file(tmp_path, header):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    with pytest.raises(RecordError) as exc:
        RunRecord.create(blocker / "sub" / "run.json", **header)
    assert f"cannot write run record {blocker / 'sub' / 'run.json'}" in str(exc.value)
    assert "pass --out" in str(exc.value)
    assert exc.value.exit_code == 2


# --- schema ---------------------------------------------------------------------------------------


def test_schema_file_is_valid_draft_2020_12():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("use_jsonschema", [False, True])
def test_full_record_validates(tmp_path, header, use_jsonschema):
    if use_jsonschema:
        pytest.importorskip("jsonschema")
    doc = json.loads(full_record(tmp_path / "run.json", header).path.read_text())
    assert validate(doc, use_jsonschema=use_jsonschema) == []


@pytest.mark.parametrize("use_jsonschema", [False, True])
def test_validators_agree_on_errors(tmp_path, header, use_jsonschema):
    if use_jsonschema:
        pytest.importorskip("jsonschema")
    good = json.loads(full_record(tmp_path / "run.json", header).path.read_text())
    cases = {
        "points/0/point/sm_mhz": lambda d: d["points"][0]["point"].update(sm_mhz="fast"),
        "points/1/time_s": lambda d: d["points"][1].update(time_s=-1.0),
        "created_utc": lambda d: d.update(created_utc="yesterday"),
        "schema": lambda d: d.update(schema="wattbench.run/9"),
        "simulated": lambda d: d.update(simulated="yes"),
        "choices/ed2p": lambda d: d["choices"]["ed2p"].pop("point_key"),
        "(top level)": lambda d: d.pop("device"),
    }
    for where, mutate in cases.items():
        doc = copy.deepcopy(good)
        mutate(doc)
        problems = validate(doc, use_jsonschema=use_jsonschema)
        assert problems, where
        assert all(p.startswith(f"{where}: ") for p in problems), problems


# --- file names -----------------------------------------------------------------------------------


def test_default_run_path(tmp_path):
    day = dt.date(2025, 1, 31)
    path = default_run_path(tmp_path / "results", "sim:h100-sxm", PROBLEM, today=day)
    name = "2025-01-31-sim-h100-sxm-matmul-vendor-bf16-8192x8192x8192"
    assert path == tmp_path / "results" / f"{name}.json"
    path.parent.mkdir()
    path.write_text("{}")
    second = default_run_path(tmp_path / "results", "sim:h100-sxm", PROBLEM, today=day)
    assert second.name == f"{name}-2.json"
    second.write_text("{}")
    third = default_run_path(tmp_path / "results", "sim:h100-sxm", PROBLEM, today=day)
    assert third.name.endswith("-3.json")


def test_default_run_path_shapes_and_odd_names(tmp_path):
    day = dt.date(2025, 1, 31)
    p = {"family": "copy", "dtype": "fp32", "shape": {"n": 1 << 28}}
    assert default_run_path(tmp_path, "GPU-1234 abcd", p, today=day).name == (
        "2025-01-31-GPU-1234-abcd-copy-fp32-268435456.json"
    )
    p = {"family": "conv/2d", "dtype": "fp16", "shape": "b8 c64"}
    assert default_run_path(tmp_path, "0", p, today=day).name == (
        "2025-01-31-0-conv-2d-fp16-b8-c64.json"
    )


# --- operating-point documents (store/points.py) --------------------------------------------------


def test_points_from_a_record_round_trip_and_validate(tmp_path, header):
    from wattbench.profiler.export.points import points_from_runs
    from wattbench.profiler.store.points import PointsDocument
    from wattbench.profiler.store.points import validate as validate_points

    record = full_record(tmp_path / "run.json", header)
    doc = points_from_runs([record])
    assert {p.objective for p in doc.points} == {"energy", "ed2p", "slowdown:0.1"}
    e = doc.lookup("NVIDIA H100 80GB HBM3", "matmul-vendor-bf16-8192x8192x8192", "energy")
    assert (e.sm_mhz, e.mem_mhz, e.power_limit_w) == (1380, None, None)
    assert e.expected_energy_saving_rel == pytest.approx(1 - 0.80 / 0.98)
    assert e.expected_slowdown_rel == pytest.approx(1.7 / 1.4 - 1)
    assert e.shape_class == "compute-bound" and e.simulated and e.source_runs == (str(record.path),)
    info = doc.gpu_info("NVIDIA H100 80GB HBM3")
    assert info.clocks_source == "spec" and info.sm_clocks_mhz()[:2] == (1980, 1965)
    assert info.power_limit_w_default == 700
    path = tmp_path / "points.json"
    doc.write(path)
    text = json.loads(path.read_text())
    assert validate_points(text, use_jsonschema=True) == []
    assert validate_points(text, use_jsonschema=False) == []
    back = PointsDocument.load(path)
    assert back.points == doc.points and back.gpus == doc.gpus


@pytest.mark.parametrize("use_jsonschema", [True, False])
def test_points_validators_agree_on_errors(use_jsonschema):
    from wattbench.profiler.store.points import validate as validate_points

    entry = {"gpu_name": "G", "workload": "w", "objective": "energy", "sm_mhz": 1500,
             "mem_mhz": None, "power_limit_w": None}  # fmt: skip
    cases = {
        "points/0/sm_mhz": {**entry, "sm_mhz": "fast"},
        "points/0/power_limit_w": {**entry, "power_limit_w": -5},
        "points/0/shape_class": {**entry, "shape_class": "huge"},
        "points/0": {k: v for k, v in entry.items() if k != "objective"},
    }
    for where, bad in cases.items():
        problems = validate_points({"schema": "wattbench.points/1", "points": [bad]},
                                   use_jsonschema=use_jsonschema)  # fmt: skip
        assert problems and all(p.startswith(f"{where}: ") for p in problems), (where, problems)
    assert validate_points({"schema": "wattbench.points/2", "points": []},
                           use_jsonschema=use_jsonschema)  # fmt: skip


CREATE_CHILD = """
import json, sys, time
from wattbench.profiler.store import RunRecord
header = json.loads(sys.argv[3])
start = float(sys.argv[2])
while time.time() < start:  # all children claim at the same moment
    time.sleep(0.0005)
record = RunRecord.create_new(sys.argv[1], "sim-h100-sxm", **header)
print(record.path)
"""


def test_concurrent_runs_into_one_folder_each_keep_their_own_file(tmp_path, header):
    """Eight processes start a run with the same name in one folder at the same moment (as 8
    sweeps of one node's GPUs do): each claims its own file exclusively, none is overwritten,
    and every file is a valid record."""
    header = json.loads(json.dumps({**header, "work": header["work"].to_json()}))
    out = tmp_path / "runs"
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_CHILD, str(out), str(start), json.dumps(header)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    paths = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(paths)) == 8
    assert sorted(str(p) for p in out.glob("*.json")) == sorted(paths)
    for path in paths:
        assert RunRecord.load(path).status == "running"


def test_creating_over_an_existing_record_is_refused_and_leaves_it(tmp_path, header):
    path = tmp_path / "run.json"
    first = RunRecord.create(path, **header)
    with pytest.raises(RecordExistsError, match="already exists"):
        RunRecord.create(path, **header)
    assert RunRecord.load(path).doc["created_utc"] == first.doc["created_utc"]
