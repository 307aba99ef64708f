"""The explicit package list in pyproject.toml matches the tree, so `pip install .` (not only an
editable install) ships every module."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_and_every_listed_package_exists():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for prefix, folder in cfg["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([prefix, *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "listed but missing (no __init__.py?)"


def test_data_files_are_declared():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["package-data"]["*"]
    suffixes = {p.suffix for d in ("kernels", "profiler") for p in (ROOT / d).rglob("*.*")}
    for needed in (".toml", ".cu", ".json"):
        if needed in suffixes:
            assert f"*{needed}" in data


def test_both_packages_ship_py_typed():
    """PEP 561: the marker in each package folder, and declared as package data."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["package-data"]["*"]
    assert "py.typed" in data
    for folder in ("kernels", "profiler"):
        assert (ROOT / folder / "py.typed").is_file(), f"{folder}/py.typed is missing"
