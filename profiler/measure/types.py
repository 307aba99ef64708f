"""Value types of measurement: an operating point and what was measured there."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

from wattbench.profiler.safety.found import LIMIT_TOLERANCE_W

# the tags a sweep adds (``sweep/run.py``); "pass" is a keyword, hence the functional form
_SweepTags = TypedDict("_SweepTags", {"pass": int, "seq": int}, total=False)


class Sample(_SweepTags):
    """One trial's measurement window, as ``Measurement.samples`` holds it (a JSON object in the
    run record): ``start_s`` / ``end_s`` on the measurement clock, ``iterations``, and
    ``energy_j`` / ``time_s`` per iteration. A sweep tags it with ``pass`` (0 = the point's
    first measurement) and ``seq`` (1 = the run's first measurement, over all points and
    passes)."""

    start_s: float
    end_s: float
    iterations: int
    energy_j: float
    time_s: float


@dataclass(frozen=True, order=True)
class OperatingPoint:
    """Requested settings; ``None`` means the driver's default (unlocked, default power limit).

    The point with every field None is the *baseline*: the swept knobs at their driver defaults,
    every other knob as the sweep found it (``Measurement.in_force`` says what that was).
    """

    sm_mhz: int | None = None
    mem_mhz: int | None = None
    power_limit_w: float | None = None

    @property
    def is_baseline(self) -> bool:
        return self.sm_mhz is None and self.mem_mhz is None and self.power_limit_w is None

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``sm=1500,mem=default,pl=default`` (used to resume)."""

        def part(v: float | None) -> str:
            return "default" if v is None else f"{v:g}"

        return f"sm={part(self.sm_mhz)},mem={part(self.mem_mhz)},pl={part(self.power_limit_w)}"

    def __str__(self) -> str:
        if self.is_baseline:
            return "baseline"
        bits = []
        if self.sm_mhz is not None:
            bits.append(f"SM {self.sm_mhz} MHz")
        if self.mem_mhz is not None:
            bits.append(f"mem {self.mem_mhz} MHz")
        if self.power_limit_w is not None:
            bits.append(f"limit {self.power_limit_w:g} W")
        return ", ".join(bits)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OperatingPoint:
        return cls(d.get("sm_mhz"), d.get("mem_mhz"), d.get("power_limit_w"))

    @classmethod
    def from_key(cls, key: str) -> OperatingPoint:
        """The point whose :attr:`key` is ``key`` (ValueError if it is not one)."""
        parts = dict(p.split("=", 1) for p in key.split(",") if "=" in p)
        if set(parts) != {"sm", "mem", "pl"} or key.count(",") != 2:
            raise ValueError(f"not an operating point key: {key!r}")

        def value(text: str, kind: type) -> Any:
            return None if text == "default" else kind(float(text))

        point = cls(value(parts["sm"], int), value(parts["mem"], int), value(parts["pl"], float))
        if point.key != key:
            raise ValueError(f"not an operating point key: {key!r}")
        return point


#: the fields every run record's points have always held (:meth:`Measurement.from_json` requires
#: them, though a Measurement made in code may leave them at their defaults)
RECORDED_FIELDS = (
    "time_s", "energy_j", "avg_power_w", "energy_above_idle_j", "sm_mhz_mean", "sm_mhz_min",
    "mem_mhz_mean", "mem_mhz_min", "temp_c_start", "temp_c_end", "reasons", "iterations",
    "trials", "spread_rel", "window_s", "warmup_s", "energy_source",
)  # fmt: skip


