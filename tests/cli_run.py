"""Running the ``wattbench`` command as a real subprocess, for the tests that need one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: argv prefix of the wattbench command in this interpreter
CLI = [sys.executable, "-m", "wattbench.profiler.cli.main"]


def wb(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run ``wattbench ARGS`` (environment: this one plus ``env``); the CompletedProcess."""
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
