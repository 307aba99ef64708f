"""Fleet characterisation through a real local Slurm cluster (tests/slurm_cluster.py): two
emulated nodes of four simulated GPUs each, `wattbench fleet slurm submit`, a GPU that fails, a
node job cancelled mid-sweep, re-submission that finishes only the rest."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.cli_run import wb
from tests.slurm_cluster import LocalSlurm, needs_slurm
from tests.test_fleet_node import PLAN
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim.gpu import SimulatedGpu
from wattbench.profiler.store import RunRecord
from wattbench.profiler.store.record import RecordError

H100 = sim_spec.load_builtin("h100-sxm")


@pytest.fixture(scope="module")
def slurm():
    folder = Path(tempfile.mkdtemp(prefix="wbslurm", dir="/tmp"))  # short: socket paths
    cluster = LocalSlurm(folder).start()
    yield cluster
    cluster.stop()


def fleet_records(root: Path) -> dict[Path, RunRecord]:
    out = {}
    for p in root.glob("*/*/*.json"):
        try:
            out[p] = RunRecord.load(p)
        except RecordError:
            continue
    return out


def _uuid_of(host: str, unit: int, monkeypatch) -> str:
    with monkeypatch.context() as m:
        m.setenv("WATTBENCH_SIM_HOST", host)
        return SimulatedGpu(H100, unit, persist=False).uuid


@needs_slurm
def test_a_fleet_run_survives_a_failed_gpu_and_a_cancelled_job(tmp_path, slurm, monkeypatch):
    """wbnode1's job is cancelled mid-sweep, after its GPU 2 failed mid-sweep (a launch fault
    injected on that GPU only); wbnode2 completes. The second submission runs wbnode1 only, and
    finishes every record without measuring a finished point again."""
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(run_id="slurm-1", results=tmp_path / "results", clocks="every:6"))
    root = tmp_path / "results" / "slurm-1"
    env = {**os.environ, **{"SLURM_CONF": slurm.env["SLURM_CONF"]}}
    failing = _uuid_of("wbnode1", 2, monkeypatch)
    faulty = {**env, "WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S": f"20@{failing}"}

    r = wb("fleet", "slurm", "submit", str(plan), "--constraint", "h100", env=faulty)
    assert r.returncode == 0, r.stderr
    assert "wbnode1: job" in r.stdout and "wbnode2: job" in r.stdout and "aggregate" in r.stdout
    deadline = time.monotonic() + 120  # cancel wbnode1 once GPU 2 failed and others measure
    while time.monotonic() < deadline:
        recs = {p: x for p, x in fleet_records(root).items() if "wbnode1" in str(p)}
        failed = any(failing in str(p) and x.status == "interrupted" for p, x in recs.items())
        busy = any(x.status == "running" and len(x.points) >= 2 for x in recs.values())
        if failed and busy:
            break
        time.sleep(0.1)
    assert failed, "GPU 2 of wbnode1 did not fail mid-sweep"
    job = [j for j, name, _ in slurm.jobs() if name == "wattbench-slurm-1-wbnode1"]
    assert job, slurm.jobs()
    slurm.run("scancel", job[0])
    slurm.wait_idle()

    first = fleet_records(root)
    status = json.loads(wb("fleet", "status", str(plan), "--json", env=env).stdout)
    complete = {(g["host"], g["uuid"]) for g in status["gpus"] if g["complete"]}
    assert status["incomplete_hosts"] == ["wbnode1"]  # the cancelled node; wbnode2 is done
    assert sum(h == "wbnode2" for h, _ in complete) == 4
    cut = {p: x for p, x in first.items() if x.status != "complete"}
    assert any(failing in str(p) and len(x.points) > 0 for p, x in cut.items())  # mid-sweep

    again = wb("fleet", "slurm", "submit", str(plan), "--constraint", "h100", env=env)
    assert again.returncode == 0, again.stderr
    assert "complete, not submitted: wbnode2" in again.stdout and "wbnode2: job" not in again.stdout
    slurm.wait_idle()

    final = fleet_records(root)
    status = json.loads(wb("fleet", "status", str(plan), "--json", env=env).stdout)
    assert len(status["gpus"]) == 8 and all(g["complete"] for g in status["gpus"])
    assert len({g["uuid"] for g in status["gpus"]}) == 8  # eight distinct units
    for path, old in first.items():
        new = final[path]
        keys = [m.point.key for m in new.points]
        assert keys[: len(old.points)] == [m.point.key for m in old.points]  # kept, not redone
        if old.status == "complete":
            assert new.doc["updated_utc"] == old.doc["updated_utc"]  # untouched
    assert all(len(set(m.point.key for m in x.points)) == len(x.points) for x in final.values())
    status = json.loads((root / "status.json").read_text())  # the afterany job's output
    assert len(status["gpus"]) == 8
    aggregate = json.loads((root / "aggregate.json").read_text())
    assert aggregate["groups"] and all(
        g["units_measured"] == g["units_total"] == 8 for g in aggregate["groups"]
    )


WRAPPER = """#!/bin/bash
# site wrapper: the exported script, with the nvidia-smi stand-in of the emulated node's GPUs
export WATTBENCH_NVIDIA_SMI={smi}
export WATTBENCH_SIM_NVML=4xh100-sxm WATTBENCH_SIM_HOST="$SLURMD_NODENAME"
export WATTBENCH_SIM_STATE_DIR={state} WATTBENCH_SLURM_STATE_DIR={state}/slurm-pl
exec {script}
"""

JOB = """#!/bin/bash
export WATTBENCH_SIM_HOST="$SLURMD_NODENAME"
{python} -c 'import pynvml; pynvml.nvmlInit(); print(*(pynvml.nvmlDeviceGetPowerManagementLimit(
    pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount())))'
