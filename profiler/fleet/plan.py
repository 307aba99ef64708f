"""A fleet plan (``wattbench.fleet-plan/1``, TOML): the run id, where results go, which GPUs,
the sweep options and the problems. Every mistake is one usage error naming the key.

.. code-block:: toml

    schema = "wattbench.fleet-plan/1"
    run_id = "h100-2026-12"                 # letters, digits, . _ - (at most 64)
    results = "/shared/wattbench/fleet"     # optional: default <results folder>/fleet
    devices = "all"                         # every GPU NVML shows; or "sim:4xh100-sxm"

    [sweep]                                 # optional; as `wattbench sweep` options
    strategy = "adaptive"
    objectives = ["energy", "slowdown:0.05"]
    sm_clocks = "every:4"                   # also mem_clocks, power_limits
    measurement = "fast"
    verify = true                           # default: true for adaptive (see fleet/verify.py)

    [[problems]]
    kernel = "matmul"
    shape = "8192x8192x8192"
    dtype = "bf16"
    impl = "vendor"                         # optional
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattbench.kernels.costs import Problem, make_problem
from wattbench.profiler.errors import UsageError, WattbenchError
from wattbench.profiler.measure import MeasureSettings
from wattbench.profiler.measure.measure import METHODS
from wattbench.profiler.select.objectives import parse_objective
from wattbench.profiler.store import default_results_dir
from wattbench.profiler.store.record import RUN_ID_RULE, is_run_id
from wattbench.profiler.sweep.session import (
    DEFAULT_OBJECTIVES,
    DEFAULT_STRATEGY,
    STRATEGIES,
    SweepRequest,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCHEMA = "wattbench.fleet-plan/1"
_TOP = {"schema", "run_id", "results", "devices", "sweep", "problems"}
_SWEEP = {
    "strategy", "objectives", "sm_clocks", "mem_clocks", "power_limits", "measurement",
    "from_defaults", "allow_shared", "verify",
}  # fmt: skip
_PROBLEM = {"kernel", "shape", "dtype", "impl"}


@dataclass(frozen=True)
class FleetPlan:
    path: Path
    run_id: str
    results: Path
    devices: str | tuple[str, ...]
    sweep: dict[str, Any]
    problems: tuple[Problem, ...]
    #: the plan names its results folder (else the default on each machine)
    results_named: bool = False

    @property
    def verify(self) -> bool:
        """Whether the run has a verify pass: every unit measures the candidate model points
        (``[sweep] verify``; default on for the adaptive search, whose units share few points,
        off for a grid, which every unit measures whole)."""
        given = self.sweep.get("verify")
        return given if isinstance(given, bool) else self.request().strategy == "adaptive"

    def request(self) -> SweepRequest:
        """The sweep request every problem of the plan is measured with."""
        s = self.sweep
        objectives = s.get("objectives") or list(DEFAULT_OBJECTIVES)
        return SweepRequest(
            sm=s.get("sm_clocks"),
            mem=s.get("mem_clocks"),
            power=s.get("power_limits"),
            objectives=tuple(parse_objective(o) for o in objectives),
            settings=MeasureSettings(method=s.get("measurement") or MeasureSettings().method),
            strategy=s.get("strategy") or DEFAULT_STRATEGY,
            allow_shared=bool(s.get("allow_shared", False)),
            from_defaults=bool(s.get("from_defaults", False)),
        )


def plan_text(
    run_id: str,
    problems: list[tuple[str, str, str, str]],
    *,
    results: str | None = None,
    devices: str = "all",
    sweep: dict[str, Any] | None = None,
) -> str:
    """A plan file's text (``problems``: kernel, shape, dtype, impl); check it with
    :func:`load_plan` after writing it."""

    def q(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(q(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"schema = {q(SCHEMA)}", f"run_id = {q(run_id)}"]
    if results:
        lines.append(f"results = {q(results)}")
    lines.append(f"devices = {q(devices)}")
    if sweep:
        lines += ["", "[sweep]"] + [f"{k} = {q(v)}" for k, v in sweep.items() if v is not None]
    for kernel, shape, dtype, impl in problems:
        lines += ["", "[[problems]]", f"kernel = {q(kernel)}", f"shape = {q(shape)}"]
        lines += [f"dtype = {q(dtype)}", f"impl = {q(impl)}"]
    return "\n".join(lines) + "\n"


def _bad(path: Path, what: str, remedy: str) -> UsageError:
    return UsageError(f"fleet plan {path}: {what}", remedy)


def _unknown(path: Path, where: str, keys: set[str], known: set[str]) -> None:
    extra = sorted(keys - known)
    if extra:
        raise _bad(path, f"unknown key {where}{extra[0]!r}", f"known: {', '.join(sorted(known))}")


def load_plan(path: str | Path) -> FleetPlan:
    """Read and check a plan file (usage errors name the key and what it accepts)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no fleet plan at {path}", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read fleet plan {path}: {exc}", "check the file") from None
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path, f"not valid TOML ({exc})", "fix the file") from None
    _unknown(path, "", set(doc), _TOP)
    if doc.get("schema") != SCHEMA:
        raise _bad(
            path, f"schema is {doc.get('schema')!r}", f'start the file with schema = "{SCHEMA}"'
        )
    run_id = doc.get("run_id")
    if not is_run_id(run_id):
        raise _bad(path, f"run_id {run_id!r} is not a run id", f"use {RUN_ID_RULE}")
    results = doc.get("results")
    if results is not None and not isinstance(results, str):
        raise _bad(path, "results must be a folder path", 'e.g. results = "/shared/fleet"')
    devices = doc.get("devices", "all")
    if isinstance(devices, list) and all(isinstance(d, str) for d in devices) and devices:
        devices = tuple(devices)
    elif not isinstance(devices, str):
        raise _bad(path, f"devices {devices!r}", 'use "all", "sim:<N>x<key>" or a list')
    sweep = doc.get("sweep") or {}
    if not isinstance(sweep, dict):
        raise _bad(path, "[sweep] must be a table", "see `wattbench fleet node --help`")
    _unknown(path, "sweep.", set(sweep), _SWEEP)
    if sweep.get("strategy") not in (None, *STRATEGIES):
        raise _bad(path, f"sweep.strategy {sweep['strategy']!r}", f"use {' or '.join(STRATEGIES)}")
    if not isinstance(sweep.get("verify", False), bool):
        raise _bad(path, f"sweep.verify {sweep['verify']!r}", "use true or false")
    if sweep.get("measurement") not in (None, *METHODS):
        raise _bad(
            path, f"sweep.measurement {sweep['measurement']!r}", f"use {' or '.join(METHODS)}"
        )
    problems = doc.get("problems")
    if not isinstance(problems, list) or not problems:
        raise _bad(path, "no [[problems]]", "add at least one [[problems]] table")
    out = []
    for i, p in enumerate(problems):
        if not isinstance(p, dict):
            raise _bad(path, f"problems[{i}] is not a table", "use [[problems]] tables")
        _unknown(path, f"problems[{i}].", set(p), _PROBLEM)
        missing = [k for k in ("kernel", "shape", "dtype") if k not in p]
        if missing:
            raise _bad(
                path, f"problems[{i}] lacks {', '.join(missing)}", "give kernel, shape, dtype"
            )
        try:
            out.append(
                make_problem(p["kernel"], str(p["shape"]), p["dtype"], p.get("impl", "vendor"))
            )
        except WattbenchError as exc:
            raise _bad(path, f"problems[{i}]: {exc.message}", exc.remedy) from None
    plan = FleetPlan(
        path=path.resolve(),
        run_id=run_id,
        results=Path(results).expanduser() if results else default_results_dir() / "fleet",
        devices=devices,
        sweep=dict(sweep),
        problems=tuple(out),
        results_named=results is not None,
    )
    try:
        plan.request()
    except WattbenchError as exc:
        raise _bad(path, f"[sweep]: {exc.message}", exc.remedy) from None
    return plan
