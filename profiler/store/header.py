"""Typed, read-only views of a run record's header: its device, problem, work and settings.

Readers use these (``RunRecord.device``, ``.problem``, ``.work``, ``.settings``) instead of
indexing the JSON document; writers still build the document as dicts, and
``run-record.schema.json`` stays the contract of the file. Each view is made from the document
when asked for, so it never goes stale: frozen dataclasses whose JSON objects (a spec, the
space) are read-only views of the document's (``MappingProxyType``). Keys newer
than the schema's required ones are optional here, with the meaning an older record has without
them (``settings.purpose`` absent: ``"sweep"``). Units: FLOPs and bytes per iteration, W, MHz.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


def _frozen(value: Any) -> Mapping[str, Any] | None:
    """A read-only view of a JSON object (None for anything else)."""
    return MappingProxyType(value) if isinstance(value, dict) else None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def shape_text(shape: Any) -> str:
    """A recorded shape as text: ``[8192, 8192, 8192]`` -> ``8192x8192x8192`` (a mapping by its
    values, anything else as written)."""
    if isinstance(shape, Mapping):
        shape = list(shape.values())
    if isinstance(shape, list | tuple):
        return "x".join(str(s) for s in shape)
    return str(shape)


@dataclass(frozen=True)
class RecordDevice:
    """The GPU a run measured (the record's ``device``): identity as NVML gave it.

    ``selection`` is how it was opened (``0``, ``GPU-<uuid>``, ``sim:<key>``; None in a record
    without it); ``spec`` a simulated GPU's spec, its raw TOML table (None for a real GPU),
    ``spec_source`` where that spec came from (``builtin:<key>`` or a file).
    """

    name: str
    uuid: str
    simulated: bool
    selection: str | None = None
    pci_bus_id: str | None = None
    serial: str | None = None
    module_id: int | None = None
    spec_source: str | None = None
    spec: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RecordDevice:
        sel, bus, serial, module = (
            d.get(k) for k in ("selection", "pci_bus_id", "serial", "module_id")
        )
        return cls(
            name=str(d["name"]),
            uuid=str(d["uuid"]),
            simulated=bool(d["simulated"]),
            selection=str(sel) if sel is not None else None,
            pci_bus_id=str(bus) if bus is not None else None,
            serial=str(serial) if serial is not None else None,
            module_id=int(module) if isinstance(module, int) else None,
            spec_source=str(d["spec_source"]) if d.get("spec_source") is not None else None,
            spec=_frozen(d.get("spec")),
        )


@dataclass(frozen=True)
class RecordProblem:
    """What a run measured (the record's ``problem``): family, implementation, dtype, and the
    shape as recorded (``dims``: its sizes when it is a list of integers, as sweeps write it;
    else None)."""

    family: str
    impl: str
    dtype: str
    shape: Any
    dims: tuple[int, ...] | None

    @property
    def shape_text(self) -> str:
        """``8192x8192x8192``."""
        return shape_text(self.shape)

    def to_json(self) -> dict[str, Any]:
        """As ``kernels.costs.Problem.to_json()`` writes it (to compare with a problem)."""
        shape = list(self.shape) if isinstance(self.shape, tuple) else self.shape
        return {"family": self.family, "impl": self.impl, "shape": shape, "dtype": self.dtype}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RecordProblem:
        shape = d["shape"]
        ints = isinstance(shape, list) and all(
            isinstance(s, int) and not isinstance(s, bool) for s in shape
        )
        dims = tuple(shape) if ints else None
        return cls(
            family=str(d["family"]),
            impl=str(d["impl"]),
            dtype=str(d["dtype"]),
            shape=dims if dims is not None else shape,
            dims=dims,
        )


@dataclass(frozen=True)
class RecordSettings:
    """How a run measured (the record's ``settings``).

    ``measurement``: ``MeasureSettings.to_json()``; ``space``: ``Space.describe()`` (None for
    an observe-only run); ``objectives``: their names; ``purpose``: ``sweep`` or ``verify``
    (``sweep`` in records older than the key); ``strategy``: ``{"strategy": name, ...}`` (None
    in records older than it); ``found``: the settings the sweep found
    (``safety.found.FoundSettings.to_json()``, None when not recorded); ``from_defaults``;
    ``thermal_prior``: the thermal model the run started from (fast method; None otherwise).
    """

    measurement: Mapping[str, Any]
    space: Mapping[str, Any] | None
    objectives: tuple[str, ...]
    purpose: str = "sweep"
    strategy: Mapping[str, Any] | None = None
    found: Mapping[str, Any] | None = None
    from_defaults: bool = False
    thermal_prior: Mapping[str, Any] | None = None

    @property
    def method(self) -> str:
        """The measurement method, ``fast`` or ``steady`` (``steady`` when not recorded)."""
        return str(self.measurement.get("method", "steady"))

    @property
    def strategy_name(self) -> str:
        """The search strategy's name (``grid`` when not recorded)."""
        return str((self.strategy or {}).get("strategy", "grid"))

    @property
    def strategy_point_keys(self) -> tuple[str, ...]:
        """``OperatingPoint.key`` of every point the strategy listed (grid, verify), else ()."""
        return tuple(str(k) for k in (self.strategy or {}).get("points") or ())

    @property
    def space_max_power_limit_w(self) -> float | None:
        """The highest power limit (W) the space swept, None without one."""
        return _float_or_none((self.space or {}).get("max_power_limit_w"))

    @property
    def found_power_limit_w(self) -> float | None:
        """The power limit (W) the sweep found on the GPU, None when not recorded."""
        return _float_or_none((self.found or {}).get("power_limit_w"))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RecordSettings:
        return cls(
            measurement=_frozen(d["measurement"]) or MappingProxyType({}),
            space=_frozen(d["space"]),
            objectives=tuple(str(o) for o in d["objectives"]),
            purpose=str(d.get("purpose", "sweep")),
            strategy=_frozen(d.get("strategy")),
            found=_frozen(d.get("found")),
            from_defaults=bool(d.get("from_defaults", False)),
            thermal_prior=_frozen(d.get("thermal_prior")),
        )
