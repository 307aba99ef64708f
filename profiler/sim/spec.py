"""Simulated-GPU spec files: loading and validation.

A spec is a TOML file describing one GPU model with public datasheet numbers (schema in
docs/sim-spec.md). Built-in specs live in ``wattbench/profiler/sim/specs/<key>.toml`` and are
selected as ``sim:<key>``; users pass their own as ``sim:path/to/spec.toml``.

Every field is validated on load; a malformed file raises :class:`SpecError` naming the file and
the dotted field path.
"""

from __future__ import annotations

import bisect
import sys
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from wattbench.profiler.errors import SpecError

SCHEMA_VERSION = 2

#: upper bounds that catch a value in the wrong unit (Hz or kHz for MHz, mW for W): no GPU runs its
#: SM clock above 10 GHz, its memory above 50 GHz, or draws 5 kW
MHZ_MAX = 10_000
MEMORY_MHZ_MAX = 50_000
WATTS_MAX = 5_000
TFLOPS_MAX = 100_000
GBS_MAX = 100_000

#: Architectures the simulator knows, with pynvml's nvmlDeviceArchitecture_t values.
ARCHITECTURES = {"volta": 5, "turing": 6, "ampere": 7, "ada": 8, "hopper": 9, "blackwell": 10}

#: Data types a spec may give a dense peak rate for (TFLOP/s, or TOP/s for int8).
DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")


@dataclass(frozen=True)
class Identity:
    name: str
    architecture: str
    compute_capability: str
    memory_total_mib: int
    sm_count: int
    pci_device_id: int
    vbios_version: str
    driver_version: str
    cuda_driver_version: int  # NVML encoding: 1000 * major + 10 * minor

    @property
    def architecture_id(self) -> int:
        return ARCHITECTURES[self.architecture]


@dataclass(frozen=True)
class Clocks:
    sm_mhz_min: int
    sm_mhz_max: int
    sm_mhz_step: int
    sm_mhz_idle: int
    memory_mhz: tuple[int, ...]  # supported memory clocks, highest first
    #: highest SM clock allowed with each memory clock (absent: sm_mhz_max)
    sm_mhz_max_per_memory: dict[int, int] = field(default_factory=dict)

    @property
    def memory_mhz_max(self) -> int:
        return self.memory_mhz[0]

    def sm_clocks_mhz(self, memory_mhz: int | None = None) -> list[int]:
        """Supported SM clocks for a memory clock, highest first (as NVML lists them)."""
        top = self.sm_mhz_max_per_memory.get(memory_mhz or self.memory_mhz_max, self.sm_mhz_max)
        return list(range(top, self.sm_mhz_min - 1, -self.sm_mhz_step))

    @cached_property
    def sm_clocks_ascending(self) -> tuple[int, ...]:
        """The supported SM clocks at the default memory clock, lowest first (computed once)."""
        return tuple(reversed(self.sm_clocks_mhz()))

    def snap_down(self, mhz: float) -> int:
        """The highest supported SM clock at or below ``mhz`` (the lowest if none is)."""
        clocks = self.sm_clocks_ascending
        return clocks[max(bisect.bisect_right(clocks, mhz) - 1, 0)]


@dataclass(frozen=True)
class Power:
    limit_w_min: float
    limit_w_max: float
    limit_w_default: float
    idle_w: float  # total board power when idle at the idle clock, at steady temperature
    leakage_w: float  # static leakage at v_max and leakage_ref_c
    leakage_ref_c: float
    leakage_per_c: float  # relative leakage increase per degree C
    dynamic_w: float  # switching power at activity 1, sm_mhz_max and v_max
    memory_w: float  # DRAM power at full bandwidth use and the highest memory clock
    #: SM switching activity of a purely memory-bound workload (address generation, load/store)
    sm_activity_memory_bound: float
    #: SM switching activity while idle with clocks held up
    sm_activity_idle: float
    #: share of the switching power that toggles with the input data: random data switches all
    #: of it, all-zero inputs none of it (the clock tree and control switch regardless)
    data_dynamic_fraction: float = 0.0
    #: switching power at activity 1 per dtype where it differs from ``dynamic_w`` (e.g. CUDA-core
    #: fp32 vs tensor-core bf16)
    dynamic_w_by_dtype: dict[str, float] = field(default_factory=dict)

    def dynamic_w_for(self, dtype: str) -> float:
        return self.dynamic_w_by_dtype.get(dtype, self.dynamic_w)


