"""Per-model operating points from every unit of a fleet run, under an explicit policy.

Same-model GPUs differ; a scheduler that sets one point per model needs the point that serves
the units best, and to know how much the units spread around it. For each GPU model, problem and
objective of a fleet run (``<results>/<run id>/<host>/<uuid>/``, complete records only):

* every unit is normalised to its own baseline: at each operating point measured on *every*
  unit, the unit's time and energy relative to its baseline;
* the **policy** combines the units point by point: ``median`` takes the median unit's ratios,
  ``worst`` the largest ratios (the slowest time and the highest energy of any unit); the ratios
  are scaled back to joules and seconds by the median baseline, and the objective itself (the
  same function a single sweep uses) chooses among these combined points: the **model point**;
* each unit's saving and slowdown at the model point give min / median / max; a unit whose
  energy ratio there lies more than 3 scaled MADs from the median is an **outlier**;
* each unit's own choice is kept beside it (``units[]``: per-unit points, for schedulers that
  set each GPU by UUID; the model point is the fallback for a UUID not in the document);
* for synchronous multi-GPU jobs, **equal-time** per-unit points: each unit's least-energy point
  no slower than the slowest unit at the model point (``equal_time_s``), which therefore costs
  the job no time.

Only points measured on every unit can be the model point: with an adaptive search units may
share nothing but the baseline. A common grid avoids it; so does the verify pass
(``fleet/verify.py``), which measures every unit's candidate points on every unit: once every
unit has, the model point is chosen from those verify records (``model_point_from``:
``verify``), else from the points the sweeps share (``sweep``), and ``note`` says what is
pending. Stable keys: ``wattbench.fleet-aggregate/1``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wattbench.profiler.errors import UsageError
from wattbench.profiler.fleet import verify
from wattbench.profiler.fleet.plan import FleetPlan
from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.report.runs import ProblemKey
from wattbench.profiler.select.objectives import find_baseline
from wattbench.profiler.select.units import POLICIES, model_choice, zeus_max_power_w
from wattbench.profiler.store import RunRecord
from wattbench.profiler.store.record import RecordError

SCHEMA = "wattbench.fleet-aggregate/1"
#: a unit this many scaled MADs from the median energy ratio at the model point is an outlier
OUTLIER_MADS = 3.0


@dataclasses.dataclass
class Unit:
    host: str
    uuid: str
    record: RunRecord
    #: the unit's newest complete verify record of the problem, if any
    verify: RunRecord | None = None


def _point_json(m: Measurement) -> dict[str, Any]:
    p = m.point
    return {
        "key": p.key,
        "sm_mhz": p.sm_mhz,
        "mem_mhz": p.mem_mhz,
        "power_limit_w": p.power_limit_w,
    }


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def collect_units(plan: FleetPlan) -> tuple[dict[tuple, list[Unit]], dict[tuple, int]]:
    """(GPU name, simulated, problem label) -> the units with a complete record of it; and GPU
    name, simulated -> how many unit folders of that model the run has (N)."""
    root = plan.results / plan.run_id
    groups: dict[tuple, list[Unit]] = {}
    seen: dict[tuple, set[str]] = {}
    checks: dict[tuple, RunRecord] = {}
    labels = {p.label: p for p in plan.problems}
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir() and p.name.startswith("GPU-")):
        for path in sorted(folder.glob("*.json")):
            try:
                record = RunRecord.load(path)
            except RecordError:
                continue
            name, sim = record.device.name, record.simulated
            seen.setdefault((name, sim), set()).add(folder.name)
            label = ProblemKey.of(record).label
            if record.status != "complete" or label not in labels:
                continue
            if record.purpose == "verify":  # the newest per unit, by file name
                checks[(name, sim, label, folder.name)] = record
                continue
            units = groups.setdefault((name, sim, label), [])
            units[:] = [u for u in units if u.uuid != folder.name]  # the newest record per unit
            units.append(Unit(folder.parent.name, folder.name, record))
    for key, units in groups.items():
        for u in units:
            u.verify = checks.get((*key, u.uuid))
    return groups, {k: len(v) for k, v in seen.items()}


def aggregate(plan: FleetPlan, policy: str = "median") -> dict[str, Any]:
    return _aggregate(plan, policy)[0]


def _aggregate(
    plan: FleetPlan, policy: str
) -> tuple[dict[str, Any], dict[verify.GroupKey, tuple[OperatingPoint, ...]]]:
    """The aggregate document and, with a verify pass, each group's candidates."""
    if policy not in POLICIES:
        raise UsageError(f"unknown policy {policy!r}", f"use {' or '.join(POLICIES)}")
    groups, totals = collect_units(plan)
    objectives = plan.request().objectives
    out, found = [], {}
    for (name, sim, label), units in sorted(groups.items()):
        points = verify.candidates(u.record for u in units) if plan.verify else None
        if points:
            found[(name, sim, label)] = points
        for objective in objectives:
            doc = _group(name, sim, label, units, totals[(name, sim)], objective, policy, points)
            out.append(doc)
    return {"schema": SCHEMA, "run_id": plan.run_id, "policy": policy, "groups": out}, found


def write_aggregate(plan: FleetPlan, policy: str = "median") -> tuple[dict[str, Any], list[Path]]:
    """:func:`aggregate`, written to ``aggregate.json`` in the run folder; with a verify pass
    also the candidates each unit is to measure (``verify.json``)."""
    doc, found = _aggregate(plan, policy)
    paths = [plan.results / plan.run_id / "aggregate.json"]
    write_json_atomic(paths[0], doc)
    if plan.verify:
        paths.append(verify.write_candidates(plan, found))
    return doc, paths


