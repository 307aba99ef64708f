"""``wattbench check``, ``wattbench kernels`` and the matmul benchmark script, end to end.

The subcommands are driven through their own parsers (``add_parser`` + ``args.run``), the way
``wattbench.profiler.cli.main`` drives them; the benchmark runs as a real subprocess.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_framework import GOOD, LAZY, MISSING, toy_family

from wattbench.kernels import catalog
from wattbench.kernels.comparison import report_json, time_comparison
from wattbench.kernels.timing import TimingSettings
from wattbench.profiler.cli import check as check_cli
from wattbench.profiler.cli import kernels as kernels_cli
from wattbench.profiler.errors import ShapeError, UnknownKernelError

BENCH = Path(__file__).resolve().parents[2] / "suites" / "bench" / "kernels.py"
CUDA = torch.cuda.is_available()


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="wattbench")
    sub = parser.add_subparsers(dest="command")
    check_cli.add_parser(sub)
    kernels_cli.add_parser(sub)
    args = parser.parse_args(list(argv))
    return args.run(args)


@pytest.mark.skipif(CUDA, reason="the CPU path of check")
def test_check_on_the_cpu_passes_and_prints_the_table(capsys):
    rc = run("check", "--kernel", "matmul", "--shape", "67x45x93", "--dtype", "fp32", "--seed", "4")
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "no CUDA device" in out and "no timings" in out
    assert "matmul 67x45x93 fp32  seed 4" in out and "float64 reference on cpu" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "pass" in rows["vendor"] and "1.0e-05" in rows["vendor"]
    assert "pass" in rows["triton"]  # Triton's interpreter (TRITON_INTERPRET=1)
    assert "no fp32 path" in rows["cupy"]
    assert "unavailable" in rows["cublas-cupy"]


@pytest.mark.skipif(CUDA, reason="the CPU path of check")
def test_check_json_and_a_named_impl_that_cannot_run(capsys):
    rc = run(
        "check",
        "--kernel",
        "matmul",
        "--shape",
        "llama3-8b-qkv@3",
        "--dtype",
        "fp16",
        "--impl",
        "cupy",
        "--json",
        "--observe-only",
    )
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert rc == 1  # cupy was asked for and could not run here
    assert "not checked here: cupy" in captured.err
    assert doc["schema"] == "wattbench.check/1" and doc["passed"] is False
    assert [rep["shape"] for rep in doc["reports"]] == [[3, 6144, 4096]]
    for rep in doc["reports"]:
        assert [r["impl"] for r in rep["results"]] == ["vendor", "cupy"]
        vendor = rep["results"][0]
        assert vendor["status"] == "pass" and vendor["rel_error"] < vendor["tolerance_rel_fro"]
        assert rep["work"]["flops"] == 2 * rep["shape"][0] * rep["shape"][1] * rep["shape"][2]


def test_check_fails_with_exit_1_when_an_impl_is_wrong(monkeypatch, capsys):
    toy = toy_family((GOOD, LAZY, MISSING))
    monkeypatch.setattr(catalog, "FAMILIES", (toy,))
    assert run("check", "--kernel", "double", "--shape", "small", "--dtype", "fp32") == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 2  # lazy, at both preset shapes
    assert "cupy not installed" in out
    assert run("check", "--kernel", "double", "--shape", "16", "--dtype", "fp32") == 1
    assert (
        run("check", "--kernel", "double", "--shape", "16", "--dtype", "fp32", "--impl", "vendor")
        == 0
    )
    assert (
        run(
            "check",
            "--kernel",
            "double",
            "--shape",
            "16",
            "--dtype",
            "fp32",
            "--impl",
            "vendor,missing",
        )
        == 1
    )


def test_check_usage_errors_list_choices():
    with pytest.raises(UnknownKernelError, match="no implementation 'cutlass'"):
        run(
            "check",
            "--kernel",
            "matmul",
            "--shape",
            "8x8x8",
            "--dtype",
            "fp32",
            "--impl",
            "cutlass",
        )
    with pytest.raises(UnknownKernelError, match="unknown kernel 'conv'"):
        run("check", "--kernel", "conv", "--shape", "8x8x8", "--dtype", "fp32")
    with pytest.raises(ShapeError, match="malformed matmul shape"):
        run("check", "--kernel", "matmul", "--shape", "8x8", "--dtype", "fp32")
    with pytest.raises(UnknownKernelError, match="no dtype 'fp4'"):
        run("check", "--kernel", "matmul", "--shape", "8x8x8", "--dtype", "fp4")


def test_kernels_lists_families_impls_dtypes_presets(capsys):
    assert run("kernels") == 0
    out = capsys.readouterr().out
    for word in ("matmul", "vendor", "triton", "cupy", "cublas-cupy", "fp8:8.9", "llama3-70b-down"):
        assert word in out
    # the longest implementation name still stands apart from its dtypes
    assert re.search(r"^    triton-fastacc {2,}fp8:8\.9", out, re.M), out
    assert run("kernels", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "wattbench.kernels/1"
    assert set(doc["environment"]) >= {"cuda", "device_name", "compute_capability", "modules"}
    fam = next(f for f in doc["families"] if f["name"] == "matmul")
    assert set(fam) == {
        "name",
        "description",
        "shape_form",
        "dims",
        "dtypes",
        "baseline",
        "impls",
        "presets",
    }
    assert fam["baseline"] == "vendor" and fam["impls"][0]["baseline"] is True
    vendor = fam["impls"][0]
    assert vendor["dtypes"]["fp8"]["min_compute_capability"] == "8.9"
    assert set(vendor["dtypes"]["fp8"]) == {
        "min_compute_capability",
        "cpu",
        "math",
        "available",
        "reason",
    }
    assert fam["dtypes"]["fp32"]["tolerance_rel_fro"] == catalog.family("matmul").tolerance("fp32")
    presets = {p["name"]: p for p in fam["presets"]}
    assert presets["llama3-8b-qkv"]["sweep_dim"] == "M"
    assert presets["square"]["shapes"][0] == [1024, 1024, 1024]
    cupy = next(i for i in fam["impls"] if i["name"] == "cupy")
    if "cupy" not in doc["environment"]["modules"] or not doc["environment"]["modules"]["cupy"]:
        assert cupy["available"] is False
        assert cupy["dtypes"]["fp16"]["reason"] == "cupy not installed"


def test_kernels_unknown_family():
    with pytest.raises(UnknownKernelError):
        run("kernels", "--kernel", "conv")


@pytest.mark.skipif(CUDA, reason="checks the message given without a GPU")
def test_bench_without_gpu_exits_1_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--shapes", "64", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "a CUDA GPU is needed" in lines[0], proc.stderr
    assert not list(tmp_path.iterdir())


def test_bench_usage_error_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--shapes", "64,nonsense"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "no preset 'nonsense'" in proc.stderr


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_shapes_and_report_rendering():
    bench = _bench_module()
    fam = catalog.family("matmul")
    assert bench.parse_shapes(fam, "4096, 8x4x2,llama3-8b-o@3,4096") == (
        (4096, 4096, 4096),
        (8, 4, 2),
        (3, 4096, 4096),
    )
    with pytest.raises(ShapeError, match="empty entry"):
        bench.parse_shapes(fam, "4096,,8192")
    toy = toy_family((GOOD, LAZY, MISSING))
    from test_framework import CPU_ENV

    from wattbench.kernels.verify import check

    reports = [check(toy, (16,), "fp32", CPU_ENV)]
    table = bench.render_table(reports, "vendor")
    assert table.splitlines()[0].split()[:4] == ["shape", "impl", "time", "ms"]
    assert "cupy not installed" in table and "FAIL" in table
    doc = {
        "provenance": {
            "gpu": "NVIDIA X",
            "date_utc": "2026-01-01T00:00:00+00:00",
            "compute_capability": "9.0",
            "cuda_runtime_torch": "12.8",
            "versions": {"torch": "2.11", "cupy": None},
            "python": "3.12",
            "command": "python suites/bench/kernels.py",
            "device": {"driver_version": "580.1"},
            "in_force": {"power_limit_w": 700.0},
        },
        "settings": {"dtype": "fp32", "warmup": 5, "reps": 20, "l2": "rotate",
                     "no_verify": False},
    }  # fmt: skip
    md = bench.render_markdown(doc, reports, "vendor")
    assert md.startswith("# matmul fp32 on NVIDIA X")
    assert "L2 policy rotate;" in md
    assert "driver 580.1" in md and "cupy not installed" in md
    rows = [line for line in md.splitlines() if line.startswith("| 16 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["vendor", "lazy", "missing"]
    assert bench.rows(reports)[0]["shape"] == "16"


# --- quantized GEMMs: `check --kernel w4a16 / w8a8` and the "vs bf16 cuBLAS" column ---------------


@pytest.mark.skipif(CUDA, reason="the CPU path of check")
def test_check_w4a16_on_the_cpu_with_the_comparison_column(capsys):
    rc = run("check", "--kernel", "w4a16", "--shape", "3x72x128", "--dtype", "fp16-g32")
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "w4a16 3x72x128 fp16-g32" in out and "vs bf16 cuBLAS" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "pass" in rows["vendor"] and "pass" in rows["triton"]  # Triton: the interpreter
    assert "cupy not installed" in rows["cupy"]
    assert (
        "vs bf16 cuBLAS (matmul vendor bf16 3x72x128): not timed: timed only on a CUDA GPU" in out
    )


@pytest.mark.skipif(CUDA, reason="the CPU path of check")
def test_check_w8a8_json_has_the_comparison(capsys):
    rc = run("check", "--kernel", "w8a8", "--shape", "small", "--dtype", "int8-fp16", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["passed"]
    assert [rep["shape"] for rep in doc["reports"]] == [[3, 72, 256], [67, 40, 128]]
    for rep in doc["reports"]:
        assert rep["comparison"]["label"] == "bf16 cuBLAS"
        assert rep["comparison"]["shape"] == rep["shape"] and rep["comparison"]["time_ms"] is None
        assert rep["work"]["dtype"] == "int8"
        statuses = {r["impl"]: r["status"] for r in rep["results"]}
        assert statuses == {
            "vendor": "pass",
            "triton": "pass",
            "triton-fastacc": "unavailable",  # fp8 only
            "cupy": "unavailable",
        }
        assert all(r["speedup_vs_comparison"] is None for r in rep["results"])


@pytest.mark.skipif(CUDA, reason="the CPU path of check")
def test_check_w8a8_fp8_reports_fast_accumulation_under_its_own_label(capsys):
    rc = run("check", "--kernel", "w8a8", "--shape", "33x17x72", "--dtype", "fp8", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["passed"]
    (rep,) = doc["reports"]
    statuses = {r["impl"]: r["status"] for r in rep["results"]}
    assert statuses["triton"] == statuses["triton-fastacc"] == "pass"


def test_check_w4a16_shape_constraint_is_a_usage_error():
    with pytest.raises(ShapeError, match="multiple of 64"):
        run("check", "--kernel", "w4a16", "--shape", "3x72x96", "--dtype", "fp16-g64")


def test_comparison_timing_and_its_column():
    """time_comparison times the real bf16 matmul of the same shape; CUDA events cannot run here,
    so a wall-clock timer stands in for them (the one stand-in)."""
    import dataclasses
    import time

    from test_framework import CPU_ENV as cpu_env

    from wattbench.kernels.verify import check

    fam = catalog.family("w4a16")

    def wall_clock(launch, timing):
        times = []
        for _ in range(timing.reps):
            start = time.perf_counter()
            launch()
            times.append((time.perf_counter() - start) * 1e3)
        return times

    timing = TimingSettings(warmup=1, reps=3)
    cmp = time_comparison(fam, (2, 64, 128), cpu_env, timing, device="cpu", timer=wall_clock)
    assert (cmp.family, cmp.impl, cmp.dtype, cmp.shape) == (
        "matmul",
        "vendor",
        "bf16",
        (2, 64, 128),
    )
    assert cmp.time_ms > 0 and cmp.reason is None
    # the comparison is timed under the timing's L2 policy; on the CPU the L2 size is unknown
    assert cmp.l2["policy"] == "rotate" and cmp.l2["sets"] == 1
    assert cmp.l2["limited_by"] == "l2-unknown" and cmp.to_json()["l2"] == cmp.l2
    assert time_comparison(fam, (2, 64, 128), cpu_env, None).reason == ("timed only on a CUDA GPU")
    assert time_comparison(catalog.family("matmul"), (2, 2, 2), cpu_env, timing) is None
    # the column: comparison 2 ms, an implementation at 0.5 ms is 4x faster than bf16 cuBLAS
    rep = check(fam, (2, 64, 128), "fp16-g32", cpu_env, impls=["vendor"])
    timed = dataclasses.replace(rep, results=(dataclasses.replace(rep.results[0], time_ms=0.5),))
    two_ms = dataclasses.replace(cmp, time_ms=2.0)
    text = check_cli.render(timed, two_ms)
    assert "vs bf16 cuBLAS" in text.splitlines()[1] and "4.00x" in text
    assert report_json(timed, two_ms)["results"][0]["speedup_vs_comparison"] == 4.0
    bench = _bench_module()
    table = bench.render_table([timed], "vendor", [two_ms])
    assert "vs bf16 cuBLAS" in table.splitlines()[0] and "4.00x" in table
    assert bench.rows([timed], [two_ms])[0]["speedup_vs_comparison"] == 4.0
    assert "vs bf16 cuBLAS" not in bench.render_table([timed], "vendor")  # none: no column
    doc = {
        "provenance": {"gpu": "G", "date_utc": "d", "compute_capability": "9.0",
                       "cuda_runtime_torch": "12.8", "versions": {}, "python": "3.12",
                       "command": "c", "device": {"error": "no NVML"}},
        "settings": {"kernel": "w4a16", "dtype": "fp16-g32", "warmup": 1, "reps": 3,
                     "l2": "warm", "no_verify": False},
    }  # fmt: skip
    md = bench.render_markdown(doc, [timed], "vendor", [two_ms])
    assert "| vs vendor | vs bf16 cuBLAS |" in md and "| 4.00x |" in md
    assert "L2 policy warm;" in md
    assert "vs bf16 cuBLAS (matmul vendor bf16 2x64x128): 2.0000 ms" in md
    assert bench.parse_shapes(catalog.family("w8a8"), "8192,targets@1") == (
        (8192, 8192, 8192),
        (1, 8192, 8192),
    )


def test_the_kernel_variant_a_launch_ran_is_kept_beside_its_figures(capsys):
    """M = 16 takes the Triton matmul's split-K kernel; the report says so (JSON and table),
    and the vendor baseline, which chooses nothing wattbench can see, says nothing."""
    args = ("check", "--kernel", "matmul", "--shape", "16x45x93", "--dtype", "fp16")
    assert run(*args, "--impl", "triton", "--json") == 0
    (rep,) = json.loads(capsys.readouterr().out)["reports"]
    by_impl = {r["impl"]: r for r in rep["results"]}
    assert by_impl["triton"]["kernel"]["variant"] == "split-k"
    assert by_impl["triton"]["kernel"]["splits"] >= 2
    assert by_impl["vendor"]["kernel"] is None
    assert run(*args, "--impl", "triton") == 0
    assert re.search(r"^  triton .* variant=split-k splits=\d", capsys.readouterr().out, re.M)
