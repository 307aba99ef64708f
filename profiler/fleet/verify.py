"""The verify pass of a fleet run: the candidate model points measured on every unit.

An adaptive search measures on each unit only the points that unit's search visits, so units
may share nothing but the baseline, and no model point could be judged on every unit. The
verify pass fixes that in two steps:

* the aggregation (``fleet aggregate``, the Slurm aggregation job, the Ray driver) writes
  ``<results>/<run id>/verify.json`` (``wattbench.fleet-verify/1``): per GPU model and problem,
  the *candidates*, every point that some unit's complete sweep chose for some objective;
* the node agent run again finds it, and on each GPU whose sweep of a problem is complete it
  measures the baseline and every candidate in a *verify record* (``settings.purpose`` =
  ``verify``, a grid over exactly those points) beside the sweep record.

When every unit has a complete verify record of the current candidates, the aggregation
chooses the model point from the verify records (each unit's candidates measured back to back
with its own baseline), else from the points the sweeps share, and says so. Candidates can
change while units still finish; a unit whose verify record lacks one is verified again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from wattbench.profiler.fleet.plan import FleetPlan
from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.measure.types import OperatingPoint
from wattbench.profiler.store import RunRecord

SCHEMA = "wattbench.fleet-verify/1"
FILE = "verify.json"

#: (GPU name, simulated, problem label)
GroupKey = tuple[str, bool, str]


def candidates(sweeps: Iterable[RunRecord]) -> tuple[OperatingPoint, ...]:
    """Every non-baseline point some complete sweep chose, for any objective (sorted by key)."""
    points: dict[str, OperatingPoint] = {}
    for record in sweeps:
        for choice in record.choices().values():
            p = choice.chosen.point
            if not p.is_baseline:
                points[p.key] = p
    return tuple(points[k] for k in sorted(points))


def path_of(plan: FleetPlan) -> Path:
    return plan.results / plan.run_id / FILE


def write_candidates(plan: FleetPlan, groups: dict[GroupKey, tuple[OperatingPoint, ...]]) -> Path:
    doc = {
        "schema": SCHEMA,
        "run_id": plan.run_id,
        "groups": [
            {
                "gpu_name": name,
                "simulated": sim,
                "problem": label,
                "points": [p.to_json() | {"key": p.key} for p in points],
            }
            for (name, sim, label), points in sorted(groups.items())
        ],
    }
    path = path_of(plan)
    write_json_atomic(path, doc)
    return path


def load_candidates(plan: FleetPlan) -> dict[GroupKey, tuple[OperatingPoint, ...]]:
    """The candidates of the last aggregation (empty: none written yet, or unreadable -- the
    next aggregation writes it again)."""
    import json

    try:
        doc = json.loads(path_of(plan).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return {}
    out = {}
    for g in doc.get("groups", []):
        key = (g["gpu_name"], bool(g["simulated"]), g["problem"])
        out[key] = tuple(OperatingPoint.from_json(p) for p in g["points"])
    return out


def covers(record: RunRecord, points: Iterable[OperatingPoint]) -> bool:
    """Whether ``record`` is a complete verify record holding every one of ``points``."""
    if record.purpose != "verify" or record.status != "complete":
        return False
    have = {m.point.key for m in record.points}
    return all(p.key in have for p in points)


def group_key(record: RunRecord) -> GroupKey:
    from wattbench.profiler.report.runs import ProblemKey

    return record.device.name, record.simulated, ProblemKey.of(record).label
