"""The one wattbench error hierarchy.

Every error a user can meet is a :class:`WattbenchError`: a one-line ``message`` saying what went
wrong and a ``remedy`` saying what to do about it. The CLI prints ``str(error)`` and exits with
``error.exit_code`` (2 for usage errors, 1 for runtime errors); no traceback reaches the user.
"""

from __future__ import annotations

# The root, the usage errors' base and the kernels' own two errors are defined by the kernels
# package, the lowest layer, which raises them without importing the profiler; the rest of the
# hierarchy builds on them here.
from wattbench.kernels.errors import ShapeError, UnknownKernelError, UsageError, WattbenchError

__all__ = [
    "ActuationForbiddenError",
    "DeviceError",
    "DriverNotFoundError",
    "EnvironmentVariableError",
    "GpuBusyError",
    "GpuLostError",
    "LaunchError",
    "MeasurementError",
    "NoPermissionError",
    "NotSupportedError",
    "PowerLimitOutOfRangeError",
    "ShapeError",
    "SimServiceError",
    "SpecError",
    "UnknownDeviceError",
    "UnknownKernelError",
    "UnsupportedClockError",
    "UsageError",
    "WattbenchError",
]


class UnknownDeviceError(UsageError):
    """A device selection string that matches no GPU, simulated or real."""


class SpecError(UsageError):
    """A simulated-GPU spec file is missing, malformed or inconsistent (names the field)."""


class UnsupportedClockError(UsageError):
    """An SM or memory clock the device does not support (names the nearest supported ones)."""


class PowerLimitOutOfRangeError(UsageError):
    """A power limit outside the device's constraints (gives the range)."""


class EnvironmentVariableError(UsageError):
    """A ``WATTBENCH_*`` environment variable with a value wattbench cannot use (names it)."""


# --- runtime errors: the environment refused (exit code 1) ---------------------------------------


class DeviceError(WattbenchError):
    """NVML answered with an error; the message says which call and what to do."""

    def __init__(self, message: str, remedy: str = "", nvml_code: int | None = None) -> None:
        super().__init__(message, remedy)
        self.nvml_code = nvml_code


class SimServiceError(DeviceError):
    """The shared simulator service could not start or answer (the message says why)."""


class DriverNotFoundError(DeviceError):
    """libnvidia-ml could not be loaded: no NVIDIA driver on this machine."""


class NoPermissionError(DeviceError):
    """A setter needs privileges this process lacks."""


class NotSupportedError(DeviceError):
    """The GPU (its architecture or its driver) does not support this NVML feature."""


class GpuLostError(DeviceError):
    """The GPU fell off the bus or stopped answering."""


class GpuBusyError(DeviceError):
    """Another process uses the GPU (or is changing its settings) and would spoil or be spoiled."""


class ActuationForbiddenError(DeviceError):
    """A setter was called while actuation is forbidden (WATTBENCH_NO_ACTUATE=1 or observe-only).

    Reaching this is a bug in the caller: observe-only code paths must not call setters.
    """


class MeasurementError(WattbenchError):
    """A measurement could not be made as planned (a sensor that did not update)."""


class LaunchError(WattbenchError):
    """A kernel launch failed (a CUDA fault, or a failure the simulator was told to inject)."""
