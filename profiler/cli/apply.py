"""``wattbench apply``: set an operating point and leave it set (a scheduler prolog's command).

The change is made inside an actuation session, so the GPU's original settings are journaled
first; the applied point becomes the journal's *target*: later sweeps put it back when they end,
and ``wattbench reset`` undoes it. Everything is validated before anything is changed (the checks
and the journaled change: ``safety/apply.py``).
"""

from __future__ import annotations

import argparse

from wattbench.profiler.cli.args import positive_float, positive_int
from wattbench.profiler.device import open_device
from wattbench.profiler.errors import UsageError
from wattbench.profiler.safety import GpuSettings
from wattbench.profiler.safety.apply import apply_and_keep, check_source
from wattbench.profiler.store.points import PointsDocument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "apply",
        help="set an operating point and leave it set (undo with `wattbench reset`)",
        description="Lock clocks and/or set the power limit of a GPU and leave them set, "
        "journaled so that `wattbench reset` restores the original settings. Settings not "
        "given are left as they are.",
    )
    p.add_argument("--device", help="0, GPU-<uuid>, sim:h100-sxm, sim:path/to/spec.toml")
    p.add_argument("--sm-mhz", type=positive_int, metavar="MHZ", help="lock the SM clock here")
    p.add_argument("--mem-mhz", type=positive_int, metavar="MHZ", help="lock the memory clock here")
    p.add_argument("--power-limit-w", type=positive_float, metavar="W", help="set this power limit")
    p.add_argument("--from", dest="points_file", metavar="POINTS.json", help="operating points")
    p.add_argument("--workload", help="the workload in --from, e.g. matmul-vendor-bf16-8192x...")
    p.add_argument("--objective", help="the objective's point in --from (default: the only one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    explicit = (args.sm_mhz, args.mem_mhz, args.power_limit_w)
    if args.points_file is None and all(v is None for v in explicit):
        raise UsageError(
            "nothing to apply",
            "give --sm-mhz / --mem-mhz / --power-limit-w, or --from POINTS.json --workload NAME",
        )
    if args.points_file is not None and any(v is not None for v in explicit):
        raise UsageError(
            "--from cannot be combined with --sm-mhz / --mem-mhz / --power-limit-w", ""
        )
    if args.points_file is not None and not args.workload:
        raise UsageError("--from needs --workload", "name the workload whose point to apply")
    doc = PointsDocument.load(args.points_file) if args.points_file else None
    device = open_device(args.device)
    if not device.actuation_allowed:
        raise UsageError(
            "wattbench apply changes GPU settings, but WATTBENCH_NO_ACTUATE forbids it",
            "unset WATTBENCH_NO_ACTUATE to apply (on a GPU you may change)",
        )
    if doc is not None:
        entry = doc.lookup(
            device.identity.name, args.workload, args.objective, gpu_uuid=device.identity.uuid
        )
        check_source(entry.simulated, device.simulated is not None, args.workload)
        settings, knobs = (
            GpuSettings(entry.sm_mhz, entry.mem_mhz, entry.power_limit_w),
            {"sm", "mem", "power"},
        )
        source = f"{entry}"
    else:
        settings = GpuSettings(args.sm_mhz, args.mem_mhz, args.power_limit_w)
        knobs = {k for k, v in zip(("sm", "mem", "power"), explicit, strict=True) if v is not None}
        source = str(settings)
    apply_and_keep(device, settings, knobs)
    print(f"applied to {device.identity}: {source}")
    print(f"undo with: wattbench reset --device {device.selection}")
    return 0
