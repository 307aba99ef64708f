"""The one device interface: identity, capabilities, readings and setters of a GPU over pynvml.

Real and simulated GPUs are both a :class:`Device`; the only difference is the
:class:`~wattbench.profiler.device.nvml.NvmlBackend` beneath. Units are converted once, here:
NVML's mW and mJ become W and J, and every name carries its unit.

Setters refuse to run when actuation is forbidden (``WATTBENCH_NO_ACTUATE=1`` or a device opened
observe-only): calling one then is a bug in the caller and raises
:class:`ActuationForbiddenError` before NVML is touched. Otherwise the first setter call opens the
GPU's actuation session if the caller has not: the original settings are journaled before
anything changes, and put back at the latest at exit. The safety layer above provides the
session: ``profiler/safety/guard.py`` registers its opener here when it is imported
(:func:`register_session_opener`), and without one every setter refuses -- no setter without a
journal, and no import of the layer above.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from wattbench.profiler.device.nvml import NvmlBackend
from wattbench.profiler.device.reasons import ClockEventReasons
from wattbench.profiler.errors import (
    ActuationForbiddenError,
    DeviceError,
    NotSupportedError,
    PowerLimitOutOfRangeError,
    UnsupportedClockError,
)
from wattbench.profiler.sim.gpu import SimulatedGpu

NO_ACTUATE_ENV = "WATTBENCH_NO_ACTUATE"

ARCHITECTURE_NAMES = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
}

# pynvml constants, kept here so the device layer reads the same on every pynvml version
_CLOCK_SM, _CLOCK_MEM = 1, 2
_TEMPERATURE_GPU = 0
_FI_POWER_AVERAGE, _FI_POWER_INSTANT = 185, 186


class ActuationSession(Protocol):
    """What a setter needs of a GPU's open actuation session (``safety.guard.ActuationGuard``)."""

    def mark_changed(self, knob: str) -> None: ...


#: opens (or returns) a device's actuation session, its settings journaled first
SessionOpener = Callable[["Device"], ActuationSession]

_session_opener: SessionOpener | None = None


def register_session_opener(opener: SessionOpener) -> None:
    """Make ``opener`` the way setters open a GPU's actuation session (the safety layer's hook)."""
    global _session_opener
    _session_opener = opener


