"""Plots of run records, one figure per problem and kind (matplotlib, no display needed).

Kinds:

* ``energy`` -- energy per unit of work (J/TFLOP for a compute-bound problem, J/GB for a
  memory-bound one, the other unit on the right axis) and time per iteration vs SM clock: per
  GPU a line through its locked-clock points (one per memory clock and power limit swept), one
  through its points that lock no SM clock (x: power-capped), the baseline as a star, the rank
  objective's choice circled. The clock is the mean SM clock each point *achieved* (a locked
  clock that a power cap pulled down is drawn where it ran). ``normalise``: clock / the GPU's
  highest SM clock.
* ``pareto`` -- time vs energy per iteration of every point, the Pareto front as a line, the
  point each objective chose marked. ``normalise``: both relative to each GPU's baseline.
* ``bars`` -- work per joule (TFLOP/J, or GB/J when memory-bound) per GPU at the baseline and at
  the rank objective's point (``energy`` by default), with the gain.
* ``power`` -- board power vs SM clock with the default and swept power-limit lines, one panel
  per GPU. ``normalise``: one panel, clock / highest clock and power / default limit.

Titles name the problem and say whether the GPUs were simulated; text taken from run files is
escaped (no control characters, no matplotlib mathtext).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wattbench.kernels.work import Work
from wattbench.profiler.errors import UsageError
from wattbench.profiler.names import safe_name
from wattbench.profiler.report.compare import (
    PointFigures,
    ProblemComparison,
    compare_group,
    work_of_run,
)
from wattbench.profiler.report.runs import GpuKey, ProblemRuns, group_runs
from wattbench.profiler.report.table import gpu_label, printable
from wattbench.profiler.select.objectives import pareto_front
from wattbench.profiler.store import RunRecord
from wattbench.profiler.store.points import gpu_info_of_run

if TYPE_CHECKING:
    from matplotlib.typing import ColorType

KINDS = ("energy", "pareto", "bars", "power")
#: every kind; ``spread`` (units of one model side by side) only when asked for
ALL_KINDS = (*KINDS, "spread")
FORMATS = ("png", "svg")
DPI = 100
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h")


def text(s: str) -> str:
    """Untrusted text made safe for a matplotlib label: printable, ``$`` escaped (no mathtext),
    and never starting with ``_`` (which would hide a legend entry)."""
    s = printable(s).replace("$", r"\$")
    return " " + s if s.startswith("_") else s


@dataclass
class Series:
    """One GPU's points on one problem, ready to draw."""

    label: str
    color: ColorType
    work: Work
    points: list[PointFigures]
    front: list[PointFigures]
    baseline: PointFigures | None
    chosen: dict[str, PointFigures]
    sm_max_mhz: float
    default_limit_w: float | None
    swept_limits_w: list[float] = field(default_factory=list)
    model: str = ""  # the GPU model (NVML name, "[sim]" when simulated)

    def lines(self) -> list[tuple[str, dict, list[PointFigures]]]:
        """(label, line style and marker, points by achieved clock) per set of points that differ
        only in their SM clock: locked clocks at each memory clock and power limit, and the
        points that lock no SM clock (power-capped, memory-locked). The baseline is not in any."""
        groups: dict[tuple[bool, int | None, float | None], list[PointFigures]] = {}
        for p in self.points:
            if p.sm_mhz is None and p.mem_mhz is None and p.power_limit_w is None:
                continue
            locked = p.sm_mhz is not None
            # SM unlocked: one line through every power limit (a power-capping curve)
            pl = p.power_limit_w if locked or p.power_limit_w is None else -1.0
            groups.setdefault((locked, p.mem_mhz, pl), []).append(p)
        out = []
        styles = iter(("-", "--", "-.", ":") * 100)
        for (locked, mem, pl), pts in sorted(groups.items(), key=lambda kv: _order(kv[0])):
            parts = [] if locked else ["SM unlocked"]
            if mem is not None:
                parts.append(f"memory {mem} MHz")
            if pl is not None and locked:
                parts.append(f"limit {pl:g} W")
            elif pl is not None:  # the power-capping curve
                parts = ["power-capped", *parts[1:]]
            label = ", ".join([self.label, *parts])
            style = {"ls": next(styles), "marker": "." if locked else "x"}
            out.append((label, style, sorted(pts, key=lambda p: p.sm_mhz_achieved)))
        return out