def _group(
    name, sim, label, units: list[Unit], total: int, objective, policy: str, points=None
) -> dict:
    checked = [u.verify for u in units if u.verify is not None and verify.covers(u.verify, points)]
    from_verify = bool(points) and len(checked) == len(units)
    measured = [r.points for r in (checked if from_verify else [u.record for u in units])]
    max_power = zeus_max_power_w([u.record.settings for u in units])
    mc = model_choice(measured, objective, policy=policy, max_power_w=max_power)
    combined, chosen = mc.combined, mc.choice
    doc: dict[str, Any] = {
        "gpu_name": name,
        "simulated": sim,
        "problem": label,
        "objective": objective.name,
        "units_total": total,
        "units_measured": len(combined.usable),
        "baseline": {  # the median unit's baseline: per iteration
            "time_s": combined.baseline_time_s,
            "energy_j": combined.baseline_energy_j,
            "power_w": combined.baseline_power_w,
        },
        "model_point": None,
        "saving_rel": None,
        "slowdown_rel": None,
        "outliers": [],
        "units": [],
        "model_point_from": "verify" if from_verify else "sweep",
        "verify": None
        if points is None
        else {"candidates": [p.key for p in points], "units_verified": len(checked)},
        "note": None,
    }
    if chosen is not None:
        doc["model_point"] = _point_json(chosen.chosen)
    if points and not from_verify:
        doc["note"] = (
            f"verify pass pending: {len(checked)}/{len(units)} units have measured the "
            f"{len(points)} candidate points; run the node agents again (fleet node, fleet "
            "slurm submit or fleet ray run) after this aggregation"
        )
    elif len(combined.measurements) <= 1:
        doc["note"] = (
            "only the baseline was measured on every unit: sweep a common grid (strategy "
            '"grid") or let the verify pass measure the candidates on every unit (verify = true)'
        )
    savings, slowdowns, ratios = [], [], []
    for i, u in enumerate(units):
        own = u.record.choices().get(objective.name)
        entry: dict[str, Any] = {
            "host": u.host,
            "uuid": u.uuid,
            "serial": u.record.device.serial,
            "own_point": _point_json(own.chosen) if own else None,
            "own_saving_rel": own.saving_rel if own else None,
            "own_slowdown_rel": own.slowdown_rel if own else None,
            "saving_rel_at_model_point": None,
            "slowdown_rel_at_model_point": None,
        }
        there = mc.at_units[i]
        if there is not None and i in combined.usable:
            saving, slowdown = there
            entry["saving_rel_at_model_point"] = saving
            entry["slowdown_rel_at_model_point"] = slowdown
            savings.append(saving)
            slowdowns.append(slowdown)
            ratios.append((1.0 - saving, entry))
        doc["units"].append(entry)
    doc["saving_rel"], doc["slowdown_rel"] = _spread(savings), _spread(slowdowns)
    if chosen is not None:
        _equal_time(doc, measured, chosen.chosen.point.key)
    if len(ratios) >= 3:
        med = statistics.median(r for r, _ in ratios)
        mad = 1.4826 * statistics.median(abs(r - med) for r, _ in ratios)
        if mad > 0:
            doc["outliers"] = [e["uuid"] for r, e in ratios if abs(r - med) > OUTLIER_MADS * mad]
    return doc


def _equal_time(doc: dict[str, Any], measured: list[list[Measurement]], key: str) -> None:
    """Per-unit points for synchronous multi-GPU jobs: every GPU waits for the slowest, so the
    pace is the slowest unit's time at the model point; each unit's least-energy point that is
    no slower than that costs the job no time (``equal_time_*``; ``equal_time_s`` the pace)."""
    at_model = [next((m for m in unit if m.point.key == key), None) for unit in measured]
    times = [m.time_s for m in at_model if m is not None]
    if not times:
        return
    pace = max(times) * (1.0 + 1e-9)
    doc["equal_time_s"] = max(times)
    for unit, entry in zip(measured, doc["units"], strict=True):
        base = find_baseline(unit)
        fits = [m for m in unit if m.time_s <= pace]
        if not fits or base is None or base.energy_j <= 0:
            entry["equal_time_point"] = entry["equal_time_saving_rel"] = None
            continue
        best = min(fits, key=lambda m: (m.energy_j, m.time_s))
        entry["equal_time_point"] = _point_json(best)
        entry["equal_time_saving_rel"] = 1.0 - best.energy_j / base.energy_j


def render(doc: dict[str, Any]) -> str:
    from wattbench.profiler.textfmt import percent

    lines = [f"fleet run {doc['run_id']}: per-model points, policy {doc['policy']}"]
    for g in doc["groups"]:
        sim = " [sim]" if g["simulated"] else ""
        mp = g["model_point"]
        point = mp["key"] if mp else "none"
        if mp and g.get("model_point_from") == "verify":
            point += " (verify pass)"
        head = (
            f"  {g['gpu_name']}{sim} {g['problem']} {g['objective']}: "
            f"{g['units_measured']}/{g['units_total']} units, model point {point}"
        )
        lines.append(head)
        s, d = g["saving_rel"], g["slowdown_rel"]
        if s and d:
            lines.append(
                f"      saving {percent(s['min'])} / {percent(s['median'])} / {percent(s['max'])}"
                f" (min / median / max); slowdown median {percent(d['median'], signed=True)}, "
                f"max {percent(d['max'], signed=True)}"
            )
        if g["outliers"]:
            lines.append(f"      outliers: {', '.join(g['outliers'])}")
        if g["note"]:
            lines.append(f"      note: {g['note']}")
    return "\n".join(lines)
