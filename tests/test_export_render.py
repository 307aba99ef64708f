"""Operating-point export for schedulers: the points document from real simulated sweeps, its
lookups, the Slurm / Kubernetes / env renderings, and names read from result files that try to
break out of YAML and shell (quotes, newlines, ``$(...)``, backticks, YAML specials).

The Slurm prolog / epilog really run (bash) against a stand-in ``nvidia-smi`` script -- there is
no GPU or driver here -- that answers the two queries the scripts make and records ``-pl``.
Env files are sourced by a clean ``bash`` (``env -i``). YAML is parsed with PyYAML when it is
installed, else checked as the JSON scalars it is written with.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import wb

from wattbench.profiler.cli.main import main
from wattbench.profiler.device import nvml as device_nvml
from wattbench.profiler.errors import UsageError
from wattbench.profiler.export import envfile, kubernetes, slurm
from wattbench.profiler.export.names import dns_name, is_label_key, is_label_value
from wattbench.profiler.export.render import render
from wattbench.profiler.export.yamltext import Literal, dump, quote
from wattbench.profiler.names import safe_name
from wattbench.profiler.sim import spec, state
from wattbench.profiler.store import RunRecord
from wattbench.profiler.store.points import (
    GpuInfo,
    PointEntry,
    PointsDocument,
    PointsFileError,
    json_schema,
    validate,
)

try:
    import yaml
except ImportError:  # PyYAML is not a dependency: fall back to the JSON-scalar check
    yaml = None

H100 = "NVIDIA H100 80GB HBM3"
COMPUTE, MEMORY = "matmul-vendor-bf16-4096x4096x4096", "matmul-vendor-bf16-1x8192x8192"
L4_TWO_MEMORY_CLOCKS = "sim:" + str(Path(__file__).parent / "specs" / "l4-two-memory-clocks.toml")

BASH = shutil.which("bash")


def sweep(out: Path, device: str, shape: str, *extra: str) -> None:
    args = ["sweep", "--device", device, "--kernel", "matmul", "--shape", shape, "--dtype",
            "bf16", "--strategy", "grid", "--out", str(out), "--quiet", *extra]  # fmt: skip
    assert main(args) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H100: a clock x power-limit sweep of a compute-bound matmul; L4: memory clocks too, on a
    memory-bound one."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATTBENCH_SIM_STATE_DIR", str(root / "sim-state"))
        sweep(root / "runs", "sim:h100-sxm", "4096x4096x4096", "--sm-clocks", "every:16",
              "--power-limits", "300,500")  # fmt: skip
        sweep(root / "runs", L4_TWO_MEMORY_CLOCKS, "1x8192x8192", "--sm-clocks", "every:16",
              "--mem-clocks", "all")  # fmt: skip
        device_nvml.shutdown_all()
    return root / "runs"


@pytest.fixture(scope="module")
def points(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("points") / "points.json"
    assert main(["export", str(runs), "-o", str(out)]) == 0
    return out


# --- the document ---------------------------------------------------------------------------------


def test_document_validates_and_carries_classes_and_gpu_tables(points):
    import jsonschema  # a dev dependency

    doc = json.loads(points.read_text())
    assert validate(doc) == []
    jsonschema.Draft202012Validator.check_schema(json_schema())
    jsonschema.Draft202012Validator(json_schema()).validate(doc)
    PointsDocument.load(points)
    by = {(p["gpu_name"], p["objective"]): p for p in doc["points"]}
    e = by[(H100, "energy")]
    assert e["workload"] == COMPUTE and e["shape"] == "4096x4096x4096"
    assert e["shape_class"] == "compute-bound" and "square" in e["shape_presets"]
    assert e["arithmetic_intensity"] == pytest.approx(4096 / 3)
    m = by[("NVIDIA L4", "energy")]
    assert m["shape_class"] == "memory-bound" and m["arithmetic_intensity"] < 2
    h100 = doc["gpus"][H100]
    assert h100["clocks_source"] == "spec" and h100["power_limit_w_default"] == 700
    assert h100["sm_clocks_mhz_by_mem"]["2619"][0] == 1980
    assert doc["gpus"]["NVIDIA L4"]["sm_clocks_mhz_by_mem"]["405"][0] == 1050


def test_lookup_by_name_and_by_class(points):
    doc = PointsDocument.load(points)
    exact = doc.lookup(H100, COMPUTE, "energy")
    assert doc.lookup(H100, "matmul-vendor-bf16-compute-bound", "energy") == exact
    assert exact.source_runs and exact.simulated
    with pytest.raises(PointsFileError, match="no operating points for NVIDIA B200") as e:
        doc.lookup("NVIDIA B200", COMPUTE, "energy")
    assert "NVIDIA L4" in str(e.value)
    with pytest.raises(PointsFileError, match="no workload 'matmul-x'") as e:
        doc.lookup(H100, "matmul-x", "energy")
    assert COMPUTE in str(e.value) and "matmul-vendor-bf16-compute-bound" in str(e.value)
    with pytest.raises(PointsFileError, match="has no 'ed2p' point"):
        doc.lookup(H100, COMPUTE, "ed2p")
    with pytest.raises(PointsFileError, match="several objectives"):
        doc.lookup(H100, COMPUTE)


def test_class_covering_two_workloads_is_an_error_naming_them():
    a = PointEntry(H100, "matmul-vendor-bf16-1x4096x4096", "energy", 900, None, None,
                   "matmul", "vendor", "bf16", "1x4096x4096", "memory-bound")  # fmt: skip
    b = PointEntry(H100, "matmul-vendor-bf16-1x8192x8192", "energy", 990, None, None,
                   "matmul", "vendor", "bf16", "1x8192x8192", "memory-bound")  # fmt: skip
    doc = PointsDocument([a, b])
    with pytest.raises(PointsFileError, match="covers several workloads") as e:
        doc.lookup(H100, "matmul-vendor-bf16-memory-bound", "energy")
    assert a.workload in str(e.value) and b.workload in str(e.value)


def test_documents_without_the_new_keys_still_load(tmp_path):
    """points/1 as first written (no shape_class, presets, intensity, gpus) stays readable, and
    unknown keys from a later points/1 writer are ignored."""
    old = {"schema": "wattbench.points/1", "created_at": "2025-01-01T00:00:00+00:00", "points": [
        {"gpu_name": H100, "workload": COMPUTE, "objective": "energy", "sm_mhz": 1305,
         "mem_mhz": None, "power_limit_w": None, "family": "matmul", "impl": "vendor",
         "dtype": "bf16", "shape": "4096x4096x4096", "gpu_uuid": None,
         "expected_slowdown_rel": 0.1, "expected_energy_saving_rel": 0.2,
         "source_runs": ["r.json"], "simulated": False, "a_future_key": {"x": 1}}]}  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert validate(old) == []
    doc = PointsDocument.load(path)
    (e,) = doc.points
    assert e.sm_mhz == 1305 and e.shape_class == "" and e.workload_class is None
    assert doc.lookup(H100, COMPUTE) == e and doc.gpus == {}
    assert slurm.gpu_freq(e, doc.gpu_info(H100)) == "1305"  # no table: not snapped


def test_a_wrongly_typed_field_is_one_error_naming_it(tmp_path):
    bad = {"schema": "wattbench.points/1", "points": [
        {"gpu_name": H100, "workload": COMPUTE, "objective": "energy", "sm_mhz": 1305,
         "mem_mhz": None, "power_limit_w": None,
         "expected_energy_saving_rel": "lots"}]}  # fmt: skip
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(PointsFileError, match="expected_energy_saving_rel") as e:
        PointsDocument.load(path)
    assert str(path) in str(e.value)


# --- Slurm --gpu-freq -----------------------------------------------------------------------------


def _entry(**kw) -> PointEntry:
    base = dict(gpu_name=H100, workload=COMPUTE, objective="energy", sm_mhz=None, mem_mhz=None,
                power_limit_w=None)  # fmt: skip
    return PointEntry(**{**base, **kw})


def test_gpu_freq_syntax_and_snapping(points):
    doc = PointsDocument.load(points)
    h100, l4 = doc.gpu_info(H100), doc.gpu_info("NVIDIA L4")
    assert slurm.gpu_freq(_entry(sm_mhz=1305), h100) == "1305"
    assert slurm.gpu_freq(_entry(sm_mhz=1301), h100) == "1305"  # 15 MHz steps from 345
    assert slurm.gpu_freq(_entry(sm_mhz=5000), h100) == "1980"
    assert slurm.gpu_freq(_entry(sm_mhz=1300, mem_mhz=2600), h100) == "1305,memory=2619"
    assert slurm.gpu_freq(_entry(mem_mhz=405), l4) == "memory=405"
    assert slurm.gpu_freq(_entry(sm_mhz=2040, mem_mhz=400), l4) == "1050,memory=405"
    assert slurm.gpu_freq(_entry(), h100) is None
    assert slurm.gpu_freq(_entry(power_limit_w=300.0), h100) is None
    for e in doc.points:  # every exported value is in Slurm's syntax and a supported clock
        value = slurm.gpu_freq(e, doc.gpu_info(e.gpu_name))
        if value is not None:
            assert re.fullmatch(r"(\d+)?(,?memory=\d+)?", value), value
            if e.sm_mhz is not None:
                assert int(value.split(",")[0]) == e.sm_mhz


# --- hostile names --------------------------------------------------------------------------------


def hostile_doc(points: Path, marker: Path) -> PointsDocument:
    """The exported H100 points renamed as a file could name them."""
    gpu = f'NVIDIA H100 "80GB"\' $(touch {marker}) `touch {marker}` #x: - y\n- z: {{a}}'
    work = f"matmul-vendor-bf16-4096'; touch {marker}; echo '\n# : - [x]\u2028end\\"
    objective = 'energy"; touch x #: &anchor *ref'
    src = PointsDocument.load(points)
    out = []
    for e in src.points:
        if e.gpu_name == H100:
            d = e.to_json()
            d.update(gpu_name=gpu, workload=work)
            if e.objective == "energy":
                d["objective"] = objective
            out.append(d)
    doc = {"schema": "wattbench.points/1", "points": out,
           "gpus": {gpu: src.gpu_info(H100).to_json()}}  # fmt: skip
    return PointsDocument.from_json(doc)


def load_yaml(text: str):
    if yaml is not None:
        return yaml.safe_load(text)
    return None


def test_yaml_scalars_round_trip():
    nasty = ["plain", "a: b", "- item", "# c", "&a *b !tag", "'quoted' \"double\"", "x\ny\r\n",
             "\t\x00\x1b\x7f\x85\u2028\u2029\ufeff", "emoji \U0001f600", "back\\slash", "null",
             "true", "1e3", "", " lead", "@at `tick`", "\ud800 lone"]  # fmt: skip
    for s in nasty:
        q = quote(s)
        assert "\n" not in q and q.startswith('"') and q.endswith('"')
        assert json.loads(q) == s  # a JSON string ...
        if yaml is not None:
            assert yaml.safe_load(f"k: {q}\n") == {"k": s}  # ... and the same YAML scalar
    blocks = ['{\n  "a": 1\n}\n', "a\n\n", "a", "x\n   \ny\n", " lead\n", "del \x7f\n"]
    for t in blocks:  # literal blocks where they are exact, quoted scalars otherwise
        if yaml is not None:
            assert yaml.safe_load(dump({"k": Literal(t)})) == {"k": t}
    text = dump({"a": {"b": [1, 2.5, None, True, "x: y"], "c": []}, "d": "- e"}, "top\nnote")
    if yaml is not None:
        assert yaml.safe_load(text) == {"a": {"b": [1, 2.5, None, True, "x: y"], "c": []},
                                        "d": "- e"}  # fmt: skip


def string_pairs(text: str, indent: int) -> dict[str, str]:
    """``"key": "value"`` lines at ``indent`` spaces, both sides read as JSON strings."""
    string = r'("(?:[^"\\]|\\.)*")'
    pair = re.compile("^" + " " * indent + string + ": " + string + "$")
    return {json.loads(m[1]): json.loads(m[2]) for m in map(pair.match, text.splitlines()) if m}


LABEL_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


def test_kubernetes_output_parses_and_labels_are_valid(points, tmp_path):
    marker = tmp_path / "pwned"
    doc = hostile_doc(points, marker)
    files = render(doc, "k8s", tmp_path / "k8s")
    assert "configmap.yaml" in files and files[-1] == "index.json"
    cm_text = (tmp_path / "k8s" / "configmap.yaml").read_text()
    (labels_file,) = [f for f in files if f.startswith("node-labels-")]
    assert re.fullmatch(r"node-labels-[A-Za-z0-9._-]+\.yaml", labels_file)
    lb_text = (tmp_path / "k8s" / labels_file).read_text()
    for text in (cm_text, lb_text):  # nothing from the names reaches a line start or a comment
        for line in text.splitlines():
            assert line.startswith(("#", '"', " ")) or line == "", line
            assert "\u2028" not in line and "\x85" not in line
    if yaml is not None:
        cm = yaml.safe_load(cm_text)
        assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"
        cm_labels, points_text = cm["metadata"]["labels"], cm["data"]["points.json"]
        labels = yaml.safe_load(lb_text)["metadata"]["labels"]
    else:  # the writer's own form: "key": "value" lines of JSON strings, one literal block
        cm_labels = string_pairs(cm_text, indent=4)
        block = cm_text.split('"points.json": |\n', 1)[1].splitlines()
        points_text = "\n".join(ln[4:] for ln in block) + "\n"
        labels = string_pairs(lb_text, indent=4)
    assert json.loads(points_text) == json.loads(kubernetes.document_text(doc))
    assert {p.gpu_name for p in doc.points} == {
        p["gpu_name"] for p in json.loads(points_text)["points"]
    }
    assert len(labels) == 3 + len(doc.points)
    for k, v in {**labels, **cm_labels}.items():
        assert is_label_key(k) and is_label_value(v), (k, v)
        assert LABEL_NAME.match(k.rpartition("/")[2]) and (v == "" or LABEL_NAME.match(v))
    assert labels["point.wattbench.dev/" + safe_name(f"{doc.points[0].workload}."
                                                     f"{doc.points[0].objective}")]  # fmt: skip
    assert not marker.exists()


def test_names_are_distinct_and_valid():
    names = ["a b", "a-b", "a_b", "x" * 200, "-lead", "ünï", "", "....", "ok.name-1"]
    made = [safe_name(n) for n in names]
    assert len(set(made)) == len(made)
    assert all(is_label_value(m) and m for m in made)
    assert safe_name("ok.name-1") == "ok.name-1"
    assert all(re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", dns_name(n)) for n in names)


def _bash(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, *args], env=env or {}, capture_output=True, timeout=30)


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_env_file_sources_to_exactly_the_values_and_runs_nothing(points, tmp_path):
    marker = tmp_path / "pwned"
    doc = hostile_doc(points, marker)
    files = render(doc, "env", tmp_path / "env")
    assert files[-1] == "index.json"
    index = json.loads((tmp_path / "env" / "index.json").read_text())["files"]
    for row in index:
        e = next(p for p in doc.points if p.objective == row["objective"])
        path = tmp_path / "env" / row["env"]
        assert _bash("-n", str(path)).returncode == 0
        want = envfile.variables(e, doc.gpu_info(e.gpu_name))
        script = 'set -u; . "$1"; shift; for v in "$@"; do printf "%s\\0" "${!v}"; done'
        r = subprocess.run(
            ["env", "-i", BASH, "-c", script, "_", str(path), *want],
            capture_output=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        got = r.stdout.decode("utf-8").split("\0")[:-1]
        assert dict(zip(want, got, strict=True)) == want
        assert want["WATTBENCH_GPU_NAME"] == e.gpu_name and "\n" in e.gpu_name
        assert want["WATTBENCH_SM_MHZ"] == ("" if e.sm_mhz is None else str(e.sm_mhz))
    assert not marker.exists() and not (tmp_path / "x").exists()


FAKE_SMI = """#!/bin/bash
# stand-in for nvidia-smi: GPU names and limits live in files in $FAKE_DIR
printf '%s\\n' "$*" >> "$FAKE_DIR/calls.log"
idx=""; query=""; set_pl=""
while [ $# -gt 0 ]; do
  case "$1" in
    -i) idx="$2"; shift 2;;
    -pl) set_pl="$2"; shift 2;;
    --query-gpu=*) query="${1#--query-gpu=}"; shift;;
    *) shift;;
  esac
