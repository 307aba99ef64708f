"""``wattbench sim run | load | serve | status | stop``: the shared simulated node.

``run -- CMD...`` runs a command with ``WATTBENCH_SIM_NVML`` set, so every NVML tool in it (and in
its children) sees the shared node; ``load`` puts a problem on one of its GPUs, on the wall clock;
``serve`` runs the service in the foreground (it otherwise starts on demand); ``status`` and
``stop`` look at it and end it. The mechanism is in :mod:`wattbench.profiler.sim.client`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from wattbench.profiler.cli.args import non_negative_int, positive_float
from wattbench.profiler.errors import UsageError
from wattbench.profiler.sim import client, smi
from wattbench.profiler.sim.env import NVML_ENV
from wattbench.profiler.sim.node import NodeName, from_env, node_name, socket_path
from wattbench.profiler.sim.service import serve

DEFAULT_NODE = "h100-sxm"


def add_parsers(s: argparse._SubParsersAction) -> None:
    node_help = f"the simulated node (default: ${NVML_ENV}, else {DEFAULT_NODE}): a built-in "
    node_help += "key, <N>x<key> (8xh100-sxm) or path/to/spec.toml"

    r = s.add_parser(
        "run",
        help="run a command whose NVML tools all see the shared simulated node",
        description=f"Run COMMAND with {NVML_ENV} set: every `import pynvml` in it and in its "
        "child processes talks to the shared simulated node (started on demand, on the wall "
        "clock), never to a real driver; an nvidia-smi stand-in for that node comes first on "
        "its PATH. wattbench's own --device selection is not affected.",
    )
    r.add_argument("--node", help=node_help)
    r.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    r.set_defaults(run=run_command)

    ld = s.add_parser(
        "load",
        help="run a problem on a GPU of the shared node, in wall-clock time",
        description="Put a problem on one GPU of the shared simulated node for --seconds of "
        "wall time at a duty cycle, or for --iterations; other processes' NVML tools see its "
        "power, clocks, temperature and utilisation meanwhile. Ctrl-C ends it.",
    )
    ld.add_argument("--node", help=node_help)
    ld.add_argument("--gpu", type=non_negative_int, default=0, help="unit index (default 0)")
    ld.add_argument("--kernel", default="matmul", help="kernel family (default matmul)")
    ld.add_argument("--shape", default="8192x8192x8192", help="problem shape")
    ld.add_argument("--dtype", default="bf16", help="data type (default bf16)")
    ld.add_argument("--impl", default="vendor", help="implementation (default vendor)")
    ld.add_argument("--inputs", default="random", help="random, zeros or activity=<0..1>")
    how = ld.add_mutually_exclusive_group()
    how.add_argument("--seconds", type=positive_float, help="wall seconds (default 10)")
    how.add_argument("--iterations", type=positive_float, help="run this many iterations")
    ld.add_argument(
        "--duty", type=positive_float, default=1.0, help="busy share of each period (default 1)"
    )
    ld.add_argument(
        "--period-s", type=positive_float, default=0.1, help="duty-cycle period (default 0.1 s)"
    )
    ld.set_defaults(run=run_load)

    sv = s.add_parser(
        "serve",
        help="run the shared node's simulator service in the foreground",
        description="Run the simulator service of a shared node in this terminal (it otherwise "
        "starts on demand in the background). Stops on Ctrl-C, `wattbench sim stop`, or after "
        "--idle-stop-s without clients.",
    )
    sv.add_argument("--node", help=node_help)
    sv.add_argument(
        "--idle-stop-s", type=positive_float, default=math.inf, help="default: never idle-stop"
    )
    sv.set_defaults(run=run_serve)

    st = s.add_parser("status", help="is the shared node's service running?")
    st.add_argument("--node", help=node_help)
    st.set_defaults(run=run_status)

    sp = s.add_parser("stop", help="stop the shared node's service (its state is kept)")
    sp.add_argument("--node", help=node_help)
    sp.set_defaults(run=run_stop)


def _node(args: argparse.Namespace) -> NodeName:
    if args.node:
        return node_name(args.node)
    return from_env() or node_name(DEFAULT_NODE)


def run_command(args: argparse.Namespace) -> int:
    cmd = list(args.argv)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("no command to run", "use: wattbench sim run [--node N] -- COMMAND ...")
    name = _node(args)
    os.environ[NVML_ENV] = args.node or os.environ.get(NVML_ENV) or DEFAULT_NODE
    # tools that look for nvidia-smi before they use NVML find the stand-in first
    os.environ["PATH"] = f"{smi.shim_folder()}{os.pathsep}{os.environ.get('PATH', '')}"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        print(f"wattbench: cannot run {cmd[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    raise AssertionError(f"unreachable ({name.text})")  # pragma: no cover


def run_load(args: argparse.Namespace) -> int:
    name = _node(args)
    if args.duty > 1:
        raise UsageError(f"--duty {args.duty:g} is more than 1", "use a share in (0, 1]")
    seconds = None if args.iterations else (args.seconds or 10.0)
    work = client.workload_json(args.kernel, args.shape, args.dtype, args.impl, args.inputs)
    try:
        r = client.run_load(
            work, gpu=args.gpu, node=name, iterations=args.iterations, seconds=seconds,
            duty=args.duty, period_s=args.period_s,
        )  # fmt: skip
    except KeyboardInterrupt:
        print("wattbench: load stopped (Ctrl-C)", file=sys.stderr)
        return 130
    print(
        f"{name.text} GPU {args.gpu}: {args.kernel} {args.dtype} {args.shape}, "
        f"{r.iterations:.1f} iterations in {r.busy_s:.2f} s busy, "
        f"{r.energy_j:.1f} J while busy (SIMULATED: model truth, no sensor)"
    )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    name = _node(args)
    path = socket_path(name)
    conn = client.running(name)
    if conn is not None:
        conn.close()
        raise UsageError(f"a service already runs for {name.text}", "`wattbench sim stop` it")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    print(f"serving {name.text} on {path} (Ctrl-C stops)", flush=True)
    return serve(name, path, idle_stop_s=args.idle_stop_s)


def run_status(args: argparse.Namespace) -> int:
    name = _node(args)
    conn = client.running(name)
    if conn is None:
        print(f"{name.text}: no service running (it starts on demand)")
        return 0
    try:
        st = conn.request("status")
    finally:
        conn.close()
    print(
        f"{name.text}: service pid {st['pid']}, up {st['uptime_s']:.0f} s, "
        f"{st['clients'] - 1} other client(s), {st['loads']} load(s); stops after "
        f"{st['idle_stop_s']:g} s idle"
    )
    return 0


def run_stop(args: argparse.Namespace) -> int:
    name = _node(args)
    conn = client.running(name)
    if conn is None:
        print(f"{name.text}: no service running")
        return 0
    try:
        conn.request("stop")
    finally:
        conn.close()
    print(f"{name.text}: service stopped (its state is kept)")
    return 0
