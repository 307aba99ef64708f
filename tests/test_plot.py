"""``wattbench plot``: every kind, PNG and SVG, absolute and normalised, from real sweeps on
simulated GPUs (Agg, no display). SVG text is kept as text, so titles, axis labels and legends
are checked by reading the files."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from wattbench.profiler.cli.main import main
from wattbench.profiler.device import nvml as device_nvml
from wattbench.profiler.report.plot import KINDS, plot_runs, text
from wattbench.profiler.report.runs import load_runs

COMPUTE, MEMORY = "8192x8192x8192", "1x8192x8192"
SVG = "{http://www.w3.org/2000/svg}"


def sweep(out: Path, device: str, shape: str, *extra: str) -> None:
    args = ["sweep", "--device", device, "--kernel", "matmul", "--shape", shape, "--dtype",
            "bf16", "--strategy", "grid", "--out", str(out), "--quiet", *extra]  # fmt: skip
    assert main(args) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H100 and L4 on a compute-bound matmul (SM clocks), the L4 also with power limits; the
    H100 on a memory-bound one."""
    root = tmp_path_factory.mktemp("plot")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATTBENCH_SIM_STATE_DIR", str(root / "sim-state"))
        for gpu in ("sim:h100-sxm", "sim:l4"):
            sweep(root / "runs", gpu, COMPUTE, "--sm-clocks", "every:16")
        sweep(root / "runs", "sim:h100-sxm", MEMORY, "--sm-clocks", "every:16")
        sweep(root / "capped", "sim:l4", COMPUTE, "--power-limits", "40:72:8")
        device_nvml.shutdown_all()
    return root


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def svg_text(path: Path) -> str:
    root = ET.parse(path).getroot()
    return "\n".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


def test_all_kinds_as_small_pngs(runs, tmp_path, capsys):
    assert main(["plot", str(runs / "runs"), "-o", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.split()
    files = sorted(tmp_path.glob("*.png"))
    assert sorted(map(str, files)) == sorted(listed)
    assert len(files) == 2 * len(KINDS)  # two problems
    for kind in KINDS:
        assert (tmp_path / f"matmul-vendor-bf16-{COMPUTE}-{kind}.png").exists()
        assert (tmp_path / f"matmul-vendor-bf16-{MEMORY}-{kind}.png").exists()
    for f in files:
        w, h = png_size(f)
        assert 600 <= w <= 1000 and 400 <= h <= 700, (f, w, h)
        assert f.stat().st_size < 150_000


def test_svg_titles_axes_and_legends(runs, tmp_path):
    files = plot_runs(load_runs([runs / "runs"]), tmp_path, fmt="svg")
    by = {f.name: svg_text(f) for f in files}
    energy = by[f"matmul-vendor-bf16-{COMPUTE}-energy.svg"]
    assert f"matmul-vendor-bf16-{COMPUTE}" in energy and "SIMULATED GPUs" in energy
    assert "SM clock achieved (mean, MHz)" in energy and "J/TFLOP" in energy and "J/GB" in energy
    assert "time per iteration (ms)" in energy
    assert "NVIDIA H100 80GB HBM3 [sim]" in energy and "NVIDIA L4 [sim]" in energy
    assert "baseline" in energy and "chosen: energy" in energy
    mem = by[f"matmul-vendor-bf16-{MEMORY}-energy.svg"]
    assert "energy per work (J/GB)" in mem  # memory-bound: J/GB first, J/TFLOP on the right
    pareto = by[f"matmul-vendor-bf16-{COMPUTE}-pareto.svg"]
    assert "Pareto front" in pareto and "energy per iteration (J)" in pareto
    for objective in ("energy", "edp", "slowdown:0.05"):
        assert f"chosen: {objective}" in pareto
    bars = by[f"matmul-vendor-bf16-{COMPUTE}-bars.svg"]
    assert "work per joule (TFLOP/J)" in bars and "%)" in bars  # the gain over the baseline
    power = by[f"matmul-vendor-bf16-{COMPUTE}-power.svg"]
    assert "board power (W)" in power and "default limit 700 W" in power
    assert "default limit 72 W" in power


def test_normalised_and_power_capped(runs, tmp_path):
    records = load_runs([runs / "runs", runs / "capped"])
    files = plot_runs(records, tmp_path, fmt="svg", normalise=True, kinds=["energy", "power"])
    assert {f.name for f in files} >= {f"matmul-vendor-bf16-{COMPUTE}-energy-normalised.svg"}
    power = svg_text(tmp_path / f"matmul-vendor-bf16-{COMPUTE}-power-normalised.svg")
    assert "board power / default power limit" in power
    assert "SM clock achieved (mean) / the GPU's highest SM clock" in power
    assert "power-capped" in power and "swept limits" in power
    energy = svg_text(tmp_path / f"matmul-vendor-bf16-{COMPUTE}-energy-normalised.svg")
    # two L4 runs of one problem: the newest (the power-limit sweep) is drawn, once
    assert "NVIDIA L4 [sim], power-capped" in energy and "NVIDIA H100 80GB HBM3 [sim]" in energy
    assert energy.count("NVIDIA L4 [sim]") == 1


def test_hostile_names_are_drawn_as_text(runs, tmp_path):
    (src,) = (runs / "runs").glob(f"*l4*{COMPUTE}-*.json")
    doc = json.loads(src.read_text())
    doc["device"]["name"] = "_$x^2$ GPU\n\x1b[31m"
    doc["problem"]["impl"] = "ve$ndor"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "run.json").write_text(json.dumps(doc))
    files = plot_runs(load_runs([tmp_path / "in"]), tmp_path / "out", fmt="svg")
    assert len(files) == len(KINDS)
    for f in files:
        assert f.parent == tmp_path / "out" and "$" not in f.name
    drawn = svg_text(files[0])
    assert "$x^2$ GPU\\n\\x1b[31m" in drawn and "\x1b" not in drawn
    assert text("_a") == " _a" and text("a$b") == "a\\$b"


def test_bad_kind_and_unwritable_output(runs, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["plot", str(runs / "runs"), "-o", str(blocker / "sub")]) == 2
    assert "cannot create output folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plot", str(runs / "runs"), "-o", str(tmp_path), "--kind", "pie"])
