"""Fit a simulator spec to a real GPU: sweep records and an acceptance run's sensor trace.

Starting from a built-in spec of the same model (every field not fitted keeps its value, and its
source), :func:`fit` estimates:

* ``performance.compute_efficiency``: each compute-bound point's TFLOP/s over the dtype's peak
  at the clock it ran at (median over points);
* ``power.idle_w``: the median idle power of the records;
* ``power.dynamic_w`` and ``voltage.exponent``: for each exponent on a grid, the switching power
  is linear in ``dynamic_w`` at every point's measured clock and temperature, so it is solved in
  closed form (relative least squares); the exponent with the least residual wins. Leakage, the
  knee and the voltage range keep the base spec's values (one problem's power-vs-clock curve
  cannot tell them apart);
* ``thermal.ambient_c`` and the total thermal resistance: a straight line through the points'
  steady temperatures against their power (split over the poles as in the base spec);
* ``sensors.update_period_s``: the energy counter's measured period; ``sensors.power_average_s``:
  the boxcar width that best turns the counter's power trace into GetPowerUsage's readings; the
  slowest thermal pole's time constant: the best fit of the temperature rise in the trace;
* ``power.data_dynamic_fraction``: from the trace's zeros-vs-random phases, the share of the
  switching power that makes the measured zeros-minus-random power difference, each phase at
  its own measured clocks and temperature (the difference, so an offset the rest of the spec
  leaves cancels; see :func:`_fit_data`). What could not be fitted is said, with why
  (``Fit.not_fitted``).

The agreement table sets the fitted and the base spec side by side against every measured point.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattbench.kernels.work import Work
from wattbench.profiler.errors import UsageError
from wattbench.profiler.sim import physics
from wattbench.profiler.sim.spec import GpuSpec, parse_spec
from wattbench.profiler.sim.spec_text import toml_text
from wattbench.profiler.store import RunRecord
from wattbench.profiler.validate.sensors import Sample, characterise_data, counter_updates

EXPONENTS = tuple(round(1.0 + 0.02 * i, 2) for i in range(151))  # 1.00 .. 4.00
WINDOWS_S = tuple(round(0.02 * i, 2) for i in range(101))  # 0 .. 2 s
TAUS_S = tuple(round(0.1 * 1.05**i, 3) for i in range(100))  # 0.1 .. ~12 s


@dataclass(frozen=True)
class Point:
    """One measured point, as the fit uses it: achieved clocks (MHz), steady temperature (C),
    power (W), time per iteration (s), the workload."""

    sm_mhz: float
    mem_mhz: float
    temp_c: float
    power_w: float
    time_s: float
    work: physics.Workload


@dataclass
class Fit:
    """The base spec, the fitted one (and its TOML text), what was fitted (path -> base value,
    fitted value, how) and the points it was fitted to."""

    base: GpuSpec
    spec: GpuSpec | None = None
    text: str = ""
    fitted: dict[str, tuple[Any, Any, str]] = field(default_factory=dict)
    #: what the measurements could have fitted but did not (path -> why): the base's value kept
    not_fitted: dict[str, str] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)


def points_of(records: Sequence[RunRecord]) -> list[Point]:
    """Usable points: complete records, no throttling or missed clock, a locked or default
    clock at the default power limit."""
    out = []
    for rec in records:
        if rec.status != "complete":
            continue
        work = physics.Workload.of(rec.work)
        for m in rec.points:
            if m.flags or m.point.power_limit_w is not None:
                continue
            temp = (m.thermal or {}).get("temp_ss_c")
            temp = float(temp) if temp is not None else float(m.temp_c_end)
            out.append(Point(m.sm_mhz_mean, m.mem_mhz_mean, temp, m.avg_power_w, m.time_s, work))
    return out


def _with(raw: dict[str, Any], path: str, value: Any) -> None:
    *heads, last = path.split(".")
    d = raw
    for h in heads:
        d = d[h]
    d[last] = value


def _get(raw: dict[str, Any], path: str) -> Any:
    d: Any = raw
    for h in path.split("."):
        d = d[h]
    return d


def _spec(raw: dict[str, Any], source: str) -> GpuSpec:
    return parse_spec(toml_text(raw), source)


def _predicted_w(spec: GpuSpec, p: Point) -> float:
    t = physics.iteration_timing(spec, p.work, p.sm_mhz, p.mem_mhz)
    board = physics.board_w(spec)
    return physics.power_w(spec, board, p.sm_mhz, p.mem_mhz, p.temp_c, t.sm_activity,
                           t.memory_activity, dtype=p.work.dtype)  # fmt: skip


def fit(base: GpuSpec, records: Sequence[RunRecord], trace: dict[str, Any] | None) -> Fit:
    """The fitted spec (see module); ``trace``: an acceptance run's ``sensor-trace.json``."""
    points = points_of(records)
    if len(points) < 4:
        raise UsageError(
            f"{len(points)} usable points in the records (at least 4 are needed)",
            "sweep SM clocks at the default power limit first (wattbench sweep --sm-clocks ...)",
        )
    raw = copy.deepcopy(base.raw)
    result = Fit(base)

    def set_(path: str, value: Any, how: str, shown: tuple[str, Any, Any] | None = None) -> None:
        """Set ``path`` in the spec; ``shown``: (name, base value, fitted value) to report when
        the value itself (a list of poles) does not read well."""
        name, old, new = shown or (path, _get(base.raw, path), value)
        result.fitted[name] = (old, new, how)
        _with(raw, path, value)

    def skip_(path: str, why: str) -> None:
        """``path`` keeps the base spec's value: ``why``."""
        result.not_fitted[path] = why

    # performance: compute-bound points (the base spec's roofline says which)
    ceffs = []
    for p in points:
        t = physics.iteration_timing(base, p.work, p.sm_mhz, p.mem_mhz)
        busy = p.time_s - base.performance.launch_overhead_us * 1e-6
        if t.compute_bound and busy > 0:
            peak_tflops = base.peak_tflops(p.work.dtype) * p.sm_mhz / base.clocks.sm_mhz_max
            ceffs.append(p.work.tflops(busy) / peak_tflops)
    if ceffs:
        set_("performance.compute_efficiency", round(statistics.median(ceffs), 4),
             f"median of {len(ceffs)} compute-bound points")  # fmt: skip
    idle = [r.idle_power_w for r in records if r.idle_power_w]
    if idle:
        set_("power.idle_w", round(statistics.median(idle), 2), f"median of {len(idle)} records")
    _fit_thermal(points, raw, set_)
    _fit_power(points, raw, base.source, set_)
    if trace is not None:
        _fit_sensors(trace, raw, set_)
        _fit_data(trace, raw, base.source, set_, skip_)
    header = (
        f"Fitted by `wattbench sim fit` from {len(records)} run record(s) of "
        f"{records[0].device.name}" + (" and a sensor trace" if trace else "") + ".\n"
        f"Base spec: {base.key}; every field not listed keeps the base spec's value and source.\n"
        + "\n".join(f"fitted {k} = {v[1]} (base {v[0]}): {v[2]}" for k, v in result.fitted.items())
        + "".join(f"\nnot fitted {k} (base kept): {why}" for k, why in result.not_fitted.items())
    )
    raw["key"] = f"{base.key}-fitted"
    result.text = toml_text(raw, header)
    result.spec = parse_spec(result.text, "fitted spec")
    result.points = points
    return result


