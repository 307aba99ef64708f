"""suites/ holds the pytest suites; the benchmark scripts live in suites/bench/ (the top level is
fixed by the design card, docs/architecture.md says why). ``pytest suites/`` must collect only
the suites, and every ``python suites/...`` / ``pytest suites/...`` command the docs give must
name a file that exists. Real subprocesses, no mocks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("kernels", "search", "search_methods", "quick", "overhead", "examples")
DOCS = ("README.md", "CONTRIBUTING.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_pytest_suites_collects_only_the_suites():
    r = _run("-m", "pytest", "suites/", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert r.returncode == 0, r.stdout + r.stderr
    ids = [line for line in r.stdout.splitlines() if "::" in line]
    assert ids, r.stdout
    files = {i.split("::")[0] for i in ids}
    assert files == {"suites/test_kernels.py"}
    assert sorted(p.stem for p in (ROOT / "suites" / "bench").glob("*.py")) == sorted(SCRIPTS)


def test_every_suites_command_in_the_docs_names_a_file_that_exists():
    found = set()
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        for path in re.findall(r"(?:python|pytest) (suites/[\w/.]*)", text):
            found.add(path)
            assert (ROOT / path).exists(), f"{doc}: {path} does not exist"
    assert {"suites/bench/kernels.py", "suites/bench/search.py", "suites/"} <= found


def test_a_benchmark_script_runs_from_its_folder():
    """search.py imports its sibling search_methods.py: --help shows both are found."""
    r = _run("suites/bench/search.py", "--help")
    assert r.returncode == 0, r.stderr
    assert "--study" in r.stdout and "tau3" in r.stdout
