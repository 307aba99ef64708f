"""``wattbench compare``: real sweeps on the three simulated GPUs (a compute-bound and a
memory-bound matmul), compared in every output format; grouping, newest-run selection, labels
and bad files. Nothing is mocked; records of "real" GPUs are edited copies of simulated ones."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_run import wb

from wattbench.profiler.cli.main import main
from wattbench.profiler.device import nvml as device_nvml
from wattbench.profiler.report.compare import COMPARE_SCHEMA, compare
from wattbench.profiler.report.peaks import DATASHEET, peaks_of
from wattbench.profiler.report.runs import load_runs
from wattbench.profiler.store import RunRecord

GPUS = ("sim:h100-sxm", "sim:a100-sxm", "sim:l4")
COMPUTE = "8192x8192x8192"
MEMORY = "1x8192x8192"  # GEMV-like: 1 FLOP/B


def sweep(out: Path, device: str, shape: str, *extra: str) -> None:
    args = ["sweep", "--device", device, "--kernel", "matmul", "--shape", shape, "--dtype",
            "bf16", "--strategy", "grid", "--sm-clocks", "every:16", "--out", str(out),
            "--quiet", *extra]  # fmt: skip
    assert main(args) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six run records: both problems on the three simulated GPUs (own simulator state)."""
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATTBENCH_SIM_STATE_DIR", str(root / "sim-state"))
        for gpu in GPUS:
            for shape in (COMPUTE, MEMORY):
                sweep(root / "runs", gpu, shape)
        device_nvml.shutdown_all()
    return root / "runs"


