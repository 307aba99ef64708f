"""One pytest run's wattbench state: the options and the GPU, opened on first use, closed at the
end.

Nothing is opened until a test uses the ``wattbench`` fixture (or pytest-benchmark asks for
machine info while ``--wattbench-device`` is given), so the plugin is inert in test suites that
do not use it. Opening the GPU checks, once, everything that would make every case fail: the
selection, the sweep specs against the GPU's clocks and limits, and other processes on the GPU
(before this process creates a CUDA context of its own; ``--wattbench-allow-shared`` skips it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattbench.profiler.errors import UsageError, WattbenchError
from wattbench.profiler.pytest_plugin.options import Options

if TYPE_CHECKING:
    from wattbench.profiler.device import Device


class DeviceOpenError(Exception):
    """Opening the GPU failed; ``error`` is the wattbench error (the same for every case)."""

    def __init__(self, error: WattbenchError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class PluginState:
    """The options, the GPU once opened (``device_info``: its identity and the versions that
    shape a measurement), the error that stopped it opening, and what the cases wrote."""

    options: Options
    device: Device | None = None
    device_info: dict[str, Any] | None = None
    open_error: WattbenchError | None = None
    run_records: list[Path] = field(default_factory=list)
    simulated_cases: int = 0
    nvml_opened: bool = False

    @property
    def observe_only(self) -> bool:
        """Open the GPU observe-only: asked for, or nothing to sweep (measure it as it is)."""
        return self.options.observe_only or self.options.sweep is None

    def open(self) -> Device:
        """The GPU, opened and checked on first call; :class:`DeviceOpenError` (every call after
        a failure too) when it cannot be used."""
        if self.device is not None:
            return self.device
        if self.open_error is not None:
            raise DeviceOpenError(self.open_error)
        try:
            device = _open(self.options.device, self.observe_only)
            self.nvml_opened = True
            _check_sweep(device, self.options)
            if not self.options.allow_shared:
                _check_not_shared(device)
        except WattbenchError as exc:
            self.open_error = exc
            raise DeviceOpenError(exc) from exc
        self.device = device
        self.device_info = _device_info(device)
        return device

    def machine_info(self) -> dict[str, Any] | None:
        """The GPU's identity for pytest-benchmark's ``machine_info``: the opened GPU's, or the
        one ``--wattbench-device`` names (opened now); None when neither."""
        if self.device_info is None and self.options.device is not None:
            try:
                self.open()
            except DeviceOpenError:
                return None  # the error is reported by the first case that needs the GPU
        return self.device_info

    def close(self) -> None:
        """Restore and release every GPU (as ``wattbench``'s main does), if one was opened."""
        if not self.nvml_opened:
            return
        from wattbench.profiler.device.nvml import shutdown_all

        self.device, self.nvml_opened = None, False
        shutdown_all()


def _open(selection: str | None, observe_only: bool) -> Device:
    from wattbench.profiler.device import open_device, sim_choices
    from wattbench.profiler.errors import DriverNotFoundError, UnknownDeviceError

    if selection is not None:
        return open_device(selection, observe_only=observe_only)
    try:
        return open_device(None, observe_only=observe_only)
    except (DriverNotFoundError, UnknownDeviceError) as exc:
        raise UsageError(
            f"no --wattbench-device given and no real GPU found ({exc.message})",
            f"pass --wattbench-device with a GPU index or a simulated GPU ({sim_choices()})",
        ) from exc


def _check_sweep(device: Device, options: Options) -> None:
    """The sweep specs, resolved against this GPU (a bad clock or limit is one usage error)."""
    if options.sweep is None:
        return
    from wattbench.profiler.sweep.space import Space

    Space.from_specs(device.capabilities, **options.sweep)


def _check_not_shared(device: Device) -> None:
    """Other processes on the GPU spoil the figures: refuse once, before any case runs."""
    from wattbench.profiler.errors import GpuBusyError
    from wattbench.profiler.safety.preflight import check_not_shared

    try:
        check_not_shared(device, allow_shared=False)
    except GpuBusyError as exc:
        raise GpuBusyError(
            exc.message, "wait for them to finish, or pass --wattbench-allow-shared"
        ) from None


def _device_info(device: Device) -> dict[str, Any]:
    from wattbench.profiler.store import collect_versions

    ident = dataclasses.asdict(device.identity)
    return {
        "selection": device.selection,
        **ident,
        "versions": collect_versions(device.identity),
    }
