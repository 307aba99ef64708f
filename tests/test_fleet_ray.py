"""The Ray launcher (`wattbench fleet ray run`) on a real local Ray cluster (tests/ray_cluster.py):
two emulated nodes of four simulated GPUs each run the same plan as the Slurm test; the driver is
interrupted mid-sweep, and running it again finishes only the rest. Skipped, with the reason,
where Ray cannot be imported (it is an optional extra; `.ci/run` runs this file in an
environment of its own, because Ray's import fails beside the amdsmi package Zeus pulls in)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.cli_run import CLI, wb
from tests.conftest import CLEARED_ENV
from tests.ray_cluster import GPUS_PER_NODE, NODES, LocalRay, needs_ray
from tests.test_fleet_node import PLAN
from tests.test_fleet_slurm import fleet_records

pytestmark = needs_ray


@pytest.fixture(scope="module")
def ray_cluster():
    folder = Path(tempfile.mkdtemp(prefix="wbray", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env["WATTBENCH_SIM_STATE_DIR"] = str(folder / "sim-state")
    env["XDG_STATE_HOME"] = str(folder / "state")  # the workers' journals
    cluster = LocalRay(folder, env)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _plan(tmp_path: Path, run_id: str, clocks: str = "every:6") -> Path:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(run_id=run_id, results=tmp_path / "results", clocks=clocks))
    return plan


def test_the_plan_runs_on_every_node_and_a_second_run_finishes_an_interrupted_one(
    tmp_path, ray_cluster
):
    """The driver is stopped (SIGTERM) while the agents sweep: the tasks are cancelled, every
    agent stops cleanly keeping its points. The second run completes all 8 GPUs x 2
    problems without measuring a kept point again; a third one measures nothing."""
    plan = _plan(tmp_path, "ray-1", clocks="every:3")  # long enough to interrupt
    root = tmp_path / "results" / "ray-1"
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address}

    dry = wb("fleet", "ray", "run", str(plan), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count(f"{GPUS_PER_NODE} GPU(s)") == len(NODES)

    cmd = [*CLI, "fleet", "ray", "run", str(plan)]
    pipe = subprocess.PIPE
    driver = subprocess.Popen(cmd, env=env, stdout=pipe, stderr=pipe, text=True)
    deadline = time.monotonic() + 120
    busy = False
    while time.monotonic() < deadline and driver.poll() is None and not busy:
        recs = fleet_records(root).values()
        busy = sum(x.status == "running" and len(x.points) >= 2 for x in recs) >= 4
        time.sleep(0.1)
    assert busy, f"the agents did not start sweeping\n{ray_cluster.logs()}"
    # SIGTERM, as a scheduler stops a job (SIGINT would be ignored where this test runs as a
    # background job without job control)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 128 + signal.SIGTERM, (out, err)
    assert "run it again to resume" in err
    time.sleep(1.0)  # the cancelled agents' last writes
    first = fleet_records(root)
    assert first and not all(x.status == "complete" for x in first.values())
    assert {p.parent.parent.name for p in first} <= set(NODES)

    again = wb("fleet", "ray", "run", str(plan), env=env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    final = fleet_records(root)
    assert len(final) == len(NODES) * GPUS_PER_NODE * 2
    assert all(x.status == "complete" for x in final.values())
    assert {p.parent.parent.name for p in final} == set(NODES)
    assert len({p.parent.name for p in final}) == 8  # eight distinct units
    for path, old in first.items():
        keys = [m.point.key for m in final[path].points]
        assert keys[: len(old.points)] == [m.point.key for m in old.points]  # kept, not redone
    assert all(len({m.point.key for m in x.points}) == len(x.points) for x in final.values())
    aggregate = json.loads((root / "aggregate.json").read_text())
    assert aggregate["groups"] and all(
        g["units_measured"] == g["units_total"] == 8 for g in aggregate["groups"]
    )
    status = json.loads((root / "status.json").read_text())
    assert len(status["gpus"]) == 8 and all(g["complete"] for g in status["gpus"])

    third = wb("fleet", "ray", "run", str(plan), env=env)
    assert third.returncode == 0, third.stderr
    assert third.stdout.count("2 skipped") == 8
    for path, rec in fleet_records(root).items():
        assert rec.doc["updated_utc"] == final[path].doc["updated_utc"]  # untouched


def test_bad_requests_are_one_line(tmp_path, ray_cluster):
    """No such node, no results folder in the plan: one line each, exit 2."""
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address}
    plan = _plan(tmp_path, "ray-2")
    r = wb("fleet", "ray", "run", str(plan), "--nodes", "nosuchnode", "--dry-run", env=env)
    assert r.returncode == 2 and "nosuchnode" in r.stderr and len(r.stderr.splitlines()) == 1
    text = plan.read_text().replace(f'results = "{tmp_path / "results"}"\n', "")
    plan.write_text(text)
    r = wb("fleet", "ray", "run", str(plan), env=env)
    assert r.returncode == 2 and "results" in r.stderr and len(r.stderr.splitlines()) == 1


def test_an_adaptive_plan_gets_its_verify_pass_in_the_same_command(tmp_path, ray_cluster):
    """With the adaptive search the driver runs a second round after the aggregation: every
    unit measures the candidates, and the model points come from those verify records."""
    from tests.test_fleet_verify import write_plan

    plan = write_plan(tmp_path, "ray-3")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address}
    r = wb("fleet", "ray", "run", str(plan), env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("GPU(s), verify pass") == len(NODES)  # every node, second round
    assert r.stdout.count("verify pass: 1 complete") == len(NODES) * GPUS_PER_NODE
    root = tmp_path / "results" / "ray-3"
    doc = json.loads((root / "aggregate.json").read_text())
    assert doc["groups"] and all(g["model_point_from"] == "verify" for g in doc["groups"])
    assert all(g["verify"]["units_verified"] == 8 for g in doc["groups"])
