"""``wattbench fleet plan | node | status | aggregate | report | slurm | k8s | ray``:
characterise the GPUs of nodes from a plan.

The mechanism is in :mod:`wattbench.profiler.fleet`; plan format in
:mod:`wattbench.profiler.fleet.plan` and docs/fleet.md.
"""

from __future__ import annotations

import argparse
import sys

from wattbench.profiler.cli.args import bounded, positive_int
from wattbench.profiler.errors import UsageError
from wattbench.profiler.fleet import report, slurm
from wattbench.profiler.fleet.aggregate import POLICIES, aggregate, write_aggregate
from wattbench.profiler.fleet.aggregate import render as render_aggregate
from wattbench.profiler.fleet.node import InterruptedBySignal, plan_runs, render, run_node
from wattbench.profiler.fleet.plan import load_plan
from wattbench.profiler.fleet.status import fleet_status, render_status


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet",
        help="characterise every GPU of a node (or a fleet) from a plan file",
        description="Fleet characterisation: `node` sweeps every problem of a plan on every GPU "
        "of this node, one worker process per GPU, resuming incomplete runs and skipping "
        "complete ones; `status` says which GPUs of a fleet run are complete.",
    )
    s = p.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True)
    pl = s.add_parser(
        "plan",
        help="write a plan file",
        description="Write a fleet plan (wattbench.fleet-plan/1) from options, checked by "
        "reading it back; edit it freely afterwards.",
    )
    pl.add_argument("-o", "--output", required=True, metavar="PLAN.toml")
    pl.add_argument("--run-id", required=True)
    pl.add_argument("--results", help="a folder every node can write (default <results>/fleet)")
    pl.add_argument("--devices", default="all", help='"all", "sim:<N>x<key>" (default all)')
    pl.add_argument(
        "--problem", action="append", required=True, metavar="KERNEL:SHAPE:DTYPE[:IMPL]"
    )
    pl.add_argument("--strategy", choices=("grid", "adaptive"), default="grid")
    pl.add_argument("--objective", action="append", metavar="OBJ")
    pl.add_argument("--sm-clocks")
    pl.add_argument("--power-limits")
    pl.set_defaults(run=run_plan)
    n = s.add_parser(
        "node",
        help="sweep the plan on every GPU of this node",
        description="Sweep every problem of PLAN on every GPU of this node in parallel (one "
        "guarded worker process per GPU), writing under <results>/<run id>/<host>/<gpu uuid>/. "
        "Incomplete records are resumed and complete ones skipped, so running it again after a "
        "failure or a requeue finishes the rest. Exit status 1 if a GPU did not complete "
        "(the others' results are kept).",
    )
    n.add_argument("plan", metavar="PLAN", help="a fleet plan file (wattbench.fleet-plan/1)")
    n.add_argument("--devices", metavar="SEL", help="override the plan's devices")
    n.add_argument("--dry-run", action="store_true", help="list the GPUs and folders; run nothing")
    n.set_defaults(run=run_node_command)
    st = s.add_parser(
        "status",
        help="which GPUs of a fleet run are complete",
        description="For every host and GPU under the plan's results folder: problems complete, "
        "incomplete and missing. Exit status 0 when every GPU found is complete, else 1.",
    )
    st.add_argument("plan", metavar="PLAN")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(run=run_status)
    ag = s.add_parser(
        "aggregate",
        help="per-model operating points from every unit, with their spread",
        description="For each GPU model, problem and objective of a fleet run: the model point "
        "under a policy (median: the median unit's time and energy ratios to its own baseline; "
        "worst: the largest ratios of any unit), n/N units, min / median / max saving and "
        "slowdown at the model point, outliers, and each unit's own point. Written to "
        "<results>/<run id>/aggregate.json (wattbench.fleet-aggregate/1) and printed.",
    )
    ag.add_argument("plan", metavar="PLAN")
    ag.add_argument("--policy", choices=POLICIES, default="median")
    ag.add_argument("--json", action="store_true", help="print the document instead of a table")
    ag.set_defaults(run=run_aggregate)
    add_report_parser(s)
    add_slurm_parser(s)
    add_k8s_parser(s)
    add_ray_parser(s)


