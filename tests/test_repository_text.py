"""The repository stands alone: no tracked text points at files a user cloning it does not have
(the team's notes beside the checkout), so every reference in docs and code resolves here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: paths into the team's folder beside the checkout, in any spelling a doc would use
OUTSIDE = re.compile(r"\.\./shared/|\bshared/(reference|DESIGN\.md|hooks)\b")
TEXT = (".py", ".md", ".toml", ".cfg", ".txt", ".yaml", ".yml", ".cu", ".cuh", ".cpp", ".sh")


def _tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / p for p in out.splitlines() if p.endswith(TEXT) or p.startswith(".ci/")]


def test_no_tracked_file_points_outside_the_repository():
    files = _tracked()
    assert len(files) > 100  # the listing worked
    me = Path(__file__).resolve()
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in files
        if p.resolve() != me and p.is_file()
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "\n".join(hits)
