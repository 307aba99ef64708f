"""Helpers for tests of the shared simulated node: an environment that selects it, scripts run in
their own processes through the NVML switch, and stopping the service by its PID afterwards."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli_run import CLI
from tests.processes import stop_pids
from wattbench.profiler.sim.hook import PTH_NAME


def hook_installed() -> bool:
    """Whether this environment has the NVML switch's .pth (``pip install`` puts it there)."""
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    return any((Path(f) / PTH_NAME).is_file() for f in folders)


needs_hook = pytest.mark.skipif(
    not hook_installed(),
    reason=f"{PTH_NAME} is not installed in this environment (`pip install -e .` installs it)",
)


class SharedNode:
    """The environment of one shared node in a scratch state folder; stops its service."""

    def __init__(self, tmp_path: Path, node: str = "h100-sxm", idle_s: float = 30.0) -> None:
        self.node = node
        self.state = tmp_path / "sim"
        self.env = dict(os.environ)
        self.env.update(
            WATTBENCH_SIM_STATE_DIR=str(self.state),
            WATTBENCH_SIM_NVML=node,
            WATTBENCH_SIM_SERVICE_IDLE_S=str(idle_s),
            PYTHONUNBUFFERED="1",
        )
        self._scripts = 0

    def script(self, text: str) -> str:
        """Write a script to a file (multiprocessing's spawn re-imports ``__main__`` from it)."""
        self._scripts += 1
        path = self.state.parent / f"script{self._scripts}.py"
        path.write_text(textwrap.dedent(text))
        return str(path)

    def run(self, script: str, timeout: float = 120, sim_run: bool = False, **extra_env: str):
        """Run a Python script in a new process with the switch set (``sim_run``: through
        ``wattbench sim run``, which also puts its nvidia-smi first on the PATH)."""
        env = {**self.env, **extra_env}
        prefix = [*CLI, "sim", "run", "--"] if sim_run else []
        return subprocess.run(
            [*prefix, sys.executable, self.script(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, script: str, **extra_env: str) -> subprocess.Popen:
        env = {**self.env, **extra_env}
        return subprocess.Popen(
            [sys.executable, self.script(script)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def service_pid(self) -> int | None:
        pids = list((self.state / "shared").glob("*.pid"))
        if not pids:
            return None
        try:
            return int(pids[0].read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the service by its PID (SIGTERM: it saves its state), SIGKILL if it lingers."""
        pid = self.service_pid()
        if pid is not None:
            stop_pids([pid])


def ok(proc) -> str:
    """stdout of a finished script, failing the test with its stderr when it failed."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout
