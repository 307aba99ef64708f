"""CONTRIBUTING.md, kept honest.

The family recipe is followed literally: its code blocks are written, and nothing else, into a
copy of the ``wattbench.kernels`` package (the profiler is the checkout's own), put first on
``PYTHONPATH``; then the real ``wattbench kernels``, ``wattbench check`` (Triton's interpreter,
fp32 and fp16), the suite (collected, and its quick cases run on a simulated GPU) and the
family conformance tests all pick up the new family. The other recipes are checked for what they
promise: the paths they name exist, every objective has a form that parses back to it, and the
export formats follow the renderers.
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

from wattbench.profiler.export import render as export_render
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.select import objectives

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
EXISTING = ("matmul", "prefill", "prefill-full", "decode", "w8a8", "w4a16")


def section(title: str) -> str:
    """The text of ``## title`` up to the next ``## ``."""
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end >= 0 else len(DOC)]


def recipe_files() -> dict[str, str]:
    """The family recipe's files: each ```python block whose first line is ``# kernels/...``."""
    blocks = re.findall(r"```python\n(.*?)```", section("Add a kernel family"), flags=re.S)
    out = {}
    for block in blocks:
        m = re.match(r"# (kernels/\S+)\n", block)
        if m:
            out[m.group(1)] = block
    return out