def _fit_thermal(points: list[Point], raw: dict[str, Any], set_) -> None:
    xs, ys = [p.power_w for p in points], [p.temp_c for p in points]
    if max(xs) - min(xs) < 50:
        return  # too little spread in power to tell ambient from resistance
    slope, intercept = statistics.linear_regression(xs, ys)
    poles = raw["thermal"]["poles"]
    total = sum(p["resistance_c_per_w"] for p in poles)
    scaled = [dict(p, resistance_c_per_w=round(p["resistance_c_per_w"] * slope / total, 5))
              for p in poles]  # fmt: skip
    set_("thermal.ambient_c", round(intercept, 2), "intercept of steady temperature vs power")
    name = "thermal resistance, all poles (C/W)"
    set_("thermal.poles", scaled, "slope of steady temperature vs power; base split kept",
         (name, round(total, 5), round(slope, 5)))  # fmt: skip


def _fit_power(points: list[Point], raw: dict[str, Any], source: str, set_) -> None:
    best = None
    for exponent in EXPONENTS:
        _with(raw, "voltage.exponent", exponent)
        _with(raw, "power.dynamic_w", 1.0)
        one = _spec(raw, source)
        _with(raw, "power.dynamic_w", 2.0)
        two = _spec(raw, source)
        # power is affine in dynamic_w (P = rest + D * u, board power included): per point,
        # then relative least squares for D in closed form
        rows = []
        for p in points:
            p1, p2 = _predicted_w(one, p), _predicted_w(two, p)
            rows.append((p1 - (p2 - p1), p2 - p1, p.power_w))
        num = sum(u * (y - r) / y**2 for r, u, y in rows)
        den = sum(u * u / y**2 for r, u, y in rows)
        if den <= 0:
            continue
        d = num / den
        err = sum(((r + d * u) - y) ** 2 / y**2 for r, u, y in rows)
        if best is None or err < best[0]:
            best = (err, exponent, d)
    if best is None:
        return
    err, exponent, d = best
    rms = (err / len(points)) ** 0.5
    set_("voltage.exponent", exponent, f"grid search, power rms error {rms:.2%}")
    set_("power.dynamic_w", round(d, 1), "least squares at that exponent")