@dataclass(frozen=True)
class Voltage:
    v_min: float  # volts, flat below knee_mhz
    v_max: float  # volts at sm_mhz_max
    knee_mhz: int
    #: shape above the knee: 1 = linear (Kernel Tuner's model); > 1 = convex, smooth at the knee
    exponent: float = 1.0

    def at(self, sm_mhz: float, sm_mhz_max: float) -> float:
        """Core voltage (V) at an SM clock: flat at v_min up to the knee, then
        ``v_min + (v_max - v_min) * x**exponent`` with ``x`` the fraction of the way to the top."""
        if sm_mhz <= self.knee_mhz:
            return self.v_min
        frac = (sm_mhz - self.knee_mhz) / (sm_mhz_max - self.knee_mhz)
        return self.v_min + frac**self.exponent * (self.v_max - self.v_min)


@dataclass(frozen=True)
class Performance:
    tflops: dict[str, float]  # dense peak per dtype at sm_mhz_max
    memory_bandwidth_gbs: float  # GB/s at the highest memory clock
    compute_efficiency: float  # fraction of peak a well-tuned kernel reaches
    memory_efficiency: float  # fraction of peak bandwidth a streaming kernel reaches
    #: SM clock above which the SMs issue loads fast enough to saturate DRAM
    sm_mhz_bandwidth_saturation: int
    launch_overhead_us: float


@dataclass(frozen=True)
class ThermalPole:
    """One stage of a Foster thermal network: a rise of ``resistance_c_per_w * P`` reached with
    time constant ``time_constant_s`` (s)."""

    resistance_c_per_w: float
    time_constant_s: float


@dataclass(frozen=True)
class Thermal:
    ambient_c: float
    #: Foster network, fastest first (die, heat sink, optional slow chassis / room stage); the
    #: temperature is ambient + the sum of the poles' rises
    poles: tuple[ThermalPole, ...]
    slowdown_c: float  # SwThermalSlowdown engages above this
    slowdown_mhz_per_c: float  # clock reduction per degree above slowdown_c

    @property
    def resistance_c_per_w(self) -> float:
        """Steady-state rise per watt (all poles)."""
        return sum(p.resistance_c_per_w for p in self.poles)


ENERGY_COUNTER_SOURCES = ("integral", "samples")


@dataclass(frozen=True)
class Sensors:
    #: the driver refreshes the power reading and the energy counter this often (s)
    update_period_s: float
    #: each power reading averages the last ``power_sample_window_s`` of its update period
    #: (part-time sampling; equal to ``update_period_s`` means full coverage)
    power_sample_window_s: float
    #: window of nvmlDeviceGetPowerUsage in seconds: the mean of the readings of the last
    #: ``power_average_s``; 0 means the latest reading (GA100 and older)
    power_average_s: float
    field_values: bool  # NVML_FI_DEV_POWER_INSTANT / _AVERAGE supported
    #: "integral": the counter adds the exact energy of each period; "samples": it adds
    #: reading x period (as if integrating the part-time samples)
    energy_counter_source: str
    power_noise_rel: float  # relative standard deviation of each power reading
    energy_noise_rel: float  # relative standard deviation of each counter increment

    @property
    def energy_counter_period_s(self) -> float:
        return self.update_period_s


@dataclass(frozen=True)
class Variability:
    """Spread of same-model units (standard deviations); each unit draws its own offsets
    deterministically from its UUID."""

    leakage_rel_sd: float  # log-normal spread of leakage power
    voltage_sd_v: float  # offset of the unit's V-f curve, volts
    thermal_resistance_rel_sd: float  # log-normal spread of the thermal resistance


@dataclass(frozen=True)
class GpuSpec:
    key: str
    source: str  # where the spec came from: "builtin:<key>" or a file path
    identity: Identity
    clocks: Clocks
    power: Power
    voltage: Voltage
    performance: Performance
    thermal: Thermal
    sensors: Sensors
    variability: Variability
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def peak_tflops(self, dtype: str) -> float:
        try:
            return self.performance.tflops[dtype]
        except KeyError:
            from wattbench.profiler.errors import UsageError

            raise UsageError(
                f"the simulated {self.identity.name} has no peak rate for dtype {dtype!r}",
                f"use one of {', '.join(sorted(self.performance.tflops))}, or add "
                f"performance.tflops.{dtype} to the spec file",
            ) from None


# --- loading -------------------------------------------------------------------------------------


