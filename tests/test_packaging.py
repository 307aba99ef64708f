"""What ``pip install .`` (not only an editable install) ships, read from a wheel built from the
tree: every package folder beneath kernels/ and profiler/ under its ``wattbench.`` name (found by
setuptools' automatic discovery; pyproject.toml keeps no package list), their data files, the
NVML switch the custom ``build_py`` writes, and nothing at the top level but ``wattbench``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: the data files package-data ships (pyproject.toml, [tool.setuptools.package-data])
DATA_SUFFIXES = (".toml", ".cu", ".cuh", ".json")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]


def _tree_packages() -> dict[str, Path]:
    """Every folder with an ``__init__.py`` beneath a mapped folder, by its installed name."""
    found = {}
    for prefix, folder in _config()["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found[".".join([prefix, *rel.parts])] = init.parent
    return found


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    """The member names of a wheel built from a clean copy of the tree (so no build/ folder of
    an earlier build can add stale files; no build isolation: offline)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in _config()["package-dir"].values():
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *("-w", str(out), str(src)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("wattbench-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_no_package_list_is_kept_by_hand():
    cfg = _config()
    assert "packages" not in cfg, "packages are discovered; see the comment in pyproject.toml"
    assert cfg["package-dir"] == {"wattbench.kernels": "kernels", "wattbench.profiler": "profiler"}


def test_the_wheel_holds_every_package_of_the_tree_and_no_other(wheel_names):
    modules = [PurePosixPath(n) for n in wheel_names if n.endswith(".py")]
    shipped = {".".join(p.parent.parts) for p in modules if p.name == "__init__.py"}
    assert shipped == set(_tree_packages()), "a package folder is missing from the wheel"
    # every module of every package, under its wattbench. name
    for name, folder in _tree_packages().items():
        want = {p.name for p in folder.glob("*.py")}
        have = {p.name for p in modules if ".".join(p.parent.parts) == name}
        assert have == want, name


def test_nothing_but_wattbench_is_installed_at_the_top_level(wheel_names):
    tops = {PurePosixPath(n).parts[0] for n in wheel_names}
    assert tops == {"wattbench", "wattbench-sim-nvml.pth", "wattbench-0.1.0.dist-info"}
    # wattbench is a namespace package: no wattbench/__init__.py, no modules beside the two
    assert {PurePosixPath(n).parts[1] for n in wheel_names if n.startswith("wattbench/")} == {
        "kernels",
        "profiler",
    }
    for stray in ("kernels", "profiler", "tests", "suites"):
        assert not any(n.startswith(f"{stray}/") for n in wheel_names)


def test_the_data_files_are_shipped(wheel_names):
    assert _config()["package-data"]["*"] == [*(f"*{s}" for s in DATA_SUFFIXES), "py.typed"]
    for prefix, folder in _config()["package-dir"].items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in DATA_SUFFIXES and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT / folder).as_posix()
                assert f"{prefix.replace('.', '/')}/{rel}" in wheel_names, rel


def test_the_custom_build_step_writes_the_nvml_switch(wheel_names):
    assert "wattbench-sim-nvml.pth" in wheel_names


def test_both_packages_ship_py_typed(wheel_names):
    """PEP 561: the marker in each package, in the wheel."""
    for folder in ("kernels", "profiler"):
        assert (ROOT / folder / "py.typed").is_file(), f"{folder}/py.typed is missing"
        assert f"wattbench/{folder}/py.typed" in wheel_names
