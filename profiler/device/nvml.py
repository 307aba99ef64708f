"""NVML backends: the pynvml module behind a device, and NVML errors turned into wattbench errors.

A backend is one pynvml module instance and what stands beneath it: the real
``libnvidia-ml.so.1`` (the global ``pynvml`` module) or a :class:`SimulatedNvmlLibrary` (a private
copy of pynvml per simulated spec). Both are driven through the same pynvml calls.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from wattbench.profiler import signals
from wattbench.profiler.errors import (
    DeviceError,
    DriverNotFoundError,
    GpuLostError,
    NoPermissionError,
    NotSupportedError,
    WattbenchError,
)
from wattbench.profiler.sim.gpu import SimulatedGpu
from wattbench.profiler.sim.nvml_lib import (
    SimulatedNvmlLibrary,
    fresh_pynvml,
    load_pynvml,
    take_raised,
)
from wattbench.profiler.sim.spec import GpuSpec

T = TypeVar("T")

# NVML return codes used here (nvml.h)
_NO_PERMISSION = 4
_NOT_SUPPORTED = 3
_LIBRARY_NOT_FOUND = 12
_DRIVER_NOT_LOADED = 9
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15

#: What an NVML function needs, for NOT_SUPPORTED messages.
REQUIREMENTS = {
    "nvmlDeviceSetGpuLockedClocks": "a Volta or newer GPU",
    "nvmlDeviceResetGpuLockedClocks": "a Volta or newer GPU",
    "nvmlDeviceSetMemoryLockedClocks": "an Ampere or newer GPU",
    "nvmlDeviceResetMemoryLockedClocks": "an Ampere or newer GPU",
    "nvmlDeviceGetTotalEnergyConsumption": "a Volta or newer GPU",
    "nvmlDeviceSetPowerManagementLimit": "a Kepler or newer GPU with power management enabled",
}

NO_DRIVER_REMEDY = (
    "no NVIDIA driver here; install one, or use a simulated GPU such as "
    "--device sim:h100-sxm (`wattbench devices` lists them)"
)
PRIVILEGE_REMEDY = (
    "run as root (in a container: with CAP_SYS_ADMIN), or measure the GPU as it is with "
    "--observe-only"
)


@dataclass
class NvmlBackend:
    """A pynvml module and, for simulated devices, the library beneath it."""

    pynvml: ModuleType
    simulated: SimulatedNvmlLibrary | None = None

    @property
    def is_simulated(self) -> bool:
        return self.simulated is not None

    def call(self, fn_name: str, *args: Any, what: str | None = None) -> Any:
        """Call ``pynvml.<fn_name>(*args)``, translating NVML errors (see :func:`translate`)."""
        fn: Callable[..., Any] = getattr(self.pynvml, fn_name)
        try:
            if self.simulated is None:
                return fn(*args)
            # The simulated library is Python beneath ctypes: a signal handler that raised inside
            # it would be lost at the C boundary. Hold signals back for the call, so they land
            # after it returns -- as they do around real (C) NVML calls. A handler can still run
            # inside: its signal arrived just before the block, or went to another thread that
            # does not block it (numpy's BLAS threads), which only flags it for this one. The
            # library keeps what the handler raised; it is raised here in place of the
            # cut-short call's result.
            try:
                with signals.deferred():
                    return fn(*args)
            finally:
                raised = take_raised()
                if raised is not None:
                    raise raised
        except self.pynvml.NVMLError as err:
            raise translate(err, fn_name, what) from None


def translate(err: Exception, fn_name: str, what: str | None = None) -> DeviceError:
    """An NVMLError as the wattbench error that says what to do."""
    code = getattr(err, "value", None)
    action = what or fn_name
    if code in (_LIBRARY_NOT_FOUND, _DRIVER_NOT_LOADED):
        return DriverNotFoundError(
            "NVIDIA driver not found: libnvidia-ml.so.1 could not be loaded",
            NO_DRIVER_REMEDY,
            code,
        )
    if code == _NO_PERMISSION:
        return NoPermissionError(f"{action}: permission denied by NVML", PRIVILEGE_REMEDY, code)
    if code == _NOT_SUPPORTED:
        need = REQUIREMENTS.get(fn_name, "a GPU and driver that support it")
        return NotSupportedError(
            f"{action} is not supported on this GPU", f"this needs {need}; skip it", code
        )
    if code == _FUNCTION_NOT_FOUND:
        return NotSupportedError(
            f"{action}: the installed NVIDIA driver has no {fn_name}",
            "update the NVIDIA driver",
            code,
        )
    if code == _GPU_IS_LOST:
        return GpuLostError(
            f"{action}: the GPU is lost (fell off the bus or stopped answering)",
            "check `nvidia-smi` and the kernel log; the GPU may need a reset by an administrator",
            code,
        )
    return DeviceError(f"{action} failed: NVML error {code} ({err})", "", code)


# --- backends, one per process each --------------------------------------------------------------

_lock = threading.Lock()
_real: NvmlBackend | None = None
_sims: dict[str, NvmlBackend] = {}


def real_backend() -> NvmlBackend:
    """The real driver through a private copy of pynvml (initialised once): the NVML switch,
    which routes the global ``pynvml`` to a simulated node, never hides a real GPU from us.

    Raises :class:`DriverNotFoundError` when there is no NVIDIA driver.
    """
    global _real
    with _lock:
        if _real is None:
            backend = NvmlBackend(fresh_pynvml())
            backend.call("nvmlInit", what="initialising NVML")
            _real = backend
        return _real


def sim_backend(spec: GpuSpec, *, noise: bool = True, units: int = 1) -> NvmlBackend:
    """The simulated library for a node of ``units`` GPUs of ``spec`` (one per spec source and
    node size per process, initialised).

    Every device opened on the same selection in one process shares one simulated GPU, hence one
    virtual clock. Unit ``i`` is the same unit (UUID, state file) in every node size.
    """
    with _lock:
        key = f"{units}x{spec.source}"
        backend = _sims.get(key)
        if backend is None:
            lib = SimulatedNvmlLibrary([SimulatedGpu(spec, i, noise=noise) for i in range(units)])
            backend = NvmlBackend(load_pynvml(lib), lib)
            backend.call("nvmlInit", what="initialising the simulated NVML")
            _sims[key] = backend
        return backend


def shared_backend() -> NvmlBackend | None:
    """The shared simulated node that ``WATTBENCH_SIM_NVML`` names (what other NVML tools see),
    through the simulator service; None when the variable is unset."""
    from wattbench.profiler.sim.client import shared_library
    from wattbench.profiler.sim.node import from_env

    name = from_env()
    if name is None:
        return None
    with _lock:
        key = f"shared:{name.text}"
        backend = _sims.get(key)
        if backend is None:
            lib = shared_library(name)
            backend = NvmlBackend(load_pynvml(lib), lib)
            backend.call("nvmlInit", what="initialising the shared simulated NVML")
            _sims[key] = backend
        return backend


_before_shutdown: list[Callable[[], None]] = []


def before_shutdown(step: Callable[[], None]) -> None:
    """Run ``step`` at the start of every :func:`shutdown_all`, while NVML still answers."""
    if step not in _before_shutdown:
        _before_shutdown.append(step)


def shutdown_all() -> None:
    """nvmlShutdown every backend this process opened (simulated GPUs persist their state).

    Open actuation sessions are closed first -- their GPUs restored -- while NVML still answers
    (the safety layer registers that step with :func:`before_shutdown`).
    """
    global _real
    for step in list(_before_shutdown):
        step()
    interrupt: BaseException | None = None
    with _lock:
        for b in [*_sims.values(), *([_real] if _real else [])]:
            with contextlib.suppress(b.pynvml.NVMLError):
                b.pynvml.nvmlShutdown()
            raised = take_raised()  # nothing raised inside may wait for a later, unrelated call
            if isinstance(raised, WattbenchError):  # e.g. the state could not be saved
                print(f"wattbench: warning: {raised}", file=sys.stderr)
            elif raised is not None and interrupt is None:
                interrupt = raised
        _sims.clear()
        _real = None
    if interrupt is not None:
        raise interrupt
