"""A sweep's thermal model, fitted online from the sweep's own readings, and the correction of a
briefly measured point to its steady state.

Model (one pole; a slower pole that the data cannot show stays in the residuals and the
uncertainty):

* at constant settings, die temperature approaches its steady value exponentially:
  ``T(t) = T_ss + (T_0 - T_ss) * exp(-t / tau_s)``; ``T_ss = ambient_c + r_c_per_w * P``;
* energy per iteration grows with temperature (leakage; under a power cap, through the clock):
  ``E(T) = E(T_ref) * (1 + leak_rel_per_c * (T - T_ref))``.

Fitted from a point's windows (time, mean temperature, energy per iteration): ``tau_s`` pooled over
every point of the sweep (a 1-D search on a log grid; each point's ``T_ss`` is then linear least
squares), ``leak_rel_per_c`` pooled over points (each point's energy against its temperature,
through its own mean), ``ambient_c`` and ``r_c_per_w`` from the points' ``(P, T_ss)``. A model
persisted for the GPU (by UUID) from earlier sweeps is the prior until this sweep has data of its
own. Units: s, degrees C, W, relative (1/degree C).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: candidate time constants (s): a log grid from 20 ms to 300 s
TAU_GRID_S = tuple(0.02 * (300 / 0.02) ** (i / 80) for i in range(81))
#: a point's temperature must move this much (degrees C; NVML reports whole degrees) to show tau
MIN_TEMP_SPAN_C = 2.0
SCHEMA = "wattbench.thermal/1"


@dataclass(frozen=True)
class WindowReading:
    """One measurement window of a point: its middle (s since the point's settings were applied),
    mean temperature (degrees C), energy per iteration (J) and mean power (W)."""

    t_s: float
    temp_c: float
    energy_j: float
    power_w: float


@dataclass
class ThermalModel:
    """The fitted parameters (None: not identifiable yet) and how many points they rest on."""

    tau_s: float | None = None
    ambient_c: float | None = None
    r_c_per_w: float | None = None
    leak_rel_per_c: float | None = None
    leak_rel_per_c_se: float | None = None
    n_points: int = 0

    def steady_temp_c(self, power_w: float) -> float | None:
        if self.ambient_c is None or self.r_c_per_w is None:
            return None
        return self.ambient_c + self.r_c_per_w * power_w

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> ThermalModel:
        if not isinstance(d, dict):
            return cls()
        known = {k: d.get(k) for k in cls.__dataclass_fields__}
        for k, v in known.items():
            if k == "n_points":
                known[k] = int(v) if isinstance(v, int) and v >= 0 else 0
            elif not (isinstance(v, (int, float)) and math.isfinite(v)):
                known[k] = None
        return cls(**known)


@dataclass(frozen=True)
class Correction:
    """A point's energy per iteration carried to its steady-state temperature."""

    energy_j: float  # corrected, per iteration
    raw_energy_j: float  # mean over the point's trial windows
    rel: float  # energy_j / raw_energy_j - 1
    rel_se: float  # standard error of the corrected figure, relative
    temp_mean_c: float  # mean temperature of the trial windows
    temp_ss_c: float | None  # predicted steady temperature (None: taken as reached)
    temp_ss_source: str  # "trajectory" | "model" | "reached"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fit_exp(points: list[tuple[float, float]], tau_s: float) -> tuple[float, float, float, float]:
    """Least squares ``T = a + b * exp(-t / tau)``: (a, b, residual sum of squares, s.e. of a)."""
    xs = [math.exp(-t / tau_s) for t, _ in points]
    ys = [y for _, y in points]
    n = len(points)
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx <= 1e-18:
        return y_mean, 0.0, sum((y - y_mean) ** 2 for y in ys), float("inf")
    b = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / sxx
    a = y_mean - b * x_mean
    sse = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    s2 = sse / max(n - 2, 1)
    se_a = math.sqrt(max(s2, 0.25 / 12) * (1 / n + x_mean**2 / sxx))  # >= quantisation noise
    return a, b, sse, se_a


@dataclass
class ThermalFit:
    """Accumulates the sweep's points and refits the model after each."""

    prior: ThermalModel = field(default_factory=ThermalModel)
    points: list[list[WindowReading]] = field(default_factory=list)
    model: ThermalModel = field(default_factory=ThermalModel)

    def __post_init__(self) -> None:
        self.model = ThermalModel(**asdict(self.prior))

    # --- fitting ---------------------------------------------------------------------------------

    def add(self, windows: list[WindowReading]) -> None:
        """Record one point's windows and refit."""
        if windows:
            self.points.append(list(windows))
            self._refit()

    def _moving(self) -> list[list[tuple[float, float]]]:
        out = []
        for w in self.points:
            temps = [(r.t_s, r.temp_c) for r in w]
            if len(temps) >= 3 and max(t for _, t in temps) - min(t for _, t in temps) >= (
                MIN_TEMP_SPAN_C
            ):
                out.append(temps)
        return out

    def _refit(self) -> None:
        m = ThermalModel(**asdict(self.prior))
        m.n_points = len(self.points) + self.prior.n_points
        moving = self._moving()
        if moving:
            best = min(TAU_GRID_S, key=lambda tau: sum(_fit_exp(p, tau)[2] for p in moving))
            # a best fit at either end of the grid is no fit: the data show no curvature
            if best not in (TAU_GRID_S[0], TAU_GRID_S[-1]):
                m.tau_s = best
        k, k_se = self._leak()
        if k is not None:
            m.leak_rel_per_c, m.leak_rel_per_c_se = k, k_se
        # T_ss(P) rests on the points whose steady temperature is known: a fitted trajectory,
        # or a point held for three time constants (flat temperatures may still be on the way)
        pairs = []
        for w in self.points:
            t_ss, _, source = self._steady_of(w, m.tau_s)
            held = m.tau_s is not None and w[-1].t_s >= 3 * m.tau_s
            if t_ss is not None and (source == "trajectory" or held):
                pairs.append((statistics.fmean(r.power_w for r in w), t_ss))
        if len({round(p) for p, _ in pairs}) >= 2:
            p_mean = statistics.fmean(p for p, _ in pairs)
            t_mean = statistics.fmean(t for _, t in pairs)
            spp = sum((p - p_mean) ** 2 for p, _ in pairs)
            r = sum((p - p_mean) * (t - t_mean) for p, t in pairs) / spp
            if r > 0:
                m.r_c_per_w, m.ambient_c = r, t_mean - r * p_mean
        self.model = m

    def _leak(self) -> tuple[float | None, float | None]:
        """Pooled relative energy change per degree C, through each point's own mean."""
        xs, ys = [], []
        for w in self.points:
            if len(w) < 3:
                continue
            t_mean = statistics.fmean(r.temp_c for r in w)
            e_mean = statistics.fmean(r.energy_j for r in w)
            xs += [r.temp_c - t_mean for r in w]
            ys += [r.energy_j / e_mean - 1 for r in w]
        sxx = sum(x * x for x in xs)
        if sxx < 4.0 or len(xs) < 4:  # a few degrees of movement at least
            return None, None
        k = sum(x * y for x, y in zip(xs, ys, strict=True)) / sxx
        sse = sum((y - k * x) ** 2 for x, y in zip(xs, ys, strict=True))
        return k, math.sqrt(sse / (len(xs) - 1) / sxx)

    def _steady_of(
        self, windows: list[WindowReading], tau_s: float | None
    ) -> tuple[float | None, float, str]:
        """(steady temperature, its s.e., source) of one point from its own trajectory."""
        temps = [(r.t_s, r.temp_c) for r in windows]
        last = temps[-1][1]
        span = max(t for _, t in temps) - min(t for _, t in temps)
        if tau_s is None or len(temps) < 3 or span < MIN_TEMP_SPAN_C:
            return last, 0.5, "reached"  # flat within NVML's whole degrees
        a, _, _, se = _fit_exp(temps, tau_s)
        if se > 1.5 or abs(a - last) > 3 * span + 2:  # an extrapolation the data cannot carry
            return last, 0.5, "reached"
        return a, se, "trajectory"

    # --- correcting ------------------------------------------------------------------------------

    def carry(self, windows: list[WindowReading], temp_ss_c: float | None) -> list[float]:
        """Each window's energy per iteration carried to ``temp_ss_c`` by the fitted slope (as
        measured when the slope or the steady temperature is unknown)."""
        k = self.model.leak_rel_per_c or 0.0
        if temp_ss_c is None:
            return [r.energy_j for r in windows]
        return [r.energy_j * (1 + k * (temp_ss_c - r.temp_c)) for r in windows]

    def correct(self, windows: list[WindowReading], trials: int) -> Correction:
        """Energy per iteration of the point's last ``trials`` windows, carried to the point's
        steady temperature (its own trajectory, else the model's ``T_ss(P)``), with the standard
        error of the result (trial noise, the slope's and the steady temperature's)."""
        trial = windows[-trials:]
        energies = [r.energy_j for r in trial]
        raw = statistics.fmean(energies)
        t_mean = statistics.fmean(r.temp_c for r in trial)
        noise_rel = (
            statistics.stdev(energies) / math.sqrt(len(energies)) / raw if len(energies) > 1 else 0
        )
        m = self.model
        t_ss, t_se, source = self._steady_of(windows, m.tau_s)
        held = m.tau_s is not None and windows[-1].t_s >= 3 * m.tau_s
        if source == "reached" and not held:
            predicted = m.steady_temp_c(statistics.fmean(r.power_w for r in trial))
            if predicted is not None:
                t_ss, t_se, source = predicted, 1.0, "model"
        k = m.leak_rel_per_c
        if k is None or t_ss is None:
            return Correction(raw, raw, 0.0, noise_rel, t_mean, t_ss, source)
        dt = t_ss - t_mean
        rel = k * dt
        k_se = m.leak_rel_per_c_se or 0.0
        rel_se = math.sqrt(noise_rel**2 + (dt * k_se) ** 2 + (k * t_se) ** 2)
        return Correction(raw * (1 + rel), raw, rel, rel_se, t_mean, t_ss, source)


# --- persistence per GPU -------------------------------------------------------------------------


def model_path(folder: Path, gpu_uuid: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in gpu_uuid)
    return folder / f"{safe}.json"


def load_model(folder: Path, gpu_uuid: str) -> ThermalModel:
    """The model persisted for this GPU, or an empty one (missing or unreadable file)."""
    try:
        doc = json.loads(model_path(folder, gpu_uuid).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ThermalModel()
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return ThermalModel()
    return ThermalModel.from_json(doc.get("model"))


def save_model(folder: Path, gpu_uuid: str, model: ThermalModel) -> None:
    """Write atomically; a folder that cannot be written loses only this cache."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"schema": SCHEMA, "gpu_uuid": gpu_uuid, "model": model.to_json()}, f)
        os.replace(tmp, model_path(folder, gpu_uuid))
    except OSError:
        return
