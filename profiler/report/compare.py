"""Compare GPUs on one problem: the baseline and the chosen point per objective, per GPU.

Everything here is computed from run records (``wattbench.run/1``) with the problem's Work
(``work.flops``, ``work.bytes`` per iteration) and its rate methods (``kernels/work.py``):
TFLOP/s, GB/s, TFLOP/J, GB/J; 0 where the time or energy is not positive. ``peak_fraction`` is
the achieved fraction of the GPU's roofline, ``max(TFLOP/s / peak TFLOP/s, GB/s / peak GB/s)``,
None when a peak is unknown (``peaks.py``). ``saving_rel`` / ``slowdown_rel`` are the run's own
choice figures (energy and time per iteration against its baseline).

Rank: within a problem, GPUs are ranked by work per joule at the point chosen by the rank
objective (``energy`` when the runs have it): 1 = most TFLOP/J (GB/J for a problem without
FLOPs). On one problem this is the same order as the least energy per iteration.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wattbench.kernels.work import Work
from wattbench.profiler.errors import UsageError
from wattbench.profiler.measure.types import Measurement
from wattbench.profiler.report.peaks import Peaks, bound_of, peaks_of
from wattbench.profiler.report.runs import GpuKey, ProblemKey, ProblemRuns, group_runs
from wattbench.profiler.store import RunRecord

COMPARE_SCHEMA = "wattbench.compare/1"
DEFAULT_RANK_OBJECTIVE = "energy"


def work_of_run(record: RunRecord) -> Work:
    """The per-iteration Work a run record counted."""
    return record.work


@dataclass(frozen=True)
class PointFigures:
    """One measured point: requested settings (None = driver default) and derived rates."""

    sm_mhz: int | None
    mem_mhz: int | None
    power_limit_w: float | None
    sm_mhz_achieved: float
    time_s: float
    energy_j: float
    power_w: float
    tflops: float
    gbs: float
    tflop_per_j: float
    gb_per_j: float
    peak_fraction: float | None
    flags: tuple[str, ...]

    @classmethod
    def of(cls, m: Measurement, work: Work, peaks: Peaks) -> PointFigures:
        tflops = work.tflops(m.time_s) if m.time_s > 0 else 0.0
        gbs = work.gbs(m.time_s) if m.time_s > 0 else 0.0
        return cls(
            sm_mhz=m.point.sm_mhz,
            mem_mhz=m.point.mem_mhz,
            power_limit_w=m.point.power_limit_w,
            sm_mhz_achieved=m.sm_mhz_mean,
            time_s=m.time_s,
            energy_j=m.energy_j,
            power_w=m.avg_power_w,
            tflops=tflops,
            gbs=gbs,
            tflop_per_j=work.tflop_per_j(m.energy_j) if m.energy_j > 0 else 0.0,
            gb_per_j=work.gb_per_j(m.energy_j) if m.energy_j > 0 else 0.0,
            peak_fraction=peaks.roofline_fraction(tflops, gbs),
            flags=tuple(m.flags),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sm_mhz": self.sm_mhz,
            "mem_mhz": self.mem_mhz,
            "power_limit_w": self.power_limit_w,
            "sm_mhz_achieved": self.sm_mhz_achieved,
            "time_s": self.time_s,
            "energy_j": self.energy_j,
            "power_w": self.power_w,
            "tflops": self.tflops,
            "gbs": self.gbs,
            "tflop_per_j": self.tflop_per_j,
            "gb_per_j": self.gb_per_j,
            "peak_fraction": self.peak_fraction,
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class ObjectiveResult:
    """The point one objective chose, and its energy saving / slowdown against the baseline."""

    objective: str
    point: PointFigures
    saving_rel: float | None
    slowdown_rel: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.point.to_json(),
            "energy_saving_rel": self.saving_rel,
            "slowdown_rel": self.slowdown_rel,
        }


@dataclass
class GpuRow:
    """One GPU's figures on one problem (from one run record)."""

    gpu: GpuKey
    source_run: str
    created_utc: str
    peaks: Peaks
    bound: str  # "compute" or "memory", on this GPU
    baseline: PointFigures | None
    objectives: dict[str, ObjectiveResult]
    rank: int | None = None

    def work_per_j(self, objective: str, by_bytes: bool) -> float | None:
        r = self.objectives.get(objective)
        if r is None:
            return None
        return r.point.gb_per_j if by_bytes else r.point.tflop_per_j

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu_name": self.gpu.name,
            "gpu_uuid": self.gpu.uuid,
            "simulated": self.gpu.simulated,
            "rank": self.rank,
            "source_run": self.source_run,
            "created_utc": self.created_utc,
            "bound": self.bound,
            "peak": self.peaks.to_json(),
            "baseline": self.baseline.to_json() if self.baseline is not None else None,
            "objectives": {k: v.to_json() for k, v in self.objectives.items()},
        }