def _fit_sensors(trace: dict[str, Any], raw: dict[str, Any], set_) -> None:
    samples = trace["samples"]
    changes = counter_updates([Sample(**s) for s in samples])
    if len(changes) < 4:
        return
    period = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(changes))
    set_("sensors.update_period_s", round(period, 4), "median interval of counter updates")
    power = [((a[0] + b[0]) / 2, (b[1] - a[1]) / (b[0] - a[0]), b[0] - a[0])
             for a, b in itertools.pairwise(changes) if b[0] > a[0]]  # fmt: skip
    usage = [(s["t_s"], s["usage_w"]) for s in samples if s.get("usage_w") is not None]

    def boxcar(t: float, width: float) -> float:
        if width <= 0:
            return next((w for tt, w, _ in reversed(power) if tt <= t), power[0][1])
        inside = [(w, dt) for tt, w, dt in power if t - width <= tt <= t]
        if not inside:
            return next((w for tt, w, _ in reversed(power) if tt <= t), power[0][1])
        return sum(w * dt for w, dt in inside) / sum(dt for _, dt in inside)

    t_first = power[0][0]
    scored = []
    for width in WINDOWS_S:
        pairs = [(boxcar(t, width), u) for t, u in usage if t >= t_first + width]
        if len(pairs) >= 10:
            scored.append((statistics.fmean((a - b) ** 2 for a, b in pairs), width))
    if scored:
        err, width = min(scored)
        set_("sensors.power_average_s", width, "boxcar width turning counter power into usage")
    start, end = trace["load"]
    temps = [(s["t_s"] - start, s["temperature_c"]) for s in samples
             if s.get("temperature_c") is not None and start <= s["t_s"] <= end]  # fmt: skip
    poles = raw["thermal"]["poles"]
    if len(temps) < 10 or len(poles) < 1:
        return
    t0 = temps[0][1]
    rise = temps[-1][1] - t0
    if rise < 2:
        return
    fast = poles[:-1]
    slow_r = poles[-1]["resistance_c_per_w"]
    fast_r = sum(p["resistance_c_per_w"] for p in fast)
    # the step's amplitude from the resistances: rise = dP * (fast_r + slow_r * (1 - e^-T/tau))
    span = temps[-1][0]
    scored = []
    for tau in TAUS_S:
        amp = rise / (fast_r + slow_r * (1 - math.exp(-span / tau)))
        model = [t0 + amp * (fast_r + slow_r * (1 - math.exp(-t / tau)))
                 for t, _ in temps]  # fmt: skip
        err = statistics.fmean((m - y) ** 2 for m, (_, y) in zip(model, temps, strict=True))
        scored.append((err, tau))
    _, tau = min(scored)
    new = [dict(p) for p in poles]
    old = new[-1]["time_constant_s"]
    new[-1]["time_constant_s"] = tau
    set_("thermal.poles", new, "temperature rise over the load step",
         ("slowest thermal pole's time constant (s)", old, tau))  # fmt: skip


#: the largest relative error of the spec's power for the random phase at which the data
#: share is still fitted: beyond it the rest of the power model is off, and the share would
#: absorb its error
DATA_FIT_MAX_MODEL_ERROR = 0.10