def tree(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site folder holding ``wattbench/kernels`` (a copy, plus exactly the recipe's files)
    and ``wattbench/profiler`` (a link to the checkout's)."""
    site = tmp_path_factory.mktemp("site")
    pkg = site / "wattbench"
    pkg.mkdir()
    shutil.copytree(ROOT / "kernels", pkg / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "profiler").symlink_to(ROOT / "profiler", target_is_directory=True)
    for rel, text in recipe_files().items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return site


def run(site: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("TRITON_INTERPRET", None)  # as a user's shell: `wattbench check` sets it itself
    return subprocess.run(
        [sys.executable, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_the_family_recipe_is_one_folder_of_new_files_and_no_other_edit(site):
    files = recipe_files()
    assert sorted(files) == [
        "kernels/axpy/__init__.py",
        "kernels/axpy/family.py",
        "kernels/axpy/triton_axpy.py",
    ]
    assert "three new files in one folder and no other edit" in " ".join(DOC.split())
    copy = tree(site / "wattbench" / "kernels")
    original = tree(ROOT / "kernels")
    assert copy - original == {f.removeprefix("kernels/") for f in files}
    assert original <= copy
    for rel in original:  # nothing shared was edited
        assert (site / "wattbench" / "kernels" / rel).read_bytes() == (
            ROOT / "kernels" / rel
        ).read_bytes()
    # the interpreter really imports the copy, with the checkout's profiler
    proc = run(site, "-c", "import wattbench.kernels as k; print(k.__file__)")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).parent == site / "wattbench" / "kernels"


def test_the_recipe_code_is_lint_clean(site):
    folder = site / "wattbench" / "kernels" / "axpy"
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    cfg = str(ROOT / "pyproject.toml")
    for args in (["check", "--config", cfg], ["format", "--check", "--config", cfg]):
        proc = subprocess.run([ruff, *args, str(folder)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_wattbench_kernels_lists_the_new_family_last(site):
    proc = run(site, "-m", "wattbench.profiler.cli.main", "kernels", "--json")
    assert proc.returncode == 0, proc.stderr
    fams = json.loads(proc.stdout)["families"]
    assert [f["name"] for f in fams] == [*EXISTING, "axpy"]
    text = run(site, "-m", "wattbench.profiler.cli.main", "kernels", "--kernel", "axpy")
    assert text.returncode == 0 and "axpy" in text.stdout and "triton" in text.stdout


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_wattbench_check_passes_the_new_family_in_the_interpreter(site, dtype):
    proc = run(
        site,
        *("-m", "wattbench.profiler.cli.main", "check", "--kernel", "axpy"),
        *("--shape", "small", "--dtype", dtype, "--json"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is True
    assert [r["shape"] for r in doc["reports"]] == [[1000], [4096]]
    for rep in doc["reports"]:
        assert {r["impl"]: r["status"] for r in rep["results"]} == {
            "vendor": "pass",
            "triton": "pass",
        }


def test_the_suite_collects_and_runs_the_new_family(site, tmp_path):
    base = ("-m", "pytest", "-p", "no:cacheprovider", "suites/test_kernels.py", "-k", "axpy")
    collected = run(site, *base, "--collect-only", "-q")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    ids = re.findall(r"test_kernel\[(axpy-[^\]]+)\]", collected.stdout)
    assert ids == [  # the quick cases first, then the full ones: shape, dtype, implementation
        "axpy-vendor-fp32-1000",
        "axpy-triton-fp32-1000",
        "axpy-vendor-fp16-1000",
        "axpy-triton-fp16-1000",
        "axpy-vendor-fp32-4096",
        "axpy-triton-fp32-4096",
        "axpy-vendor-fp16-4096",
        "axpy-triton-fp16-4096",
    ]
    # the default quick subset: the first preset shape in the first dtype, every implementation
    bench = tmp_path / "bench.json"
    quick = run(
        site,
        *base,
        *("-m", "quick", "--wattbench-device", "sim:h100-sxm", "--wattbench-out"),
        *(str(tmp_path / "runs"), "--benchmark-json", str(bench)),
    )
    assert quick.returncode == 0, quick.stdout[-3000:] + quick.stderr[-3000:]
    assert re.search(r"\b2 passed\b", quick.stdout), quick.stdout[-2000:]
    names = [b["name"] for b in json.loads(bench.read_text())["benchmarks"]]
    assert names == ["test_kernel[axpy-vendor-fp32-1000]", "test_kernel[axpy-triton-fp32-1000]"]


def test_the_family_conformance_tests_take_the_new_family(site):
    proc = run(
        site,
        *("-m", "pytest", "-p", "no:cacheprovider", "-q"),
        *("tests/kernels/test_family_conformance.py", "-k", "axpy"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"\b4 passed\b", proc.stdout), proc.stdout[-2000:]


# --- the other recipes ----------------------------------------------------------------------------


def test_every_path_the_recipes_name_exists():
    paths = set(re.findall(r"`((?:kernels|profiler|tests|suites|docs)/[\w./-]+)`", DOC))
    assert len(paths) > 15
    placeholders = {p for p in paths if "<" in p}
    for rel in sorted(paths - placeholders):
        if rel.startswith("kernels/axpy/"):
            continue  # the recipe's own new files
        assert (ROOT / rel).exists(), rel


def _measurement(sm_mhz: int | None, time_s: float, energy_j: float) -> Measurement:
    return Measurement(OperatingPoint(sm_mhz=sm_mhz), time_s, energy_j)


def test_every_objective_has_a_form_that_parses_back_to_it_and_picks_a_point():
    forms = {f.partition(":")[0]: f for f in objectives.OBJECTIVE_FORMS}
    assert set(forms) == set(objectives.OBJECTIVES)
    runs = [_measurement(None, 1.0, 300.0), _measurement(1200, 1.1, 250.0)]
    for kind, form in forms.items():
        text = kind if ":" not in form else f"{kind}:0.5"
        obj = objectives.parse_objective(text)
        assert obj.kind == kind
        choice = obj(runs, max_power_w=700.0)
        assert choice.chosen in runs and choice.baseline is runs[0]


def test_the_export_formats_follow_the_renderers():
    assert tuple(export_render._RENDERERS) == export_render.FORMATS
    proc = subprocess.run(
        [sys.executable, "-m", "wattbench.profiler.cli.main", "export", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for fmt in ("points", *export_render.FORMATS):
        assert fmt in proc.stdout