def builtin_keys() -> list[str]:
    """Keys of the spec files shipped with wattbench (``sim:<key>``)."""
    folder = resources.files("wattbench.profiler.sim.specs")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_builtin(key: str) -> GpuSpec:
    path = resources.files("wattbench.profiler.sim.specs") / f"{key}.toml"
    if not path.is_file():
        from wattbench.profiler.errors import UnknownDeviceError

        raise UnknownDeviceError(
            f"no built-in simulated GPU named {key!r}",
            f"choose one of {', '.join('sim:' + k for k in builtin_keys())}, "
            "or pass a spec file as sim:path/to/spec.toml",
        )
    return parse_spec(path.read_text(encoding="utf-8"), source=f"builtin:{key}")


def load_file(path: str | Path) -> GpuSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            f"cannot read simulated-GPU spec file {str(p)!r}: {exc.strerror or exc}",
            "check the path (sim:path/to/spec.toml), or use a built-in such as sim:h100-sxm",
        ) from None
    return parse_spec(text, source=str(p.resolve()))


def parse_spec(text: str, source: str) -> GpuSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(
            f"spec {source}: not valid TOML ({exc})", "fix the syntax; see docs/sim-spec.md"
        ) from None
    r = _Reader(data, source)
    version = r.integer("schema_version", lo=1)
    if version != SCHEMA_VERSION:
        raise SpecError(
            f"spec {source}: schema_version {version} is not supported",
            f"this wattbench reads schema_version {SCHEMA_VERSION} (version 2 added "
            "[[thermal.poles]], sensors.update_period_s / power_sample_window_s / "
            "energy_counter_source, power.data_dynamic_fraction, voltage.exponent and "
            "[variability]); start from a built-in spec, see docs/sim-spec.md",
        )
    key = r.text("key")
    identity = Identity(
        name=r.text("identity.name"),
        architecture=r.choice("identity.architecture", tuple(ARCHITECTURES)),
        compute_capability=r.text("identity.compute_capability"),
        memory_total_mib=r.integer("identity.memory_total_mib", lo=1),
        sm_count=r.integer("identity.sm_count", lo=1),
        pci_device_id=r.integer("identity.pci_device_id", lo=0),
        vbios_version=r.text("identity.vbios_version"),
        driver_version=r.text("identity.driver_version"),
        cuda_driver_version=r.integer("identity.cuda_driver_version", lo=1000),
    )
    memory_mhz = tuple(
        sorted(r.int_list("clocks.memory_mhz", lo=1, hi=MEMORY_MHZ_MAX), reverse=True)
    )
    per_memory_raw = r.table("clocks.sm_mhz_max_per_memory", optional=True)
    per_memory: dict[int, int] = {}
    for k in per_memory_raw:
        path = f"clocks.sm_mhz_max_per_memory.{k}"
        if not k.isdigit() or int(k) not in memory_mhz:
            raise SpecError(
                f"spec {source}: field {path}: key must be one of clocks.memory_mhz",
                "see docs/sim-spec.md",
            )
        per_memory[int(k)] = r.integer(path, lo=1)
    clocks = Clocks(
        sm_mhz_min=r.integer("clocks.sm_mhz_min", lo=1, hi=MHZ_MAX),
        sm_mhz_max=r.integer("clocks.sm_mhz_max", lo=1, hi=MHZ_MAX),
        sm_mhz_step=r.integer("clocks.sm_mhz_step", lo=1, hi=MHZ_MAX),
        sm_mhz_idle=r.integer("clocks.sm_mhz_idle", lo=1, hi=MHZ_MAX),
        memory_mhz=memory_mhz,
        sm_mhz_max_per_memory=per_memory,
    )
    r.check(
        clocks.sm_mhz_min < clocks.sm_mhz_max,
        "clocks.sm_mhz_min",
        "must be below clocks.sm_mhz_max",
    )
    r.check(
        (clocks.sm_mhz_max - clocks.sm_mhz_min) % clocks.sm_mhz_step == 0,
        "clocks.sm_mhz_step",
        "must divide sm_mhz_max - sm_mhz_min",
    )
    r.check(
        clocks.sm_mhz_min <= clocks.sm_mhz_idle <= clocks.sm_mhz_max,
        "clocks.sm_mhz_idle",
        "must lie within [sm_mhz_min, sm_mhz_max]",
    )
    for mem, top in per_memory.items():
        r.check(
            clocks.sm_mhz_min <= top <= clocks.sm_mhz_max
            and (top - clocks.sm_mhz_min) % clocks.sm_mhz_step == 0,
            f"clocks.sm_mhz_max_per_memory.{mem}",
            "must be a supported SM clock",
        )
    by_dtype_raw = r.table("power.dynamic_w_by_dtype", optional=True)
    by_dtype = {}
    for k in by_dtype_raw:
        path = f"power.dynamic_w_by_dtype.{k}"
        r.check(k in DTYPES, path, f"unknown dtype; use {', '.join(DTYPES)}")
        by_dtype[k] = r.number(f"power.dynamic_w_by_dtype.{k}", lo=0, hi=WATTS_MAX)
    power = Power(
        limit_w_min=r.number("power.limit_w_min", lo=1, hi=WATTS_MAX),
        limit_w_max=r.number("power.limit_w_max", lo=1, hi=WATTS_MAX),
        limit_w_default=r.number("power.limit_w_default", lo=1, hi=WATTS_MAX),
        idle_w=r.number("power.idle_w", lo=1, hi=WATTS_MAX),
        leakage_w=r.number("power.leakage_w", lo=0, hi=WATTS_MAX),
        leakage_ref_c=r.number("power.leakage_ref_c"),
        leakage_per_c=r.number("power.leakage_per_c", lo=0, hi=0.1),
        dynamic_w=r.number("power.dynamic_w", lo=1, hi=WATTS_MAX),
        memory_w=r.number("power.memory_w", lo=0, hi=WATTS_MAX),
        sm_activity_memory_bound=r.number("power.sm_activity_memory_bound", lo=0, hi=1),
        sm_activity_idle=r.number("power.sm_activity_idle", lo=0, hi=1),
        data_dynamic_fraction=r.number("power.data_dynamic_fraction", lo=0, hi=1),
        dynamic_w_by_dtype=by_dtype,
    )
    r.check(
        power.limit_w_min <= power.limit_w_default <= power.limit_w_max,
        "power.limit_w_default",
        "must lie within [limit_w_min, limit_w_max]",
    )
    voltage = Voltage(
        v_min=r.number("voltage.v_min", lo=0.3, hi=2.0),
        v_max=r.number("voltage.v_max", lo=0.3, hi=2.0),
        knee_mhz=r.integer("voltage.knee_mhz", lo=1, hi=MHZ_MAX),
        exponent=r.number("voltage.exponent", lo=1, hi=4),
    )
    r.check(voltage.v_min < voltage.v_max, "voltage.v_min", "must be below voltage.v_max")
    r.check(
        clocks.sm_mhz_min <= voltage.knee_mhz < clocks.sm_mhz_max,
        "voltage.knee_mhz",
        "must lie within [clocks.sm_mhz_min, clocks.sm_mhz_max)",
    )
    tflops_raw = r.table("performance.tflops")
    tflops = {}
    for k in tflops_raw:
        r.check(k in DTYPES, f"performance.tflops.{k}", f"unknown dtype; use {', '.join(DTYPES)}")
        tflops[k] = r.number(f"performance.tflops.{k}", lo=0.001, hi=TFLOPS_MAX)
    performance = Performance(
        tflops=tflops,
        memory_bandwidth_gbs=r.number("performance.memory_bandwidth_gbs", lo=1, hi=GBS_MAX),
        compute_efficiency=r.number("performance.compute_efficiency", lo=0.01, hi=1),
        memory_efficiency=r.number("performance.memory_efficiency", lo=0.01, hi=1),
        sm_mhz_bandwidth_saturation=r.integer(
            "performance.sm_mhz_bandwidth_saturation", lo=1, hi=MHZ_MAX
        ),
        launch_overhead_us=r.number("performance.launch_overhead_us", lo=0),
    )
    poles_raw = r.get("thermal.poles")
    r.check(
        isinstance(poles_raw, list) and 1 <= len(poles_raw) <= 4,
        "thermal.poles",
        "must be a list of 1 to 4 tables [[thermal.poles]]",
    )
    poles = []
    for i in range(len(poles_raw)):
        path = f"thermal.poles.{i}"
        r.check(isinstance(poles_raw[i], dict), path, "must be a table")
        poles.append(
            ThermalPole(
                resistance_c_per_w=r.number(f"{path}.resistance_c_per_w", lo=0),
                time_constant_s=r.number(f"{path}.time_constant_s", lo=0.001),
            )
        )
    thermal = Thermal(
        ambient_c=r.number("thermal.ambient_c", lo=-20, hi=80),
        poles=tuple(sorted(poles, key=lambda p: p.time_constant_s)),
        slowdown_c=r.number("thermal.slowdown_c", lo=30, hi=150),
        slowdown_mhz_per_c=r.number("thermal.slowdown_mhz_per_c", lo=0),
    )
    sensors = Sensors(
        update_period_s=r.number("sensors.update_period_s", lo=0.001, hi=1),
        power_sample_window_s=r.number("sensors.power_sample_window_s", lo=0.0001, hi=1),
        power_average_s=r.number("sensors.power_average_s", lo=0, hi=10),
        field_values=r.flag("sensors.field_values"),
        energy_counter_source=r.choice("sensors.energy_counter_source", ENERGY_COUNTER_SOURCES),
        power_noise_rel=r.number("sensors.power_noise_rel", lo=0, hi=0.5),
        energy_noise_rel=r.number("sensors.energy_noise_rel", lo=0, hi=0.5),
    )
    r.check(
        sensors.power_sample_window_s <= sensors.update_period_s,
        "sensors.power_sample_window_s",
        "must not exceed sensors.update_period_s",
    )
    variability = Variability(
        leakage_rel_sd=r.number("variability.leakage_rel_sd", lo=0, hi=1),
        voltage_sd_v=r.number("variability.voltage_sd_v", lo=0, hi=0.2),
        thermal_resistance_rel_sd=r.number("variability.thermal_resistance_rel_sd", lo=0, hi=1),
    )
    r.reject_unknown()
    return GpuSpec(
        key=key,
        source=source,
        identity=identity,
        clocks=clocks,
        power=power,
        voltage=voltage,
        performance=performance,
        thermal=thermal,
        sensors=sensors,
        variability=variability,
        raw=data,
    )


