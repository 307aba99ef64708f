"""Slurm launcher: one exclusive job per node running the node agent, an ``afterany``
aggregation job, and re-submission of only the nodes whose GPUs are not complete.

Nothing is keyed by a Slurm job id: a job finds its work from the plan and the results tree
(``<results>/<run id>/<node>/<gpu uuid>/``), so a requeued or re-submitted job resumes. Every job
script is printed by ``--dry-run`` exactly as it would be submitted.

Throttle: ``max_nodes`` jobs at once, as that many lanes of jobs, each waiting (``afterany``) for
the one before it in its lane -- plain sbatch dependencies, no site QOS needed.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field

from wattbench.profiler.errors import UsageError, WattbenchError
from wattbench.profiler.fleet.node import HOST_ENV
from wattbench.profiler.fleet.plan import FleetPlan
from wattbench.profiler.fleet.status import fleet_status
from wattbench.profiler.sim.env import HOST_ENV as SIM_HOST_ENV


class SlurmError(WattbenchError):
    """A Slurm command failed (the message has its own words)."""


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    constraint: str | None = None  # a node feature: the GPU model (e.g. h100)
    gres: str = "gpu"  # gpu or gpu:<type>; the job asks for all of the node's GPUs
    gpus_per_node: int | None = None  # None: from sinfo's Gres of each node
    max_nodes: int | None = None  # jobs at once (None: all)
    time_limit: str | None = None
    extra: tuple[str, ...] = ()  # more #SBATCH arguments, as given


@dataclass
class Submission:
    node: str
    script: str
    job_id: str | None = None
    after: str | None = None  # the job this one waits for (its lane)


@dataclass
class SubmitResult:
    jobs: list[Submission] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # nodes already complete
    aggregate: Submission | None = None
    #: the verify pass (a plan with ``verify``): every node's agent again, after the aggregation
    #: job has listed the candidates, then a final aggregation after them
    verify_jobs: list[Submission] = field(default_factory=list)
    final: Submission | None = None


def _run(cmd: list[str], stdin: str | None = None) -> str:
    try:
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} not found", "run this on a Slurm login node") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(cmd[:2])} did not answer in 60 s", "check slurmctld") from None
    if r.returncode != 0:
        raise SlurmError(f"{' '.join(cmd[:2])} failed: {r.stderr.strip()}", "check the options")
    return r.stdout


def expand_nodes(expr: str) -> list[str]:
    """A Slurm host list (``gpu[01-04],big1``) as names, by ``scontrol show hostnames``."""
    return [n for n in _run(["scontrol", "show", "hostnames", expr]).split() if n]


def discover_nodes(opts: SlurmOptions) -> dict[str, int]:
    """Nodes (of the partition, with the feature) -> their GPU count, from ``sinfo``."""
    cmd = ["sinfo", "-N", "-h", "-o", "%N|%G|%f"]
    if opts.partition:
        cmd += ["-p", opts.partition]
    nodes: dict[str, int] = {}
    for line in _run(cmd).splitlines():
        name, gres, features = [*line.split("|"), "", ""][:3]
        if opts.constraint and opts.constraint not in features.split(","):
            continue
        nodes[name.strip()] = gpu_count(gres)
    return nodes


def gpu_count(gres: str) -> int:
    """GPUs in a sinfo Gres field (``gpu:h100:4(S:0-1),shard:8`` -> 4)."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def node_script(plan: FleetPlan, node: str, gpus: int, opts: SlurmOptions) -> str:
    """The sbatch script of one node: all its GPUs, exclusive, requeueable, the node agent."""
    logs = plan.results / plan.run_id / "slurm"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=wattbench-{plan.run_id}-{node}",
        f"#SBATCH --nodelist={node}",
        "#SBATCH --nodes=1",
        "#SBATCH --exclusive",
        f"#SBATCH --gres={opts.gres}:{gpus}" if gpus else "#SBATCH --gres=gpu",
        "#SBATCH --requeue",
        f"#SBATCH --output={logs}/{node}-%j.out",
        "#SBATCH --open-mode=append",
    ]
    lines += [f"#SBATCH --partition={opts.partition}"] if opts.partition else []
    lines += [f"#SBATCH --constraint={opts.constraint}"] if opts.constraint else []
    lines += [f"#SBATCH --time={opts.time_limit}"] if opts.time_limit else []
    lines += [f"#SBATCH {x}" for x in opts.extra]
    lines += [
        "set -u",
        f'export {HOST_ENV}="${{SLURMD_NODENAME:-$(hostname -s)}}"',
    ]
    if isinstance(plan.devices, str) and plan.devices.startswith("sim:"):
        lines.append(f'export {SIM_HOST_ENV}="${HOST_ENV}"  # simulated GPUs: this node\'s own')
    cmd = [sys.executable, "-m", "wattbench.profiler.cli.main", "fleet", "node", str(plan.path)]
    lines.append("exec " + " ".join(shlex.quote(c) for c in cmd))
    return "\n".join(lines) + "\n"


