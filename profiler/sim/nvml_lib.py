"""A simulated ``libnvidia-ml.so.1`` that stands where the real library stands beneath pynvml.

pynvml keeps the loaded library in its module global ``nvmlLib`` and looks functions up with
``getattr(nvmlLib, name)``. :class:`SimulatedNvmlLibrary` answers that lookup with real ctypes
function pointers (``CFUNCTYPE`` callbacks), so pynvml's own wrappers run unchanged: the same
ctypes argument objects, ``byref`` outputs, return codes and the two-call INSUFFICIENT_SIZE
protocol as with a real driver. A function the simulator does not implement is absent, so pynvml
raises ``NVMLError_FunctionNotFound`` -- a missing function fails loudly.

The library does not import pynvml: it implements the C ABI with its own struct layouts.
Behaviour follows the NVML reference where it is documented, and is stated here where modelled:

* setters need root (see ``WATTBENCH_SIM_PRIVILEGE``) and answer NO_PERMISSION otherwise;
* ``nvmlDeviceSetGpuLockedClocks``: min > max, values outside the supported range, or numeric
  mixed with symbolic (NVML_CLOCK_LIMIT_ID_*) answer INVALID_ARGUMENT; in-range values snap to the
  nearest supported clock (as the driver does);
* ``nvmlDeviceSetPowerManagementLimit`` outside the constraints answers INVALID_ARGUMENT;
* ``nvmlDeviceGetSupportedGraphicsClocks`` for an unsupported memory clock answers NOT_FOUND.
"""

from __future__ import annotations

import ctypes
import importlib.util
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from ctypes import (
    POINTER,
    Structure,
    Union,
    c_char,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_longlong,
    c_uint,
    c_uint32,
    c_ulong,
    c_ulonglong,
    c_ushort,
    c_void_p,
    cast,
)
from types import ModuleType
from typing import Any, Concatenate, ParamSpec, TypeVar

from wattbench.profiler.errors import WattbenchError
from wattbench.profiler.sim.gpu import SimulatedGpu

# --- NVML constants (nvml.h) ---------------------------------------------------------------------
SUCCESS = 0
ERROR_UNINITIALIZED = 1
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_INSUFFICIENT_SIZE = 7
ERROR_ARGUMENT_VERSION_MISMATCH = 25
ERROR_UNKNOWN = 999

CLOCK_GRAPHICS, CLOCK_SM, CLOCK_MEM = 0, 1, 2
TEMPERATURE_GPU = 0
CLOCK_LIMIT_ID_RANGE_START = 0xFFFFFF00
CLOCK_LIMIT_ID_TDP = 0xFFFFFF01
CLOCK_LIMIT_ID_UNLIMITED = 0xFFFFFF02
FI_DEV_POWER_AVERAGE = 185
FI_DEV_POWER_INSTANT = 186
FI_DEV_ENERGY = 191
VALUE_TYPE_UNSIGNED_INT = 1
VALUE_TYPE_UNSIGNED_LONG_LONG = 3
ARCH_VOLTA, ARCH_AMPERE = 5, 7
ARCH_HOPPER = 9
#: struct versions as nvml.h builds them: sizeof(struct) | (version << 24)
TEMPERATURE_V1 = 0x100000C
MEMORY_V2 = 0x02000028
FEATURE_DISABLED, FEATURE_ENABLED = 0, 1
COMPUTEMODE_DEFAULT = 0
MEMORY_ERROR_TYPES = (0, 1)  # corrected, uncorrected
ECC_COUNTER_TYPES = (0, 1)  # volatile, aggregate
PCIE_UTIL_COUNTERS = (0, 1)  # TX bytes, RX bytes
#: encoder / decoder utilisation sampling period reported, us [U]
CODEC_SAMPLING_US = 167_000
#: compute capabilities whose GPUs support MIG (A100 / A30: 8.0; H100 / H200: 9.0)
MIG_CAPABLE_CC = ("8.0", "9.0")

_ERROR_STRINGS = {
    0: b"Success",
    1: b"Uninitialized",
    2: b"Invalid Argument",
    3: b"Not Supported",
    4: b"Insufficient Permissions",
    6: b"Not Found",
    7: b"Insufficient Size",
    25: b"Argument Version Mismatch",
    13: b"Function Not Found",
    999: b"Unknown Error",
}

_DEFERRED_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

_HANDLE_BASE = 0x5157_0000  # handles are opaque non-null pointers: base + device index

# Setters: counted in the state file on every call (tests prove observe-only mode calls none).
SETTERS = (
    "nvmlDeviceSetGpuLockedClocks",
    "nvmlDeviceResetGpuLockedClocks",
    "nvmlDeviceSetMemoryLockedClocks",
    "nvmlDeviceResetMemoryLockedClocks",
    "nvmlDeviceSetPowerManagementLimit",
    "nvmlDeviceSetPersistenceMode",
)


