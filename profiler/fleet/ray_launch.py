"""Run a fleet plan on a Ray cluster: one task per GPU node, each running the node agent.

For ML platforms that already run Ray (optional extra: ``pip install 'wattbench[ray]'``). The
driver connects to a running cluster (it never starts one), picks the alive nodes that offer
GPUs (optionally by hostname, node id prefix or ``accelerator_type``), and schedules on each, pinned
to it (hard node affinity), one task asking for *all* its GPUs -- the node is the task's alone,
as under Slurm's ``--exclusive``. The task runs ``wattbench fleet node`` on the plan, which writes
under ``<results>/<run id>/<host>/<gpu uuid>/``; at most ``max_nodes`` such tasks run at once.
When every task has ended the driver writes ``status.json`` and ``aggregate.json`` as the Slurm
aggregation job does; with a verify pass (``fleet/verify.py``) it then runs every node's agent
again to measure the candidates, and writes them again.

Nothing is keyed by Ray's ids: running the same command again resumes every incomplete record
and skips complete ones, whatever failed (a GPU, a task, the driver). Interrupting the driver
cancels the tasks; each agent then restores its GPUs and keeps its points. The plan travels
with the task (no shared file needed); its ``results`` folder must be one every node and the
driver can reach, so the plan must name it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattbench.profiler.errors import UsageError
from wattbench.profiler.fleet import verify
from wattbench.profiler.fleet.node import InterruptedBySignal, host_name
from wattbench.profiler.fleet.plan import FleetPlan
from wattbench.profiler.sim.env import HOST_ENV as SIM_HOST_ENV

#: seconds a cancelled task has to end by itself before its worker is killed
CANCEL_GRACE_S = 5.0
#: Ray resource naming a node's GPU model (set by Ray from the GPUs it detects)
ACCELERATOR_RESOURCE = "accelerator_type:"


def import_ray() -> Any:
    """``ray``, or a usage error saying how to get a working one."""
    try:
        import ray
    except ModuleNotFoundError:
        raise UsageError(
            "Ray is not installed", "pip install 'wattbench[ray]' in this environment"
        ) from None
    except Exception as exc:  # Ray's import runs accelerator probes
        hint = "fix the environment Ray runs in"
        if "amd" in f"{type(exc).__name__} {exc}".lower() or "libamd_smi" in repr(exc):
            hint = (
                "the amdsmi package is installed without ROCm's libamd_smi.so, and Ray's import "
                "fails on it: uninstall amdsmi (pip uninstall amdsmi) or use a separate "
                "environment for Ray"
            )
        raise UsageError(f"Ray cannot be imported ({type(exc).__name__}: {exc})", hint) from None
    return ray


@dataclass(frozen=True)
class RayNode:
    """An alive Ray node that offers GPUs."""

    node_id: str
    hostname: str
    address: str
    gpus: int
    accelerator: str | None

    @property
    def label(self) -> str:
        return f"{self.hostname} ({self.node_id[:8]})"

    def matches(self, name: str) -> bool:
        """``name`` is this node's hostname, address or a node id prefix (6+ hex digits)."""
        return name in (self.hostname, self.address) or (
            len(name) >= 6 and self.node_id.startswith(name)
        )


def gpu_nodes(
    nodes: list[dict[str, Any]], names: list[str] | None = None, accelerator: str | None = None
) -> list[RayNode]:
    """The nodes of ``ray.nodes()`` to characterise: alive, with GPUs, matching ``names`` (a
    hostname, an address or a node id prefix each) and ``accelerator`` (``accelerator_type``)."""
    out = []
    for n in nodes:
        res = n.get("Resources") or {}
        gpus = int(res.get("GPU", 0))
        if not n.get("Alive") or gpus < 1:
            continue
        acc = next((k[len(ACCELERATOR_RESOURCE):] for k in res
                    if k.startswith(ACCELERATOR_RESOURCE)), None)  # fmt: skip
        node = RayNode(n["NodeID"], n.get("NodeManagerHostname", "?"),
                       n.get("NodeManagerAddress", "?"), gpus, acc)  # fmt: skip
        if accelerator is not None and acc != accelerator:
            continue
        if names and not any(node.matches(x) for x in names):
            continue
        out.append(node)
    if names:
        missing = [x for x in names if not any(o.matches(x) for o in out)]
        if missing:
            raise UsageError(
                f"no alive Ray node with GPUs matches {', '.join(missing)}",
                "check `ray status`; --nodes takes hostnames, addresses or node id prefixes",
            )
    if not out:
        raise UsageError(
            "no alive Ray node offers GPUs" + (f" of type {accelerator}" if accelerator else ""),
            "check `ray status` (a node started by `ray start --num-gpus N` offers N)",
        )
    return out


def agent_task(plan_text: str, plan_name: str, sim_devices: bool) -> dict[str, Any]:
    """The body of a node's task: write the plan to a node-local file and run the node agent
    on it. Ray's cancellation (KeyboardInterrupt here) reaches the agent as SIGTERM, which
    stops its workers cleanly; the agent's output and exit status are returned."""
    env = dict(os.environ)
    if sim_devices and not env.get(SIM_HOST_ENV):
        env[SIM_HOST_ENV] = host_name()  # simulated GPUs: this node's own, as under Slurm
    with tempfile.TemporaryDirectory(prefix="wattbench-ray-") as tmp:
        plan = Path(tmp) / plan_name
        plan.write_text(plan_text, encoding="utf-8")
        cmd = [sys.executable, "-m", "wattbench.profiler.cli.main", "fleet", "node", str(plan)]
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        with out_path.open("w") as out_f, err_path.open("w") as err_f:
            proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env,
                                    preexec_fn=_term_with_parent)  # fmt: skip
            try:
                while True:  # short waits: Ray's cancellation arrives between bytecodes
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=0.25)
                        break
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                proc.wait()
                raise
        out, err = out_path.read_text(), err_path.read_text()
    return {"host": host_name(), "returncode": proc.returncode, "stdout": out, "stderr": err}