def _fit_data(trace: dict[str, Any], raw: dict[str, Any], source: str, set_, skip) -> None:
    """``power.data_dynamic_fraction`` from the zeros / random phases of the trace.

    Model (``sim/physics.py``): a phase's power is the spec's power at its measured clocks and
    temperature on random data, less ``f`` times its switching power for zeros. With ``delta``
    any error of the rest of the model common to both phases, ``R = R_model + delta`` and
    ``Z = Z_random_model - f * D_z + delta``, so ``f = (Z_random_model - R_model - (Z - R)) /
    D_z``: the measured difference is used, and such an offset cancels. Uncapped, the two
    phases share a clock and the difference is the data's power; at a power cap both draw the
    cap and the zeros phase runs faster, so ``f`` comes from the clock step through the spec's
    voltage curve (the note says which)."""
    name = "power.data_dynamic_fraction"
    if "data_samples" not in trace or "work" not in trace:
        return skip(name, "the trace has no zeros phase (written before it existed)")
    figures = characterise_data([Sample(**s) for s in trace["data_samples"]])
    random, zeros = figures["random"], figures["zeros"]
    missing = [f"{ph} {k}" for ph, d in (("random", random), ("zeros", zeros))
               for k, v in d.items() if v is None]  # fmt: skip
    if missing:
        return skip(name, f"the zeros phases lack {', '.join(missing)}")
    work = physics.Workload.of(Work.from_json(trace["work"]))
    spec = _spec(raw, source)
    board = physics.board_w(spec)

    def at(ph: dict[str, float]) -> tuple[float, float]:
        """(power as if on random data, its data-dependent switching power) at a phase."""
        t = physics.iteration_timing(spec, work, ph["sm_mhz"], ph["mem_mhz"])
        full = physics.power_w(spec, board, ph["sm_mhz"], ph["mem_mhz"], ph["temp_c"],
                               t.sm_activity, t.memory_activity, dtype=work.dtype)  # fmt: skip
        dyn = physics.dynamic_w(spec, ph["sm_mhz"], t.sm_activity, dtype=work.dtype)
        return full, dyn

    random_model_w, _ = at(random)
    zeros_random_w, zeros_dyn_w = at(zeros)
    off = random_model_w / random["power_w"] - 1
    if abs(off) > DATA_FIT_MAX_MODEL_ERROR:
        measured = f"{random['power_w']:.0f} W"
        return skip(name, f"the spec's power is {off:+.0%} off the random phase's {measured}: "
                          "fit the power model first (sweep records)")  # fmt: skip
    fraction = (
        zeros_random_w - random_model_w - (zeros["power_w"] - random["power_w"])
    ) / zeros_dyn_w
    clocks = zeros["sm_mhz"] / random["sm_mhz"]
    regime = (f"zeros ran at {clocks:.3f}x the SM clock (power cap): from the clock step"
              if clocks > 1.005 else "same clock: from the power difference")  # fmt: skip
    if not 0.0 <= fraction <= 1.0:
        return skip(name, f"the measurements give {fraction:.3f}, outside 0..1 ({regime})")
    watts = f"zeros {zeros['power_w']:.0f} W vs random {random['power_w']:.0f} W"
    set_(name, round(fraction, 3), f"{watts}; {regime}")


def agreement(result: Fit) -> list[dict[str, Any]]:
    """Per point: measured power and time, and the fitted and the base spec's (relative
    errors), both at the point's measured clock and temperature."""
    rows = []
    for p in result.points:
        row: dict[str, Any] = {"sm_mhz": round(p.sm_mhz), "power_w": p.power_w, "time_s": p.time_s}
        for name, spec in (("fitted", result.spec), ("base", result.base)):
            assert spec is not None
            w = _predicted_w(spec, p)
            t = physics.iteration_timing(spec, p.work, p.sm_mhz, p.mem_mhz).time_s
            row[f"{name}_power_rel"] = w / p.power_w - 1
            row[f"{name}_time_rel"] = t / p.time_s - 1
        rows.append(row)
    return rows


def load_trace(path: str | Path) -> dict[str, Any]:
    """An acceptance run's sensor trace: ``sensor-trace.json`` or the folder holding it."""
    p = Path(path)
    p = p / "sensor-trace.json" if p.is_dir() else p
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read a sensor trace at {p} ({exc})",
                         "pass the folder of a `wattbench validate` run") from None  # fmt: skip
    if not isinstance(doc, dict) or "samples" not in doc or "load" not in doc:
        raise UsageError(f"{p} is not a sensor trace", "pass a `wattbench validate` run's folder")
    return doc
