"""The ``wattbench.devices/1`` document: the real GPUs (if any), the built-in simulated ones, and
the shared simulated node when ``WATTBENCH_SIM_NVML`` selects one -- identity, capabilities and,
for the devices asked about, live readings and the settings found. Reads only; never changes a
setting. ``wattbench devices`` prints it (``--json``: as is, with its stable keys).
"""

from __future__ import annotations

from typing import Any

from wattbench.profiler.device import Device, open_device, visible_real_indices
from wattbench.profiler.device.nvml import real_backend, shared_backend
from wattbench.profiler.errors import DeviceError, DriverNotFoundError
from wattbench.profiler.safety import stale_journal_warning
from wattbench.profiler.safety.found import settings_found
from wattbench.profiler.sim import spec as sim_spec

SCHEMA = "wattbench.devices/1"


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