def _order(key: tuple[bool, int | None, float | None]) -> tuple:
    locked, mem, pl = key
    return (not locked, mem is not None, mem or 0, pl is not None, pl or 0.0)


def _x(p: PointFigures, s: Series, normalise: bool) -> float:
    """The mean SM clock the point achieved (MHz, or a fraction of the GPU's highest clock)."""
    return p.sm_mhz_achieved / s.sm_max_mhz if normalise else p.sm_mhz_achieved


def _series(group: ProblemRuns, cmp: ProblemComparison) -> list[Series]:
    from matplotlib.colors import TABLEAU_COLORS

    colors = list(TABLEAU_COLORS.values())  # the "tab10" colormap's ten colours, as #rrggbb
    runs = {(GpuKey.of(r), str(r.path)): r for r in group.runs}
    color_of = {
        gpu: colors[i % len(colors)] for i, gpu in enumerate(sorted(r.gpu for r in cmp.rows))
    }
    out = []
    for row in cmp.rows:  # rank order; colours by GPU, the same on every plot of the same GPUs
        rec = runs[(row.gpu, row.source_run)]
        work = work_of_run(rec)
        measurements = rec.points
        figs = {m.point.key: PointFigures.of(m, work, row.peaks) for m in measurements}
        front = [figs[m.point.key] for m in pareto_front(measurements)] if measurements else []
        info = gpu_info_of_run(rec)
        clocks: list[float] = [c for v in info.sm_clocks_mhz_by_mem.values() for c in v]
        clocks += [p.sm_mhz_achieved for p in figs.values()]
        space = rec.settings.space or {}
        out.append(
            Series(
                label=text(gpu_label(row, cmp.rows)),
                color=color_of[row.gpu],
                work=work,
                points=list(figs.values()),
                front=front,
                baseline=row.baseline,
                chosen={k: v.point for k, v in row.objectives.items()},
                sm_max_mhz=max(clocks) if clocks else 1.0,
                default_limit_w=info.power_limit_w_default,
                swept_limits_w=sorted(float(w) for w in space.get("power_limits_w") or ()),
                model=row.gpu.name + (" [sim]" if row.gpu.simulated else ""),
            )
        )
    return out


def _subtitle(cmp: ProblemComparison) -> str:
    return {
        "simulated": "SIMULATED GPUs: model outputs, not measurements",
        "real": "measured on real GPUs",
    }.get(cmp.simulated, "simulated [sim] and real GPUs: [sim] figures are model outputs")


def _title(fig, cmp: ProblemComparison, what: str) -> None:
    fig.suptitle(f"{text(cmp.problem.label)}: {what}\n{_subtitle(cmp)}", fontsize=10)


def _work(cmp: ProblemComparison) -> Work:
    """The problem's work per iteration (a comparison has one when it has runs, as every
    plotted one has)."""
    if cmp.work is None:
        raise ValueError(f"{cmp.problem.label}: no runs to plot")
    return cmp.work


def _energy_unit(cmp: ProblemComparison) -> str:
    """``J/GB`` for a memory-bound problem (or one without FLOPs), else ``J/TFLOP``."""
    w = _work(cmp)
    if w.flops == 0 or (cmp.bound == "memory" and w.bytes > 0):
        return "J/GB"
    return "J/TFLOP"