# --- C struct layouts ----------------------------------------------------------------------------
class _PciInfo(Structure):  # nvmlPciInfo_t (v3)
    _fields_ = [
        ("busIdLegacy", c_char * 16),
        ("domain", c_uint),
        ("bus", c_uint),
        ("device", c_uint),
        ("pciDeviceId", c_uint),
        ("pciSubSystemId", c_uint),
        ("busId", c_char * 32),
    ]


class _Value(Union):  # nvmlValue_t
    _fields_ = [
        ("dVal", c_double),
        ("uiVal", c_uint),
        ("ulVal", c_ulong),
        ("ullVal", c_ulonglong),
        ("sllVal", c_longlong),
        ("siVal", c_int),
        ("usVal", c_ushort),
    ]


class _FieldValue(Structure):  # nvmlFieldValue_t
    _fields_ = [
        ("fieldId", c_uint32),
        ("scopeId", c_uint32),
        ("timestamp", c_int64),
        ("latencyUsec", c_int64),
        ("valueType", c_int),
        ("nvmlReturn", c_int),
        ("value", _Value),
    ]


class _ProcessInfo(Structure):  # nvmlProcessInfo_v2_t == v3
    _fields_ = [
        ("pid", c_uint),
        ("usedGpuMemory", c_ulonglong),
        ("gpuInstanceId", c_uint),
        ("computeInstanceId", c_uint),
    ]


class _Memory(Structure):  # nvmlMemory_t
    _fields_ = [("total", c_ulonglong), ("free", c_ulonglong), ("used", c_ulonglong)]


class _MemoryV2(Structure):  # nvmlMemory_v2_t
    _fields_ = [
        ("version", c_uint),
        ("total", c_ulonglong),
        ("reserved", c_ulonglong),
        ("free", c_ulonglong),
        ("used", c_ulonglong),
    ]


class _Temperature(Structure):  # nvmlTemperature_v1_t
    _fields_ = [("version", c_uint), ("sensorType", c_int), ("temperature", c_int)]


class _Utilization(Structure):  # nvmlUtilization_t
    _fields_ = [("gpu", c_uint), ("memory", c_uint)]


def _out(ptr: int, ctype):
    """Write access to an output pointer passed by the caller."""
    return cast(ptr, POINTER(ctype))


def _write_str(buf: int, length: int, value: str) -> int:
    data = value.encode()
    if len(data) + 1 > length:
        return ERROR_INSUFFICIENT_SIZE
    ctypes.memmove(buf, data + b"\0", len(data) + 1)
    return SUCCESS


def _parse_bus_id(text: str) -> tuple[int, int, int, int] | None:
    """'[domain:]bus:device.function' (hex) -> integers, or None if malformed."""
    try:
        head, func = text.strip().rsplit(".", 1)
        parts = head.split(":")
        if len(parts) == 2:
            parts.insert(0, "0")
        domain, bus, dev = (int(x, 16) for x in parts)
        return domain, bus, dev, int(func, 16)
    except ValueError:
        return None


#: exceptions raised inside calls that must reach the user: what signal handlers raise
#: (KeyboardInterrupt, Terminated) and wattbench errors (an unusable state folder). They cannot
#: cross the C boundary, so they wait here for the caller (:func:`take_raised`).
_raised: list[BaseException] = []


def take_raised() -> BaseException | None:
    """The first such exception raised inside a call since the last take (the rest are
    dropped: one is enough), or None. The device layer raises it as soon as the call is back in
    Python, in place of the cut-short call's result."""
    if not _raised:
        return None
    first = _raised[0]
    _raised.clear()
    return first


def _install_unraisable_hook() -> None:
    """A handler can also run on entry to a callback, before any ``try``: ctypes then reports the
    exception as unraisable and drops it. Keep it for :func:`take_raised` instead."""
    previous = sys.unraisablehook
    if getattr(previous, "_wattbench_sim", False):
        return

    def hook(unraisable) -> None:
        exc = unraisable.exc_value
        if exc is not None and not isinstance(exc, Exception):
            _raised.append(exc)
            return
        previous(unraisable)

    hook._wattbench_sim = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


_EXPORTS: dict[str, tuple[str, tuple[type, ...]]] = {}

_Method = TypeVar("_Method", bound=Callable[..., int])
_Args = ParamSpec("_Args")


def _export(name: str, *argtypes: type) -> Callable[[_Method], _Method]:
    """Register a method as the C function ``name`` with the given argument types."""

    def deco(fn: _Method) -> _Method:
        _EXPORTS[name] = (fn.__name__, argtypes)
        return fn

    return deco


