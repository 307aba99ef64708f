"""Calibration of the simulated GPUs against published real-GPU observations.

``observations.toml`` holds what was published (value, band, source); :func:`check` runs each
observation's experiment (:mod:`.experiments`) on a simulated GPU and says whether the simulated
figure lies in the band. ``wattbench sim check`` prints the result; tests/test_sim_calibration.py
asserts it for every built-in spec.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from wattbench.profiler.errors import SpecError
from wattbench.profiler.sim.calibration.experiments import EXPERIMENTS
from wattbench.profiler.sim.spec import GpuSpec

_FIELDS = (
    "id", "gpu", "experiment", "quantity", "unit", "published", "band", "band_note", "source",
)  # fmt: skip


@dataclass(frozen=True)
class Observation:
    """One published figure and the band a simulated GPU must reproduce it in."""

    id: str
    gpu: str  # the built-in spec key it applies to
    experiment: str
    quantity: str
    unit: str
    published: str
    band: tuple[float, float]
    band_note: str
    source: str
    params: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Verdict:
    """A simulated figure against one observation."""

    observation: Observation
    simulated: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        lo, hi = self.observation.band
        return self.simulated is not None and lo <= self.simulated <= hi

    def __str__(self) -> str:
        o = self.observation
        got = f"{self.simulated:.4g}" if self.simulated is not None else f"error: {self.error}"
        verdict = "in band" if self.ok else "OUT OF BAND"
        return f"{o.id}: simulated {got} {o.unit}, band {o.band[0]:g}-{o.band[1]:g}: {verdict}"

    def to_json(self) -> dict[str, Any]:
        o = self.observation
        return {
            "id": o.id,
            "gpu": o.gpu,
            "quantity": o.quantity,
            "unit": o.unit,
            "published": o.published,
            "band": list(o.band),
            "simulated": self.simulated,
            "in_band": self.ok,
            "error": self.error,
            "source": o.source,
        }


def default_observations_path() -> Path:
    return Path(str(resources.files("wattbench.profiler.sim.calibration") / "observations.toml"))


def load_observations(path: str | Path | None = None) -> list[Observation]:
    """The observations of ``path`` (default: the ones shipped with wattbench), validated."""
    p = Path(path) if path is not None else default_observations_path()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(
            f"cannot read observations file {str(p)!r}: {exc.strerror or exc}",
            "check the path; the format is in docs/calibration.md",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(
            f"observations file {p}: not valid TOML ({exc})", "fix the syntax"
        ) from None
    out = []
    for i, raw in enumerate(data.get("observation", [])):
        where = f"observations file {p}: observation {i + 1}"
        missing = [f for f in _FIELDS if f not in raw]
        unknown = sorted(set(raw) - set(_FIELDS) - {"params"})
        if missing or unknown:
            raise SpecError(
                f"{where}: {'missing ' + ', '.join(missing) if missing else ''}"
                f"{'; ' if missing and unknown else ''}"
                f"{'unknown ' + ', '.join(unknown) if unknown else ''}",
                "see docs/calibration.md for the fields",
            )
        band = raw["band"]
        if (
            not isinstance(band, list)
            or len(band) != 2
            or not all(isinstance(x, (int, float)) for x in band)
            or band[0] > band[1]
        ):
            raise SpecError(f"{where}: band must be [low, high]", "fix the band")
        if raw["experiment"] not in EXPERIMENTS:
            raise SpecError(
                f"{where}: unknown experiment {raw['experiment']!r}",
                f"use one of {', '.join(EXPERIMENTS)}",
            )
        out.append(
            Observation(
                **{f: raw[f] for f in _FIELDS if f != "band"},
                band=(float(band[0]), float(band[1])),
                params=dict(raw.get("params", {})),
            )
        )
    return out


def observations_for(key: str, observations: list[Observation]) -> list[Observation]:
    return [o for o in observations if o.gpu == key]


def check(spec: GpuSpec, observations: list[Observation]) -> list[Verdict]:
    """Run each observation's experiment on ``spec`` (each experiment and parameter set once)."""
    results: dict[str, dict[str, float] | Exception] = {}
    verdicts = []
    for o in observations:
        key = json.dumps([o.experiment, o.params], sort_keys=True)
        if key not in results:
            try:
                results[key] = EXPERIMENTS[o.experiment](spec, o.params)
            except Exception as exc:  # a spec the experiment cannot run is a verdict, not a crash
                results[key] = exc
        r = results[key]
        if isinstance(r, Exception):
            verdicts.append(Verdict(o, None, f"{type(r).__name__}: {r}"))
        elif o.quantity not in r:
            verdicts.append(Verdict(o, None, f"experiment {o.experiment} has no {o.quantity}"))
        else:
            verdicts.append(Verdict(o, r[o.quantity]))
    return verdicts