"""


@needs_slurm
def test_the_exported_prolog_and_epilog_run_under_slurmd(tmp_path, slurm):
    """`wattbench export --format slurm` scripts, installed as Prolog / Epilog, set the point's
    power limit on the job's GPUs for the job (seen from inside it through NVML) and put the
    limit back after it; nvidia-smi is the stand-in over the emulated node's simulated GPUs."""
    import sys

    from tests.shared_node import SharedNode

    env = {**os.environ, "SLURM_CONF": slurm.env["SLURM_CONF"]}
    runs, export = tmp_path / "runs", tmp_path / "export"
    r = wb("sweep", "--device", "sim:h100-sxm", "--kernel", "matmul", "--shape",
           "8192x8192x8192", "--dtype", "bf16", "--strategy", "grid", "--power-limits",
           "300,700", "--objective", "energy", "--out", str(runs), "--quiet", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert wb("export", str(runs), "--format", "slurm", "-o", str(export), env=env).returncode == 0
    (prolog,) = export.glob("*.prolog.sh")
    (epilog,) = export.glob("*.epilog.sh")
    state = tmp_path / "shared-sim"
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m wattbench.profiler.sim.smi "$@"\n')
    wrappers = {}
    for name, script in (("prolog", prolog), ("epilog", epilog)):
        w = tmp_path / f"{name}.sh"
        w.write_text(WRAPPER.format(smi=smi, state=state, script=script))
        wrappers[name] = w
    for p in (smi, prolog, epilog, *wrappers.values()):
        p.chmod(0o755)
    conf = Path(slurm.env["SLURM_CONF"])
    original = conf.read_text()
    conf.write_text(original + f"Prolog={wrappers['prolog']}\nEpilog={wrappers['epilog']}\n")
    node = SharedNode(tmp_path, node="4xh100-sxm")
    node.state = state
    try:
        slurm.run("scontrol", "reconfigure")
        time.sleep(1)
        job_env = {**env, "WATTBENCH_SIM_NVML": "4xh100-sxm", "WATTBENCH_SIM_STATE_DIR": str(state)}
        script = tmp_path / "job.sh"
        script.write_text(JOB.format(python=sys.executable))
        out = tmp_path / "job.out"
        r = subprocess.run(
            ["sbatch", "--parsable", "--nodelist=wbnode1", "--gres=gpu:h100:4", f"--output={out}",
             str(script)], env=job_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        slurm.wait_idle()
        time.sleep(1)  # the epilog runs after the job leaves the queue
        during = [int(x) for x in out.read_text().split()]
        assert during == [300_000] * 4, out.read_text()  # the point's limit, on every GPU
        after = subprocess.run(
            [str(smi), "--query-gpu=power.limit", "--format=csv,noheader,nounits"],
            env={**job_env, "WATTBENCH_SIM_HOST": "wbnode1"}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert after.stdout.split() == ["700.00"] * 4, after.stdout + after.stderr
        assert not list((state / "slurm-pl").glob("*.pl"))  # the epilog cleaned up
    finally:
        conf.write_text(original)
        slurm.run("scontrol", "reconfigure", check=False)
        node.stop()
