"""Render a :class:`~wattbench.profiler.report.compare.Comparison` as a terminal table,
Markdown, CSV or JSON.

Table and Markdown: one block per problem, one row per GPU (the baseline and the first shown
objective) and one continuation row per further objective. CSV is long-form: one row per GPU and
objective, baseline figures repeated, plain numbers (fractions, not percent). JSON is the
comparison's ``to_json()`` (schema ``wattbench.compare/1``). Names taken from run files are
printed with control characters escaped, so a file cannot rewrite the terminal.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from wattbench.profiler.report.compare import Comparison, GpuRow, ProblemComparison
from wattbench.profiler.textfmt import percent

FORMATS = ("table", "markdown", "csv", "json")


def printable(text: str) -> str:
    """``text`` with control and other non-printable characters written as escapes."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _pct(v: float | None) -> str:
    return percent(v)


def _si(value: float, unit: str) -> str:
    """``1.1e12, "FLOP"`` -> ``1.1 TFLOP``."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _mhz(v: int | None) -> str:
    return "default" if v is None else str(v)


def _watts(v: float | None) -> str:
    return "default" if v is None else f"{v:g}"


def gpu_label(row: GpuRow, rows: Sequence[GpuRow]) -> str:
    """The GPU's name (printable), ``[sim]`` if simulated, its UUID when the name repeats."""
    name = printable(row.gpu.name)
    if sum(r.gpu.name == row.gpu.name for r in rows) > 1:
        name += f" ({printable(row.gpu.uuid)[:12]})"
    return name + (" [sim]" if row.gpu.simulated else "")


def heading(g: ProblemComparison) -> str:
    """One line naming the problem, its work, its bound and whether the GPUs were simulated."""
    text = printable(g.problem.label)
    if g.work is not None:
        w = g.work
        ai = w.arithmetic_intensity
        ai_text = "inf" if w.bytes == 0 else f"{ai:.0f}" if ai >= 100 else f"{ai:.3g}"
        text += (
            f": {_si(w.flops, 'FLOP')} and {_si(w.bytes, 'B')} per iteration "
            f"({ai_text} FLOP/B, {g.bound}-bound)"
        )
    if g.simulated == "simulated":
        text += " -- SIMULATED GPUs: figures are model outputs, not measurements"
    elif g.simulated == "simulated and real":
        text += " -- simulated ([sim]) and real GPUs: [sim] figures are model outputs"
    return text


def _columns(g: ProblemComparison) -> tuple[list[str], list[list[str]]]:
    mem = any(r.point.mem_mhz is not None for row in g.rows for r in row.objectives.values())
    gbs = g.bound == "memory"
    head = ["rank", "GPU", "base TFLOP/s", *(["base GB/s"] if gbs else []), "base W"]
    head += ["base TFLOP/J", "base peak", "objective", "SM MHz", *(["mem MHz"] if mem else [])]
    head += ["limit W", "TFLOP/J", "saving", "slowdown", "peak"]
    lines: list[list[str]] = []
    for row in g.rows:
        b = row.baseline
        base = [
            "-" if row.rank is None else str(row.rank),
            gpu_label(row, g.rows),
            _num(b.tflops if b else None),
            *([_num(b.gbs if b else None)] if gbs else []),
            _num(b.power_w if b else None),
            _num(b.tflop_per_j if b else None),
            _pct(b.peak_fraction if b else None),
        ]
        shown: list[str | None] = [o for o in g.objectives if o in row.objectives] or [None]
        for i, name in enumerate(shown):
            cells = base if i == 0 else [""] * len(base)
            r = row.objectives.get(name) if name else None
            if name is None or r is None:
                lines.append([*cells, "-", "-", *(["-"] if mem else []), "-", "-", "-", "-", "-"])
                continue
            p = r.point
            lines.append(
                [
                    *cells,
                    name,
                    _mhz(p.sm_mhz),
                    *([_mhz(p.mem_mhz)] if mem else []),
                    _watts(p.power_limit_w),
                    _num(p.tflop_per_j),
                    _pct(r.saving_rel),
                    _pct(r.slowdown_rel),
                    _pct(p.peak_fraction),
                ]
            )
    return head, lines


_LEFT = {"GPU", "objective"}


