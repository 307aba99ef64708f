"""``wattbench devices``: the real GPUs (if any), the built-in simulated ones, and the shared
simulated node when ``WATTBENCH_SIM_NVML`` selects one.

Reads only; never changes a setting. ``--json`` prints the document (``schema:
wattbench.devices/1``, built by ``report/devices.py``) for machines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from typing import Any

from wattbench.profiler.report.devices import collect
from wattbench.profiler.sim.env import NVML_ENV


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "devices",
        help="list real and simulated GPUs",
        description="List the real GPUs (identity, clock table, power-limit range, live "
        "readings) and the built-in simulated GPUs. Changes nothing.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--device",
        metavar="SEL",
        help="show only this device (0, GPU-<uuid>, sim:h100-sxm, sim:path/to/spec.toml)",
    )
    p.add_argument("--clocks", action="store_true", help="print the full SM clock table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    doc = collect(args.device)
    for e in doc["real"] + doc["simulated"]:
        if e.get("warning"):  # a crashed sweep left it changed: say so where it cannot be missed
            print(f"wattbench: warning: {e['warning']}", file=sys.stderr)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(render(doc, full_clocks=args.clocks))
    return 0


# --- rendering -----------------------------------------------------------------------------------


def clock_range(clocks: list[int]) -> str:
    """'345-1980 MHz, 110 clocks in 15 MHz steps' (or the list when steps are uneven)."""
    if len(clocks) < 2:
        return f"{', '.join(map(str, clocks))} MHz"
    asc = sorted(clocks)
    steps = {b - a for a, b in itertools.pairwise(asc)}
    if len(steps) == 1:
        return f"{asc[0]}-{asc[-1]} MHz, {len(asc)} clocks in {steps.pop()} MHz steps"
    return f"{asc[0]}-{asc[-1]} MHz, {len(asc)} clocks (uneven steps)"


def render(doc: dict[str, Any], full_clocks: bool = False) -> str:
    lines: list[str] = []
    drv = doc["driver"]
    if doc["real"] or drv.get("found"):
        lines.append(
            f"Real GPUs (driver {drv.get('driver_version', '?')}, "
            f"CUDA {drv.get('cuda_driver_version', '?')}):"
        )
        if not doc["real"]:
            lines.append("  none visible (check CUDA_VISIBLE_DEVICES)")
        for e in doc["real"]:
            lines.extend(_render_one(e, full_clocks))
    elif "error" in drv:
        lines.append(f"Real GPUs: none -- {drv['error']}.")
        lines.append(f"  {drv['remedy']}")
    for e in doc["simulated"]:
        if "reading" in e:  # a single simulated device asked for by --device
            lines.extend(_render_one(e, full_clocks))
    summary = [e for e in doc["simulated"] if "reading" not in e]
    if summary:
        lines.append("")
        lines.append("Simulated GPUs (--device sim:<key>, or sim:path/to/spec.toml):")
        lines.append(
            f"  {'device':<14}{'name':<26}{'arch':<8}{'SM clocks (MHz)':<18}"
            f"{'mem (MHz)':<12}{'power limit (W)':<18}{'bf16 TFLOP/s':>13}{'GB/s':>7}"
        )
        for e in summary:
            caps = e["capabilities"]
            sm = sorted({c for v in caps["sm_clocks_mhz"].values() for c in v})
            mem = "/".join(str(m) for m in caps["memory_clocks_mhz"])
            limits = (
                f"{caps['power_limit_w_min']:g}-{caps['power_limit_w_max']:g} "
                f"({caps['power_limit_w_default']:g})"
            )
            bf16 = e["spec"]["peak_tflops"].get("bf16")
            lines.append(
                f"  {e['selection']:<14}{e['name'][:25]:<26}{e['architecture']:<8}"
                f"{f'{sm[0]}-{sm[-1]}':<18}{mem:<12}{limits:<18}"
                f"{(f'{bf16:g}' if bf16 else '-'):>13}{e['spec']['memory_bandwidth_gbs']:>7g}"
            )
        lines.append("  Results from simulated GPUs are model outputs, not measurements.")
    if doc.get("shared"):
        lines.append("")
        lines.append(
            f"Shared simulated node ({NVML_ENV}={os.environ.get(NVML_ENV, '')}): what NVML "
            "tools in this environment see, on the wall clock"
        )
        for e in doc["shared"]:
            lines.extend(_render_one(e, full_clocks))
    return "\n".join(lines)


def _render_one(e: dict[str, Any], full_clocks: bool) -> list[str]:
    caps = e["capabilities"]
    tag = " [simulated]" if e["simulated"] else ""
    out = [
        f"  [{e['selection']}] {e['name']}{tag}",
        f"      uuid {e['uuid']}  pci {e['pci_bus_id']}  {e['architecture']} "
        f"(sm_{e['compute_capability'].replace('.', '')})  {e['memory_total_mib']} MiB",
        f"      driver {e['driver_version']}  CUDA {e['cuda_driver_version']}  "
        f"VBIOS {e['vbios_version']}",
        f"      power limit {caps['power_limit_w_min']:g}-{caps['power_limit_w_max']:g} W "
        f"(default {caps['power_limit_w_default']:g} W)  energy counter: "
        f"{'yes' if caps['has_energy_counter'] else 'no'}  power fields: "
        f"{', '.join(caps['power_fields']) or 'none'}",
    ]
    for mem, sm in caps["sm_clocks_mhz"].items():
        out.append(f"      memory {mem} MHz: SM {clock_range(sm)}")
        if full_clocks:
            out.append("        " + " ".join(map(str, sm)))
    r = e.get("reading")
    if r:

        def fmt(key: str, unit: str, spec: str = ".1f") -> str:
            v = r.get(key)
            return "n/a" if v is None else f"{v:{spec}} {unit}"

        out.append(
            f"      now: power {fmt('power_average_w', 'W')} (1-s avg), "
            f"{fmt('power_instant_w', 'W')} (instant), limit {fmt('power_limit_w', 'W', 'g')}; "
            f"energy {fmt('energy_j', 'J', '.3f')}"
        )
        reasons = r.get("clock_event_reasons")
        out.append(
            f"           SM {fmt('sm_mhz', 'MHz', 'd')}, memory {fmt('mem_mhz', 'MHz', 'd')}, "
            f"{fmt('temp_c', 'C', 'd')}, clock events: "
            f"{', '.join(reasons) if reasons else 'none'}; "
            f"processes: {len(r['processes']) if r.get('processes') is not None else 'n/a'}"
        )
        for key, msg in (r.get("errors") or {}).items():
            out.append(f"           {key}: {msg}")
    found = e.get("settings")
    if found is not None:
        at = found["at_driver_defaults"]
        text = found["text"] if at else f"NOT at driver defaults: {found['text']}"
        out.append(f"      settings: {text}")
    return out
