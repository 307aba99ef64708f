"""Sweep every problem of a plan on one GPU: the worker process the node agent starts per GPU.

For each problem, in the plan's order: a complete record of it in the GPU's folder means done
(skipped); an incomplete one (a killed or requeued job's) is resumed, keeping every point it
has; otherwise a new sweep starts. Then, when the run has a verify pass and the last aggregation
listed candidate points for this GPU model and problem (``fleet/verify.py``), the same for the
verify record: skipped when one holds every candidate, resumed, or started. A problem that fails
is reported and the next one is tried.
Exit status 0 when every problem is complete, 1 otherwise, 128 + N on signal N (the GPU is
restored either way, by each sweep's actuation guard).

Run as ``python -m wattbench.profiler.fleet.worker PLAN --device SEL --folder DIR``; prints one
JSON line per problem (``wattbench.fleet-worker/1``) for the node agent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from wattbench.kernels.costs import Problem
from wattbench.profiler.device import open_device
from wattbench.profiler.device.nvml import shutdown_all
from wattbench.profiler.errors import WattbenchError
from wattbench.profiler.fleet import verify
from wattbench.profiler.fleet.plan import FleetPlan, load_plan
from wattbench.profiler.measure.types import OperatingPoint
from wattbench.profiler.signals import Terminated
from wattbench.profiler.store import RunRecord
from wattbench.profiler.store.record import FLEET_RUN_ENV, RecordError
from wattbench.profiler.sweep.session import SweepRequest, resume_request, sweep_problem

SCHEMA = "wattbench.fleet-worker/1"


@dataclass
class ProblemOutcome:
    problem: str
    status: str  # complete (measured now), skipped (complete before), resumed, failed
    record: str | None = None
    points: int = 0
    error: str | None = None
    #: the verify pass of the problem: None (none asked), or a status as above
    verify: str | None = None
    verify_record: str | None = None

    def to_json(self) -> dict:
        return {"schema": SCHEMA, **self.__dict__}


def folder_records(folder: Path) -> list[RunRecord]:
    """The readable run records in ``folder``, by file name (oldest first within a problem)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(RunRecord.load(path))
        except RecordError:
            continue  # not a record (or a damaged one): never ours to overwrite
    return out


def records_of(
    folder: Path,
    problem: Problem,
    records: list[RunRecord] | None = None,
    purpose: str = "sweep",
) -> list[RunRecord]:
    """The run records of ``problem`` in ``folder`` (or among ``records``, read once from it)
    made for ``purpose`` (``sweep``, or ``verify``: the verify pass's)."""
    pool = folder_records(folder) if records is None else records
    want = problem.to_json()
    return [r for r in pool if r.problem.to_json() == want and r.purpose == purpose]


def sweep_one(
    plan: FleetPlan,
    selection: str,
    folder: Path,
    problem: Problem,
    candidates: dict[verify.GroupKey, tuple[OperatingPoint, ...]] | None = None,
) -> ProblemOutcome:
    in_folder = folder_records(folder)
    records = records_of(folder, problem, in_folder)
    done = [r for r in records if r.status == "complete"]
    if done:
        outcome = ProblemOutcome(problem.label, "skipped", str(done[-1].path), len(done[-1].points))
    else:
        try:
            how, swept = _resume_or_start(records, selection, folder, problem, plan.request())
        except WattbenchError as exc:
            return ProblemOutcome(problem.label, "failed", None, 0, str(exc))
        done = [swept]
        outcome = ProblemOutcome(problem.label, how, str(swept.path), len(swept.points))
    points = (candidates or {}).get(verify.group_key(done[-1]))
    if points:
        _verify_one(outcome, selection, folder, problem, plan, points, in_folder)
    return outcome


def _verify_one(
    outcome: ProblemOutcome,
    selection: str,
    folder: Path,
    problem: Problem,
    plan: FleetPlan,
    points: tuple[OperatingPoint, ...],
    in_folder: list[RunRecord],
) -> None:
    """The verify pass of one problem: skipped when a verify record holds every candidate; an
    incomplete one of the same candidates resumed; else a new one started."""
    records = records_of(folder, problem, in_folder, "verify")
    done = [r for r in records if verify.covers(r, points)]
    if done:
        outcome.verify, outcome.verify_record = "skipped", str(done[-1].path)
        return
    wanted = {p.key for p in points}
    same = [r for r in records if r.status != "complete" and _verify_keys(r) == wanted]
    request = dataclasses.replace(plan.request(), points=points)
    try:
        how, verified = _resume_or_start(same, selection, folder, problem, request)
    except WattbenchError as exc:
        outcome.verify, outcome.error = "failed", f"verify pass: {exc}"
        return
    outcome.verify, outcome.verify_record = how, str(verified.path)


def _resume_or_start(
    records: list[RunRecord], selection: str, folder: Path, problem: Problem, request: SweepRequest
) -> tuple[str, RunRecord]:
    """Resume the newest of ``records`` (incomplete ones, as they were started), or start
    ``request`` on the GPU ``selection``; how (``resumed`` / ``complete``) and the record."""
    record: RunRecord | None = None
    if records:
        record = RunRecord.resume(records[-1].path)
        _, device, request = resume_request(record)
        how = "resumed"
    else:
        device, how = open_device(selection), "complete"
    swept = sweep_problem(device, problem, request, out_dir=folder, record=record)
    return how, swept.record


def _verify_keys(record: RunRecord) -> set[str]:
    keys = record.settings.strategy_point_keys
    return {k for k in keys if not OperatingPoint.from_key(k).is_baseline}


def run_gpu(plan: FleetPlan, selection: str, folder: Path) -> list[ProblemOutcome]:
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[FLEET_RUN_ENV] = plan.run_id  # every record says which fleet run it is
    outcomes = []
    candidates = verify.load_candidates(plan) if plan.verify else {}
    for problem in plan.problems:
        outcome = sweep_one(plan, selection, folder, problem, candidates)
        print(json.dumps(outcome.to_json()), flush=True)
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wattbench.profiler.fleet.worker")
    p.add_argument("plan")
    p.add_argument("--device", required=True)
    p.add_argument("--folder", required=True)
    args = p.parse_args(argv)
    try:
        outcomes = run_gpu(load_plan(args.plan), args.device, Path(args.folder))
    except Terminated as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    except WattbenchError as exc:
        print(f"wattbench fleet worker: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        shutdown_all()
    return 0 if all(o.status != "failed" and o.verify != "failed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