def actuation_forbidden_by_env() -> bool:
    """True when ``WATTBENCH_NO_ACTUATE`` is set to anything but '', '0' or 'false'."""
    return os.environ.get(NO_ACTUATE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class DeviceIdentity:
    index: int
    name: str
    uuid: str
    pci_bus_id: str
    architecture: str
    compute_capability: str
    memory_total_mib: int
    driver_version: str
    cuda_driver_version: str  # "13.0"
    vbios_version: str
    simulated: bool
    spec_source: str | None = None  # for simulated devices: builtin:<key> or a file path
    serial: str | None = None  # the board serial, where NVML has it
    module_id: int | None = None  # the module's place on its baseboard (SXM), where NVML has it

    def __str__(self) -> str:
        sim = " [simulated]" if self.simulated else ""
        return f"{self.name}{sim} ({self.uuid}, {self.pci_bus_id}, {self.architecture})"


@dataclass(frozen=True)
class Capabilities:
    memory_clocks_mhz: tuple[int, ...]  # highest first
    sm_clocks_mhz: dict[int, tuple[int, ...]]  # memory clock -> SM clocks, highest first
    power_limit_w_min: float
    power_limit_w_max: float
    power_limit_w_default: float
    has_energy_counter: bool
    #: power fields nvmlDeviceGetFieldValues answers: "instant" (186), "average" (185, 1-s)
    power_fields: tuple[str, ...]

    @property
    def sm_clocks_mhz_all(self) -> tuple[int, ...]:
        return tuple(sorted({c for v in self.sm_clocks_mhz.values() for c in v}, reverse=True))


@dataclass(frozen=True)
class Reading:
    """One poll of the device's sensors."""

    power_w: float  # 1-s average where the GPU reports one, else instantaneous
    energy_j: float | None  # total-energy counter since driver load, None if unsupported
    sm_mhz: int
    mem_mhz: int
    temp_c: int
    reasons: ClockEventReasons = field(default_factory=lambda: ClockEventReasons(0))


class Device:
    """A GPU reached through NVML. Create with :func:`wattbench.profiler.device.open_device`."""

    def __init__(
        self, backend: NvmlBackend, index: int, selection: str, *, observe_only: bool = False
    ) -> None:
        self.backend = backend
        self.index = index
        self.selection = selection
        self.observe_only = observe_only
        self.handle = backend.call("nvmlDeviceGetHandleByIndex", index, what="opening the GPU")

    # --- plumbing --------------------------------------------------------------------------------

    def _nvml(self, fn_name: str, *args: Any, what: str | None = None) -> Any:
        return self.backend.call(fn_name, self.handle, *args, what=what)

    @property
    def simulated(self) -> SimulatedGpu | None:
        """The simulated GPU model behind this device, or None for a real GPU."""
        lib = self.backend.simulated
        return lib.gpus[self.index] if lib is not None else None

    @property
    def actuation_allowed(self) -> bool:
        return not (self.observe_only or actuation_forbidden_by_env())

    def _set(self, knob: str, fn_name: str, *args: Any, what: str) -> None:
        """Call an NVML setter inside this GPU's actuation session (opened, and the settings
        journaled, on first use); the session learns which knob changed."""
        if _session_opener is None:
            raise ActuationForbiddenError(
                f"refusing to change the GPU ({what}): no actuation session can journal its "
                "settings first",
                "import wattbench.profiler.safety before changing a GPU (it provides the sessions)",
            )
        session = _session_opener(self)
        self._nvml(fn_name, *args, what=what)
        session.mark_changed(knob)

    def _require_actuation(self, action: str) -> None:
        if not self.actuation_allowed:
            why = (
                f"{NO_ACTUATE_ENV} is set"
                if actuation_forbidden_by_env()
                else "the device was opened observe-only"
            )
            raise ActuationForbiddenError(
                f"refusing to {action}: {why}",
                "this is a wattbench bug (observe-only code must not call setters); please "
                "report it",
            )

    # --- identity and capabilities ---------------------------------------------------------------

    @functools.cached_property
    def identity(self) -> DeviceIdentity:
        cuda = self.backend.call("nvmlSystemGetCudaDriverVersion", what="reading the CUDA version")
        major, minor = self._nvml("nvmlDeviceGetCudaComputeCapability")
        arch = self._nvml("nvmlDeviceGetArchitecture")
        sim = self.simulated
        return DeviceIdentity(
            index=self.index,
            name=self._nvml("nvmlDeviceGetName"),
            uuid=self._nvml("nvmlDeviceGetUUID"),
            pci_bus_id=_text(self._nvml("nvmlDeviceGetPciInfo").busId),
            architecture=ARCHITECTURE_NAMES.get(arch, f"unknown({arch})"),
            compute_capability=f"{major}.{minor}",
            memory_total_mib=int(self._nvml("nvmlDeviceGetMemoryInfo").total // 2**20),
            driver_version=_text(self.backend.call("nvmlSystemGetDriverVersion")),
            cuda_driver_version=f"{cuda // 1000}.{(cuda % 1000) // 10}",
            vbios_version=_text(self._nvml("nvmlDeviceGetVbiosVersion")),
            simulated=sim is not None,
            spec_source=sim.spec.source if sim is not None else None,
            serial=self._optional("nvmlDeviceGetSerial", _text),
            module_id=self._optional("nvmlDeviceGetModuleId", int),
        )

    def _optional(self, fn_name: str, convert: Callable[[Any], Any]) -> Any:
        """An identity field some boards or drivers lack: None when NVML has none."""
        try:
            return convert(self._nvml(fn_name))
        except DeviceError:
            return None

    @functools.cached_property
    def capabilities(self) -> Capabilities:
        mem = tuple(sorted(self._nvml("nvmlDeviceGetSupportedMemoryClocks"), reverse=True))
        sm = {
            m: tuple(sorted(self._nvml("nvmlDeviceGetSupportedGraphicsClocks", m), reverse=True))
            for m in mem
        }
        lo_mw, hi_mw = self._nvml("nvmlDeviceGetPowerManagementLimitConstraints")
        default_mw = self._nvml("nvmlDeviceGetPowerManagementDefaultLimit")
        return Capabilities(
            memory_clocks_mhz=mem,
            sm_clocks_mhz=sm,
            power_limit_w_min=lo_mw / 1000.0,
            power_limit_w_max=hi_mw / 1000.0,
            power_limit_w_default=default_mw / 1000.0,
            has_energy_counter=self._probe_energy_counter(),
            power_fields=self._probe_power_fields(),
        )

    def _probe_energy_counter(self) -> bool:
        try:
            self._nvml("nvmlDeviceGetTotalEnergyConsumption")
            return True
        except NotSupportedError:
            return False

    def _probe_power_fields(self) -> tuple[str, ...]:
        try:
            values = self._nvml("nvmlDeviceGetFieldValues", [_FI_POWER_INSTANT, _FI_POWER_AVERAGE])
        except DeviceError:
            return ()
        names = ("instant", "average")
        return tuple(n for n, v in zip(names, values, strict=True) if v.nvmlReturn == 0)

    # --- readings --------------------------------------------------------------------------------

    def power_usage_w(self) -> float:
        """nvmlDeviceGetPowerUsage: a 1-s average on Ampere+ except GA100, else instantaneous."""
        return self._nvml("nvmlDeviceGetPowerUsage") / 1000.0

    def _power_field_w(self, field_id: int) -> float:
        (value,) = self._nvml("nvmlDeviceGetFieldValues", [field_id])
        if value.nvmlReturn != 0:
            raise DeviceError(f"power field {field_id} read failed: NVML error {value.nvmlReturn}")
        return value.value.uiVal / 1000.0

    def power_instant_w(self) -> float:
        """Instantaneous power through field values where supported, else GetPowerUsage."""
        if "instant" in self.capabilities.power_fields:
            return self._power_field_w(_FI_POWER_INSTANT)
        return self.power_usage_w()

    def power_average_w(self) -> float:
        """1-s average power through field values where supported, else GetPowerUsage (which is
        itself a 1-s average on Ampere+ except GA100, and instantaneous there)."""
        if "average" in self.capabilities.power_fields:
            return self._power_field_w(_FI_POWER_AVERAGE)
        return self.power_usage_w()

    def energy_j(self) -> float:
        """Total-energy counter (J since driver load). Volta+; raises NotSupportedError before."""
        return (
            self._nvml("nvmlDeviceGetTotalEnergyConsumption", what="reading the energy counter")
            / 1000.0
        )

    def sm_clock_mhz(self) -> int:
        return self._nvml("nvmlDeviceGetClockInfo", _CLOCK_SM)

    def mem_clock_mhz(self) -> int:
        return self._nvml("nvmlDeviceGetClockInfo", _CLOCK_MEM)

    def temperature_c(self) -> int:
        return self._nvml("nvmlDeviceGetTemperature", _TEMPERATURE_GPU)

    def clock_event_reasons(self) -> ClockEventReasons:
        return ClockEventReasons(self._nvml("nvmlDeviceGetCurrentClocksEventReasons"))

    def power_limit_w(self) -> float:
        """The power limit in force now."""
        return self._nvml("nvmlDeviceGetPowerManagementLimit") / 1000.0

    def read(self) -> Reading:
        """Poll every sensor once."""
        return Reading(
            power_w=self.power_average_w(),
            energy_j=self.energy_j() if self.capabilities.has_energy_counter else None,
            sm_mhz=self.sm_clock_mhz(),
            mem_mhz=self.mem_clock_mhz(),
            temp_c=self.temperature_c(),
            reasons=self.clock_event_reasons(),
        )

    def running_processes(self) -> list[tuple[int, int | None]]:
        """(pid, used GPU memory in bytes or None) of every compute and graphics process."""
        procs: list[tuple[int, int | None]] = []
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            procs.extend((p.pid, p.usedGpuMemory) for p in self._nvml(fn, what="listing processes"))
        return procs

    # --- validation (what the setters accept; usable before any change) --------------------------

    def check_sm_clock(self, sm_mhz: int, mem_mhz: int | None = None) -> None:
        """Raise :class:`UnsupportedClockError` (naming the nearest) unless ``sm_mhz`` is
        supported -- at memory clock ``mem_mhz`` if given, else at any."""
        caps = self.capabilities
        supported = caps.sm_clocks_mhz.get(mem_mhz, ()) if mem_mhz else caps.sm_clocks_mhz_all
        if sm_mhz not in supported:
            at = f" at memory clock {mem_mhz} MHz" if mem_mhz else ""
            raise UnsupportedClockError(
                f"SM clock {sm_mhz} MHz is not supported by {self.identity.name}{at}",
                f"nearest supported: {nearest_supported(supported, sm_mhz)} MHz "
                f"(range {min(supported)}-{max(supported)} MHz)",
            )

    def check_memory_clock(self, mem_mhz: int) -> None:
        supported = self.capabilities.memory_clocks_mhz
        if mem_mhz not in supported:
            raise UnsupportedClockError(
                f"memory clock {mem_mhz} MHz is not supported by {self.identity.name}",
                f"nearest supported: {nearest_supported(supported, mem_mhz)} MHz "
                f"(supported: {', '.join(map(str, supported))} MHz)",
            )

    def check_power_limit_w(self, power_limit_w: float) -> None:
        caps = self.capabilities
        if not caps.power_limit_w_min <= power_limit_w <= caps.power_limit_w_max:
            raise PowerLimitOutOfRangeError(
                f"power limit {power_limit_w:g} W is out of range for {self.identity.name}",
                f"choose {caps.power_limit_w_min:g}-{caps.power_limit_w_max:g} W "
                f"(default {caps.power_limit_w_default:g} W)",
            )

    # --- setters ---------------------------------------------------------------------------------

    def lock_sm_clocks(self, sm_mhz: int) -> None:
        """Lock the SM clock at ``sm_mhz`` (min = max). Must be a supported clock."""
        self._require_actuation(f"lock the SM clock at {sm_mhz} MHz")
        self.check_sm_clock(sm_mhz)
        self._set("sm", "nvmlDeviceSetGpuLockedClocks", sm_mhz, sm_mhz, what="locking the SM clock")

    def reset_sm_clocks(self) -> None:
        self._require_actuation("reset the SM clock lock")
        self._set("sm", "nvmlDeviceResetGpuLockedClocks", what="resetting the SM clock lock")

    def lock_memory_clocks(self, mem_mhz: int) -> None:
        """Lock the memory clock at ``mem_mhz`` (min = max). Ampere+."""
        self._require_actuation(f"lock the memory clock at {mem_mhz} MHz")
        self.check_memory_clock(mem_mhz)
        self._set(
            "mem",
            "nvmlDeviceSetMemoryLockedClocks",
            mem_mhz,
            mem_mhz,
            what="locking the memory clock",
        )

    def reset_memory_clocks(self, *, if_supported: bool = False) -> None:
        """Unlock the memory clock. ``if_supported``: where memory clocks cannot be locked
        (pre-Ampere) there is nothing to unlock, so return instead of raising NotSupportedError."""
        self._require_actuation("reset the memory clock lock")
        try:
            self._set(
                "mem", "nvmlDeviceResetMemoryLockedClocks", what="resetting the memory clock lock"
            )
        except NotSupportedError:
            if not if_supported:
                raise

    def set_power_limit_w(self, power_limit_w: float) -> None:
        """Set the power limit (W) within the device's constraints."""
        self._require_actuation(f"set the power limit to {power_limit_w:g} W")
        self.check_power_limit_w(power_limit_w)
        self._set(
            "power",
            "nvmlDeviceSetPowerManagementLimit",
            round(power_limit_w * 1000),
            what="setting the power limit",
        )

    def reset_power_limit(self) -> None:
        """Set the power limit back to the driver's default."""
        self.set_power_limit_w(self.capabilities.power_limit_w_default)

    def __repr__(self) -> str:
        return f"Device({self.selection!r}, index={self.index})"


def nearest_supported(supported: Sequence[int], mhz: int) -> str:
    """The supported clock(s) nearest ``mhz`` as text: ``"1485 or 1500"``."""
    below = [c for c in supported if c < mhz]
    above = [c for c in supported if c > mhz]
    picks = ([max(below)] if below else []) + ([min(above)] if above else [])
    return " or ".join(str(c) for c in picks)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
