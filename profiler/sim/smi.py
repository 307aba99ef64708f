"""A small ``nvidia-smi`` for the shared simulated node, answered through NVML.

Some tools look for ``nvidia-smi`` before they use NVML (codecarbon runs ``nvidia-smi --help`` to
decide whether a machine has NVIDIA GPUs); ``wattbench sim run`` puts this stand-in first on the
``PATH`` of its command. It reads everything through the global ``pynvml``, which the NVML switch
routes to the shared node, and covers what scripts commonly ask of the real one:

* ``nvidia-smi`` (a short table), ``-L`` / ``--list-gpus``, ``-h`` / ``--help``;
* ``--query-gpu=FIELD,... --format=csv[,noheader][,nounits]`` with ``-i``/``--id`` (fields:
  :data:`FIELDS`);
* ``-i N -pl W``: set the power limit (root; within the GPU's constraints), as Slurm prologs and
  epilogs (``wattbench export --format slurm``) do.

Anything else is refused with one line and exit status 2: it is not the real tool.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattbench.profiler.jsonio import write_text_atomic
from wattbench.profiler.sim.env import NVML_ENV
from wattbench.profiler.sim.node import shared_folder

BANNER = "nvidia-smi stand-in (wattbench simulated node; not NVIDIA's tool)"


def _mw(v: int) -> tuple[float, str]:
    return v / 1000.0, "W"


def _fields(nv: Any) -> dict[str, Callable[[Any], tuple[Any, str]]]:
    """Field name -> (value, unit) from a handle, as ``nvidia-smi --help-query-gpu`` names them."""
    util = nv.nvmlDeviceGetUtilizationRates
    mem = nv.nvmlDeviceGetMemoryInfo
    clock = nv.nvmlDeviceGetClockInfo
    maxclock = nv.nvmlDeviceGetMaxClockInfo
    return {
        "index": lambda h: (nv.nvmlDeviceGetIndex(h), ""),
        "name": lambda h: (nv.nvmlDeviceGetName(h), ""),
        "uuid": lambda h: (nv.nvmlDeviceGetUUID(h), ""),
        "serial": lambda h: (nv.nvmlDeviceGetSerial(h), ""),
        "pci.bus_id": lambda h: (nv.nvmlDeviceGetPciInfo(h).busId, ""),
        "driver_version": lambda h: (nv.nvmlSystemGetDriverVersion(), ""),
        "pstate": lambda h: (f"P{nv.nvmlDeviceGetPerformanceState(h)}", ""),
        "persistence_mode": lambda h: (
            "Enabled" if nv.nvmlDeviceGetPersistenceMode(h) else "Disabled",
            "",
        ),
        "power.draw": lambda h: _mw(nv.nvmlDeviceGetPowerUsage(h)),
        "power.limit": lambda h: _mw(nv.nvmlDeviceGetPowerManagementLimit(h)),
        "enforced.power.limit": lambda h: _mw(nv.nvmlDeviceGetEnforcedPowerLimit(h)),
        "power.default_limit": lambda h: _mw(nv.nvmlDeviceGetPowerManagementDefaultLimit(h)),
        "power.min_limit": lambda h: _mw(nv.nvmlDeviceGetPowerManagementLimitConstraints(h)[0]),
        "power.max_limit": lambda h: _mw(nv.nvmlDeviceGetPowerManagementLimitConstraints(h)[1]),
        "temperature.gpu": lambda h: (nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU), ""),
        "clocks.sm": lambda h: (clock(h, nv.NVML_CLOCK_SM), "MHz"),
        "clocks.mem": lambda h: (clock(h, nv.NVML_CLOCK_MEM), "MHz"),
        "clocks.max.sm": lambda h: (maxclock(h, nv.NVML_CLOCK_SM), "MHz"),
        "clocks.max.mem": lambda h: (maxclock(h, nv.NVML_CLOCK_MEM), "MHz"),
        "utilization.gpu": lambda h: (util(h).gpu, "%"),
        "utilization.memory": lambda h: (util(h).memory, "%"),
        "memory.total": lambda h: (mem(h).total // 2**20, "MiB"),
        "memory.used": lambda h: (mem(h).used // 2**20, "MiB"),
        "memory.free": lambda h: (mem(h).free // 2**20, "MiB"),
    }


#: the fields ``--query-gpu`` accepts
FIELDS = [
    *("index", "name", "uuid", "serial", "pci.bus_id", "driver_version", "pstate"),
    *("persistence_mode", "power.draw", "power.limit", "enforced.power.limit"),
    *("power.default_limit", "power.min_limit", "power.max_limit", "temperature.gpu"),
    *("clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem", "utilization.gpu"),
    *("utilization.memory", "memory.total", "memory.used", "memory.free"),
]


def _format(value: Any, unit: str, units: bool) -> str:
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    return f"{text} {unit}" if units and unit else text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nvidia-smi", description=BANNER, add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-L", "--list-gpus", action="store_true")
    p.add_argument("--query-gpu")
    p.add_argument("--format")
    p.add_argument("-i", "--id")
    p.add_argument("-pl", "--power-limit", type=float, metavar="W")
    args, unknown = p.parse_known_args(argv)
    if args.help:
        print(p.format_help().rstrip())
        print(f"--query-gpu fields: {', '.join(FIELDS)}")
        return 0
    if unknown:
        print(f"{BANNER}: option {unknown[0]!r} is not supported", file=sys.stderr)
        return 2
    if not os.environ.get(NVML_ENV):
        print(f"{BANNER}: {NVML_ENV} is not set (use `wattbench sim run -- ...`)", file=sys.stderr)
        return 9
    import pynvml as nv

    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        print(f"NVIDIA-SMI has failed: {exc}", file=sys.stderr)
        return 9
    handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
    if args.id is not None:
        wanted = {x.strip() for x in args.id.split(",")}
        handles = [
            h
            for i, h in enumerate(handles)
            if str(i) in wanted or nv.nvmlDeviceGetUUID(h) in wanted
        ]
        if not handles:
            print(f"No devices were found matching {args.id!r}", file=sys.stderr)
            return 6
    if args.power_limit is not None:
        return _set_power_limit(nv, handles, args.power_limit)
    if args.list_gpus:
        for h in handles:
            i, name, uid = (
                nv.nvmlDeviceGetIndex(h),
                nv.nvmlDeviceGetName(h),
                nv.nvmlDeviceGetUUID(h),
            )
            print(f"GPU {i}: {name} (UUID: {uid})")
        return 0
    if args.query_gpu:
        return _query(nv, handles, args.query_gpu, args.format or "")
    return _table(nv, handles)


def _set_power_limit(nv: Any, handles: list[Any], watts: float) -> int:
    """``-pl W``: set the power limit through NVML (root only; within the constraints)."""
    for h in handles:
        bus = nv.nvmlDeviceGetPciInfo(h).busId
        bus = bus.decode() if isinstance(bus, bytes) else bus
        lo, hi = (v / 1000.0 for v in nv.nvmlDeviceGetPowerManagementLimitConstraints(h))
        if not lo <= watts <= hi:
            print(
                f"Provided power limit {watts:.2f} W is not a valid power limit which should be "
                f"between {lo:.2f} W and {hi:.2f} W for GPU {bus}",
                file=sys.stderr,
            )
            return 2
        old = nv.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
        try:
            nv.nvmlDeviceSetPowerManagementLimit(h, round(watts * 1000))
        except nv.NVMLError as exc:
            print(f"Failed to set power management limit for GPU {bus}: {exc}", file=sys.stderr)
            return 4
        print(f"Power limit for GPU {bus} was set to {watts:.2f} W from {old:.2f} W.")
    print("All done.")
    return 0


def _query(nv: Any, handles: list[Any], query: str, fmt: str) -> int:
    options = {x.strip() for x in fmt.split(",")}
    if "csv" not in options:
        print(f'{BANNER}: use --format=csv (with "noheader", "nounits" as wanted)', file=sys.stderr)
        return 2
    wanted = [x.strip() for x in query.split(",") if x.strip()]
    known = _fields(nv)
    bad = [w for w in wanted if w not in known]
    if bad:
        print(f'Field "{bad[0]}" is not a valid field to query.', file=sys.stderr)
        return 2
    units = "nounits" not in options
    if "noheader" not in options:
        heads = []
        for w in wanted:
            unit = known[w](handles[0])[1] if handles else ""
            heads.append(f"{w} [{unit}]" if units and unit else w)
        print(", ".join(heads))
    for h in handles:
        print(", ".join(_format(*known[w](h), units) for w in wanted))
    return 0


def _table(nv: Any, handles: list[Any]) -> int:
    f = _fields(nv)
    print(BANNER)
    print(f"Driver Version: {nv.nvmlSystemGetDriverVersion()}")
    print(f"{'GPU':>3}  {'Name':<24} {'Temp':>5} {'Perf':>4} {'Pwr:Usage/Cap':>15} "
          f"{'Memory-Usage':>20} {'GPU-Util':>8}")  # fmt: skip
    for h in handles:
        power = f"{f['power.draw'](h)[0]:.0f}W / {f['power.limit'](h)[0]:.0f}W"
        memory = f"{f['memory.used'](h)[0]}MiB / {f['memory.total'](h)[0]}MiB"
        print(
            f"{f['index'](h)[0]:>3}  {f['name'](h)[0][:24]:<24} {f['temperature.gpu'](h)[0]:>4}C "
            f"{f['pstate'](h)[0]:>4} {power:>15} {memory:>20} {f['utilization.gpu'](h)[0]:>7}%"
        )
    return 0


def shim_folder() -> Path:
    """A folder holding an ``nvidia-smi`` that runs this stand-in with this interpreter (for
    ``PATH``); written on each call, atomically, so that it always names this interpreter."""
    folder = shared_folder() / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    script = f'#!/bin/sh\nexec "{sys.executable}" -m wattbench.profiler.sim.smi "$@"\n'
    write_text_atomic(folder / "nvidia-smi", script, mode=0o755)
    return folder


if __name__ == "__main__":
    sys.exit(main())
