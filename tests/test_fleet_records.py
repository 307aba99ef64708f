"""No lost data at fleet scale: concurrent sweeps of a node's GPUs into one results tree, unique
run-file names, records that say where they were measured, state on node-local storage."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess

import pytest

from tests.cli_run import CLI, wb
from wattbench.profiler import paths
from wattbench.profiler.store import RunRecord
from wattbench.profiler.store.record import default_run_path

SWEEP = ["sweep", "--kernel", "matmul", "--shape", "4096x4096x4096", "--dtype", "bf16"]
SWEEP += ["--strategy", "grid", "--sm-clocks", "1980,1410", "--quiet"]


def test_eight_concurrent_sweeps_of_a_node_keep_eight_complete_records(tmp_path):
    """Eight sweeps, one per GPU of a simulated node, started together into one folder, five
    times over: every round leaves eight more complete records, one per GPU."""
    out = tmp_path / "runs"
    env = {**os.environ, "WATTBENCH_FLEET_RUN_ID": "fleet-test-1"}
    for round_ in range(5):
        procs = [
            subprocess.Popen(
                [*CLI, *SWEEP, "--device", f"sim:8xh100-sxm:{i}", "--out", str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(8)
        ]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        records = [RunRecord.load(f) for f in sorted(out.glob("*.json"))]
        assert len(records) == 8 * (round_ + 1)
        assert all(r.status == "complete" for r in records)
    uuids = [r.doc["device"]["uuid"] for r in records]
    assert len(set(uuids)) == 8 and all(uuids.count(u) == 5 for u in set(uuids))
    assert {r.doc["fleet_run_id"] for r in records} == {"fleet-test-1"}


def test_run_file_names_carry_host_gpu_and_time(tmp_path):
    when = dt.datetime(2025, 1, 31, 12, 5, 1, tzinfo=dt.timezone.utc)
    problem = {"family": "matmul", "impl": "vendor", "dtype": "bf16", "shape": [8, 8, 8]}
    path = default_run_path(
        tmp_path, "sim-h100-sxm", problem, host="node7.cluster.example", when=when,
        uuid="GPU-0c33802c-67bd-52bb-b101-59508571682c",
    )  # fmt: skip
    assert (
        path.name == "2025-01-31-sim-h100-sxm-matmul-vendor-bf16-8x8x8-node7-0c33802c-120501.json"
    )


def test_records_say_where_they_were_measured(tmp_path):
    r = wb(*SWEEP, "--device", "sim:8xh100-sxm:5", "--out", str(tmp_path),
           env={"WATTBENCH_FLEET_RUN_ID": "2026-12-01.a"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    (path,) = tmp_path.glob("*.json")
    doc = RunRecord.load(path).doc
    assert doc["host"]["hostname"] == socket.gethostname()
    assert doc["fleet_run_id"] == "2026-12-01.a"
    assert doc["device"]["module_id"] == 6 and doc["device"]["serial"]
    assert doc["device"]["pci_bus_id"] == "00000000:1D:00.0"
    assert doc["device"]["uuid"].split("-")[1] in path.name


def test_a_bad_fleet_run_id_is_one_line_and_exit_2(tmp_path):
    r = wb(*SWEEP, "--device", "sim:h100-sxm", "--out", str(tmp_path),
           env={"WATTBENCH_FLEET_RUN_ID": "../etc"})  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "WATTBENCH_FLEET_RUN_ID='../etc'" in r.stderr
    assert not list(tmp_path.glob("*.json"))


MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
35 22 0:31 / /home rw,relatime shared:9 - nfs4 filer:/export/home rw,vers=4.2
36 35 0:32 / /home/scratch\\040dir rw,relatime shared:10 - lustre 10.0.0.1@tcp:/scratch rw
37 22 0:33 / /var/tmp rw,relatime shared:11 - xfs /dev/vdb1 rw
"""


def test_the_filesystem_of_a_path_is_its_longest_mount():
    assert paths.fs_type("/home/alice", MOUNTINFO) == "nfs4"
    assert paths.fs_type("/home/scratch dir/x", MOUNTINFO) == "lustre"  # escaped space
    assert paths.fs_type("/home", MOUNTINFO) == "nfs4"
    assert paths.fs_type("/homework", MOUNTINFO) == "ext4"  # a prefix of a name is not a mount
    assert paths.fs_type("/var/tmp/wattbench-0", MOUNTINFO) == "xfs"


def test_state_goes_node_local_when_home_is_on_a_network_filesystem(monkeypatch, tmp_path):
    """An NFS home cannot be made here: the filesystem type is the one thing stood in for."""
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(paths, "fs_type", lambda path, mountinfo=None: "nfs4")
    assert paths.state_home() == paths.node_local_state()
    assert str(paths.state_home()).startswith("/var/tmp/wattbench-")
    monkeypatch.setattr(paths, "fs_type", lambda path, mountinfo=None: "ext4")
    assert paths.state_home() == tmp_path / ".local" / "state" / "wattbench"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert paths.state_home() == tmp_path / "xdg" / "wattbench"  # an explicit choice wins


@pytest.mark.skipif(not os.path.exists(paths.MOUNTINFO), reason="no /proc/self/mountinfo")
def test_the_filesystem_of_this_machines_root_is_known():
    assert paths.fs_type("/") is not None
