"""``wattbench devices``: the real GPUs (if any), the built-in simulated ones, and the shared
simulated node when ``WATTBENCH_SIM_NVML`` selects one.

Reads only; never changes a setting. ``--json`` prints a document with stable keys
(``schema: wattbench.devices/1``) for machines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from typing import Any

from wattbench.profiler.device import Device, open_device, visible_real_indices
from wattbench.profiler.device.nvml import real_backend, shared_backend
from wattbench.profiler.errors import DeviceError, DriverNotFoundError
from wattbench.profiler.safety import stale_journal_warning
from wattbench.profiler.safety.found import settings_found
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim.env import NVML_ENV

SCHEMA = "wattbench.devices/1"


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


# --- collection ----------------------------------------------------------------------------------


def collect(selection: str | None = None) -> dict[str, Any]:
    """Everything `devices` shows, as a JSON-ready dict with stable keys."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "driver": {"found": False},
        "real": [],
        "simulated": [],
        "shared": [],
    }
    if selection:
        dev = open_device(selection)
        entry = describe(dev, with_reading=True)
        doc["simulated" if dev.simulated else "real"].append(entry)
        if not dev.simulated:
            doc["driver"] = _driver_info(dev)
        return doc
    try:
        indices = visible_real_indices()
        backend = real_backend()
        doc["driver"] = {"found": True}
        for pos, i in enumerate(indices):
            dev = Device(backend, i, str(pos))
            doc["real"].append(describe(dev, with_reading=True))
            doc["driver"] = _driver_info(dev)
    except DriverNotFoundError as exc:
        doc["driver"] = {"found": False, "error": exc.message, "remedy": exc.remedy}
    for key in sim_spec.builtin_keys():
        doc["simulated"].append(describe(open_device(f"sim:{key}"), with_reading=False))
    doc["shared"] = _shared()
    return doc


def _shared() -> list[dict[str, Any]]:
    """The units of the shared simulated node ``WATTBENCH_SIM_NVML`` names (what the other
    NVML tools of this environment see), with their readings; none when it is unset."""
    backend = shared_backend()
    if backend is None:
        return []
    count = backend.call("nvmlDeviceGetCount", what="counting the shared node's GPUs")
    out = []
    for i in range(count):
        dev = Device(backend, i, f"shared:{i}", observe_only=True)
        entry = describe(dev, with_reading=False)
        entry["shared"] = True
        entry["reading"] = _reading(dev)
        out.append(entry)
    return out


def _driver_info(dev: Device) -> dict[str, Any]:
    ident = dev.identity
    return {
        "found": True,
        "driver_version": ident.driver_version,
        "cuda_driver_version": ident.cuda_driver_version,
    }


def describe(dev: Device, with_reading: bool) -> dict[str, Any]:
    ident = dev.identity
    caps = dev.capabilities
    entry: dict[str, Any] = {
        "selection": dev.selection,
        "index": ident.index,
        "name": ident.name,
        "uuid": ident.uuid,
        "pci_bus_id": ident.pci_bus_id,
        "architecture": ident.architecture,
        "compute_capability": ident.compute_capability,
        "memory_total_mib": ident.memory_total_mib,
        "driver_version": ident.driver_version,
        "cuda_driver_version": ident.cuda_driver_version,
        "vbios_version": ident.vbios_version,
        "simulated": ident.simulated,
        "capabilities": {
            "memory_clocks_mhz": list(caps.memory_clocks_mhz),
            "sm_clocks_mhz": {str(m): list(v) for m, v in caps.sm_clocks_mhz.items()},
            "power_limit_w_min": caps.power_limit_w_min,
            "power_limit_w_max": caps.power_limit_w_max,
            "power_limit_w_default": caps.power_limit_w_default,
            "has_energy_counter": caps.has_energy_counter,
            "power_fields": list(caps.power_fields),
        },
    }
    sim = dev.simulated
    if sim is not None:
        entry["spec_source"] = ident.spec_source
        entry["spec"] = {
            "key": sim.spec.key,
            "peak_tflops": dict(sim.spec.performance.tflops),
            "memory_bandwidth_gbs": sim.spec.performance.memory_bandwidth_gbs,
            "idle_w": sim.spec.power.idle_w,
        }
    if with_reading:
        entry["reading"] = _reading(dev)
        found = settings_found(dev)
        entry["settings"] = {**found.to_json(), "text": found.describe()}
        entry["warning"] = stale_journal_warning(dev)
    return entry


def _reading(dev: Device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    probes = {
        "power_limit_w": dev.power_limit_w,
        "power_usage_w": dev.power_usage_w,
        "power_instant_w": dev.power_instant_w,
        "power_average_w": dev.power_average_w,
        "energy_j": dev.energy_j,
        "sm_mhz": dev.sm_clock_mhz,
        "mem_mhz": dev.mem_clock_mhz,
        "temp_c": dev.temperature_c,
    }
    for key, fn in probes.items():
        try:
            out[key] = fn()
        except DeviceError as exc:  # one unsupported sensor must not hide the others
            out[key] = None
            out.setdefault("errors", {})[key] = str(exc)
    try:
        reasons = dev.clock_event_reasons()
        out["clock_event_reasons"] = list(reasons.names)
        out["clock_event_reasons_mask"] = reasons.mask
    except DeviceError as exc:
        out["clock_event_reasons"] = None
        out.setdefault("errors", {})["clock_event_reasons"] = str(exc)
    try:
        out["processes"] = [{"pid": p, "used_memory_bytes": m} for p, m in dev.running_processes()]
    except DeviceError as exc:
        out["processes"] = None
        out.setdefault("errors", {})["processes"] = str(exc)
    return out


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
