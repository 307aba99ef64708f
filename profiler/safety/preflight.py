"""Checks a sweep makes before it measures anything.

* :func:`check_privileges` -- may this process change what the sweep plans to change? NVML has no
  "may I" query, so each planned knob is probed with a change that ends where the session will
  end anyway: the power limit is set to its current value, clock locks are reset (a session puts
  back unlocked clocks when it closes). Run it inside an open :class:`ActuationGuard`.
* :func:`check_not_shared` -- refuse while other processes use the GPU: their work would slow
  the kernel, and the kernel would slow theirs.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from wattbench.profiler.errors import GpuBusyError, NoPermissionError, NotSupportedError

if TYPE_CHECKING:
    from wattbench.profiler.device import Device


def check_privileges(device: Device, knobs: set[str] | frozenset[str]) -> None:
    """Probe each knob in ``knobs`` ("sm", "mem", "power"); one error naming every remedy."""
    probes = {
        "power": lambda: device.set_power_limit_w(device.power_limit_w()),
        "mem": device.reset_memory_clocks,
        "sm": device.reset_sm_clocks,
    }
    denied: list[str] = []
    power_ok: bool | None = None
    for knob in ("power", "mem", "sm"):
        if knob not in knobs:
            continue
        try:
            with contextlib.suppress(NotSupportedError):
                probes[knob]()
            if knob == "power":
                power_ok = True
        except NoPermissionError:
            denied.append(knob)
            if knob == "power":
                power_ok = False
    if not denied:
        return
    if power_ok is None:  # tell the user whether a power-limit-only sweep would work
        try:
            probes["power"]()
            power_ok = True
        except NoPermissionError:
            power_ok = False
    names = {"power": "the power limit", "mem": "memory clocks", "sm": "SM clocks"}
    remedies = [
        "run as root (in a container: with the SYS_ADMIN capability, e.g. "
        "`docker run --cap-add SYS_ADMIN`)",
        "or measure the GPU as it is: --observe-only",
    ]
    if power_ok:
        remedies.append(
            "or sweep power limits only (capping is permitted here, clock locking is not): "
            "--power-limits 200:700:50 without --sm-clocks / --mem-clocks"
        )
    who = "this user" if os.geteuid() != 0 else "root in this environment"
    raise NoPermissionError(
        f"{who} may not change {' or '.join(names[k] for k in denied)} of "
        f"{device.identity.name}; nothing was measured",
        "; ".join(remedies),
    )


def check_not_shared(device: Device, *, allow_shared: bool) -> None:
    """Raise :class:`GpuBusyError` if processes other than this one use ``device``.

    Call it before this process creates its own CUDA context (NVML lists host PIDs, which in a
    container need not match ``os.getpid()``).
    """
    others = [(pid, mem) for pid, mem in device.running_processes() if pid != os.getpid()]
    if not others or allow_shared:
        return
    listed = ", ".join(
        f"pid {pid}" + (f" ({mem / 2**20:.0f} MiB)" if mem else "") for pid, mem in others[:8]
    )
    more = f" and {len(others) - 8} more" if len(others) > 8 else ""
    raise GpuBusyError(
        f"{len(others)} other process(es) use {device.identity.name}: {listed}{more}",
        "wait for them to finish, or pass --allow-shared (their work will slow the measurement "
        "and the sweep will slow theirs)",
    )