def _term_with_parent() -> None:
    """In the agent (before exec): SIGTERM when the Ray worker dies (Linux), so a worker killed
    by Ray (its driver gone) never leaves an agent sweeping on its own."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class NodeOutcome:
    node: RayNode
    phase: str = "sweep"  # or verify: the verify pass's round
    host: str | None = None
    returncode: int | None = None
    output: str = ""
    error: str | None = None  # the task itself failed (node died, worker crashed, cancelled)

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0


def run_plan_on_ray(
    plan: FleetPlan,
    *,
    address: str | None = None,
    names: list[str] | None = None,
    accelerator: str | None = None,
    max_nodes: int | None = None,
    dry_run: bool = False,
    echo: Callable[[NodeOutcome], None] | None = None,
) -> list[NodeOutcome]:
    """Connect, choose the nodes and (unless ``dry_run``) run one agent task on each, at most
    ``max_nodes`` at once; returns one outcome per node, in the order they ended."""
    if not plan.results_named:
        raise UsageError(
            f"fleet plan {plan.path} names no results folder",
            'a Ray run needs one every node can write: add results = "/shared/..." to the plan',
        )
    ray = import_ray()
    try:
        ray.init(address=address or "auto", log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        raise UsageError(
            f"no Ray cluster at {address or 'auto'} ({exc})",
            "start one (`ray start --head`) or pass --address HOST:PORT",
        ) from None

    received: list[int] = []

    def interrupt(signum, frame) -> None:
        # a scheduler's SIGTERM cancels as Ctrl-C does; KeyboardInterrupt, because it is the
        # one exception Ray's calls let through from a signal handler (others become errors)
        received.append(signum)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        nodes = gpu_nodes(ray.nodes(), names, accelerator)
        if dry_run:
            return [NodeOutcome(n) for n in nodes]
        try:
            outcomes = _run(ray, plan, nodes, max_nodes or len(nodes), echo, "sweep")
            write_summary(plan)
            if plan.verify and verify.load_candidates(plan):
                # every node again: the agents measure the candidates (and retry what failed)
                outcomes = _run(ray, plan, nodes, max_nodes or len(nodes), echo, "verify")
                write_summary(plan)
        except KeyboardInterrupt:
            if received:
                raise InterruptedBySignal(received[0]) from None
            raise
        return outcomes
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        ray.shutdown()


def _run(
    ray: Any, plan: FleetPlan, nodes: list[RayNode], lanes: int, echo, phase: str
) -> list[NodeOutcome]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(agent_task)
    sim = isinstance(plan.devices, str) and plan.devices.startswith("sim:")
    text = plan.path.read_text(encoding="utf-8")
    waiting, done = list(nodes), []
    running: dict[Any, NodeOutcome] = {}  # Ray's object reference -> the outcome it will give
    try:
        while waiting or running:
            while waiting and len(running) < lanes:
                node = waiting.pop(0)
                ref = task.options(
                    num_gpus=node.gpus,
                    max_retries=1,  # a system failure (node or worker lost): the agent resumes
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
                    name=f"wattbench-{plan.run_id}-{node.hostname}",
                ).remote(text, plan.path.name, sim)
                running[ref] = NodeOutcome(node, phase)
            # short waits: a signal's handler (Ctrl-C, a scheduler's SIGTERM) runs only between
            # bytecodes, and a wait blocked in Ray's core would hold it until a node finished
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
            if not ready:
                continue
            outcome = running.pop(ready[0])
            try:
                got = ray.get(ready[0])
                outcome.host, outcome.returncode = got["host"], got["returncode"]
                outcome.output = got["stdout"].rstrip()
                if got["returncode"] not in (0, 1) and got["stderr"].strip():
                    outcome.output += "\n" + got["stderr"].strip().splitlines()[-1]
            except Exception as exc:  # any Ray failure: this node's outcome
                outcome.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
            done.append(outcome)
            if echo is not None:
                echo(outcome)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref)  # KeyboardInterrupt in the task: its agent gets SIGTERM
        left = list(running)
        with contextlib.suppress(Exception):
            _, left = ray.wait(left, num_returns=len(left), timeout=CANCEL_GRACE_S)
        for ref in left:  # a worker that ignores SIGINT (its raylet started without job
            ray.cancel(ref, force=True)  # control) is killed; its agent gets PDEATHSIG SIGTERM
        with contextlib.suppress(Exception):
            ray.wait(left, num_returns=len(left), timeout=60)
        raise
    return done


def render_outcome(o: NodeOutcome) -> str:
    phase = ", verify pass" if o.phase == "verify" else ""
    head = f"{o.node.label}: {o.node.gpus} GPU(s){phase}"
    if o.error is not None:
        return f"{head}: the task failed: {o.error}"
    body = "\n".join("  " + line for line in o.output.splitlines())
    return f"{head} as host {o.host}: agent exit {o.returncode}\n{body}"


def write_summary(plan: FleetPlan) -> list[Path]:
    """``status.json``, ``aggregate.json`` (and ``verify.json``) of the run, as the Slurm
    aggregation job writes them."""
    from wattbench.profiler.fleet.aggregate import write_aggregate
    from wattbench.profiler.fleet.status import fleet_status
    from wattbench.profiler.jsonio import write_json_atomic

    path = plan.results / plan.run_id / "status.json"
    _, written = write_aggregate(plan)  # first: it lists the candidates status counts on
    write_json_atomic(path, fleet_status(plan))
    return [path, *written]
