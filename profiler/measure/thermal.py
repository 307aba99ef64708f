"""A sweep's thermal model, fitted online from the sweep's own readings, and the correction of a
briefly measured point to its steady state.

Model (one pole; a slower pole that the data cannot show stays in the residuals and the
uncertainty):

* at constant settings, die temperature approaches its steady value exponentially:
  ``T(t) = T_ss + (T_0 - T_ss) * exp(-t / tau_s)``; ``T_ss = ambient_c + r_c_per_w * P``;
* leakage power grows with temperature. Below the power cap the clock holds, so power grows:
  ``P(T) = P(T_ref) + g(f) * (T - T_ref)`` with ``g(f) = leak_w_per_c + leak_w_per_c_per_ghz *
  (f / 1 GHz - 1)``: an absolute slope (W/C), because leakage scales with voltage, not with a
  point's switching power (one slope relative to each point's power is off by 4x between the
  lowest and highest clocks), and linear in the SM clock ``f`` because voltage rises with it;
  energy per iteration is ``P * t_iter``.
  At the cap power is fixed and the clock gives way, so time grows instead:
  ``t(T) = t(T_ref) * (1 + cap_time_rel_per_c * (T - T_ref))``, and energy with it.

Fitted from a point's windows (time, mean temperature, power, time per iteration): ``tau_s``
pooled over every point of the sweep (a 1-D search on a log grid; each point's ``T_ss`` is then
linear least squares), ``g(f)`` pooled over the points below the cap (its clock term only
when their clocks span at least ``MIN_CLOCK_SPAN_MHZ``) and
``cap_time_rel_per_c`` over the points at it (each point's windows against its own means),
``ambient_c`` and ``r_c_per_w`` from the points' ``(P, T_ss)``. A model persisted for the GPU (by
UUID) from earlier sweeps is the prior until this sweep has data of its own. Units: s, degrees
C, W, W per C, relative per C.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wattbench.profiler.jsonio import write_json_atomic

#: candidate time constants (s): a log grid from 20 ms to 300 s
TAU_GRID_S = tuple(0.02 * (300 / 0.02) ** (i / 80) for i in range(81))
#: a point's temperature must move this much (degrees C; NVML reports whole degrees) to show tau
MIN_TEMP_SPAN_C = 2.0
#: the leakage slope gets a clock term when the moving points' clocks span this much (MHz)
MIN_CLOCK_SPAN_MHZ = 300.0
SCHEMA = "wattbench.thermal/2"


@dataclass(frozen=True)
class WindowReading:
    """One measurement window of a point: its middle (s since the point's settings were applied),
    mean temperature (degrees C), energy per iteration (J), mean power (W), time per iteration
    (s) and whether the power cap held the clock down (SwPowerCap seen)."""

    t_s: float
    temp_c: float
    energy_j: float
    power_w: float
    time_s: float = 0.0
    capped: bool = False
    sm_mhz: float = 0.0  # mean SM clock

    def to_json(self) -> list[float]:
        return [
            self.t_s, self.temp_c, self.energy_j, self.power_w, self.time_s, int(self.capped),
            self.sm_mhz,
        ]  # fmt: skip

    @classmethod
    def from_json(cls, row: Any) -> WindowReading:
        t_s, temp_c, energy_j, power_w, time_s, capped, sm_mhz = (float(x) for x in row)
        return cls(t_s, temp_c, energy_j, power_w, time_s, bool(capped), sm_mhz)


@dataclass
class ThermalModel:
    """The fitted parameters (None: not identifiable yet) and how many points they rest on."""

    tau_s: float | None = None
    ambient_c: float | None = None
    r_c_per_w: float | None = None
    leak_w_per_c: float | None = None  # g at 1 GHz
    leak_w_per_c_per_ghz: float | None = None  # g's change per GHz of SM clock
    #: covariance of (leak_w_per_c, leak_w_per_c_per_ghz): [var, var, cov]
    leak_cov: list[float] | None = None
    cap_time_rel_per_c: float | None = None
    cap_time_rel_per_c_se: float | None = None
    n_points: int = 0

    def leak_slope_w_per_c(self, sm_mhz: float) -> tuple[float, float] | None:
        """(g, its s.e.) at an SM clock; None when not fitted."""
        if self.leak_w_per_c is None:
            return None
        x = sm_mhz / 1000 - 1
        b = self.leak_w_per_c_per_ghz or 0.0
        va, vb, cab = self.leak_cov or (0.0, 0.0, 0.0)
        return self.leak_w_per_c + b * x, math.sqrt(max(va + x * x * vb + 2 * x * cab, 0.0))

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
        known: dict[str, Any] = {k: d.get(k) for k in cls.__dataclass_fields__}
        for k, v in known.items():
            if k == "n_points":
                known[k] = int(v) if isinstance(v, int) and v >= 0 else 0
            elif k == "leak_cov":
                if (
                    isinstance(v, list)
                    and len(v) == 3
                    and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
                ):
                    known[k] = [float(x) for x in v]
                else:
                    known[k] = None
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
    noise_rel: float  # the part of rel_se from the trials' own scatter
    time_rel: float  # corrected time per iteration / measured - 1 (non-zero only at the cap)
    temp_mean_c: float  # mean temperature of the trial windows
    temp_ss_c: float | None  # predicted steady temperature (None: taken as reached)
    temp_ss_source: str  # "trajectory" | "model" | "reached"
    capped: bool  # the point ran at the power cap (its time, not its power, follows T)

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
    #: relative scatter of one window's energy around its point's trend, pooled over the
    #: sweep's points (0 until two points have 3+ windows)
    window_noise_rel: float = 0.0

    def __post_init__(self) -> None:
        self.model = ThermalModel(**asdict(self.prior))

    @classmethod
    def of_points(cls, prior: ThermalModel, points: list[list[WindowReading]]) -> ThermalFit:
        """A fit over ``points`` (each a point's windows), e.g. rebuilt from a resumed record."""
        fit = cls(prior=prior)
        fit.points = [list(p) for p in points if p]
        fit._refit()
        return fit

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

    def _pooled_noise_rel(self) -> float:
        """Relative residual SD of window energies about a straight line in time, per point
        (the trend -- heating, cooling -- is not noise), pooled over the points (by degrees of
        freedom); the first window of a point (settings taking hold) is left out."""
        sse, dof = 0.0, 0
        for w in self.points:
            rows = [(r.t_s, r.energy_j) for r in w[1:]]
            if len(rows) < 3:
                continue
            t_mean = statistics.fmean(t for t, _ in rows)
            e_mean = statistics.fmean(e for _, e in rows)
            stt = sum((t - t_mean) ** 2 for t, _ in rows)
            slope = sum((t - t_mean) * (e - e_mean) for t, e in rows) / stt if stt > 0 else 0.0
            sse += sum(((e - e_mean - slope * (t - t_mean)) / e_mean) ** 2 for t, e in rows)
            dof += len(rows) - 2
        return math.sqrt(sse / dof) if dof >= 4 else 0.0

    def _refit(self) -> None:
        self.window_noise_rel = self._pooled_noise_rel()
        m = ThermalModel(**asdict(self.prior))
        m.n_points = len(self.points) + self.prior.n_points
        moving = self._moving()
        if moving:
            best = min(TAU_GRID_S, key=lambda tau: sum(_fit_exp(p, tau)[2] for p in moving))
            # a best fit at either end of the grid is no fit: the data show no curvature
            if best not in (TAU_GRID_S[0], TAU_GRID_S[-1]):
                m.tau_s = best
        leak = self._leak()
        if leak is not None:
            m.leak_w_per_c, m.leak_w_per_c_per_ghz, m.leak_cov = leak
        m.cap_time_rel_per_c, m.cap_time_rel_per_c_se = self._cap_slope()
        if m.cap_time_rel_per_c is None:
            m.cap_time_rel_per_c = self.prior.cap_time_rel_per_c
            m.cap_time_rel_per_c_se = self.prior.cap_time_rel_per_c_se
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

    def _centred(self, capped: bool) -> tuple[list[tuple[float, float, float]], int]:
        """(temperature - point mean, y - point mean, SM clock) of every window of the points
        below (``capped`` False; y = power, W) or at the cap (y = relative time per iteration);
        and how many points they come from (each point's mean costs a degree of freedom). The
        first window stays in: it carries most of a point's temperature movement, and leaving
        it out tripled the worst bias with a 3x time constant (0.31% -> 0.98%, simulated)."""
        rows = []
        n_points = 0
        for w in self.points:
            if len(w) < 3 or _is_capped(w) != capped:
                continue
            n_points += 1
            t_mean = statistics.fmean(r.temp_c for r in w)
            if capped:
                tt = statistics.fmean(r.time_s for r in w)
                if tt <= 0:
                    continue
                rows += [(r.temp_c - t_mean, r.time_s / tt - 1, r.sm_mhz) for r in w]
            else:
                p_mean = statistics.fmean(r.power_w for r in w)
                rows += [(r.temp_c - t_mean, r.power_w - p_mean, r.sm_mhz) for r in w]
        return rows, n_points

    def _leak(self) -> tuple[float, float | None, list[float]] | None:
        """``g(f)`` pooled over the points below the cap: (g at 1 GHz, change per GHz or None,
        covariance); None without a few degrees of movement."""
        rows, n_points = self._centred(capped=False)
        xs = [x for x, _, _ in rows]
        if sum(x * x for x in xs) < 4.0 or len(rows) < 4:
            return None
        moving = [f for x, _, f in rows if abs(x) >= 1.0]
        if moving and max(moving) - min(moving) >= MIN_CLOCK_SPAN_MHZ and len(rows) >= 6:
            # y = a x + b x (f - 1 GHz): normal equations of a two-column regression
            u = [(x, x * (f / 1000 - 1)) for x, _, f in rows]
            ys = [y for _, y, _ in rows]
            s11 = sum(a * a for a, _ in u)
            s22 = sum(b * b for _, b in u)
            s12 = sum(a * b for a, b in u)
            det = s11 * s22 - s12 * s12
            if det > 1e-9 * s11 * s22:
                r1 = sum(a * y for (a, _), y in zip(u, ys, strict=True))
                r2 = sum(b * y for (_, b), y in zip(u, ys, strict=True))
                ga, gb = (s22 * r1 - s12 * r2) / det, (s11 * r2 - s12 * r1) / det
                sse = sum((y - ga * a - gb * b) ** 2 for (a, b), y in zip(u, ys, strict=True))
                s2 = sse / max(len(rows) - n_points - 2, 1)
                return ga, gb, [s2 * s22 / det, s2 * s11 / det, -s2 * s12 / det]
        k, k_se = _through_origin([(x, y) for x, y, _ in rows], n_points)
        return k, None, [k_se * k_se, 0.0, 0.0]

    def _cap_slope(self) -> tuple[float | None, float | None]:
        """Relative time per iteration per C, pooled over the points at the cap (else the
        prior's)."""
        rows, n_points = self._centred(capped=True)
        if sum(x * x for x, _, _ in rows) < 4.0 or len(rows) < 4:
            return self.prior.cap_time_rel_per_c, self.prior.cap_time_rel_per_c_se
        return _through_origin([(x, y) for x, y, _ in rows], n_points)

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

    def _rel_per_c(self, windows: list[WindowReading]) -> tuple[float, float, bool]:
        """(relative energy change per C, its s.e., capped) for these windows' point."""
        m = self.model
        if _is_capped(windows):
            return m.cap_time_rel_per_c or 0.0, m.cap_time_rel_per_c_se or 0.0, True
        p_mean = statistics.fmean(r.power_w for r in windows)
        g = m.leak_slope_w_per_c(statistics.fmean(r.sm_mhz for r in windows))
        if g is None or p_mean <= 0:
            return 0.0, 0.0, False
        return g[0] / p_mean, g[1] / p_mean, False

    def carry(self, windows: list[WindowReading], temp_ss_c: float | None) -> list[float]:
        """Each window's energy per iteration carried to ``temp_ss_c`` by the fitted slope (as
        measured when the steady temperature is unknown)."""
        if temp_ss_c is None:
            return [r.energy_j for r in windows]
        k, _, _ = self._rel_per_c(windows)
        return [r.energy_j * (1 + k * (temp_ss_c - r.temp_c)) for r in windows]

    def correct(self, windows: list[WindowReading], trials: int) -> Correction:
        """Energy (and, at the cap, time) per iteration of the point's last ``trials`` windows,
        carried to the point's steady temperature (its own trajectory, else the model's
        ``T_ss(P)``), with the standard error of the result (trial noise, the slope's and the
        steady temperature's)."""
        trial = windows[-trials:]
        energies = [r.energy_j for r in trial]
        raw = statistics.fmean(energies)
        t_mean = statistics.fmean(r.temp_c for r in trial)
        own_sd = statistics.stdev(energies) / raw if len(energies) > 1 else 0.0
        # a few trials can agree by chance: the sweep's pooled window noise is the floor
        noise_rel = max(own_sd, self.window_noise_rel) / math.sqrt(len(energies))
        m = self.model
        t_ss, t_se, source = self._steady_of(windows, m.tau_s)
        held = m.tau_s is not None and windows[-1].t_s >= 3 * m.tau_s
        if source == "reached" and not held:
            predicted = m.steady_temp_c(statistics.fmean(r.power_w for r in trial))
            if predicted is not None:
                t_ss, t_se, source = predicted, 1.0, "model"
        k, k_se, capped = self._rel_per_c(trial)
        if t_ss is None or k == 0.0:
            return Correction(
                raw, raw, 0.0, noise_rel, noise_rel, 0.0, t_mean, t_ss, source, capped
            )
        dt = t_ss - t_mean
        rel = k * dt
        rel_se = math.sqrt(noise_rel**2 + (dt * k_se) ** 2 + (k * t_se) ** 2)
        time_rel = rel if capped else 0.0
        return Correction(
            raw * (1 + rel), raw, rel, rel_se, noise_rel, time_rel, t_mean, t_ss, source, capped
        )


def _through_origin(rows: list[tuple[float, float]], centred_on: int = 0) -> tuple[float, float]:
    """Least-squares slope of y on x through the origin, and its standard error; the rows were
    centred on ``centred_on`` group means (a degree of freedom each)."""
    sxx = sum(x * x for x, _ in rows)
    k = sum(x * y for x, y in rows) / sxx
    sse = sum((y - k * x) ** 2 for x, y in rows)
    return k, math.sqrt(sse / max(len(rows) - centred_on - 1, 1) / sxx)


def _is_capped(windows: list[WindowReading]) -> bool:
    """A point is at the cap when most of its windows saw the power cap hold the clock."""
    return sum(r.capped for r in windows) * 2 > len(windows)


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
    doc = {"schema": SCHEMA, "gpu_uuid": gpu_uuid, "model": model.to_json()}
    with contextlib.suppress(OSError):
        write_json_atomic(model_path(folder, gpu_uuid), doc, indent=None)