class _Reader:
    """Typed access to nested TOML fields, raising SpecError with the dotted field path."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source
        self.seen: set[str] = set()

    def reject_unknown(self) -> None:
        """A key no field reads is an error (a misspelt name would otherwise be ignored)."""

        def walk(node: Any, prefix: str) -> None:
            items = (
                node.items()
                if isinstance(node, dict)
                else enumerate(node)
                if isinstance(node, list) and node and isinstance(node[0], dict)
                else ()
            )
            for k, v in items:
                path = f"{prefix}{k}"
                if path in self.seen:
                    continue
                if not any(s.startswith(path + ".") for s in self.seen):
                    raise self.fail(path, "unknown field (misspelt?)")
                walk(v, path + ".")

        walk(self.data, "")

    def fail(self, path: str, what: str) -> SpecError:
        return SpecError(
            f"spec {self.source}: field {path}: {what}",
            "fix that field; the schema is in docs/sim-spec.md",
        )

    def check(self, ok: bool, path: str, what: str) -> None:
        if not ok:
            raise self.fail(path, what)

    def get(self, path: str, optional: bool = False) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not isinstance(node, dict) or part not in node:
                if optional:
                    return None
                raise self.fail(path, "missing")
            node = node[part]
        if not isinstance(node, (dict, list)) or path.startswith("clocks.memory_mhz"):
            self.seen.add(path)
        return node

    def text(self, path: str) -> str:
        v = self.get(path)
        self.check(isinstance(v, str) and v != "", path, "must be a non-empty string")
        return v

    def flag(self, path: str) -> bool:
        v = self.get(path)
        self.check(isinstance(v, bool), path, "must be true or false")
        return v

    def number(self, path: str, lo: float | None = None, hi: float | None = None) -> float:
        v = self.get(path)
        self.check(
            isinstance(v, (int, float)) and not isinstance(v, bool), path, "must be a number"
        )
        self._range(path, v, lo, hi)
        return float(v)

    def integer(self, path: str, lo: int | None = None, hi: int | None = None) -> int:
        v = self.get(path)
        self.check(isinstance(v, int) and not isinstance(v, bool), path, "must be an integer")
        self._range(path, v, lo, hi)
        return v

    def int_list(self, path: str, lo: int | None = None, hi: int | None = None) -> list[int]:
        v = self.get(path)
        self.check(
            isinstance(v, list)
            and len(v) > 0
            and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
            path,
            "must be a non-empty list of integers",
        )
        for x in v:
            self._range(path, x, lo, hi)
        return v

    def choice(self, path: str, choices: tuple[str, ...]) -> str:
        v = self.text(path)
        self.check(v in choices, path, f"must be one of {', '.join(choices)}")
        return v

    def table(self, path: str, optional: bool = False) -> dict[str, Any]:
        v = self.get(path, optional=optional)
        self.seen.add(path)
        if v is None:
            return {}
        self.check(isinstance(v, dict), path, "must be a table")
        return v

    def _range(self, path: str, v: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and v < lo:
            raise self.fail(path, f"{v} is below the minimum {lo}")
        if hi is not None and v > hi:
            raise self.fail(
                path, f"{v} is above the maximum {hi} (is it in the unit its name says?)"
            )
