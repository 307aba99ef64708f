"""Operating-point documents from run records: the export logic behind ``wattbench export``.

:func:`points_from_runs` picks each unit's newest complete run (``report.runs``), classifies the
workload on its GPU (``report.peaks``), and combines several units of a model into one point
(``select.units``); the document itself (``wattbench.points/1``: entries, load, lookup, write) is
``store.points``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from wattbench.kernels import catalog
from wattbench.profiler.errors import UsageError, WattbenchError
from wattbench.profiler.report.peaks import bound_of, peaks_of
from wattbench.profiler.report.runs import ProblemKey, newest_complete
from wattbench.profiler.select.objectives import parse_objective
from wattbench.profiler.select.units import model_choice, zeus_max_power_w
from wattbench.profiler.store.points import GpuInfo, PointEntry, PointsDocument, gpu_info_of_run
from wattbench.profiler.store.record import RunRecord


def shape_presets(family: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    """The family's presets naming ``shape``: ``square``, or ``llama3-8b-qkv@7`` for a preset
    whose swept dimension is set to another value. Empty for a family this wattbench lacks."""
    try:
        fam = catalog.family(family)
    except WattbenchError:
        return ()
    out = []
    for p in fam.presets:
        if shape in p.shapes:
            out.append(p.name)
        elif p.sweep_dim is not None and len(shape) > p.sweep_dim:
            d = p.sweep_dim
            if any(len(s) == len(shape) and s[:d] + s[d + 1 :] == shape[:d] + shape[d + 1 :]
                   for s in p.shapes):  # fmt: skip
                out.append(f"{p.name}@{shape[d]}")
    return tuple(out)


def points_from_runs(
    records: Iterable[RunRecord], *, per_device: bool = False, notes: list[str] | None = None
) -> PointsDocument:
    """Entries per (GPU model, workload, objective) from run records (``store.RunRecord``),
    and with ``per_device`` per (GPU UUID, workload, objective) as well.

    Each unit counts with its newest complete run (``report.runs``). A model measured on several
    units gets the point that serves them all (:func:`select.units.combine`, median policy: the
    median unit's ratios to its own baseline), with the median unit's saving and slowdown there;
    a per-device document keeps these model entries as the fallback for a UUID it does not list.
    A GPU name with both simulated and real runs of one workload is refused (they would share
    entries). ``notes`` receives what was left out and how model points were made.
    """
    by_key: dict[tuple[str, ProblemKey], dict[str, list[RunRecord]]] = {}
    for rec in records:
        dev = rec.device
        key = (dev.name, ProblemKey.of(rec))
        by_key.setdefault(key, {}).setdefault(dev.uuid, []).append(rec)
    out: list[PointEntry] = []
    gpus: dict[str, GpuInfo] = {}
    for (gpu_name, problem), per_unit in sorted(by_key.items(), key=lambda kv: str(kv[0])):
        recs_all = [r for recs in per_unit.values() for r in recs]
        if len({r.simulated for r in recs_all}) > 1:
            raise UsageError(
                f"both simulated and real runs of {problem.label} on {gpu_name}",
                "export simulated and real runs into separate documents",
            )
        units = []
        for uuid in sorted(per_unit):
            newest, left_out = newest_complete(per_unit[uuid])
            if notes is not None:
                notes.extend(left_out)
            if newest is not None:
                units.append((uuid, newest))
        if not units:
            continue
        for _, rec in units:
            info = gpu_info_of_run(rec)
            old = gpus.get(gpu_name)
            if old is not None and old.simulated != info.simulated:
                raise UsageError(
                    f"both simulated and real runs on a GPU named {gpu_name}",
                    "export simulated and real runs into separate documents",
                )
            gpus[gpu_name] = info if old is None else old.merged(info)
        if per_device:
            for uuid, rec in units:
                out.extend(_entries(gpu_name, uuid, problem, rec, rec.choices()))
        if len(units) == 1:
            out.extend(_entries(gpu_name, None, problem, units[0][1], units[0][1].choices()))
        else:
            out.extend(_model_entries(gpu_name, problem, [r for _, r in units], notes))
    return PointsDocument(out, gpus=gpus)


def _entries(gpu_name, gpu_uuid, problem, rec, choices, runs=None) -> list[PointEntry]:
    """Entries of one run's (or a model's) choices: ``choices`` maps objective names to
    objects with ``chosen`` (a Measurement), ``saving_rel`` and ``slowdown_rel``."""
    work = rec.work
    intensity = work.arithmetic_intensity if work.bytes else None
    peaks = peaks_of(rec.device, work.dtype)
    shape_class = bound_of(intensity if intensity is not None else math.inf, peaks) + "-bound"
    dims = rec.problem.dims
    presets = shape_presets(problem.family, dims) if dims is not None else ()
    out = []
    for name, c in choices.items():
        p = c.chosen.effective_point
        out.append(
            PointEntry(
                gpu_name=gpu_name,
                gpu_uuid=gpu_uuid,
                workload=problem.label,
                family=problem.family,
                impl=problem.impl,
                dtype=problem.dtype,
                shape=problem.shape,
                shape_class=shape_class,
                shape_presets=presets,
                arithmetic_intensity=intensity,
                objective=name,
                sm_mhz=p.sm_mhz,
                mem_mhz=p.mem_mhz,
                power_limit_w=p.power_limit_w,
                expected_slowdown_rel=c.slowdown_rel,
                expected_energy_saving_rel=c.saving_rel,
                source_runs=tuple(runs or (str(rec.path),)),
                simulated=rec.simulated,
            )
        )
    return out


@dataclasses.dataclass(frozen=True)
class _ModelChoice:
    chosen: Any
    saving_rel: float | None
    slowdown_rel: float | None


def _model_entries(
    gpu_name, problem, recs: list[RunRecord], notes: list[str] | None
) -> list[PointEntry]:
    """The model point of several units for every objective all of them chose for."""
    measured = [r.points for r in recs]
    max_power = zeus_max_power_w([r.settings for r in recs])
    choices, n_common = {}, 0
    for name in sorted(set.intersection(*(set(r.choice_names) for r in recs))):
        mc = model_choice(measured, parse_objective(name), policy="median", max_power_w=max_power)
        n_common = len(mc.combined.measurements)
        if mc.choice is not None:
            choices[name] = _ModelChoice(mc.choice.chosen, mc.median(0), mc.median(1))
    if notes is not None:
        notes.append(
            f"{gpu_name} {problem.label}: model point from {len(recs)} units (median of each "
            f"unit's ratios to its own baseline, over the {n_common} points "
            "every unit measured)"
        )
    newest = max(recs, key=lambda r: r.created_utc)
    return _entries(gpu_name, None, problem, newest, choices, [str(r.path) for r in recs])