@dataclass
class Measurement:
    """Time and energy of one problem at one operating point. Per-iteration figures.

    ``energy_j`` is total board energy; ``energy_above_idle_j`` subtracts the run's idle power
    over the same time. ``spread_rel`` is (max - min) / median of energy per iteration over the
    trials. Flags say why a point should not be trusted: ``clock_missed`` (achieved SM clock below
    the request), ``throttled`` (power / thermal clock events seen), ``unstable`` (the spread
    threshold was not met within the maximum trials).

    Only ``point``, ``time_s`` and ``energy_j`` must be given: ``avg_power_w`` defaults to
    ``energy_j / time_s``, and what was not observed to zero (clocks in MHz, temperatures in C,
    durations in s), empty or None, ``energy_source`` to ``"unknown"``. The measurement loop
    (``measure.py``) states every field; the record format is the same either way.
    """

    point: OperatingPoint
    time_s: float
    energy_j: float
    avg_power_w: float = math.nan  # NaN: energy_j / time_s (filled in at construction)
    energy_above_idle_j: float | None = None
    sm_mhz_mean: float = 0.0
    sm_mhz_min: int = 0
    mem_mhz_mean: float = 0.0
    mem_mhz_min: int = 0
    temp_c_start: int = 0
    temp_c_end: int = 0
    reasons: list[str] = field(default_factory=list)
    iterations: int = 1  # per trial
    trials: int = 1
    spread_rel: float = 0.0
    window_s: float = 0.0  # duration of one trial's measurement window
    warmup_s: float = 0.0
    energy_source: str = "unknown"  # "counter" or "polled_power" when measured
    flags: list[str] = field(default_factory=list)
    #: per trial: start_s / end_s (measurement clock), iterations, energy_j and time_s per iteration
    samples: list[Sample] = field(default_factory=list)
    # derived throughput, filled from the problem's Work
    tflops: float | None = None
    gbs: float | None = None
    tflop_per_j: float | None = None
    #: every knob in force while measuring: sm_mhz / mem_mhz (locked clock, None unlocked),
    #: power_limit_w (read from the GPU), power_limit_w_default, as_found (knobs left as the
    #: sweep found them); empty in records written before it existed
    in_force: dict[str, Any] = field(default_factory=dict)
    #: fast method: the correction to the steady temperature (raw_energy_j, rel, rel_se,
    #: temp_mean_c, temp_ss_c, temp_ss_source) and the sweep's thermal model when it was made
    thermal: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if math.isnan(self.avg_power_w):
            self.avg_power_w = self.energy_j / self.time_s

    @property
    def effective_point(self) -> OperatingPoint:
        """The settings this point was measured under: its own knobs, plus those the sweep left
        as found where they were not at driver defaults (a sweep after ``wattbench apply``)."""
        p, f = self.point, self.in_force
        found = set(f.get("as_found", ()))
        sm = f.get("sm_mhz") if "sm" in found else p.sm_mhz
        mem = f.get("mem_mhz") if "mem" in found else p.mem_mhz
        limit = p.power_limit_w
        if "power" in found and f.get("power_limit_w") is not None:
            default = f.get("power_limit_w_default")
            if default is None or abs(f["power_limit_w"] - default) > LIMIT_TOLERANCE_W:
                limit = float(f["power_limit_w"])
        return OperatingPoint(sm, mem, limit)

    @property
    def settings_text(self) -> str:
        """Every knob in force, e.g. ``SM 900 MHz, limit 300 W (as found)``; for the baseline,
        the state it was measured in."""
        if not self.in_force:
            return str(self.point)
        e = self.effective_point
        found = set(self.in_force.get("as_found", ()))
        bits = [
            text + (" (as found)" if knob in found else "")
            for knob, value, text in (
                ("sm", e.sm_mhz, f"SM {e.sm_mhz} MHz"),
                ("mem", e.mem_mhz, f"mem {e.mem_mhz} MHz"),
                ("power", e.power_limit_w, f"limit {e.power_limit_w or 0:g} W"),
            )
            if value is not None
        ]
        if self.point.is_baseline:
            return "baseline: " + (", ".join(bits) or "driver defaults")
        return ", ".join(bits)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["point"] = self.point.to_json()
        d["point_key"] = self.point.key
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Measurement:
        """From a run record's point; ValueError naming the first of :data:`RECORDED_FIELDS`
        it lacks or a time, energy or power that is not a finite number (a damaged record; the
        default that computes ``avg_power_w`` is for code, never for a record), TypeError for
        a key that is no field."""
        missing = [k for k in RECORDED_FIELDS if k not in d]
        if missing:
            raise ValueError(f"it has no {missing[0]}")
        for k in ("time_s", "energy_j", "avg_power_w"):
            if not isinstance(d[k], (int, float)) or not math.isfinite(d[k]):
                raise ValueError(f"its {k} is {d[k]!r}, not a finite number")
        d = dict(d)
        d.pop("point_key", None)
        d["point"] = OperatingPoint.from_json(d["point"])
        return cls(**d)

    def __str__(self) -> str:
        return (
            f"{self.point}: {self.time_s * 1e3:.3f} ms/it, {self.energy_j:.4g} J/it, "
            f"{self.avg_power_w:.1f} W, SM {self.sm_mhz_mean:.0f} MHz"
            + (f" [{', '.join(self.flags)}]" if self.flags else "")
        )