def _log(ax, axis: str) -> None:
    """Log scale on ``axis`` ("x" or "y") with plain numbers at 1, 2 and 5 per decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    a.set_major_formatter(plain)
    a.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    a.set_minor_formatter(plain)


def _clock_label(normalise: bool) -> str:
    if normalise:
        return "SM clock achieved (mean) / the GPU's highest SM clock"
    return "SM clock achieved (mean, MHz)"


def plot_energy(fig, cmp: ProblemComparison, series: Sequence[Series], normalise: bool) -> None:
    unit = _energy_unit(cmp)
    ax_e, ax_t = fig.subplots(2, 1, sharex=True)
    for s in series:
        per = s.work.gb if unit == "J/GB" else s.work.tflop
        for label, style, pts in s.lines():
            xs = [_x(p, s, normalise) for p in pts]
            ax_e.plot(xs, [p.energy_j / per for p in pts], color=s.color, label=label, **style)
            ax_t.plot(xs, [p.time_s * 1e3 for p in pts], color=s.color, **style)
        b = s.baseline
        if b is not None:
            x = _x(b, s, normalise)
            ax_e.plot([x], [b.energy_j / per], "*", ms=12, color=s.color, mec="black")
            ax_t.plot([x], [b.time_s * 1e3], "*", ms=12, color=s.color, mec="black")
        c = s.chosen.get(cmp.rank_objective or "")
        if c is not None:
            x = _x(c, s, normalise)
            ax_e.plot([x], [c.energy_j / per], "o", ms=11, mfc="none", mec=s.color, mew=2)
    ax_e.plot([], [], "*", ms=10, color="grey", mec="black", label="baseline")
    if cmp.rank_objective:
        ax_e.plot([], [], "o", ms=10, mfc="none", mec="grey", mew=2,
                  label=f"chosen: {text(cmp.rank_objective)}")  # fmt: skip
    ax_e.set_ylabel(f"energy per work ({unit})")
    w = _work(cmp)
    if w.flops > 0 and w.bytes > 0:  # the same quantity in the other unit, on the right
        k = w.tflop / w.gb  # (J/GB) = (J/TFLOP) * k
        other, f = ("J/TFLOP", 1 / k) if unit == "J/GB" else ("J/GB", k)
        sec = ax_e.secondary_yaxis("right", functions=(lambda y, f=f: y * f, lambda y, f=f: y / f))
        sec.set_ylabel(other)
    ax_t.set_ylabel("time per iteration (ms)")
    times = [p.time_s for s in series for p in s.points]
    if times and max(times) / min(times) > 8:
        _log(ax_t, "y")
    ax_t.set_xlabel(_clock_label(normalise))
    for ax in (ax_e, ax_t):
        ax.grid(True, alpha=0.3)
    ax_e.legend(fontsize=7, loc="best")
    _title(fig, cmp, "energy per work and time vs SM clock")


def plot_pareto(fig, cmp: ProblemComparison, series: Sequence[Series], normalise: bool) -> None:
    ax = fig.subplots()
    markers = {o: _MARKERS[i % len(_MARKERS)] for i, o in enumerate(cmp.objectives)}
    for s in series:
        bt = s.baseline.time_s if normalise and s.baseline else 1.0
        be = s.baseline.energy_j if normalise and s.baseline else 1.0
        tx = 1.0 if normalise and s.baseline else 1e3  # ms when absolute

        def xy(p: PointFigures, bt=bt, be=be, tx=tx) -> tuple[float, float]:
            return p.time_s / bt * tx, p.energy_j / be

        pts = [xy(p) for p in s.points]
        ax.scatter([x for x, _ in pts], [y for _, y in pts], s=10, color=s.color, alpha=0.35)
        front = [xy(p) for p in s.front]
        ax.plot([x for x, _ in front], [y for _, y in front], "-", color=s.color,
                label=f"{s.label} (Pareto front)")  # fmt: skip
        if s.baseline is not None:
            x, y = xy(s.baseline)
            ax.plot([x], [y], "*", ms=13, color=s.color, mec="black")
        for name, p in s.chosen.items():
            if name in markers:
                x, y = xy(p)
                ax.plot([x], [y], markers[name], ms=9, color=s.color, mec="black")
    ax.plot([], [], "*", ms=11, color="grey", mec="black", label="baseline")
    for name, m in markers.items():
        ax.plot([], [], m, ms=8, color="grey", mec="black", label=f"chosen: {text(name)}")
    if normalise:
        ax.set_xlabel("time per iteration / baseline")
        ax.set_ylabel("energy per iteration / baseline")
    else:
        _log(ax, "x")
        _log(ax, "y")
        ax.set_xlabel("time per iteration (ms)")
        ax.set_ylabel("energy per iteration (J)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _title(fig, cmp, "time vs energy, Pareto front and chosen points")


def plot_bars(fig, cmp: ProblemComparison, series: Sequence[Series], normalise: bool) -> None:
    ax = fig.subplots()
    by_bytes = _energy_unit(cmp) == "J/GB"
    unit = "GB/J" if by_bytes else "TFLOP/J"
    obj = cmp.rank_objective

    def value(p: PointFigures | None) -> float:
        if p is None:
            return 0.0
        return p.gb_per_j if by_bytes else p.tflop_per_j

    width = 0.38
    for i, s in enumerate(series):
        base, best = value(s.baseline), value(s.chosen.get(obj or ""))
        ax.bar(i - width / 2, base, width, color=s.color, alpha=0.45, edgecolor="black")
        ax.bar(i + width / 2, best, width, color=s.color, edgecolor="black")
        ax.annotate(f"{base:.3g}", (i - width / 2, base), ha="center", va="bottom", fontsize=7)
        label = f"{best:.3g}"
        if base > 0 and best > 0:
            label += f" ({best / base - 1:+.0%})"
        c, b = s.chosen.get(obj or ""), s.baseline
        if c is not None and b is not None and b.time_s > 0:
            label += f"\ntime {c.time_s / b.time_s - 1:+.0%}"
        ax.annotate(label, (i + width / 2, best), ha="center", va="bottom", fontsize=7)
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor="grey", alpha=0.45, edgecolor="black", label="baseline"),
        Patch(facecolor="grey", edgecolor="black", label=f"chosen: {text(obj or '-')}"),
    ]
    ax.set_xticks(range(len(series)), [s.label for s in series], fontsize=8)
    ax.set_ylabel(f"work per joule ({unit})")
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="best")
    _title(fig, cmp, f"perf per watt ({unit}) at baseline and optimum")


def plot_power(fig, cmp: ProblemComparison, series: Sequence[Series], normalise: bool) -> None:
    if normalise:
        axes = [fig.subplots()] * len(series)
    else:
        axes = list(fig.subplots(1, len(series), squeeze=False)[0])
    for ax, s in zip(axes, series, strict=True):
        scale = s.default_limit_w if normalise and s.default_limit_w else 1.0
        for label, style, pts in s.lines():
            xs = [_x(p, s, normalise) for p in pts]
            ax.plot(xs, [p.power_w / scale for p in pts], color=s.color, label=label, **style)
        if s.baseline is not None:
            b = s.baseline
            ax.plot([_x(b, s, normalise)], [b.power_w / scale], "*", ms=12,
                    color=s.color, mec="black")  # fmt: skip
        if s.default_limit_w:
            y = s.default_limit_w / scale
            ax.axhline(y, color=s.color, ls="--", lw=1,
                       label=f"{s.label}: default limit {s.default_limit_w:g} W")  # fmt: skip
        for w in s.swept_limits_w:
            if w != s.default_limit_w:
                ax.axhline(w / scale, color=s.color, ls=":", lw=0.8)
        if s.swept_limits_w:
            ax.plot([], [], ls=":", color=s.color, label=f"{s.label}: swept limits")
        if not normalise:
            ax.set_title(s.label, fontsize=8)
            ax.set_ylabel("board power (W)")
            ax.set_xlabel(_clock_label(False))
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6, loc="best")
            ax.set_ylim(bottom=0)
    if normalise and axes:
        ax = axes[0]
        ax.set_ylabel("board power / default power limit")
        ax.set_xlabel(_clock_label(True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="best")
        ax.set_ylim(bottom=0)
    _title(fig, cmp, "board power vs SM clock, power-limit lines")


def plot_spread(fig, cmp: ProblemComparison, series: Sequence[Series], normalise: bool) -> None:
    """Units of one model side by side: each unit's work per joule at its baseline, and the
    energy it saves at its own chosen point; a box per model of three units or more."""
    obj = cmp.rank_objective or ""
    by_bytes = _energy_unit(cmp) == "J/GB"
    unit = "GB/J" if by_bytes else "TFLOP/J"
    models = sorted({s.model for s in series})
    left, right = fig.subplots(1, 2)
    for i, model in enumerate(models):
        units = [s for s in series if s.model == model]
        eff = [(s.baseline.gb_per_j if by_bytes else s.baseline.tflop_per_j)
               for s in units if s.baseline is not None]  # fmt: skip
        saving = [
            100.0 * (1.0 - s.chosen[obj].energy_j / s.baseline.energy_j)
            for s in units
            if s.baseline is not None and obj in s.chosen and s.baseline.energy_j > 0
        ]
        for ax, values in ((left, eff), (right, saving)):
            if len(values) >= 3:
                ax.boxplot([values], positions=[i], widths=0.5, showfliers=False)
            jitter = [i + 0.12 * ((k % 5) - 2) / 2 for k in range(len(values))]
            ax.scatter(jitter, values, s=14, color=units[0].color, zorder=3)
    for ax, label in ((left, f"baseline work per joule ({unit})"),
                      (right, f"energy saved at own {text(obj or '-')} point (%)")):  # fmt: skip
        ax.set_xticks(range(len(models)),
                      [f"{text(m)}\n{sum(s.model == m for s in series)} units" for m in models],
                      fontsize=7)  # fmt: skip
        ax.set_ylabel(label, fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    _title(fig, cmp, "unit-to-unit spread")


_PLOTS = {
    "energy": plot_energy,
    "pareto": plot_pareto,
    "bars": plot_bars,
    "power": plot_power,
    "spread": plot_spread,
}
_SIZES = {"energy": (8, 6.5), "pareto": (8, 5.5), "bars": (8, 5), "power": (9, 4.5),
          "spread": (9, 4.5)}  # fmt: skip


def plot_runs(
    records: Iterable[RunRecord],
    out_dir: str | os.PathLike[str],
    *,
    kinds: Sequence[str] = KINDS,
    fmt: str = "png",
    normalise: bool = False,
    rank_by: str | None = None,
) -> list[Path]:
    """Draw ``kinds`` for every problem in ``records`` into ``out_dir``; returns the files
    (``<problem>-<kind>.<fmt>``)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    bad = [k for k in kinds if k not in _PLOTS]
    if bad or fmt not in FORMATS:
        raise UsageError(
            f"unknown plot kind or format: {', '.join(bad) or fmt}",
            f"kinds: {', '.join(ALL_KINDS)}; formats: {', '.join(FORMATS)}",
        )
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create output folder {out}: {exc.strerror or exc}",
            "pass -o a folder you can write to",
        ) from None
    written: list[Path] = []
    for group in group_runs(records):
        if not group.runs:
            continue
        cmp = compare_group(group, rank_by=rank_by)
        series = _series(group, cmp)
        stem = safe_name(cmp.problem.label, 100)
        for kind in kinds:
            fig = Figure(figsize=_SIZES[kind], dpi=DPI, layout="constrained")
            _PLOTS[kind](fig, cmp, series, normalise)
            path = out / f"{stem}-{kind}{'-normalised' if normalise else ''}.{fmt}"
            meta = {"Date": None} if fmt == "svg" else {"Software": None}
            try:
                with rc_context({"svg.fonttype": "none", "svg.hashsalt": "wattbench"}):
                    fig.savefig(path, format=fmt, metadata=meta)
            except OSError as exc:
                raise UsageError(
                    f"cannot write {path}: {exc.strerror or exc}",
                    "pass -o a folder you can write to",
                ) from None
            written.append(path)
    return written