def _device_call(
    fn: Callable[Concatenate[SimulatedNvmlLibrary, SimulatedGpu, _Args], int],
) -> Callable[Concatenate[SimulatedNvmlLibrary, int | None, _Args], int]:
    """Resolve the handle argument to a SimulatedGpu (INVALID_ARGUMENT if it is not one)."""

    def wrapper(
        self: SimulatedNvmlLibrary, handle: int | None, *args: _Args.args, **kwargs: _Args.kwargs
    ) -> int:
        gpu = self._gpu(handle)
        if gpu is None:
            return ERROR_INVALID_ARGUMENT
        return fn(self, gpu, *args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


def _nearest(values: Sequence[int], target: int) -> int:
    """The value nearest ``target``; between two as near, the higher."""
    return min(values, key=lambda c: (abs(c - target), -c))


_P = c_void_p  # every pointer argument, cast to its real type inside the function


class SimulatedNvmlLibrary:
    """The simulated NVML shared library over a list of :class:`SimulatedGpu`."""

    def __init__(self, gpus: list[SimulatedGpu], driver_version: str | None = None) -> None:
        if not gpus:
            raise ValueError("a simulated NVML library needs at least one GPU")
        self.gpus = gpus
        self.driver_version = driver_version or gpus[0].spec.identity.driver_version
        self.cuda_driver_version = gpus[0].spec.identity.cuda_driver_version
        self._init_count = 0
        self._lock = threading.Lock()
        self._error_buffers = {k: ctypes.create_string_buffer(v) for k, v in _ERROR_STRINGS.items()}
        self._functions: dict[str, Callable] = {}
        _install_unraisable_hook()
        for cname, (method, argtypes) in _EXPORTS.items():
            restype = c_void_p if cname == "nvmlErrorString" else c_int
            proto = ctypes.CFUNCTYPE(restype, *argtypes)
            self._functions[cname] = proto(self._guard(cname, getattr(self, method)))

    def __getattr__(self, name: str):
        # Called only for names not found normally: NVML functions live in _functions.
        functions = self.__dict__.get("_functions", {})
        if name in functions:
            return functions[name]
        raise AttributeError(name)

    @property
    def function_names(self) -> list[str]:
        return sorted(self._functions)

    def _guard(self, cname: str, fn: Callable) -> Callable:
        needs_init = cname not in ("nvmlInit_v2", "nvmlInitWithFlags", "nvmlErrorString")
        setter = cname in SETTERS

        def call(*args):
            # A real NVML call is C code: signals are handled when it returns, never inside it.
            # Block them for the duration; pending ones are delivered on unblock.
            # (read the old mask first: pthread_sigmask runs pending handlers after a change,
            # so the call that blocks can raise; the mask must be put back even then)
            old_mask = None
            try:
                old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
                signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
                if needs_init and self._init_count == 0:
                    return ERROR_UNINITIALIZED
                if setter:
                    gpu = self._gpu(args[0])
                    if gpu is None:
                        return ERROR_INVALID_ARGUMENT
                    gpu.count_setter_call(cname)
                return fn(*args)
            except WattbenchError as exc:  # one for the user: kept for the caller
                _raised.append(exc)
                return ERROR_UNKNOWN
            except Exception:  # an exception must never cross the C boundary
                traceback.print_exc()
                return ERROR_UNKNOWN
            except BaseException as exc:  # a signal handler's: the signal arrived before the block
                _raised.append(exc)
                return ERROR_UNKNOWN
            finally:
                if old_mask is not None:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

        return call

    def _gpu(self, handle: int | None) -> SimulatedGpu | None:
        if handle is None:
            return None
        i = handle - _HANDLE_BASE
        return self.gpus[i] if 0 <= i < len(self.gpus) else None

    # --- init / system ---------------------------------------------------------------------------

    @_export("nvmlInit_v2")
    def _init(self) -> int:
        with self._lock:
            self._init_count += 1
        return SUCCESS

    @_export("nvmlInitWithFlags", c_uint)
    def _init_with_flags(self, flags: int) -> int:
        return self._init()

    @_export("nvmlShutdown")
    def _shutdown(self) -> int:
        with self._lock:
            self._init_count -= 1
            last = self._init_count == 0
        if last:
            for g in self.gpus:
                g.save()
        return SUCCESS

    @_export("nvmlErrorString", c_int)
    def _error_string(self, code: int) -> int:
        buf = self._error_buffers.get(code, self._error_buffers[999])
        return ctypes.addressof(buf)

    @_export("nvmlSystemGetDriverVersion", _P, c_uint)
    def _driver_version(self, buf: int, length: int) -> int:
        return _write_str(buf, length, self.driver_version)

    @_export("nvmlSystemGetNVMLVersion", _P, c_uint)
    def _nvml_version(self, buf: int, length: int) -> int:
        return _write_str(buf, length, "13." + self.driver_version)

    @_export("nvmlSystemGetCudaDriverVersion", _P)
    def _cuda_version(self, out: int) -> int:
        _out(out, c_int)[0] = self.cuda_driver_version
        return SUCCESS

    @_export("nvmlSystemGetCudaDriverVersion_v2", _P)
    def _cuda_version_v2(self, out: int) -> int:
        return self._cuda_version(out)

    # --- handles and identity --------------------------------------------------------------------

    @_export("nvmlDeviceGetCount_v2", _P)
    def _count(self, out: int) -> int:
        _out(out, c_uint)[0] = len(self.gpus)
        return SUCCESS

    @_export("nvmlDeviceGetHandleByIndex_v2", c_uint, _P)
    def _by_index(self, index: int, out: int) -> int:
        if index >= len(self.gpus):
            return ERROR_INVALID_ARGUMENT
        _out(out, c_void_p)[0] = _HANDLE_BASE + index
        return SUCCESS

    @_export("nvmlDeviceGetHandleByUUID", c_char_p, _P)
    def _by_uuid(self, uuid: bytes, out: int) -> int:
        for g in self.gpus:
            if g.uuid.encode() == uuid:
                _out(out, c_void_p)[0] = _HANDLE_BASE + g.index
                return SUCCESS
        return ERROR_NOT_FOUND

    @_export("nvmlDeviceGetHandleByPciBusId_v2", c_char_p, _P)
    def _by_pci(self, bus_id: bytes, out: int) -> int:
        wanted = _parse_bus_id(bus_id.decode())
        if wanted is None:
            return ERROR_INVALID_ARGUMENT
        for g in self.gpus:
            if _parse_bus_id(g.pci_bus_id) == wanted:
                _out(out, c_void_p)[0] = _HANDLE_BASE + g.index
                return SUCCESS
        return ERROR_NOT_FOUND

    @_export("nvmlDeviceGetIndex", _P, _P)
    @_device_call
    def _index(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_uint)[0] = gpu.index
        return SUCCESS

    @_export("nvmlDeviceGetName", _P, _P, c_uint)
    @_device_call
    def _name(self, gpu: SimulatedGpu, buf: int, length: int) -> int:
        return _write_str(buf, length, gpu.spec.identity.name)

    @_export("nvmlDeviceGetUUID", _P, _P, c_uint)
    @_device_call
    def _uuid(self, gpu: SimulatedGpu, buf: int, length: int) -> int:
        return _write_str(buf, length, gpu.uuid)

    @_export("nvmlDeviceGetSerial", _P, _P, c_uint)
    @_device_call
    def _serial(self, gpu: SimulatedGpu, buf: int, length: int) -> int:
        return _write_str(buf, length, gpu.serial)

    @_export("nvmlDeviceGetModuleId", _P, _P)
    @_device_call
    def _module_id(self, gpu: SimulatedGpu, out: int) -> int:
        # [U] the unit's place on its baseboard: index + 1 (HGX boards number modules 1-8)
        _out(out, c_uint)[0] = gpu.index + 1
        return SUCCESS

    @_export("nvmlDeviceGetVbiosVersion", _P, _P, c_uint)
    @_device_call
    def _vbios(self, gpu: SimulatedGpu, buf: int, length: int) -> int:
        return _write_str(buf, length, gpu.spec.identity.vbios_version)

    @_export("nvmlDeviceGetPciInfo_v3", _P, _P)
    @_device_call
    def _pci(self, gpu: SimulatedGpu, out: int) -> int:
        info = _out(out, _PciInfo).contents
        bus = int(gpu.pci_bus_id.split(":")[1], 16)
        info.busIdLegacy = gpu.pci_bus_id[-12:].encode()
        info.domain, info.bus, info.device = 0, bus, 0
        info.pciDeviceId = gpu.spec.identity.pci_device_id
        info.pciSubSystemId = 0
        info.busId = gpu.pci_bus_id.encode()
        return SUCCESS

    @_export("nvmlDeviceGetArchitecture", _P, _P)
    @_device_call
    def _arch(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_uint)[0] = gpu.spec.identity.architecture_id
        return SUCCESS

    @_export("nvmlDeviceGetCudaComputeCapability", _P, _P, _P)
    @_device_call
    def _cc(self, gpu: SimulatedGpu, major: int, minor: int) -> int:
        ma, mi = gpu.spec.identity.compute_capability.split(".")
        _out(major, c_int)[0], _out(minor, c_int)[0] = int(ma), int(mi)
        return SUCCESS

    @_export("nvmlDeviceGetMemoryInfo", _P, _P)
    @_device_call
    def _memory(self, gpu: SimulatedGpu, out: int) -> int:
        m = _out(out, _Memory).contents
        m.total = gpu.spec.identity.memory_total_mib * 2**20
        m.used = sum(p.get("used_memory_bytes", 0) for p in gpu.processes())
        m.free = max(0, m.total - m.used)
        return SUCCESS

    @_export("nvmlDeviceGetMemoryInfo_v2", _P, _P)
    @_device_call
    def _memory_v2(self, gpu: SimulatedGpu, out: int) -> int:
        m = _out(out, _MemoryV2).contents
        if m.version != MEMORY_V2:
            return ERROR_ARGUMENT_VERSION_MISMATCH
        m.total = gpu.spec.identity.memory_total_mib * 2**20
        m.reserved = 0  # [U] the driver's reservation is not modelled
        m.used = sum(p.get("used_memory_bytes", 0) for p in gpu.processes())
        m.free = max(0, m.total - m.reserved - m.used)
        return SUCCESS

    # --- state that tools display (constant on a simulated data-centre GPU) ----------------------

    @_export("nvmlDeviceGetPersistenceMode", _P, _P)
    @_device_call
    def _persistence(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_int)[0] = FEATURE_ENABLED if gpu.persistence_enabled() else FEATURE_DISABLED
        return SUCCESS

    @_export("nvmlDeviceSetPersistenceMode", _P, c_uint)
    @_device_call
    def _set_persistence(self, gpu: SimulatedGpu, mode: int) -> int:
        if gpu.privilege != "root":
            return ERROR_NO_PERMISSION
        if mode not in (FEATURE_DISABLED, FEATURE_ENABLED):
            return ERROR_INVALID_ARGUMENT
        gpu.update_settings(persistence_mode=None if mode == FEATURE_ENABLED else False)
        return SUCCESS

    @_export("nvmlDeviceGetComputeMode", _P, _P)
    @_device_call
    def _compute_mode(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_int)[0] = COMPUTEMODE_DEFAULT
        return SUCCESS

    @_export("nvmlDeviceGetDisplayMode", _P, _P)
    @_device_call
    def _display_mode(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_int)[0] = FEATURE_DISABLED  # data-centre boards drive no display
        return SUCCESS

    @_export("nvmlDeviceGetDisplayActive", _P, _P)
    @_device_call
    def _display_active(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_int)[0] = FEATURE_DISABLED
        return SUCCESS

    @_export("nvmlDeviceGetDriverModel_v2", _P, _P, _P)
    @_device_call
    def _driver_model(self, gpu: SimulatedGpu, current: int, pending: int) -> int:
        return ERROR_NOT_SUPPORTED  # Windows only (NVML API reference); the simulator is Linux

    @_export("nvmlDeviceGetFanSpeed", _P, _P)
    @_device_call
    def _fan_speed(self, gpu: SimulatedGpu, out: int) -> int:
        # the built-in boards are passively cooled (SXM modules; PCIe A100 and L4: "passive"
        # thermal solution in their datasheets): no fan to report
        return ERROR_NOT_SUPPORTED

    @_export("nvmlDeviceGetConfComputeMemSizeInfo", _P, _P)
    @_device_call
    def _conf_compute_mem(self, gpu: SimulatedGpu, out: int) -> int:
        # [U] confidential computing is not modelled: answered as a GPU without it
        return ERROR_NOT_SUPPORTED

    @_export("nvmlDeviceGetMigMode", _P, _P, _P)
    @_device_call
    def _mig_mode(self, gpu: SimulatedGpu, current: int, pending: int) -> int:
        if gpu.spec.identity.compute_capability not in MIG_CAPABLE_CC:
            return ERROR_NOT_SUPPORTED
        _out(current, c_uint)[0] = FEATURE_DISABLED  # never enabled: MIG is not simulated
        _out(pending, c_uint)[0] = FEATURE_DISABLED
        return SUCCESS

    @_export("nvmlDeviceIsMigDeviceHandle", _P, _P)
    @_device_call
    def _is_mig_handle(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_uint)[0] = 0
        return SUCCESS

    @_export("nvmlDeviceGetC2cModeInfoV", _P, _P)
    @_device_call
    def _c2c(self, gpu: SimulatedGpu, out: int) -> int:
        if gpu.spec.identity.architecture_id < ARCH_HOPPER:
            return ERROR_NOT_SUPPORTED
        _out(out, c_uint)[0] = 0  # C2C is a Grace Hopper link; these are PCIe / SXM boards
        return SUCCESS

    @_export("nvmlDeviceGetTotalEccErrors", _P, c_uint, c_uint, _P)
    @_device_call
    def _ecc_errors(self, gpu: SimulatedGpu, error_type: int, counter: int, out: int) -> int:
        if error_type not in MEMORY_ERROR_TYPES or counter not in ECC_COUNTER_TYPES:
            return ERROR_INVALID_ARGUMENT
        _out(out, c_ulonglong)[0] = 0  # no memory errors are simulated
        return SUCCESS

    @_export("nvmlDeviceGetPcieThroughput", _P, c_uint, _P)
    @_device_call
    def _pcie_throughput(self, gpu: SimulatedGpu, counter: int, out: int) -> int:
        if counter not in PCIE_UTIL_COUNTERS:
            return ERROR_INVALID_ARGUMENT
        _out(out, c_uint)[0] = 0  # [U] host traffic is not simulated (kernels run on-device)
        return SUCCESS

    @_export("nvmlDeviceGetEncoderUtilization", _P, _P, _P)
    @_device_call
    def _encoder(self, gpu: SimulatedGpu, util: int, period: int) -> int:
        _out(util, c_uint)[0], _out(period, c_uint)[0] = 0, CODEC_SAMPLING_US
        return SUCCESS

    @_export("nvmlDeviceGetDecoderUtilization", _P, _P, _P)
    @_device_call
    def _decoder(self, gpu: SimulatedGpu, util: int, period: int) -> int:
        _out(util, c_uint)[0], _out(period, c_uint)[0] = 0, CODEC_SAMPLING_US
        return SUCCESS

    # --- activity --------------------------------------------------------------------------------

    @_export("nvmlDeviceGetUtilizationRates", _P, _P)
    @_device_call
    def _utilization(self, gpu: SimulatedGpu, out: int) -> int:
        u = _out(out, _Utilization).contents
        u.gpu, u.memory = gpu.utilization_pct()
        return SUCCESS

    @_export("nvmlDeviceGetPerformanceState", _P, _P)
    @_device_call
    def _pstate(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_int)[0] = gpu.performance_state()
        return SUCCESS

    # --- capabilities ----------------------------------------------------------------------------

    @staticmethod
    def _two_call(values: list[int], count_ptr: int, array_ptr: int | None) -> int:
        count = _out(count_ptr, c_uint)
        if not array_ptr or count[0] < len(values):
            count[0] = len(values)
            return ERROR_INSUFFICIENT_SIZE
        arr = _out(array_ptr, c_uint)
        for i, v in enumerate(values):
            arr[i] = v
        count[0] = len(values)
        return SUCCESS

    @_export("nvmlDeviceGetSupportedMemoryClocks", _P, _P, _P)
    @_device_call
    def _mem_clocks(self, gpu: SimulatedGpu, count: int, arr: int | None) -> int:
        return self._two_call(list(gpu.spec.clocks.memory_mhz), count, arr)

    @_export("nvmlDeviceGetSupportedGraphicsClocks", _P, c_uint, _P, _P)
    @_device_call
    def _sm_clocks(self, gpu: SimulatedGpu, mem_mhz: int, count: int, arr: int | None) -> int:
        if mem_mhz not in gpu.spec.clocks.memory_mhz:
            return ERROR_NOT_FOUND
        return self._two_call(gpu.spec.clocks.sm_clocks_mhz(mem_mhz), count, arr)

    @_export("nvmlDeviceGetPowerManagementLimitConstraints", _P, _P, _P)
    @_device_call
    def _limit_constraints(self, gpu: SimulatedGpu, lo: int, hi: int) -> int:
        _out(lo, c_uint)[0] = int(gpu.spec.power.limit_w_min * 1000)
        _out(hi, c_uint)[0] = int(gpu.spec.power.limit_w_max * 1000)
        return SUCCESS

    @_export("nvmlDeviceGetPowerManagementDefaultLimit", _P, _P)
    @_device_call
    def _default_limit(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_uint)[0] = int(gpu.spec.power.limit_w_default * 1000)
        return SUCCESS

    @_export("nvmlDeviceGetPowerManagementLimit", _P, _P)
    @_device_call
    def _limit(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_uint)[0] = gpu.power_limit_mw()
        return SUCCESS

    @_export("nvmlDeviceGetEnforcedPowerLimit", _P, _P)
    @_device_call
    def _enforced_limit(self, gpu: SimulatedGpu, out: int) -> int:
        return self._limit(_HANDLE_BASE + gpu.index, out)

    @_export("nvmlDeviceGetMaxClockInfo", _P, c_uint, _P)
    @_device_call
    def _max_clock(self, gpu: SimulatedGpu, clock: int, out: int) -> int:
        if clock in (CLOCK_GRAPHICS, CLOCK_SM):
            _out(out, c_uint)[0] = gpu.spec.clocks.sm_mhz_max
        elif clock == CLOCK_MEM:
            _out(out, c_uint)[0] = gpu.spec.clocks.memory_mhz_max
        else:
            return ERROR_NOT_SUPPORTED
        return SUCCESS

    # --- readings --------------------------------------------------------------------------------

    @_export("nvmlDeviceGetClockInfo", _P, c_uint, _P)
    @_device_call
    def _clock(self, gpu: SimulatedGpu, clock: int, out: int) -> int:
        if clock in (CLOCK_GRAPHICS, CLOCK_SM):
            _out(out, c_uint)[0] = gpu.sm_clock_mhz()
        elif clock == CLOCK_MEM:
            _out(out, c_uint)[0] = gpu.mem_clock_mhz()
        else:
            return ERROR_NOT_SUPPORTED
        return SUCCESS

    @_export("nvmlDeviceGetTemperature", _P, c_uint, _P)
    @_device_call
    def _temperature(self, gpu: SimulatedGpu, sensor: int, out: int) -> int:
        if sensor != TEMPERATURE_GPU:
            return ERROR_INVALID_ARGUMENT
        _out(out, c_uint)[0] = gpu.temperature_c()
        return SUCCESS

    @_export("nvmlDeviceGetTemperatureV", _P, _P)
    @_device_call
    def _temperature_v(self, gpu: SimulatedGpu, out: int) -> int:
        t = _out(out, _Temperature).contents
        if t.version != TEMPERATURE_V1:
            return ERROR_ARGUMENT_VERSION_MISMATCH
        if t.sensorType != TEMPERATURE_GPU:
            return ERROR_INVALID_ARGUMENT
        t.temperature = gpu.temperature_c()
        return SUCCESS

    @_export("nvmlDeviceGetPowerUsage", _P, _P)
    @_device_call
    def _power_usage(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_uint)[0] = gpu.power_usage_mw()
        return SUCCESS

    @_export("nvmlDeviceGetTotalEnergyConsumption", _P, _P)
    @_device_call
    def _energy(self, gpu: SimulatedGpu, out: int) -> int:
        if gpu.spec.identity.architecture_id < ARCH_VOLTA:
            return ERROR_NOT_SUPPORTED
        _out(out, c_ulonglong)[0] = gpu.energy_counter_mj()
        return SUCCESS

    @_export("nvmlDeviceGetFieldValues", _P, c_int, _P)
    @_device_call
    def _field_values(self, gpu: SimulatedGpu, count: int, values: int) -> int:
        arr = _out(values, _FieldValue)
        averaging = gpu.spec.sensors.power_average_s > 0
        for i in range(count):
            fv = arr[i]
            fv.timestamp = int(gpu.now_s * 1e6)
            fv.latencyUsec = 0
            supported = gpu.spec.sensors.field_values and fv.scopeId == 0
            if supported and fv.fieldId == FI_DEV_POWER_INSTANT:
                fv.valueType, fv.value.uiVal = (
                    VALUE_TYPE_UNSIGNED_INT,
                    round(gpu.instant_power_w() * 1000),
                )
            elif supported and fv.fieldId == FI_DEV_POWER_AVERAGE and averaging:
                # nvml.h: the 1-s average field is "Ampere (except GA100) or newer"
                fv.valueType, fv.value.uiVal = (
                    VALUE_TYPE_UNSIGNED_INT,
                    round(gpu.average_power_w() * 1000),
                )
            elif fv.fieldId == FI_DEV_ENERGY and fv.scopeId == 0:
                fv.valueType, fv.value.ullVal = (
                    VALUE_TYPE_UNSIGNED_LONG_LONG,
                    gpu.energy_counter_mj(),
                )
            else:
                fv.nvmlReturn = ERROR_NOT_SUPPORTED
                continue
            fv.nvmlReturn = SUCCESS
        return SUCCESS

    @_export("nvmlDeviceGetCurrentClocksEventReasons", _P, _P)
    @_device_call
    def _reasons(self, gpu: SimulatedGpu, out: int) -> int:
        _out(out, c_ulonglong)[0] = gpu.clock_event_reasons()
        return SUCCESS

    @_export("nvmlDeviceGetCurrentClocksThrottleReasons", _P, _P)
    def _throttle_reasons(self, handle: int, out: int) -> int:
        return self._reasons(handle, out)

    def _processes(self, gpu: SimulatedGpu, count: int, arr: int | None) -> int:
        procs = gpu.processes()
        n = _out(count, c_uint)
        if not procs:
            n[0] = 0
            return SUCCESS
        if not arr or n[0] < len(procs):
            n[0] = len(procs)
            return ERROR_INSUFFICIENT_SIZE
        out = _out(arr, _ProcessInfo)
        for i, p in enumerate(procs):
            out[i].pid = int(p["pid"])
            out[i].usedGpuMemory = int(p.get("used_memory_bytes", 0))
            out[i].gpuInstanceId = out[i].computeInstanceId = 0xFFFFFFFF
        n[0] = len(procs)
        return SUCCESS

    @_export("nvmlDeviceGetComputeRunningProcesses_v3", _P, _P, _P)
    @_device_call
    def _compute_procs(self, gpu: SimulatedGpu, count: int, arr: int | None) -> int:
        return self._processes(gpu, count, arr)

    @_export("nvmlDeviceGetComputeRunningProcesses_v2", _P, _P, _P)
    def _compute_procs_v2(self, handle: int, count: int, arr: int | None) -> int:
        return self._compute_procs(handle, count, arr)

    @_export("nvmlDeviceGetGraphicsRunningProcesses_v3", _P, _P, _P)
    @_device_call
    def _graphics_procs(self, gpu: SimulatedGpu, count: int, arr: int | None) -> int:
        _out(count, c_uint)[0] = 0  # simulated GPUs run no graphics contexts
        return SUCCESS

    @_export("nvmlDeviceGetGraphicsRunningProcesses_v2", _P, _P, _P)
    def _graphics_procs_v2(self, handle: int, count: int, arr: int | None) -> int:
        return self._graphics_procs(handle, count, arr)

    # --- setters ---------------------------------------------------------------------------------

    @staticmethod
    def _may_set(gpu: SimulatedGpu, what: str) -> bool:
        return gpu.privilege == "root" or (gpu.privilege == "power-only" and what == "power")

    @_export("nvmlDeviceSetGpuLockedClocks", _P, c_uint, c_uint)
    @_device_call
    def _lock_sm(self, gpu: SimulatedGpu, lo: int, hi: int) -> int:
        if gpu.spec.identity.architecture_id < ARCH_VOLTA:
            return ERROR_NOT_SUPPORTED
        if not self._may_set(gpu, "clocks"):
            return ERROR_NO_PERMISSION
        sym_lo, sym_hi = lo >= CLOCK_LIMIT_ID_RANGE_START, hi >= CLOCK_LIMIT_ID_RANGE_START
        clocks = gpu.spec.clocks
        if sym_lo or sym_hi:
            if not (sym_lo and sym_hi) or {lo, hi} - {CLOCK_LIMIT_ID_TDP, CLOCK_LIMIT_ID_UNLIMITED}:
                return ERROR_INVALID_ARGUMENT
            if lo == hi == CLOCK_LIMIT_ID_UNLIMITED:
                gpu.update_settings(sm_locked_mhz=None)
                return SUCCESS
            bounds = {CLOCK_LIMIT_ID_TDP: clocks.sm_mhz_max, CLOCK_LIMIT_ID_UNLIMITED: None}
            lo_mhz = bounds[lo] or clocks.sm_mhz_min
            hi_mhz = bounds[hi] or clocks.sm_mhz_max
            gpu.update_settings(sm_locked_mhz=(lo_mhz, hi_mhz))
            return SUCCESS
        if lo > hi or lo < clocks.sm_mhz_min or hi > clocks.sm_mhz_max:
            return ERROR_INVALID_ARGUMENT
        supported = clocks.sm_clocks_mhz()
        snap = [_nearest(supported, v) for v in (lo, hi)]
        gpu.update_settings(sm_locked_mhz=(snap[0], snap[1]))
        return SUCCESS

    @_export("nvmlDeviceResetGpuLockedClocks", _P)
    @_device_call
    def _reset_sm(self, gpu: SimulatedGpu) -> int:
        if not self._may_set(gpu, "clocks"):
            return ERROR_NO_PERMISSION
        gpu.update_settings(sm_locked_mhz=None)
        return SUCCESS

    @_export("nvmlDeviceSetMemoryLockedClocks", _P, c_uint, c_uint)
    @_device_call
    def _lock_mem(self, gpu: SimulatedGpu, lo: int, hi: int) -> int:
        if gpu.spec.identity.architecture_id < ARCH_AMPERE:
            return ERROR_NOT_SUPPORTED
        if not self._may_set(gpu, "clocks"):
            return ERROR_NO_PERMISSION
        mem = gpu.spec.clocks.memory_mhz
        if lo > hi or lo < min(mem) or hi > max(mem):
            return ERROR_INVALID_ARGUMENT
        snap = [_nearest(mem, v) for v in (lo, hi)]
        gpu.update_settings(mem_locked_mhz=(snap[0], snap[1]))
        return SUCCESS

    @_export("nvmlDeviceResetMemoryLockedClocks", _P)
    @_device_call
    def _reset_mem(self, gpu: SimulatedGpu) -> int:
        if gpu.spec.identity.architecture_id < ARCH_AMPERE:
            return ERROR_NOT_SUPPORTED
        if not self._may_set(gpu, "clocks"):
            return ERROR_NO_PERMISSION
        gpu.update_settings(mem_locked_mhz=None)
        return SUCCESS

    @_export("nvmlDeviceSetPowerManagementLimit", _P, c_uint)
    @_device_call
    def _set_limit(self, gpu: SimulatedGpu, limit_mw: int) -> int:
        if not self._may_set(gpu, "power"):
            return ERROR_NO_PERMISSION
        p = gpu.spec.power
        if not p.limit_w_min * 1000 <= limit_mw <= p.limit_w_max * 1000:
            return ERROR_INVALID_ARGUMENT
        default = int(p.limit_w_default * 1000)
        gpu.update_settings(power_limit_mw=None if limit_mw == default else int(limit_mw))
        return SUCCESS


# --- putting the library beneath pynvml ----------------------------------------------------------

_copies = 0


def fresh_pynvml() -> ModuleType:
    """A private instance of the real pynvml module, executed afresh: its ``nvmlLib`` is its own
    (None until ``nvmlInit`` loads the driver's library, unless a simulated one is put there).

    wattbench's devices use such copies, never the global ``pynvml``, so simulated and real GPUs
    can be used in one process, and the NVML switch (``WATTBENCH_SIM_NVML``, which routes the
    global module to the shared simulated node) never hides a real GPU from wattbench.
    """
    origin = importlib.util.find_spec("pynvml")
    if origin is None or origin.origin is None:  # pragma: no cover - nvidia-ml-py is a dependency
        raise ImportError("pynvml (nvidia-ml-py) is not installed")
    # pynvml looks itself up in sys.modules while importing, so register the copy under its own
    # name first.
    global _copies
    _copies += 1
    name = f"_wattbench_pynvml_{_copies}"
    spec = importlib.util.spec_from_file_location(name, origin.origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_pynvml(lib: SimulatedNvmlLibrary) -> ModuleType:
    """A private instance of pynvml (:func:`fresh_pynvml`) whose ``nvmlLib`` is ``lib``."""
    return install(fresh_pynvml(), lib)


def install(pynvml_module: ModuleType | None, lib: SimulatedNvmlLibrary) -> ModuleType:
    """Put ``lib`` beneath an existing pynvml module (default: the global ``pynvml``).

    Lets other NVML-based tools run against a simulated GPU in the same process.
    """
    module: Any = pynvml_module  # pynvml ships no types: its attributes are set here
    if module is None:
        import pynvml

        module = pynvml
    module.nvmlLib = lib
    module._nvmlGetFunctionPointer_cache.clear()
    return module


__all__ = ["SETTERS", "SimulatedNvmlLibrary", "fresh_pynvml", "install", "load_pynvml"]