@dataclass
class ProblemComparison:
    """Every GPU's row for one problem, ranked."""

    problem: ProblemKey
    work: Work | None
    simulated: str  # "simulated", "real" or "simulated and real"
    objectives: list[str]  # shown, in order
    rank_objective: str | None
    rows: list[GpuRow]
    notes: list[str] = field(default_factory=list)

    @property
    def by_bytes(self) -> bool:
        """Rank and bars by GB/J (a problem without FLOPs) instead of TFLOP/J."""
        return self.work is not None and self.work.flops == 0

    @property
    def bound(self) -> str:
        """``memory`` when the problem is memory-bound on every GPU shown, else ``compute``."""
        bounds = {r.bound for r in self.rows}
        return "memory" if bounds == {"memory"} else "compute"

    def to_json(self) -> dict[str, Any]:
        w = self.work
        return {
            "problem": {
                "label": self.problem.label,
                "family": self.problem.family,
                "impl": self.problem.impl,
                "dtype": self.problem.dtype,
                "shape": self.problem.shape,
            },
            "work": None if w is None else {**w.to_json(), "intensity": w.arithmetic_intensity},
            "bound": self.bound if self.rows else None,
            "simulated": self.simulated,
            "objectives": list(self.objectives),
            "rank_objective": self.rank_objective,
            "rank_metric": "gb_per_j" if self.by_bytes else "tflop_per_j",
            "rows": [r.to_json() for r in self.rows],
            "notes": list(self.notes),
        }


@dataclass
class Comparison:
    groups: list[ProblemComparison]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": COMPARE_SCHEMA,
            "groups": [g.to_json() for g in self.groups],
            "notes": list(self.notes),
        }


def gpu_row(record: RunRecord) -> GpuRow:
    """A record's figures: baseline and every recorded choice."""
    work = work_of_run(record)
    peaks = peaks_of(record.device, work.dtype)
    by_key = {m.point.key: m for m in record.points}
    base = by_key.get(record.baseline_key)
    if base is None:
        base = next((m for m in by_key.values() if m.point.is_baseline), None)
    objectives = {}
    for name, c in record.choices().items():
        objectives[name] = ObjectiveResult(
            name, PointFigures.of(c.chosen, work, peaks), c.saving_rel, c.slowdown_rel
        )
    return GpuRow(
        gpu=GpuKey.of(record),
        source_run=str(record.path),
        created_utc=record.created_utc,
        peaks=peaks,
        bound=bound_of(work.arithmetic_intensity, peaks),
        baseline=PointFigures.of(base, work, peaks) if base is not None else None,
        objectives=objectives,
    )


def _rank(rows: list[GpuRow], objective: str | None, by_bytes: bool) -> list[GpuRow]:
    """Rows sorted by rank (1 = most work per joule at ``objective``'s point); unranked last."""
    if objective is None:
        return rows
    ranked = [r for r in rows if objective in r.objectives]
    ranked.sort(key=lambda r: -(r.work_per_j(objective, by_bytes) or 0.0))
    for i, r in enumerate(ranked, 1):
        r.rank = i
    return ranked + [r for r in rows if objective not in r.objectives]


def compare_group(
    group: ProblemRuns, objectives: Sequence[str] | None = None, rank_by: str | None = None
) -> ProblemComparison:
    rows = [gpu_row(r) for r in group.runs]
    present = list(dict.fromkeys(name for row in rows for name in row.objectives))
    shown = [o for o in objectives if o in present] if objectives else present
    if rank_by is not None:
        rank_objective = rank_by if rank_by in present else None
    elif DEFAULT_RANK_OBJECTIVE in present:
        rank_objective = DEFAULT_RANK_OBJECTIVE
    else:
        rank_objective = present[0] if present else None
    works = {work_of_run(r) for r in group.runs}
    work = work_of_run(group.runs[0]) if group.runs else None
    notes = list(group.notes)
    if len(works) > 1:
        notes.append(
            f"{group.problem.label}: the runs count different work per iteration (recorded by "
            "different wattbench versions); each row uses its own run's work"
        )
    if objectives:
        notes.extend(
            f"{group.problem.label}: no run has objective {o!r}"
            for o in objectives
            if o not in present
        )
    if rank_by is not None and rank_objective is None:
        notes.append(f"{group.problem.label}: not ranked: no run has objective {rank_by!r}")
    out = ProblemComparison(group.problem, work, group.simulated, shown, rank_objective, [], notes)
    out.rows = _rank(rows, rank_objective, out.by_bytes)
    return out


def compare(
    records: Iterable[RunRecord],
    *,
    objectives: Sequence[str] | None = None,
    rank_by: str | None = None,
    notes: Sequence[str] = (),
) -> Comparison:
    """Group ``records`` by problem (``runs.group_runs``) and compare the GPUs in each.

    ``objectives``: the objectives to show (default: every one the runs chose by); ``rank_by``:
    the objective whose point ranks the GPUs (default ``energy``, else the first present).
    """
    groups = [compare_group(g, objectives, rank_by) for g in group_runs(records)]
    if objectives and not any(g.objectives for g in groups):
        have = sorted({o for g in groups for r in g.rows for o in r.objectives})
        raise UsageError(
            f"no run has objective(s) {', '.join(objectives)}",
            f"the runs have: {', '.join(have) or 'none'}",
        )
    return Comparison(groups, list(notes))
