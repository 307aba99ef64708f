"""A real local Ray cluster for tests: a head and a second node on this machine, emulating two
nodes of four GPUs each (``ray start --num-gpus 4``; the GPUs are simulated ones), each started
as ``ray start --block`` with its own ``WATTBENCH_FLEET_HOST``, on a free port, in one scratch
folder, and stopped by PID (SIGTERM to the blocking ``ray start``, which stops its processes).

Ray is an optional extra (``pip install 'wattbench[ray]'``); tests that use the cluster are
skipped, with the reason, where Ray cannot be imported.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import stop_pids, tail_logs

NODES = ("rnode1", "rnode2")
GPUS_PER_NODE = 4


def missing() -> str | None:
    """Why a local Ray cluster cannot run here, or None."""
    probe = subprocess.run([sys.executable, "-c", "import ray"], capture_output=True, text=True)
    if probe.returncode == 0 and shutil.which("ray", path=os.path.dirname(sys.executable)):
        return None
    last = (probe.stderr.strip().splitlines() or ["no `ray` command beside python"])[-1]
    if "No module named 'ray'" in last:
        return "Ray is not installed: pip install 'wattbench[ray]'"
    return f"Ray cannot be imported here ({last}); run these tests in an environment with Ray"


needs_ray = pytest.mark.skipif(missing() is not None, reason=missing() or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRay:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.d = folder
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": self.address}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> LocalRay:
        ray = str(Path(sys.executable).parent / "ray")
        common = ["--block", "--num-cpus", "1", "--num-gpus", str(GPUS_PER_NODE),
                  "--object-store-memory", str(80 * 2**20)]  # fmt: skip
        head = [ray, "start", "--head", "--port", str(self.port), "--include-dashboard=false",
                "--temp-dir", str(self.d / "ray")]  # fmt: skip
        for i, node in enumerate(NODES):
            cmd = head if i == 0 else [ray, "start", "--address", self.address]
            log = open(self.d / f"{node}.log", "w")  # noqa: SIM115 -- the daemon's own log
            self.procs.append(subprocess.Popen(
                [*cmd, *common], env={**self.env, "WATTBENCH_FLEET_HOST": node},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
            self._wait_nodes(i + 1)
        return self

    def _wait_nodes(self, n: int, timeout: float = 90) -> None:
        probe = (
            "import ray; ray.init(address='auto', logging_level='ERROR', log_to_driver=False); "
            "print(sum(x['Alive'] for x in ray.nodes()))"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            r = subprocess.run([sys.executable, "-c", probe], env=self.env,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
            if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(0.5)
        raise RuntimeError(f"Ray nodes did not come up ({n} wanted)\n{self.logs()}")

    def logs(self) -> str:
        return tail_logs(self.d, 8)

    def stop(self) -> None:
        """SIGTERM every ``ray start --block`` (workers first, the head last), then SIGKILL."""
        stop_pids([p.pid for p in reversed(self.procs)], grace_s=45)
        for p in self.procs:
            p.wait(timeout=60)
