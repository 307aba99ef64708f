"""A real local Slurm cluster for tests: munged, slurmctld and two slurmd emulating two nodes of
four GPUs each (fake GPU device nodes made with ``mknod``; no cgroups), all in one scratch
folder, on free ports, stopped by their PID files.

Needs root and the Debian packages ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them);
tests that use it are skipped, with the reason, where either is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.processes import stop_pids, tail_logs

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
MUNGE_KEY = Path("/etc/munge/munge.key")
NODES = ("wbnode1", "wbnode2")
GPUS_PER_NODE = 4


def missing() -> str | None:
    """Why a local cluster cannot run here, or None."""
    absent = [d for d in DAEMONS if shutil.which(d) is None]
    if absent:
        return f"Slurm / munge not installed ({', '.join(absent)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root (slurmd runs jobs as their users)"
    if not MUNGE_KEY.is_file():
        return f"no munge key at {MUNGE_KEY}"
    return None


needs_slurm = pytest.mark.skipif(missing() is not None, reason=missing() or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONF = """\
ClusterName=wbtest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
GresTypes=gpu
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
{nodes}
PartitionName=gpu Nodes={node_list} Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE
"""


class LocalSlurm:
    def __init__(self, folder: Path) -> None:
        self.d = folder
        self.env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}

    def start(self) -> LocalSlurm:
        d = self.d
        (d / "state").mkdir(parents=True, exist_ok=True)
        (d / "dev").mkdir(exist_ok=True)
        for i in range(GPUS_PER_NODE):
            dev = d / "dev" / f"nvidia{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(195, i))  # a character device
        nodes = "\n".join(
            f"NodeName={n} NodeHostname=localhost Port={_free_port()} CPUs=2 RealMemory=1000 "
            f"Gres=gpu:h100:{GPUS_PER_NODE} Feature=h100 State=UNKNOWN"
            for n in NODES
        )
        (d / "slurm.conf").write_text(
            CONF.format(
                d=d,
                ctld_port=_free_port(),
                slurmd_port=_free_port(),
                nodes=nodes,
                node_list=",".join(NODES),
            )
        )
        (d / "gres.conf").write_text(
            f"NodeName={','.join(NODES)} Name=gpu Type=h100 "
            f"File={d}/dev/nvidia[0-{GPUS_PER_NODE - 1}]\n"
        )
        self._daemon(
            "munged", "--force", f"--socket={d}/munge.sock", f"--key-file={MUNGE_KEY}",
            f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log",
            f"--seed-file={d}/munged.seed",
        )  # fmt: skip
        self._wait_file(d / "munged.pid")
        self._daemon("slurmctld")
        self._wait_file(d / "slurmctld.pid")
        for n in NODES:
            self._daemon("slurmd", "-N", n)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = self.run("sinfo", "-h", "-N", "-o", "%N %T").split("\n")
            if sum(line.endswith(" idle") for line in states) == len(NODES):
                return self
            time.sleep(0.3)
        raise RuntimeError(f"Slurm nodes did not come up: {states}\n{self.logs()}")

    def _daemon(self, *cmd: str) -> None:
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {r.stderr}\n{self.logs()}")

    def _wait_file(self, path: Path) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not path.exists():
            time.sleep(0.05)

    def run(self, *cmd: str, check: bool = True) -> str:
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
        return r.stdout.strip()

    def jobs(self) -> list[tuple[str, str, str]]:
        """(job id, name, state) of the jobs slurmctld still knows as pending or running."""
        out = self.run("squeue", "-h", "-o", "%i|%j|%T")
        return [tuple(line.split("|")) for line in out.splitlines() if line]  # type: ignore[misc]

    def wait_idle(self, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.jobs():
                return
            time.sleep(0.3)
        raise RuntimeError(f"jobs still queued after {timeout} s: {self.jobs()}")

    def logs(self) -> str:
        return tail_logs(self.d, 5)

    def stop(self) -> None:
        """Stop every daemon by its PID file (SIGTERM, then SIGKILL after 10 s)."""
        pids = []
        for name in [*(f"slurmd-{n}.pid" for n in NODES), "slurmctld.pid", "munged.pid"]:
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.d / name).read_text().split()[0]))
        stop_pids(pids)