def compare_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["compare", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def copy_record(src: Path, dst: Path, edit) -> Path:
    doc = json.loads(src.read_text())
    edit(doc)
    dst.write_text(json.dumps(doc), encoding="utf-8")
    return dst


def record_of(runs: Path, key: str, shape: str) -> Path:
    (path,) = [p for p in runs.glob(f"*{key}*-{shape}-*.json")]
    return path


# --- the comparison -------------------------------------------------------------------------------


def test_json_has_one_group_per_problem_and_one_ranked_row_per_gpu(runs, capsys):
    doc = compare_json(capsys, str(runs))
    assert doc["schema"] == COMPARE_SCHEMA
    labels = [g["problem"]["label"] for g in doc["groups"]]
    assert labels == [f"matmul-vendor-bf16-{MEMORY}", f"matmul-vendor-bf16-{COMPUTE}"]
    bounds = {g["problem"]["shape"]: g["bound"] for g in doc["groups"]}
    assert bounds == {MEMORY: "memory", COMPUTE: "compute"}
    for g in doc["groups"]:
        assert g["simulated"] == "simulated" and g["rank_objective"] == "energy"
        rows = g["rows"]
        assert len(rows) == 3 and all(r["simulated"] for r in rows)
        assert [r["rank"] for r in rows] == [1, 2, 3]
        tpj = [r["objectives"]["energy"]["tflop_per_j"] for r in rows]
        assert tpj == sorted(tpj, reverse=True)
        for r in rows:
            assert set(r) >= {"gpu_name", "baseline", "objectives", "peak", "source_run"}
            assert 0 < r["baseline"]["peak_fraction"] <= 1
            assert r["peak"]["source"].startswith("simulated spec")


def test_figures_are_computed_from_the_record(runs, capsys):
    path = record_of(runs, "h100", COMPUTE)
    rec = RunRecord.load(path)
    doc = compare_json(capsys, str(path))
    (row,) = doc["groups"][0]["rows"]
    flops, nbytes = rec.doc["work"]["flops"], rec.doc["work"]["bytes"]
    base = next(m for m in rec.points if m.point.is_baseline)
    assert row["baseline"]["tflops"] == pytest.approx(flops / base.time_s / 1e12)
    assert row["baseline"]["power_w"] == pytest.approx(base.avg_power_w)
    assert row["baseline"]["tflop_per_j"] == pytest.approx(flops / base.energy_j / 1e12)
    assert row["baseline"]["tflop_per_j"] == pytest.approx(base.tflop_per_j)
    peak_tflops = rec.doc["device"]["spec"]["performance"]["tflops"]["bf16"]
    peak_gbs = rec.doc["device"]["spec"]["performance"]["memory_bandwidth_gbs"]
    want = max(flops / base.time_s / 1e12 / peak_tflops, nbytes / base.time_s / 1e9 / peak_gbs)
    assert row["baseline"]["peak_fraction"] == pytest.approx(want)
    for name, c in rec.choices().items():
        got = row["objectives"][name]
        assert got["sm_mhz"] == c.chosen.point.sm_mhz
        assert got["power_limit_w"] == c.chosen.point.power_limit_w
        assert got["energy_saving_rel"] == pytest.approx(c.saving_rel)
        assert got["slowdown_rel"] == pytest.approx(c.slowdown_rel)


def test_table_names_problem_gpus_and_says_simulated(runs, capsys):
    assert main(["compare", str(runs)]) == 0
    out = capsys.readouterr().out
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    for block in blocks:
        head = block.splitlines()[0]
        assert "SIMULATED" in head and "per iteration" in head
        for name in ("NVIDIA H100 80GB HBM3 [sim]", "NVIDIA A100-SXM4-80GB [sim]", "NVIDIA L4"):
            assert name in block
        assert "base TFLOP/s" in block and "TFLOP/J" in block and "slowdown" in block
    assert "memory-bound" in blocks[0] and "compute-bound" in blocks[1]


def test_csv_is_one_row_per_gpu_and_objective(runs, capsys):
    assert main(["compare", str(runs), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    objectives = {r["objective"] for r in rows}
    assert objectives == {"energy", "edp", "slowdown:0.05"}
    assert len(rows) == 2 * 3 * len(objectives)
    for r in rows:
        assert r["simulated"] == "true" and r["rank"] in ("1", "2", "3")
        assert 0 < float(r["peak_fraction"]) <= 1
        float(r["energy_saving_rel"])  # a plain number, not "12.3%"


def test_markdown_table_is_well_formed(runs, capsys):
    assert main(["compare", str(runs), "--format", "markdown"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("|")]
    widths = {ln.count("|") - ln.count("\\|") for ln in lines}
    assert len(widths) <= 2  # one width per problem (the memory-bound one adds GB/s)
    assert any(set(ln) <= set("|:- ") for ln in lines)


def test_objective_filter_and_rank_by(runs, capsys):
    doc = compare_json(capsys, str(runs), "--objective", "slowdown:0.05", "--rank-by", "edp")
    for g in doc["groups"]:
        assert g["objectives"] == ["slowdown:0.05"] and g["rank_objective"] == "edp"
        edp = [r["objectives"]["edp"]["tflop_per_j"] for r in g["rows"]]
        assert edp == sorted(edp, reverse=True)
    capsys.readouterr()
    assert main(["compare", str(runs), "--objective", "zeus:0.3"]) == 2
    assert "no run has objective" in capsys.readouterr().err


# --- never mixing, newest run ---------------------------------------------------------------------


def test_other_dtype_is_its_own_group(runs, tmp_path, capsys):
    src = record_of(runs, "h100", COMPUTE)

    def to_fp16(d):
        d["problem"]["dtype"] = d["work"]["dtype"] = "fp16"

    copy_record(src, tmp_path / "fp16.json", to_fp16)
    doc = compare_json(capsys, str(src), str(tmp_path / "fp16.json"))
    assert [g["problem"]["dtype"] for g in doc["groups"]] == ["bf16", "fp16"]
    assert all(len(g["rows"]) == 1 for g in doc["groups"])


OLD, NEW = "2020-01-01T00:00:00+00:00", "2030-01-01T00:00:00+00:00"


def test_newest_complete_run_is_used_and_said(runs, tmp_path, capsys):
    src = record_of(runs, "l4", COMPUTE)
    older = copy_record(src, tmp_path / "a-older.json", lambda d: d.update(created_utc=OLD))

    def newer_unfinished(d):
        d["created_utc"] = "2999-01-01T00:00:00+00:00"
        d["status"] = "interrupted"

    unfinished = copy_record(src, tmp_path / "c-unfinished.json", newer_unfinished)
    newest = copy_record(src, tmp_path / "b-newest.json", lambda d: d.update(created_utc=NEW))
    doc = compare_json(capsys, str(tmp_path))
    (g,) = doc["groups"]
    (row,) = g["rows"]
    assert row["source_run"] == str(newest)
    notes = " ".join(g["notes"])
    assert f"using {newest}" in notes and str(older) in notes
    assert f"left out {unfinished}: status 'interrupted'" in notes


def test_simulated_and_real_are_labelled(runs, tmp_path, capsys):
    src = record_of(runs, "a100", COMPUTE)

    def real(d):
        d["simulated"] = d["device"]["simulated"] = False
        d["device"].pop("spec")
        d["device"]["uuid"] = "GPU-real-0"

    copy_record(src, tmp_path / "real.json", real)
    doc = compare_json(capsys, str(src), str(tmp_path / "real.json"))
    (g,) = doc["groups"]
    assert g["simulated"] == "simulated and real"
    by_sim = {r["simulated"]: r for r in g["rows"]}
    assert by_sim[False]["peak"]["tflops"] == DATASHEET["NVIDIA A100-SXM4-80GB"][0]["bf16"]
    assert "datasheet" in by_sim[False]["peak"]["source"]
    assert main(["compare", str(src), str(tmp_path / "real.json")]) == 0
    out = capsys.readouterr().out
    assert "simulated ([sim]) and real GPUs" in out
    assert "NVIDIA A100-SXM4-80GB (GPU-real-0)" in out  # same name twice: the UUID tells apart


def test_unknown_real_gpu_has_unknown_peak_and_hostile_name_is_escaped(runs, tmp_path, capsys):
    hostile = 'Evil "GPU"\n$(touch pwned)\x1b[2J'

    def real(d):
        d["simulated"] = d["device"]["simulated"] = False
        d["device"].pop("spec")
        d["device"]["name"] = hostile

    path = copy_record(record_of(runs, "l4", MEMORY), tmp_path / "x.json", real)
    assert peaks_of(RunRecord.load(path).device, "bf16").tflops is None
    doc = compare_json(capsys, str(path))
    row = doc["groups"][0]["rows"][0]
    assert row["gpu_name"] == hostile and row["baseline"]["peak_fraction"] is None
    assert main(["compare", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b" in out and "\\n$(touch pwned)" in out
    assert "peak unknown for" in out
    (row_line,) = [ln for ln in out.splitlines() if ln.lstrip().startswith("1  Evil")]
    assert row_line.split()[-1] == "-"  # the peak fraction at the chosen point: unknown


# --- bad files ------------------------------------------------------------------------------------


def one_error(r: subprocess.CompletedProcess, *fragments: str) -> None:
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("wattbench: error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    for f in fragments:
        assert f in errors[0]


def test_corrupt_file_in_a_folder_is_one_error_naming_it(runs, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(runs, folder)
    bad = folder / "zz-broken.json"
    bad.write_text('{"schema": "wattbench.run/1", "points": [', encoding="utf-8")
    one_error(wb("compare", str(folder)), str(bad), "not valid JSON")
    one_error(wb("plot", str(bad), "-o", str(tmp_path / "p")), str(bad))
    one_error(wb("export", str(bad)), str(bad))


def test_other_schema_version_is_refused_not_mixed(runs, tmp_path):
    future = copy_record(record_of(runs, "h100", COMPUTE), tmp_path / "v2.json",
                         lambda d: d.update(schema="wattbench.run/2"))  # fmt: skip
    one_error(wb("compare", str(runs), str(future)), str(future), "wattbench.run/2")


def test_other_wattbench_documents_in_a_folder_are_skipped(runs, tmp_path, capsys):
    folder = tmp_path / "results"
    shutil.copytree(runs, folder)
    (folder / "points.json").write_text('{"schema": "wattbench.points/1", "points": []}')
    notes: list[str] = []
    records = load_runs([folder], notes)
    assert len(records) == 6
    assert any("points.json" in n and "skipped 1 JSON file(s)" in n for n in notes)
    cmp = compare(records, notes=notes)
    assert len(cmp.groups) == 2


def test_folders_are_read_recursively_and_foreign_json_is_skipped_and_counted(runs, tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(runs, folder / "nested" / "deeper")
    (folder / "out.json").write_text('{"machine_info": {}, "benchmarks": []}')  # pytest-benchmark
    (folder / "nested" / "notes.json").write_text("[1, 2]")
    (folder / "nested" / "broken.json").write_text("{not json")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.json").write_text("{}")
    notes: list[str] = []
    assert len(load_runs([folder], notes)) == 6
    (note,) = notes
    assert "skipped 3 JSON file(s) that are not run records" in note
    r = wb("compare", str(folder))
    assert r.returncode == 0, r.stderr
    assert "skipped 3 JSON file(s)" in r.stderr or "skipped 3 JSON file(s)" in r.stdout


def test_a_damaged_run_record_in_a_folder_is_still_an_error(runs, tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(runs, folder)
    bad = folder / "sub" / "bad.json"
    bad.parent.mkdir()
    bad.write_text('{"schema": "wattbench.run/1", "status": ')
    one_error(wb("compare", str(folder)), str(bad), "not valid JSON")


def test_missing_path_and_empty_folder(tmp_path):
    one_error(wb("compare", str(tmp_path / "nope")), "no such file or folder")
    (tmp_path / "empty").mkdir()
    one_error(wb("compare", str(tmp_path / "empty")), "no run records found")
