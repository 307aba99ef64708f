"""The node agent: every GPU of this node through the plan, one worker process per GPU.

It is what every engine launches (a Slurm job, a Kubernetes Job, a Ray task, a shell loop).
GPUs are enumerated through NVML (the plan's ``devices``: ``all`` real GPUs, a simulated node
``sim:<N>x<key>``, or a list of selections) and identified by UUID; each worker writes under
``<results>/<run id>/<host>/<gpu uuid>/``. Workers run in parallel; a worker that fails does
not stop the others, and their results are kept. SIGTERM / SIGINT / SIGHUP to the agent go to
every worker, whose sweeps restore their GPUs and keep their points; running the agent again
resumes what was cut short and skips what is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from wattbench.profiler.device import open_device, visible_real_indices
from wattbench.profiler.device.device import Device
from wattbench.profiler.device.nvml import real_backend
from wattbench.profiler.device.select import load_sim_selection
from wattbench.profiler.errors import UsageError
from wattbench.profiler.fleet.plan import FleetPlan
from wattbench.profiler.store import ensure_writable_dir


@dataclass
class GpuRun:
    """One worker: its GPU, folder, process and, once it ends, what it reported."""

    selection: str
    uuid: str
    name: str
    folder: Path
    process: subprocess.Popen | None = None
    outcomes: list[dict] = field(default_factory=list)
    returncode: int | None = None
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def node_gpus(plan: FleetPlan, devices: str | None = None) -> list[Device]:
    """The GPUs of this node the plan (or ``devices``, which overrides it) names."""
    chosen = devices or plan.devices
    if isinstance(chosen, str) and chosen == "all":
        backend = real_backend()
        return [Device(backend, i, f"{pos}", observe_only=True)
                for pos, i in enumerate(visible_real_indices())]  # fmt: skip
    if isinstance(chosen, str) and chosen.startswith("sim:"):
        _, units, _ = load_sim_selection(chosen)
        if re.search(r":\d+$", chosen[4:]):  # one unit named
            return [open_device(chosen, observe_only=True)]
        return [open_device(f"{chosen}:{i}", observe_only=True) for i in range(units)]
    selections = chosen.split(",") if isinstance(chosen, str) else list(chosen)
    return [open_device(s.strip(), observe_only=True) for s in selections if s.strip()]


HOST_ENV = "WATTBENCH_FLEET_HOST"


def host_name() -> str:
    """This node's name in the results tree: ``WATTBENCH_FLEET_HOST`` (the launchers set it to
    the scheduler's node name, e.g. ``$SLURMD_NODENAME``), else the short hostname."""
    return (os.environ.get(HOST_ENV) or "").strip() or socket.gethostname().split(".")[0]


def plan_runs(plan: FleetPlan, devices: str | None = None) -> list[GpuRun]:
    """One :class:`GpuRun` per GPU, with its results folder."""
    gpus = node_gpus(plan, devices)
    if not gpus:
        raise UsageError("no GPU on this node to characterise", "check CUDA_VISIBLE_DEVICES")
    root = plan.results / plan.run_id / host_name()
    runs = []
    for dev in gpus:
        ident = dev.identity
        # a real GPU is reopened by UUID in the worker: enumeration order may differ there
        sel = dev.selection if ident.simulated else ident.uuid
        runs.append(GpuRun(sel, ident.uuid, ident.name, root / ident.uuid))
    return runs


def run_node(plan: FleetPlan, runs: list[GpuRun], *, echo=None) -> list[GpuRun]:
    """Start one worker per GPU, wait for all, forward termination signals to them."""
    ensure_writable_dir(plan.results)
    cmd = [sys.executable, "-m", "wattbench.profiler.fleet.worker", str(plan.path)]
    for run in runs:
        run.folder.mkdir(parents=True, exist_ok=True)
        run.process = subprocess.Popen(
            [*cmd, "--device", run.selection, "--folder", str(run.folder)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        for r in runs:
            if r.process is not None and r.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    r.process.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        for run in runs:
            assert run.process is not None
            out, err = run.process.communicate()
            run.returncode = run.process.returncode
            run.stderr = err.strip()
            for line in out.splitlines():
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict) and doc.get("schema") == "wattbench.fleet-worker/1":
                        run.outcomes.append(doc)
            if echo is not None:
                echo(run)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if received:
        raise InterruptedBySignal(received[0])
    return runs


class InterruptedBySignal(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def render(runs: list[GpuRun], plan: FleetPlan) -> str:
    n = len(plan.problems)
    lines = [f"fleet run {plan.run_id} on {host_name()}: {len(runs)} GPU(s) x {n} problem(s)"]
    states = ("complete", "resumed", "skipped", "failed")
    for r in runs:
        done = sum(o["status"] != "failed" and o.get("verify") != "failed" for o in r.outcomes)
        counts = {s: sum(o["status"] == s for o in r.outcomes) for s in states}
        what = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing reported"
        checked = {s: sum(o.get("verify") == s for o in r.outcomes) for s in states}
        if any(checked.values()):
            what += "; verify pass: " + ", ".join(f"{v} {k}" for k, v in checked.items() if v)
        lines.append(f"  {r.uuid}  {r.name}: {done}/{n} done ({what}); exit {r.returncode}")
        for o in r.outcomes:
            if o["status"] == "failed" or o.get("verify") == "failed":
                lines.append(f"      {o['problem']}: {o['error']}")
        if r.returncode not in (0, 1) and r.stderr:
            lines.append(f"      {r.stderr.splitlines()[-1]}")
    if runs:
        lines.append(f"results: {runs[0].folder.parent}")
    return "\n".join(lines)
