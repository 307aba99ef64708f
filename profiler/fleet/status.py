"""Where a fleet run stands: per host and GPU, which of the plan's problems are complete.

Reads ``<results>/<run id>/<host>/<gpu uuid>/`` (stable keys, ``wattbench.fleet-status/1``); the
launchers re-submit only the nodes with a GPU that is not complete. A problem is ``complete``,
``incomplete`` (a record to resume), ``missing``, or ``to verify`` (swept, but the run's verify
pass lists candidate points its GPU has not measured yet: ``fleet/verify.py``).
"""

from __future__ import annotations

from typing import Any

from wattbench.profiler.fleet import verify
from wattbench.profiler.fleet.plan import FleetPlan
from wattbench.profiler.fleet.worker import folder_records, records_of

SCHEMA = "wattbench.fleet-status/1"


def fleet_status(plan: FleetPlan) -> dict[str, Any]:
    root = plan.results / plan.run_id
    candidates = verify.load_candidates(plan) if plan.verify else {}
    gpus: list[dict[str, Any]] = []
    hosts = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for host in hosts:
        for folder in sorted(p for p in host.iterdir() if p.is_dir()):
            per = {}
            in_folder = folder_records(folder)
            for problem in plan.problems:
                records = records_of(folder, problem, in_folder)
                done = [r for r in records if r.status == "complete"]
                if not done:
                    per[problem.label] = "incomplete" if records else "missing"
                    continue
                points = candidates.get(verify.group_key(done[-1]))
                checks = records_of(folder, problem, in_folder, "verify")
                if points and not any(verify.covers(r, points) for r in checks):
                    per[problem.label] = "to verify"
                else:
                    per[problem.label] = "complete"
            gpus.append(
                {
                    "host": host.name,
                    "uuid": folder.name,
                    "problems": per,
                    "complete": all(v == "complete" for v in per.values()),
                }
            )
    incomplete_hosts = sorted({g["host"] for g in gpus if not g["complete"]})
    return {
        "schema": SCHEMA,
        "run_id": plan.run_id,
        "results": str(root),
        "gpus": gpus,
        "incomplete_hosts": incomplete_hosts,
    }


def render_status(status: dict[str, Any]) -> str:
    gpus = status["gpus"]
    done = sum(g["complete"] for g in gpus)
    lines = [
        f"fleet run {status['run_id']}: {done}/{len(gpus)} GPUs complete ({status['results']})"
    ]
    for g in gpus:
        left = [k for k, v in g["problems"].items() if v != "complete"]
        state = (
            "complete"
            if g["complete"]
            else "to do: " + ", ".join(f"{k} ({g['problems'][k]})" for k in left)
        )
        lines.append(f"  {g['host']}  {g['uuid']}: {state}")
    if status["incomplete_hosts"]:
        lines.append("hosts to run again: " + " ".join(status["incomplete_hosts"]))
    return "\n".join(lines)