done
if [ -n "$set_pl" ]; then printf '%s\\n' "$set_pl" > "$FAKE_DIR/gpu$idx.limit"; exit 0; fi
case "$query" in
  name) cat "$FAKE_DIR/gpu$idx.name";;
  power.limit) cat "$FAKE_DIR/gpu$idx.limit";;
  *) exit 2;;
esac
"""


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_slurm_prolog_sets_and_epilog_restores_the_limit_with_hostile_names(points, tmp_path):
    marker = tmp_path / "pwned"
    doc = hostile_doc(points, marker)
    render(doc, "slurm", tmp_path / "slurm")
    index = json.loads((tmp_path / "slurm" / "index.json").read_text())["files"]
    row = next(r for r in index if r["prolog"])  # a point with an SM clock and a power limit
    entry = next(p for p in doc.points if p.objective == row["objective"])
    limit = f"{entry.power_limit_w:g}"
    assert limit in ("300", "500") and row["gpu_freq"] == str(entry.sm_mhz)
    folder = tmp_path / "slurm"
    assert (folder / row["gpu_freq_file"]).read_text() == f"{entry.sm_mhz}\n"
    prolog, epilog = folder / row["prolog"], folder / row["epilog"]
    for script in (prolog, epilog):
        assert os.access(script, os.X_OK)
        assert _bash("-n", str(script)).returncode == 0
        assert "nvidia-smi" in script.read_text()
    fake = tmp_path / "fake"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    (fake / "gpu0.name").write_text(entry.gpu_name + "\n")  # the (hostile) model of the point
    (fake / "gpu1.name").write_text("NVIDIA L4\n")  # another model: must be left alone
    for i in (0, 1):
        (fake / f"gpu{i}.limit").write_text("700.00\n")
    env = {
        "FAKE_DIR": str(fake),
        "WATTBENCH_NVIDIA_SMI": str(smi),
        "WATTBENCH_SLURM_STATE_DIR": str(tmp_path / "state"),
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_GPUS": "0,1",
    }
    r = _bash(str(prolog), env=env)
    assert r.returncode == 0, r.stderr
    assert (fake / "gpu0.limit").read_text() == f"{limit}\n"
    assert (fake / "gpu1.limit").read_text() == "700.00\n"
    assert b"GPU 1 is not the model" in r.stderr
    assert (tmp_path / "state" / "job-42-gpu-0.pl").read_text() == "700.00\n"
    r = _bash(str(epilog), env=env)
    assert r.returncode == 0, r.stderr
    assert (fake / "gpu0.limit").read_text() == "700.00\n"
    assert list((tmp_path / "state").iterdir()) == []
    calls = (fake / "calls.log").read_text().splitlines()
    assert calls.count(f"-i 0 -pl {limit}") == 1 and calls.count("-i 0 -pl 700.00") == 1
    assert not any("-i 1 -pl" in c for c in calls)
    assert not marker.exists() and not (tmp_path / "x").exists()


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_slurm_scripts_do_nothing_outside_a_job(points, tmp_path):
    doc = PointsDocument.load(points)
    e = next(p for p in doc.points if p.power_limit_w is not None)
    script = tmp_path / "prolog.sh"
    script.write_text(slurm.prolog(e, doc.gpu_info(e.gpu_name)))
    r = _bash(str(script), env={"SLURM_JOB_ID": "1; touch x", "WATTBENCH_NVIDIA_SMI": "/bin/false"})
    assert r.returncode == 0 and b"not a job number" in r.stderr
    with pytest.raises(ValueError, match="default power limit"):
        slurm.prolog(_entry(sm_mhz=1305), GpuInfo())


# --- the command ----------------------------------------------------------------------------------


def test_export_formats_from_runs_and_from_a_document(runs, points, tmp_path):
    r = wb("export", str(runs), "--format", "slurm", "-o", str(tmp_path / "s"), "--gpu", H100)
    assert r.returncode == 0, r.stderr
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["format"] == "slurm" and {f["gpu_name"] for f in index["files"]} == {H100}
    r = wb("export", "--from", str(points), "--format", "env", "-o", str(tmp_path / "e"),
           "--workload", "matmul-vendor-bf16-memory-bound", "--objective", "energy")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (env_name,) = [p.name for p in (tmp_path / "e").glob("*.env")]
    assert env_name.startswith("NVIDIA-L4")
    r = wb("export", str(runs), "--format", "k8s")
    assert r.returncode == 2 and "pass -o FOLDER" in r.stderr
    r = wb("export", str(runs), "--from", str(points))
    assert r.returncode == 2 and "not both" in r.stderr
    r = wb("export", "--from", str(points), "--format", "env", "-o", str(tmp_path / "n"),
           "--gpu", "NVIDIA B200")  # fmt: skip
    assert r.returncode == 2 and "no operating points to export" in r.stderr


def test_sim_and_real_runs_of_one_gpu_name_are_not_exported_together(runs, tmp_path):
    (src,) = runs.glob("*h100*.json")
    doc = json.loads(src.read_text())
    doc["simulated"] = doc["device"]["simulated"] = False
    doc["device"].pop("spec")
    (tmp_path / "real.json").write_text(json.dumps(doc))
    r = wb("export", str(src), str(tmp_path / "real.json"))
    assert r.returncode == 2 and "both simulated and real runs" in r.stderr


def test_a_lone_surrogate_name_is_a_clear_error(points, tmp_path):
    doc = PointsDocument.load(points)
    d = doc.to_json()
    d["points"][0]["gpu_name"] = "bad \ud800"
    with pytest.raises(UsageError, match="not valid Unicode"):
        render(PointsDocument.from_json(d), "env", tmp_path / "u")


# --- round trip: sweep -> export (class name, env file) -> apply ----------------------------------


def _settings() -> state.SimState:
    h100 = spec.load_builtin("h100-sxm")
    return state.StateFile(state.state_path(h100.key, h100.source, 0)).read().settings


def test_apply_by_workload_class_and_from_the_env_file_set_the_exported_point(runs, tmp_path):
    """The sweep's state lives in the module fixture's folder; apply works on this test's
    own simulated H100 (conftest points WATTBENCH_SIM_STATE_DIR at it)."""
    (run,) = runs.glob("*h100*.json")
    chosen = RunRecord.load(run).choices()["energy"].chosen.point
    assert chosen.sm_mhz is not None and chosen.power_limit_w is not None  # a full point
    pts = tmp_path / "points.json"
    assert wb("export", str(run), "-o", str(pts)).returncode == 0
    r = wb("apply", "--device", "sim:h100-sxm", "--from", str(pts), "--workload",
           "matmul-vendor-bf16-compute-bound", "--objective", "energy")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = _settings()
    assert s.sm_locked_mhz == (chosen.sm_mhz, chosen.sm_mhz)
    assert s.power_limit_mw == int(chosen.power_limit_w * 1000)
    assert wb("reset", "--device", "sim:h100-sxm").returncode == 0
    assert _settings().sm_locked_mhz is None

    assert wb("export", "--from", str(pts), "--format", "env", "-o", str(tmp_path / "env"),
              "--objective", "energy").returncode == 0  # fmt: skip
    (env_file,) = (tmp_path / "env").glob("*.env")
    apply = (
        'set -u; . "$1"; exec "$2" -m wattbench.profiler.cli.main apply --device sim:h100-sxm '
        '--sm-mhz "$WATTBENCH_SM_MHZ" --power-limit-w "$WATTBENCH_POWER_LIMIT_W"'
    )
    argv = [BASH or "bash", "-c", apply, "_", str(env_file), sys.executable]
    r = subprocess.run(argv, env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    s = _settings()
    assert s.sm_locked_mhz == (chosen.sm_mhz, chosen.sm_mhz)
    assert s.power_limit_mw == int(chosen.power_limit_w * 1000)
    assert wb("reset", "--device", "sim:h100-sxm").returncode == 0
