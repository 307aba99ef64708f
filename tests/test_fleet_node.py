"""The node agent (`wattbench fleet node PLAN`): every GPU of a simulated node swept in parallel
from a plan file, one worker process per GPU; a failed GPU keeps the others' results; a
stopped agent resumes; complete records are skipped. Real subprocesses and signals throughout."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.cli_run import CLI, wb
from wattbench.profiler.fleet.plan import load_plan
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim import state
from wattbench.profiler.store import RunRecord

H100 = sim_spec.load_builtin("h100-sxm")

PLAN = """\
schema = "wattbench.fleet-plan/1"
run_id = "{run_id}"
results = "{results}"
devices = "sim:4xh100-sxm"

[sweep]
strategy = "grid"
sm_clocks = "{clocks}"

[[problems]]
kernel = "matmul"
shape = "4096x4096x4096"
dtype = "bf16"

[[problems]]
kernel = "matmul"
shape = "2048x2048x2048"
dtype = "fp16"
"""


def write_plan(tmp_path, clocks="1980,1410", run_id="fleet-1"):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.format(run_id=run_id, results=tmp_path / "results", clocks=clocks))
    return path


def gpu_records(tmp_path, run_id="fleet-1"):
    """{gpu uuid: its run records} under <results>/<run id>/<host>/<uuid>/."""
    out: dict[str, list[RunRecord]] = {}
    for path in sorted((tmp_path / "results" / run_id).glob("*/*/*.json")):
        out.setdefault(path.parent.name, []).append(RunRecord.load(path))
    return out


def plant_process(unit: int) -> None:
    with state.StateFile(state.state_path(H100.key, H100.source, unit)).locked() as st:
        st.processes = [{"pid": 4242, "used_memory_bytes": 2**30}]


def clear_processes(unit: int) -> None:
    with state.StateFile(state.state_path(H100.key, H100.source, unit)).locked() as st:
        st.processes = []


def test_the_agent_sweeps_every_gpu_and_a_second_run_skips_what_is_complete(tmp_path):
    plan = write_plan(tmp_path)
    r = wb("fleet", "node", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    records = gpu_records(tmp_path)
    assert len(records) == 4
    for uuid, recs in records.items():
        assert len(recs) == 2 and all(x.status == "complete" for x in recs)
        assert all(x.doc["device"]["uuid"] == uuid for x in recs)  # each GPU in its own folder
        assert all(x.doc["fleet_run_id"] == "fleet-1" for x in recs)
    assert "4 GPU(s) x 2 problem(s)" in r.stdout and r.stdout.count("2/2 done (2 complete)") == 4
    again = wb("fleet", "node", str(plan))
    assert again.returncode == 0 and again.stdout.count("2/2 done (2 skipped)") == 4
    assert {u: [x.path for x in v] for u, v in gpu_records(tmp_path).items()} == {
        u: [x.path for x in v] for u, v in records.items()
    }
    status = json.loads(wb("fleet", "status", str(plan), "--json").stdout)
    assert len(status["gpus"]) == 4 and all(g["complete"] for g in status["gpus"])
    assert status["incomplete_hosts"] == []


def test_a_failed_gpu_keeps_the_others_and_a_rerun_finishes_only_it(tmp_path):
    plan = write_plan(tmp_path)
    plant_process(2)  # another process on unit 2: its sweeps refuse to start
    r = wb("fleet", "node", str(plan))
    assert r.returncode == 1
    assert "0/2 done (2 failed)" in r.stdout and "other process(es)" in r.stdout
    assert r.stdout.count("2/2 done (2 complete)") == 3
    status = wb("fleet", "status", str(plan))
    assert status.returncode == 1 and "3/4 GPUs complete" in status.stdout
    assert "(missing)" in status.stdout and "hosts to run again: " in status.stdout
    clear_processes(2)
    r = wb("fleet", "node", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("2/2 done (2 skipped)") == 3 and "2/2 done (2 complete)" in r.stdout
    assert all(len(v) == 2 for v in gpu_records(tmp_path).values())


def test_a_stopped_agent_resumes_without_measuring_a_point_twice(tmp_path):
    plan = write_plan(tmp_path, clocks="every:6")
    agent = subprocess.Popen(
        [*CLI, "fleet", "node", str(plan)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    root = tmp_path / "results" / "fleet-1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # stop it once some GPU has recorded points
        started = []
        for p in root.glob("*/*/*.json"):
            try:
                started.append(len(RunRecord.load(p).points))
            except Exception:
                continue
        if any(n >= 2 for n in started):
            break
        time.sleep(0.05)
    agent.send_signal(signal.SIGTERM)
    out, err = agent.communicate(timeout=120)
    assert agent.returncode == 128 + signal.SIGTERM, out + err
    assert "run it again to resume" in err
    before = {p: RunRecord.load(p) for p in root.glob("*/*/*.json")}
    cut = {p: r for p, r in before.items() if r.status != "complete"}
    assert cut, "the agent was stopped mid-sweep"
    r = wb("fleet", "node", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed" in r.stdout
    for path, old in cut.items():
        new = RunRecord.load(path)  # the same file, continued
        assert new.status == "complete"
        keys = [m.point.key for m in new.points]
        assert len(keys) == len(set(keys))  # no point measured twice
        assert [m.point.key for m in old.points] == keys[: len(old.points)]  # kept as they were
    assert all(len(v) == 2 for v in gpu_records(tmp_path).values())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('run_id = "fleet-1"', 'run_id = "../x"'), "is not a run id"),
        (("[sweep]", "[sweep]\nspeed = 3"), "unknown key sweep.'speed'"),
        (('dtype = "fp16"', 'dtype = "fp17"'), "problems[1]"),
        (('strategy = "grid"', 'strategy = "random"'), "sweep.strategy 'random'"),
    ],
)
def test_a_bad_plan_is_one_line_and_exit_2(tmp_path, edit, message):
    plan = write_plan(tmp_path)
    plan.write_text(plan.read_text().replace(*edit))
    r = wb("fleet", "node", str(plan))
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "results").exists()


def test_the_plan_is_read_as_written(tmp_path):
    plan = load_plan(write_plan(tmp_path))
    assert plan.run_id == "fleet-1" and plan.devices == "sim:4xh100-sxm"
    assert [p.label for p in plan.problems] == [
        "matmul-vendor-bf16-4096x4096x4096",
        "matmul-vendor-fp16-2048x2048x2048",
    ]
    assert plan.request().strategy == "grid" and plan.request().sm == "1980,1410"


def test_fleet_plan_writes_a_plan_the_agent_reads(tmp_path):
    out = tmp_path / "p.toml"
    r = wb("fleet", "plan", "-o", str(out), "--run-id", "r-1", "--devices", "sim:2xh100-sxm",
           "--results", str(tmp_path / "res"), "--problem", "matmul:4096x4096x4096:bf16",
           "--problem", "decode:llama3-8b@4096:bf16:vendor", "--objective", "energy",
           "--sm-clocks", "every:8")  # fmt: skip
    assert r.returncode == 0, r.stderr
    plan = load_plan(out)
    assert [p.family for p in plan.problems] == ["matmul", "decode"]
    assert plan.request().sm == "every:8" and [o.name for o in plan.request().objectives] == [
        "energy"
    ]
    dry = wb("fleet", "node", str(out), "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("GPU-") == 4  # 2 GPUs, uuid and folder
    again = wb("fleet", "plan", "-o", str(out), "--run-id", "r-1", "--problem", "matmul:8x8x8:bf16")
    assert again.returncode == 2 and "exists" in again.stderr
    bad = wb("fleet", "plan", "-o", str(tmp_path / "q.toml"), "--run-id", "r", "--problem", "x:y")
    assert bad.returncode == 2 and not (tmp_path / "q.toml").exists()