def run_node_command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    runs = plan_runs(plan, args.devices)
    if args.dry_run:
        for r in runs:
            print(f"{r.uuid}  {r.name}  ({r.selection}) -> {r.folder}")
        return 0
    try:
        run_node(plan, runs)
    except InterruptedBySignal as exc:
        print(render(runs, plan))
        print(f"wattbench: fleet node {exc}; run it again to resume", file=sys.stderr)
        return 128 + exc.signum
    print(render(runs, plan))
    return 0 if all(r.ok for r in runs) else 1


def run_status(args: argparse.Namespace) -> int:
    import json

    plan = load_plan(args.plan)
    status = fleet_status(plan)
    if args.json:
        json.dump(status, sys.stdout, indent=2)
        print()
    else:
        print(render_status(status))
    return 0 if status["gpus"] and all(g["complete"] for g in status["gpus"]) else 1


def add_slurm_parser(s: argparse._SubParsersAction) -> None:
    sl = s.add_parser(
        "slurm",
        help="run the plan on a Slurm cluster: one exclusive job per node",
        description="Submit one exclusive, requeueable job per node (all its GPUs) running "
        "`wattbench fleet node PLAN`, then an aggregation job after them (afterany). Nodes "
        "whose GPUs are all complete are not submitted again, so running `submit` again after "
        "failures or cancelled jobs finishes only the rest.",
    )
    ss = sl.add_subparsers(dest="slurm_command", metavar="SUBCOMMAND", required=True)
    sub = ss.add_parser("submit", help="submit the node jobs and the aggregation job")
    sub.add_argument("plan", metavar="PLAN")
    sub.add_argument("--nodes", metavar="HOSTLIST", help="Slurm host list (default: sinfo's)")
    sub.add_argument("--partition")
    sub.add_argument("--constraint", metavar="FEATURE", help="node feature, e.g. the GPU model")
    sub.add_argument("--gres", default="gpu", help="gpu or gpu:<type> (default gpu)")
    sub.add_argument("--gpus-per-node", type=positive_int, help="default: from sinfo")
    sub.add_argument("--max-nodes", type=positive_int, help="nodes at once (default: all)")
    sub.add_argument("--time", dest="time_limit", help="job time limit (sbatch --time)")
    sub.add_argument("--dry-run", action="store_true", help="print the scripts; submit nothing")
    sub.set_defaults(run=run_slurm_submit)


