"""Setting an operating point and leaving it set (``wattbench apply``, a scheduler prolog).

Everything is checked before anything changes; the change is made inside an actuation session,
so the GPU's original settings are journaled first, and the applied settings become the
journal's *target*: later sweeps put them back when they end, and ``wattbench reset`` undoes them.
"""

from __future__ import annotations

from wattbench.profiler.device import Device
from wattbench.profiler.errors import UsageError
from wattbench.profiler.safety.guard import ActuationGuard, apply_settings
from wattbench.profiler.safety.journal import GpuSettings


def check_source(point_simulated: bool, device_simulated: bool, workload: str) -> None:
    """Refuse to put a point chosen on a simulated GPU onto a real one: the model's optimum is
    not a measurement of this GPU."""
    if point_simulated and not device_simulated:
        raise UsageError(
            f"the point for {workload!r} was chosen on a simulated GPU, not measured on this one",
            "sweep the workload on this GPU (`wattbench sweep --device ...`) and export that run",
        )


def check_settings(device: Device, s: GpuSettings, knobs: set[str] | frozenset[str]) -> None:
    """Check every value of the ``knobs`` against the device before anything is changed."""
    if "mem" in knobs and s.mem_mhz is not None:
        device.check_memory_clock(s.mem_mhz)
    if "sm" in knobs and s.sm_mhz is not None:
        device.check_sm_clock(s.sm_mhz, s.mem_mhz if "mem" in knobs else None)
    if "power" in knobs and s.power_limit_w is not None:
        device.check_power_limit_w(s.power_limit_w)


def apply_and_keep(device: Device, settings: GpuSettings, knobs: set[str] | frozenset[str]) -> None:
    """Check ``settings`` (the ``knobs`` among them), then put them in force inside a journaled
    session and commit them as the journal's target (they stay set when the session ends)."""
    check_settings(device, settings, knobs)
    with ActuationGuard(device, "apply") as guard:
        apply_settings(device, settings, knobs)
        guard.commit(settings, knobs)
