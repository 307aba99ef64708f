"""Device selection strings -> :class:`Device`.

Accepted forms:

* ``0``, ``1`` ... -- a real GPU by index among the *visible* GPUs: with ``CUDA_VISIBLE_DEVICES``
  set, index ``i`` is its ``i``-th entry (an NVML index or a ``GPU-`` UUID prefix), as CUDA
  numbers them (set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA and NVML agree on order);
* ``GPU-<uuid>`` -- a real or simulated GPU by UUID (a unique prefix is enough);
* ``sim:<key>`` -- a built-in simulated GPU (``sim:h100-sxm``);
* ``sim:<path>`` -- a simulated GPU from a spec file (``sim:path/to/spec.toml``);
* ``sim:<N>x<key or path>[:<i>]`` -- unit ``i`` (default 0) of a simulated node of N units of one
  model (``sim:8xh100-sxm:3``), each with its own UUID, serial, PCI bus id and unit offsets.
"""

from __future__ import annotations

import os
import re

from wattbench.profiler.device.device import Device
from wattbench.profiler.device.nvml import real_backend, sim_backend
from wattbench.profiler.errors import DriverNotFoundError, UnknownDeviceError
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim.node import MAX_UNITS, load_spec


def sim_choices() -> str:
    return ", ".join(f"sim:{k}" for k in sim_spec.builtin_keys())


def open_device(selection: str | None = None, *, observe_only: bool = False) -> Device:
    """Open the device named by ``selection`` (default: the first visible real GPU)."""
    if selection is None or selection.strip() == "":
        try:
            visible = visible_real_indices()
        except DriverNotFoundError as exc:
            raise DriverNotFoundError(
                "no GPU selected and no NVIDIA driver found",
                f"pass --device with a simulated GPU ({sim_choices()})",
            ) from exc
        if not visible:
            raise UnknownDeviceError(
                "no visible NVIDIA GPU (check CUDA_VISIBLE_DEVICES)",
                f"or pass --device with a simulated GPU ({sim_choices()})",
            )
        return Device(real_backend(), visible[0], "0", observe_only=observe_only)
    sel = selection.strip()
    if sel.startswith("sim:"):
        spec, units, index = load_sim_selection(sel)
        return Device(sim_backend(spec, units=units), index, sel, observe_only=observe_only)
    if sel.isdigit():
        visible = visible_real_indices()
        i = int(sel)
        if i >= len(visible):
            raise UnknownDeviceError(
                f"no GPU with index {i}: {len(visible)} visible",
                "`wattbench devices` lists them; check CUDA_VISIBLE_DEVICES",
            )
        return Device(real_backend(), visible[i], sel, observe_only=observe_only)
    if sel.upper().startswith("GPU-"):
        return _open_by_uuid(sel, observe_only)
    raise UnknownDeviceError(
        f"unknown device {selection!r}",
        f"use an index (0), a UUID (GPU-...), or a simulated GPU ({sim_choices()} or "
        "sim:path/to/spec.toml)",
    )


#: most units a simulated node may hold
MAX_SIM_UNITS = MAX_UNITS
_NODE = re.compile(r"^(?:(\d+)x)?(.+?)(?::(\d+))?$")


def parse_sim_selection(text: str) -> tuple[str, int, int]:
    """``[<N>x]<key or path>[:<i>]`` -> (key or path, N units, index i)."""
    m = _NODE.match(text)
    if not m or not m.group(2):
        raise UnknownDeviceError(
            f"bad simulated-GPU selection sim:{text}",
            f"use sim:<key>, sim:<N>x<key>[:<unit>] or sim:path/to/spec.toml ({sim_choices()})",
        )
    units = int(m.group(1)) if m.group(1) else 1
    index = int(m.group(3)) if m.group(3) else 0
    if not 1 <= units <= MAX_SIM_UNITS:
        raise UnknownDeviceError(
            f"a simulated node holds 1 to {MAX_SIM_UNITS} units, not {units}",
            "use e.g. sim:8xh100-sxm",
        )
    if index >= units:
        raise UnknownDeviceError(
            f"sim:{text}: no unit {index} in a node of {units}",
            f"units are numbered 0 to {units - 1}",
        )
    return m.group(2), units, index


def load_sim_selection(selection: str) -> tuple[sim_spec.GpuSpec, int, int]:
    """``sim:[<N>x]<key or path>[:<i>]`` -> (its spec, N units, index i)."""
    if not selection.startswith("sim:"):
        raise UnknownDeviceError(
            f"{selection!r} is not a simulated GPU",
            f"pass sim:<key>, sim:<N>x<key> or sim:path/to/spec.toml ({sim_choices()})",
        )
    name, units, index = parse_sim_selection(selection[4:])
    return load_spec(name), units, index


def _open_by_uuid(sel: str, observe_only: bool) -> Device:
    want = sel.lower()
    matches: list[Device] = []
    try:
        backend = real_backend()
        for i in visible_real_indices():
            dev = Device(backend, i, sel, observe_only=observe_only)
            if dev.identity.uuid.lower().startswith(want):
                matches.append(dev)
    except DriverNotFoundError:
        pass
    for key in sim_spec.builtin_keys():
        dev = Device(sim_backend(sim_spec.load_builtin(key)), 0, sel, observe_only=observe_only)
        if dev.identity.uuid.lower().startswith(want):
            matches.append(dev)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownDeviceError(
            f"no GPU with UUID {sel}", "`wattbench devices` lists the GPUs and their UUIDs"
        )
    raise UnknownDeviceError(f"UUID prefix {sel} matches {len(matches)} GPUs", "give more of it")


def visible_real_indices() -> list[int]:
    """NVML indices of the real GPUs this process may use, in CUDA's order.

    Raises :class:`DriverNotFoundError` when there is no NVIDIA driver.
    """
    backend = real_backend()
    count = backend.call("nvmlDeviceGetCount", what="counting GPUs")
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(range(count))
    uuids: list[str] | None = None
    out: list[int] = []
    for entry in (e.strip() for e in env.split(",")):
        # CUDA stops at the first entry it cannot parse; so do we.
        if entry.isdigit():
            if int(entry) >= count:
                break
            out.append(int(entry))
        elif entry.upper().startswith("GPU-"):
            if uuids is None:
                uuids = [Device(backend, i, str(i)).identity.uuid.lower() for i in range(count)]
            hits = [i for i, u in enumerate(uuids) if u.startswith(entry.lower())]
            if len(hits) != 1:
                break
            out.append(hits[0])
        else:  # "", "-1", "NoDevFiles", MIG-... (no per-slice power in NVML)
            break
    return list(dict.fromkeys(out))