def run_slurm_submit(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    opts = slurm.SlurmOptions(
        partition=args.partition,
        constraint=args.constraint,
        gres=args.gres,
        gpus_per_node=args.gpus_per_node,
        max_nodes=args.max_nodes,
        time_limit=args.time_limit,
    )
    result = slurm.plan_submission(plan, slurm.choose_nodes(args.nodes, opts), opts)
    if not args.dry_run and result.jobs:
        slurm.submit(result, opts, plan)
    print(slurm.render(result, args.dry_run))
    return 0


def add_ray_parser(s: argparse._SubParsersAction) -> None:
    r = s.add_parser(
        "ray",
        help="run the plan on a Ray cluster: one task per GPU node",
        description="Connect to a running Ray cluster and run `wattbench fleet node` on every "
        "alive node that offers GPUs (one task per node, pinned to it, asking for all its "
        "GPUs), then write status.json and aggregate.json. Running it again resumes what is "
        "incomplete and skips what is complete. Needs `pip install 'wattbench[ray]'`.",
    )
    rs = r.add_subparsers(dest="ray_command", metavar="SUBCOMMAND", required=True)
    run = rs.add_parser("run", help="run the node agent on the cluster's GPU nodes")
    run.add_argument("plan", metavar="PLAN")
    run.add_argument("--address", help="the cluster (default: auto, as `ray status` finds it)")
    run.add_argument("--nodes", help="hostnames, addresses or node id prefixes, comma-separated")
    run.add_argument("--accelerator-type", help="only nodes of this Ray accelerator_type")
    run.add_argument("--max-nodes", type=positive_int, help="nodes at once (default: all)")
    run.add_argument("--dry-run", action="store_true", help="list the nodes; run nothing")
    run.set_defaults(run=run_ray)


def run_ray(args: argparse.Namespace) -> int:
    from wattbench.profiler.fleet import ray_launch

    plan = load_plan(args.plan)
    names = [n.strip() for n in (args.nodes or "").split(",") if n.strip()] or None
    try:
        outcomes = ray_launch.run_plan_on_ray(
            plan,
            address=args.address,
            names=names,
            accelerator=args.accelerator_type,
            max_nodes=args.max_nodes,
            dry_run=args.dry_run,
            echo=lambda o: print(ray_launch.render_outcome(o), flush=True),
        )
    except KeyboardInterrupt:
        print("wattbench: fleet ray run interrupted; run it again to resume", file=sys.stderr)
        return 130
    except InterruptedBySignal as exc:
        print(f"wattbench: fleet ray run {exc}; run it again to resume", file=sys.stderr)
        return 128 + exc.signum
    if args.dry_run:
        for o in outcomes:
            print(f"{o.node.label}: {o.node.gpus} GPU(s) at {o.node.address} -> fleet node")
        return 0
    root = plan.results / plan.run_id
    print(f"written: {root / 'status.json'}, {root / 'aggregate.json'}")
    failed = [o.node.label for o in outcomes if not o.ok]
    if failed:
        print(f"not complete: {', '.join(failed)}; run the same command again to finish them")
    return 1 if failed else 0


def run_aggregate(args: argparse.Namespace) -> int:
    import json

    plan = load_plan(args.plan)
    doc, paths = write_aggregate(plan, args.policy)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(render_aggregate(doc))
        print("written: " + ", ".join(map(str, paths)))
    return 0 if doc["groups"] else 1


def add_report_parser(s: argparse._SubParsersAction) -> None:
    rp = s.add_parser(
        "report",
        help="energy, GPU-hours, cost and carbon per year with and without the points",
        description="Turn a fleet run's aggregate into a year of use: energy at driver defaults "
        "and at the model points, the extra GPU-hours the slowdown costs, electricity cost and "
        "carbon (C = E x PUE x intensity x (1 - renewable share)). Busy hours only.",
    )
    rp.add_argument("plan", metavar="PLAN")
    rp.add_argument("--objective", default="slowdown:0.05", help="default slowdown:0.05")
    rp.add_argument("--policy", choices=POLICIES, default="median")
    rp.add_argument("--utilisation", type=bounded(float, minimum=0, maximum=1, open_min=True),
                    default=0.5, help="busy share of the year, default 0.5")  # fmt: skip
    rp.add_argument("--gpus", action="append", default=[], metavar="NAME=COUNT",
                    help="GPUs of a model in the fleet (default: the units measured)")  # fmt: skip
    rp.add_argument("--mix", action="append", default=[], metavar="PROBLEM=SHARE",
                    help="share of busy GPU-hours per problem (default: equal)")  # fmt: skip
    rp.add_argument("--price-per-kwh", type=bounded(float, minimum=0), default=0.10)
    rp.add_argument("--pue", type=bounded(float, minimum=1), default=1.3)
    rp.add_argument(
        "--intensity",
        default="400",
        metavar="G_PER_KWH|FILE.csv",
        help="grid carbon intensity, gCO2e/kWh, or an hourly CSV (its mean)",
    )
    rp.add_argument("--renewable-share", type=bounded(float, minimum=0, maximum=1), default=0.0)
    rp.add_argument("--json", action="store_true")
    rp.add_argument("--plot", metavar="FILE.png", help="also draw energy per year, bars")
    rp.set_defaults(run=run_report)


def _pairs(items: list[str], kind: type, what: str) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            out[name.strip()] = kind(value)
        except ValueError:
            name = ""
        if not sep or not name.strip():
            raise UsageError(f"--{what} {item!r}", f"use --{what} NAME=VALUE")
    return out


def run_report(args: argparse.Namespace) -> int:
    import json

    plan = load_plan(args.plan)
    try:
        intensity, source = float(args.intensity), "given"
    except ValueError:
        intensity, source = report.mean_intensity(args.intensity), f"mean of {args.intensity}"
    use = report.FleetUse(
        objective=args.objective,
        utilisation=args.utilisation,
        gpus=_pairs(args.gpus, int, "gpus"),
        mix=_pairs(args.mix, float, "mix"),
        price_per_kwh=args.price_per_kwh,
        pue=args.pue,
        intensity_g_per_kwh=intensity,
        intensity_source=source,
        renewable_share=args.renewable_share,
    )
    doc = report.report(aggregate(plan, args.policy), use)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(report.render(doc))
    if args.plot:
        report.plot(doc, args.plot)
    return 0


def add_k8s_parser(s: argparse._SubParsersAction) -> None:
    k = s.add_parser(
        "k8s",
        help="render Kubernetes Jobs for the plan: one per GPU node",
        description="Render (offline) a ConfigMap with the plan and one Job per node: pinned to "
        "the node, all its GPUs, SYS_ADMIN, the results volume mounted at the plan's results "
        "folder, running `wattbench fleet node`. Apply with kubectl.",
    )
    ks = k.add_subparsers(dest="k8s_command", metavar="SUBCOMMAND", required=True)
    r = ks.add_parser("render", help="print (or write) the manifests")
    r.add_argument("plan", metavar="PLAN")
    r.add_argument("--nodes", required=True, help="node names, comma-separated")
    r.add_argument("--gpus-per-node", type=positive_int, required=True)
    r.add_argument("--image", required=True, help="a container image with wattbench installed")
    r.add_argument("--namespace", default="default")
    r.add_argument("--results-pvc", required=True, metavar="CLAIM", help="ReadWriteMany claim")
    r.add_argument("--gpu-product", help="nvidia.com/gpu.product label the nodes carry")
    r.add_argument("-o", "--output", help="write to this file instead of printing")
    r.set_defaults(run=run_k8s_render)


def run_k8s_render(args: argparse.Namespace) -> int:
    from wattbench.profiler.fleet import kubernetes

    plan = load_plan(args.plan)
    opts = kubernetes.K8sOptions(
        image=args.image,
        gpus_per_node=args.gpus_per_node,
        namespace=args.namespace,
        results_pvc=args.results_pvc,
        gpu_product=args.gpu_product,
    )
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    text = kubernetes.render(kubernetes.manifests(plan, nodes, opts), plan)
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(text, encoding="utf-8")
        print(f"written: {args.output} ({len(nodes)} Job(s) and the plan's ConfigMap)")
    else:
        sys.stdout.write(text)
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wattbench.profiler.fleet.plan import plan_text

    problems = []
    for item in args.problem:
        parts = item.split(":")
        if len(parts) not in (3, 4) or not all(parts):
            raise UsageError(f"--problem {item!r}", "use KERNEL:SHAPE:DTYPE[:IMPL]")
        problems.append((parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else "vendor"))
    sweep = {
        "strategy": args.strategy,
        "objectives": args.objective,
        "sm_clocks": args.sm_clocks,
        "power_limits": args.power_limits,
    }
    out = Path(args.output)
    if out.exists():
        raise UsageError(f"{out} exists", "choose another -o, or remove it")
    text = plan_text(args.run_id, problems, results=args.results, devices=args.devices, sweep=sweep)
    out.write_text(text, encoding="utf-8")
    try:
        plan = load_plan(out)
    except UsageError:
        out.unlink()
        raise
    print(f"written: {out} ({len(plan.problems)} problem(s), run {plan.run_id})")
    return 0
