"""Mechanism: the one device interface over NVML (pynvml), for real and simulated GPUs."""

from wattbench.profiler.device.device import (
    NO_ACTUATE_ENV,
    Capabilities,
    Device,
    DeviceIdentity,
    Reading,
    actuation_forbidden_by_env,
)
from wattbench.profiler.device.reasons import ClockEventReasons
from wattbench.profiler.device.select import open_device, sim_choices, visible_real_indices

__all__ = [
    "NO_ACTUATE_ENV",
    "Capabilities",
    "ClockEventReasons",
    "Device",
    "DeviceIdentity",
    "Reading",
    "actuation_forbidden_by_env",
    "open_device",
    "sim_choices",
    "visible_real_indices",
]