def _aligned(head: list[str], lines: list[list[str]]) -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(head, *lines, strict=True)]

    def fmt(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if h in _LEFT else c.rjust(w)
            for c, w, h in zip(cells, widths, head, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [fmt(head), *(fmt(c) for c in lines)]


def _footer(g: ProblemComparison) -> list[str]:
    out = []
    if g.rank_objective:
        metric = "GB/J" if g.by_bytes else "TFLOP/J"
        out.append(f"rank: {metric} at the {g.rank_objective!r} point (1 = most work per joule)")
    unknown = [printable(r.gpu.name) for r in g.rows if r.peaks.ridge_flop_per_byte is None]
    if unknown:
        out.append(f"peak unknown for: {', '.join(unknown)} (no datasheet figure in wattbench)")
    out.extend(_unit_spread(g))
    out.extend(printable(n) for n in g.notes)
    return out


def _unit_spread(g: ProblemComparison) -> list[str]:
    """One line per GPU model measured on several units: how far its units differ."""
    metric = "GB/J" if g.by_bytes else "TFLOP/J"
    out = []
    for name, sim in sorted({(r.gpu.name, r.gpu.simulated) for r in g.rows}):
        rows = [r for r in g.rows if r.gpu.name == name and r.gpu.simulated == sim]
        if len(rows) < 2:
            continue
        base = [
            (r.baseline.gb_per_j if g.by_bytes else r.baseline.tflop_per_j)
            for r in rows
            if r.baseline is not None
        ]
        text = f"{printable(name)}{' [sim]' if sim else ''}: {len(rows)} units"
        if base and min(base) > 0:
            text += (
                f", baseline {metric} {_num(min(base))}-{_num(max(base))} "
                f"({max(base) / min(base) - 1:.1%} apart)"
            )
        obj = g.rank_objective
        found = [r.objectives[obj].saving_rel for r in rows if obj and obj in r.objectives]
        savings = [x for x in found if x is not None]
        if savings:
            text += f", {obj} saving {_pct(min(savings))} to {_pct(max(savings))}"
        out.append(text + " (`wattbench plot --kind spread`)")
    return out


def render_table(cmp: Comparison) -> str:
    blocks = []
    for g in cmp.groups:
        lines = [heading(g)]
        if g.rows:
            lines.extend(_aligned(*_columns(g)))
        lines.extend(f"  note: {n}" for n in _footer(g))
        blocks.append("\n".join(lines))
    blocks.extend(f"note: {printable(n)}" for n in cmp.notes)
    return "\n\n".join(blocks)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def render_markdown(cmp: Comparison) -> str:
    blocks = []
    for g in cmp.groups:
        lines = [f"### {_md_cell(heading(g))}", ""]
        if g.rows:
            head, rows = _columns(g)
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(":--" if h in _LEFT else "--:" for h in head) + "|")
            lines.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
            lines.append("")
        lines.extend(f"- {_md_cell(n)}" for n in _footer(g))
        blocks.append("\n".join(lines).rstrip())
    blocks.extend(f"- {_md_cell(printable(n))}" for n in cmp.notes)
    return "\n\n".join(blocks)


CSV_COLUMNS = (
    "problem", "family", "impl", "dtype", "shape", "flops", "bytes", "bound", "simulated",
    "gpu_name", "gpu_uuid", "rank", "rank_objective", "peak_tflops", "peak_gbs",
    "baseline_tflops", "baseline_gbs", "baseline_power_w", "baseline_tflop_per_j",
    "baseline_peak_fraction", "objective", "sm_mhz", "mem_mhz", "power_limit_w", "tflops",
    "gbs", "power_w", "tflop_per_j", "energy_saving_rel", "slowdown_rel", "peak_fraction",
    "source_run",
)  # fmt: skip


def render_csv(cmp: Comparison) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for g in cmp.groups:
        for row in g.rows:
            b = row.baseline
            common = {
                "problem": g.problem.label,
                "family": g.problem.family,
                "impl": g.problem.impl,
                "dtype": g.problem.dtype,
                "shape": g.problem.shape,
                "flops": g.work.flops if g.work else "",
                "bytes": g.work.bytes if g.work else "",
                "bound": row.bound,
                "simulated": str(row.gpu.simulated).lower(),
                "gpu_name": row.gpu.name,
                "gpu_uuid": row.gpu.uuid,
                "rank": row.rank if row.rank is not None else "",
                "rank_objective": g.rank_objective or "",
                "peak_tflops": _blank(row.peaks.tflops),
                "peak_gbs": _blank(row.peaks.gbs),
                "baseline_tflops": _blank(b.tflops if b else None),
                "baseline_gbs": _blank(b.gbs if b else None),
                "baseline_power_w": _blank(b.power_w if b else None),
                "baseline_tflop_per_j": _blank(b.tflop_per_j if b else None),
                "baseline_peak_fraction": _blank(b.peak_fraction if b else None),
                "source_run": row.source_run,
            }
            for name in [o for o in g.objectives if o in row.objectives]:
                r = row.objectives[name]
                p = r.point
                w.writerow(
                    {
                        **common,
                        "objective": name,
                        "sm_mhz": _blank(p.sm_mhz),
                        "mem_mhz": _blank(p.mem_mhz),
                        "power_limit_w": _blank(p.power_limit_w),
                        "tflops": p.tflops,
                        "gbs": p.gbs,
                        "power_w": p.power_w,
                        "tflop_per_j": p.tflop_per_j,
                        "energy_saving_rel": _blank(r.saving_rel),
                        "slowdown_rel": _blank(r.slowdown_rel),
                        "peak_fraction": _blank(p.peak_fraction),
                    }
                )
    return buf.getvalue()


def _blank(v: object) -> object:
    """CSV cell: empty for None (unknown / driver default)."""
    return "" if v is None else v


def render_json(cmp: Comparison) -> str:
    return json.dumps(cmp.to_json(), indent=2)


def render(cmp: Comparison, fmt: str) -> str:
    """``cmp`` in one of :data:`FORMATS`."""
    return {
        "table": render_table,
        "markdown": render_markdown,
        "csv": render_csv,
        "json": render_json,
    }[fmt](cmp)