def aggregate_script(plan: FleetPlan, opts: SlurmOptions) -> str:
    logs = plan.results / plan.run_id / "slurm"
    cmd = [sys.executable, "-m", "wattbench.profiler.cli.main", "fleet", "status", str(plan.path)]
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=wattbench-{plan.run_id}-aggregate",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        f"#SBATCH --output={logs}/aggregate-%j.out",
    ]
    lines += [f"#SBATCH --partition={opts.partition}"] if opts.partition else []
    status = plan.results / plan.run_id / "status.json"
    agg = [*cmd[:-2], "aggregate", str(plan.path)]
    lines += [" ".join(shlex.quote(c) for c in agg)]  # first: it lists the verify candidates
    lines += [" ".join(shlex.quote(c) for c in cmd) + " --json > " + shlex.quote(str(status))]
    return "\n".join(lines) + "\n"


def plan_submission(plan: FleetPlan, nodes: dict[str, int], opts: SlurmOptions) -> SubmitResult:
    """Jobs for the nodes that are not complete (a node is complete when its folder holds GPUs
    and every one is complete)."""
    status = fleet_status(plan)
    by_host: dict[str, list[bool]] = {}
    for g in status["gpus"]:
        by_host.setdefault(g["host"], []).append(g["complete"])
    result = SubmitResult()
    for node, gpus in nodes.items():
        done = by_host.get(node)
        if done and all(done) and (not gpus or len(done) >= gpus):
            result.skipped.append(node)
            continue
        result.jobs.append(Submission(node, node_script(plan, node, gpus, opts)))
    if result.jobs:
        result.aggregate = Submission("aggregate", aggregate_script(plan, opts))
    if plan.verify and result.jobs:
        # every node: candidates come from all units, so a finished node may have new ones
        result.verify_jobs = [
            Submission(node, node_script(plan, node, gpus, opts)) for node, gpus in nodes.items()
        ]
        result.final = Submission("aggregate", aggregate_script(plan, opts))
    return result


def submit(result: SubmitResult, opts: SlurmOptions, plan: FleetPlan) -> SubmitResult:
    """``sbatch`` every job (lanes of ``max_nodes``), then the aggregation job after them all."""
    (plan.results / plan.run_id / "slurm").mkdir(parents=True, exist_ok=True)
    _submit_lanes(result.jobs, opts.max_nodes, None)
    if result.aggregate is not None:
        _submit_after(result.aggregate, result.jobs)
    if result.verify_jobs and result.aggregate is not None and result.final is not None:
        _submit_lanes(result.verify_jobs, opts.max_nodes, result.aggregate.job_id)
        _submit_after(result.final, result.verify_jobs)
    return result


def _submit_lanes(jobs: list[Submission], max_nodes: int | None, after: str | None) -> None:
    """``sbatch`` ``jobs`` in ``max_nodes`` lanes (each waits for the one before it in its
    lane), the first of each lane after job ``after`` if given."""
    lanes = max_nodes or len(jobs) or 1
    last: dict[int, str | None] = {}
    for i, job in enumerate(jobs):
        lane = i % lanes
        job.after = last.get(lane, after)
        cmd = ["sbatch", "--parsable"]
        if job.after:
            cmd.append(f"--dependency=afterany:{job.after}")
        job.job_id = _run(cmd, stdin=job.script).strip().split(";")[0]
        last[lane] = job.job_id


def _submit_after(job: Submission, jobs: list[Submission]) -> None:
    ids = ":".join(j.job_id for j in jobs if j.job_id)
    cmd = ["sbatch", "--parsable"] + ([f"--dependency=afterany:{ids}"] if ids else [])
    job.job_id = _run(cmd, stdin=job.script).strip().split(";")[0]


def choose_nodes(expr: str | None, opts: SlurmOptions) -> dict[str, int]:
    """The nodes to run on: ``expr`` (a host list; GPU counts from sinfo unless given), or every
    node of the partition with the feature."""
    known = discover_nodes(opts)
    if expr is None:
        if not known:
            raise UsageError("sinfo lists no node with those options", "pass --nodes")
        return known
    nodes = {}
    for n in expand_nodes(expr):
        if n not in known and opts.gpus_per_node is None:
            raise UsageError(f"node {n} is not in sinfo's list", "check --nodes / --partition")
        nodes[n] = opts.gpus_per_node or known[n]
    return nodes


def render(result: SubmitResult, dry_run: bool) -> str:
    out = []
    if dry_run:
        for job in [*result.jobs, *([result.aggregate] if result.aggregate else [])]:
            out.append(f"# --- {job.node} ---")
            out.append(job.script.rstrip())
        if result.verify_jobs:
            out.append("# --- verify pass: the same node scripts again, then the aggregation ---")
    for job in result.jobs:
        after = f" after {job.after}" if job.after else ""
        out.append(f"{job.node}: {'job ' + job.job_id if job.job_id else 'to submit'}{after}")
    if result.aggregate is not None and result.aggregate.job_id:
        out.append(f"aggregate: job {result.aggregate.job_id} (afterany)")
    for job in result.verify_jobs:
        what = "job " + job.job_id if job.job_id else "to submit"
        out.append(f"{job.node} verify pass: {what}" + (f" after {job.after}" if job.after else ""))
    if result.final is not None and result.final.job_id:
        out.append(f"final aggregate: job {result.final.job_id} (afterany)")
    if result.skipped:
        out.append("complete, not submitted: " + " ".join(result.skipped))
    if not result.jobs:
        out.append("every node is complete: nothing to submit")
    return "\n".join(out)
