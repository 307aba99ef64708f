"""One sweep of one problem on one GPU, start to finish: the library entry point behind
``wattbench sweep`` and the pytest plugin.

:func:`sweep_problem` picks the path the device allows. Observe-only (``--observe-only`` or
``WATTBENCH_NO_ACTUATE=1``) changes nothing and measures the GPU as it is, as one point. Otherwise
an actuation session (``profiler/safety/guard.py``) recovers a crashed run's changes, journals the
settings in force, checks that the GPU is not shared and that the process may change exactly the
knobs the space sweeps, and puts everything back however the sweep ends. The run record is
written point by point; a record passed in (``--resume``) continues where it stopped. The space
is searched by :data:`DEFAULT_STRATEGY` (``adaptive``: ``sweep/adaptive.py``) unless the request
names ``grid``, which measures every point.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattbench.kernels.costs import Problem, make_problem, work_of
from wattbench.profiler.device import Device, open_device, visible_real_indices
from wattbench.profiler.errors import UsageError
from wattbench.profiler.measure import (
    Actuator,
    Measurement,
    MeasureSettings,
    OperatingPoint,
    PointMeasurer,
    WallClock,
)
from wattbench.profiler.measure.thermal import ThermalFit, ThermalModel, load_model, save_model
from wattbench.profiler.paths import state_home
from wattbench.profiler.runners import GpuRunner, SimulatedRunner
from wattbench.profiler.safety import ActuationGuard, stale_journal_warning
from wattbench.profiler.safety.found import FoundSettings, settings_found
from wattbench.profiler.safety.preflight import check_not_shared, check_privileges
from wattbench.profiler.select.objectives import Objective, parse_objective
from wattbench.profiler.sim.gpu import VirtualClock
from wattbench.profiler.sim.physics import INPUT_ACTIVITY
from wattbench.profiler.store import (
    RecordError,
    RunRecord,
    collect_versions,
    device_json,
    ensure_writable_dir,
)
from wattbench.profiler.sweep.adaptive import AdaptiveSettings, AdaptiveStrategy
from wattbench.profiler.sweep.run import SweepResult, run_sweep
from wattbench.profiler.sweep.space import Space
from wattbench.profiler.sweep.strategy import GridStrategy, Strategy

DEFAULT_OBJECTIVES = ("energy", "edp", "slowdown:0.05")
#: the search strategy of ``wattbench sweep`` and the pytest plugin unless one is named
DEFAULT_STRATEGY = "adaptive"
#: every strategy name ``make_strategy`` accepts
STRATEGIES = ("adaptive", "grid")

#: progress callback: (measurement, resumed from the record)
OnPoint = Callable[[Measurement, bool], None]


def _stderr(message: str) -> None:
    print(f"wattbench: {message}", file=sys.stderr)


@dataclass(frozen=True)
class SweepRequest:
    """What to sweep: space specs (``Space.from_specs`` forms; all None means every SM clock),
    objectives to choose by, measurement settings, the search strategy (``adaptive`` or
    ``grid``; ``adaptive`` serves every objective given, with ``adaptive`` settings or the
    defaults) and whether another process on the GPU is acceptable."""

    sm: str | None = None
    mem: str | None = None
    power: str | None = None
    objectives: tuple[Objective, ...] = field(
        default_factory=lambda: tuple(parse_objective(o) for o in DEFAULT_OBJECTIVES)
    )
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    strategy: str = DEFAULT_STRATEGY
    allow_shared: bool = False
    adaptive: AdaptiveSettings | None = None
    #: put every knob the sweep does not sweep at its driver default for the sweep (the GPU is
    #: put back afterwards); otherwise those knobs stay as found and the baseline says so
    from_defaults: bool = False
    #: measure exactly these points and the baseline, as a grid (a fleet verify pass: the
    #: candidate model points measured on every unit); the space specs are then ignored
    points: tuple[OperatingPoint, ...] | None = None

    @property
    def purpose(self) -> str:
        """``verify`` for a list of points (a fleet verify pass), else ``sweep``."""
        return "sweep" if self.points is None else "verify"

    @property
    def requested(self) -> dict[str, str]:
        """The space specs given (for records and the observe-only notice)."""
        specs = (("sm", self.sm), ("mem", self.mem), ("power", self.power))
        return {k: v for k, v in specs if v is not None}


@dataclass
class SweepOutcome:
    """A finished sweep: its run record (already written), the result and how it was run."""

    record: RunRecord
    result: SweepResult
    simulated: bool
    observe_only: bool


def resume_request(
    record: RunRecord, *, observe_only: bool = False, allow_shared: bool = False
) -> tuple[Problem, Device, SweepRequest]:
    """What continues ``record`` as it was started: its problem, its GPU (a real one reopened by
    UUID -- a requeued job may see the GPUs in another order -- a simulated one by its
    selection, which names its node and unit) and the request it was recorded with."""
    recorded = record.settings
    specs = (recorded.space or {}).get("specs") or {}
    strategy = recorded.strategy_name
    adaptive = (
        AdaptiveSettings.from_json(recorded.strategy or {}) if strategy == "adaptive" else None
    )
    points = None
    if recorded.purpose == "verify":
        keys = recorded.strategy_point_keys
        points = tuple(p for p in map(OperatingPoint.from_key, keys) if not p.is_baseline)
    pj = record.problem
    problem = make_problem(pj.family, "x".join(map(str, pj.shape)), pj.dtype, pj.impl)
    recorded_device = record.device
    how = recorded_device.selection if record.simulated else recorded_device.uuid
    device = open_device(how or recorded_device.uuid, observe_only=observe_only)
    if device.identity.uuid != recorded_device.uuid:
        raise UsageError(
            f"run file {record.path} was measured on {recorded_device.uuid}, "
            f"not on {device.identity.uuid}",
            "resume it on the same GPU, or start a new run without --resume",
        )
    request = SweepRequest(
        sm=specs.get("sm"),
        mem=specs.get("mem"),
        power=specs.get("power"),
        objectives=tuple(parse_objective(o) for o in recorded.objectives),
        # a record older than the method key was measured steady (the default since is fast)
        settings=MeasureSettings(**{**recorded.measurement, "method": recorded.method}),
        strategy=strategy,
        allow_shared=allow_shared,
        adaptive=adaptive,
        from_defaults=recorded.from_defaults,
        points=points,
    )
    return problem, device, request


def make_strategy(
    name: str,
    space: Space | None,
    points: Sequence[OperatingPoint],
    *,
    objectives: Sequence[Objective] = (),
    max_power_w: float | None = None,
    adaptive: AdaptiveSettings | None = None,
) -> Strategy:
    """The search strategy ``name`` over ``points`` (``space``: None when observe-only, which
    measures ``points`` as a grid whatever the name). ``adaptive`` searches for every one of
    ``objectives`` (Zeus prices time at ``max_power_w``, default the space's highest limit)."""
    if name not in STRATEGIES:
        raise UsageError(
            f"unknown sweep strategy {name!r}", f"use --strategy {' or '.join(STRATEGIES)}"
        )
    if name == "grid" or space is None:
        return GridStrategy(points)
    return AdaptiveStrategy(space, objectives, max_power_w=max_power_w, settings=adaptive)


def point_specs(points: Sequence[OperatingPoint]) -> tuple[str | None, str | None, str | None]:
    """Space specs (sm, mem, power) whose knobs cover ``points``: the values each sets, listed
    (None for a knob no point sets)."""

    def spec(values: list[float | None]) -> str | None:
        given = sorted({v for v in values if v is not None})
        return ",".join(f"{v:g}" for v in given) if given else None

    return (
        spec([p.sm_mhz for p in points]),
        spec([p.mem_mhz for p in points]),
        spec([p.power_limit_w for p in points]),
    )


def device_key(device: Device) -> str:
    """Short name of the GPU model for file names: ``sim-h100-sxm``, ``h100-80gb-hbm3``."""
    sim = device.simulated
    if sim is not None:
        return "sim-" + sim.spec.key
    return device.identity.name.replace("NVIDIA ", "").replace(" ", "-").lower()


def make_runner(device: Device, problem: Problem, *, data: str = "random"):
    """A runner and its clock: the simulator's virtual clock for a simulated GPU, else the
    problem's implementation launched on the CUDA device that is this NVML device.

    ``data``: ``"random"`` (the family's seeded inputs) or ``"zeros"`` (the same launch with
    every operand but the scales zeroed: the simulator's ``data_activity`` 0)."""
    if data not in INPUT_ACTIVITY:
        raise UsageError(f"no input data {data!r}", f"use one of: {', '.join(INPUT_ACTIVITY)}")
    work = work_of(problem)
    sim = device.simulated
    if sim is not None:
        return SimulatedRunner(sim, work, data_activity=INPUT_ACTIVITY[data]), VirtualClock(sim)
    from wattbench.kernels.catalog import gpu_launch

    # NVML and CUDA number GPUs differently; the visible list is in CUDA's order
    cuda_index = visible_real_indices().index(device.index)
    launch = gpu_launch(
        problem.family, problem.impl, problem.shape, problem.dtype, cuda_index=cuda_index
    )
    if data == "zeros":
        for inputs in launch.inputs:
            inputs.zero_operands()
    return GpuRunner(launch, work), WallClock()


def check_fits(device: Device, problem: Problem) -> None:
    """Refuse, before any launch, a problem whose operands and results alone (its Work's
    minimum traffic: every operand read once, every result written once) exceed the GPU's
    memory."""
    need = work_of(problem).bytes
    have = device.identity.memory_total_mib * 2**20
    if need > have:
        raise UsageError(
            f"{problem.label} needs at least {need / 2**30:,.1f} GiB for its operands and "
            f"results, more than the {have / 2**30:,.1f} GiB of {device.identity.name}",
            "choose a smaller shape",
        )


def sweep_problem(
    device: Device,
    problem: Problem,
    request: SweepRequest,
    *,
    out_dir: str | Path,
    record: RunRecord | None = None,
    on_start: Callable[[int | None], None] | None = None,
    on_point: OnPoint | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
    notify: Callable[[str], None] = _stderr,
) -> SweepOutcome:
    """Sweep ``problem`` on ``device`` as ``request`` says, writing a run record under
    ``out_dir`` (or continuing ``record``). ``on_start(planned)`` is called once measuring starts
    with the number of points planned (None: not known in advance), ``on_point`` after each
    point, ``on_record(record)`` once a new run record exists, and ``notify`` receives warnings
    and notices, one line each. Raises the wattbench
    error of whatever stops it; the GPU is restored either way."""
    check_fits(device, problem)
    hooks = (on_start, on_point, on_record)
    out_dir = Path(record.path.parent if record is not None else out_dir)
    ensure_writable_dir(out_dir)
    if not device.actuation_allowed:
        return _sweep_observed(device, problem, request, out_dir, record, hooks, notify)
    sm, mem, power = request.sm, request.mem, request.power
    if request.points is not None:
        sm, mem, power = point_specs(request.points)
    if sm is None and mem is None and power is None:
        sm = "all"
    space = Space.from_specs(device.capabilities, sm=sm, mem=mem, power=power)
    points = space.points() if request.points is None else [OperatingPoint(), *request.points]
    with ActuationGuard(device, "sweep") as guard:
        check_not_shared(device, allow_shared=request.allow_shared)
        found = settings_found(device, guard.journal)
        knobs = space.knobs
        kept = found.nondefault_knobs - knobs
        if kept and request.from_defaults:
            knobs = knobs | kept
            notify(
                f"--from-defaults: {found.describe(kept)} is set to the driver default for the "
                "sweep and put back afterwards"
            )
        elif kept:
            notify(
                f"warning: {device.identity.name} is not at driver defaults: "
                f"{found.describe(kept)}; every point and the baseline are measured under it -- "
                "pass --from-defaults to sweep from driver defaults (put back afterwards), or "
                f"run `wattbench reset --device {device.selection}` first"
            )
        check_privileges(device, knobs)
        return _measure(
            device,
            problem,
            request,
            out_dir,
            record,
            hooks,
            strategy=make_strategy(
                request.strategy if request.points is None else "grid",
                space,
                points,
                objectives=request.objectives,
                max_power_w=space.max_power_limit_w,
                adaptive=request.adaptive or AdaptiveSettings.for_method(request.settings.method),
            ),
            space_desc=space.describe(),
            max_power_w=space.max_power_limit_w,
            knobs=knobs,
            found=found,
        )


def _sweep_observed(device, problem, request, out_dir, record, hooks, notify) -> SweepOutcome:
    """Observe-only: no setter is called; the GPU as it is, measured as one point."""
    warning = stale_journal_warning(device)
    if warning:
        notify(f"warning: {warning}")
    check_not_shared(device, allow_shared=request.allow_shared)
    why = "WATTBENCH_NO_ACTUATE is set" if not device.observe_only else "--observe-only"
    ignored = request.requested
    notify(
        f"observe-only ({why}): no setting will be changed; measuring the GPU as it is, as one "
        "point" + (f" (ignoring the requested space {ignored})" if ignored else "")
    )
    return _measure(
        device,
        problem,
        request,
        out_dir,
        record,
        hooks,
        strategy=GridStrategy([OperatingPoint()]),
        space_desc={"mode": "observe-only", "n_points": 1, "requested": ignored},
        max_power_w=device.power_limit_w(),
        knobs=frozenset(),
        found=settings_found(device),
    )


def _measure(
    device: Device,
    problem: Problem,
    request: SweepRequest,
    out_dir: Path,
    record: RunRecord | None,
    hooks: tuple[Any, ...],
    *,
    strategy: Strategy,
    space_desc: dict,
    max_power_w: float,
    knobs: frozenset[str],
    found: FoundSettings,
) -> SweepOutcome:
    """Measure what ``strategy`` proposes, changing only ``knobs`` (none: no actuator); every
    other knob stays as ``found``."""
    runner, clock = make_runner(device, problem)
    measurer = PointMeasurer(
        device,
        runner,
        clock,
        request.settings,
        actuator=Actuator(device, knobs) if knobs else None,
        found=found.settings,
    )
    thermal_folder = thermal_dir(device)
    prior = None
    if request.settings.method == "fast":  # start from what earlier sweeps learnt of this GPU
        recorded = record.settings.thermal_prior if record is not None else None
        prior = (
            ThermalModel.from_json(dict(recorded))
            if recorded is not None  # a resumed run starts from the prior it started from
            else load_model(thermal_folder, device.identity.uuid)
        )
        measurer.thermal = ThermalFit(prior=prior)
    on_start, on_point, on_record = hooks
    if record is None:
        record = RunRecord.create_new(
            out_dir,
            device_key(device),
            device=device_json(device),
            versions=collect_versions(device.identity),
            problem=problem,
            work=runner.work,
            settings={
                "measurement": request.settings.to_json(),
                "space": space_desc,
                "objectives": [o.name for o in request.objectives],
                "strategy": strategy.describe(),
                "runner": runner.describe(),
                "found": found.to_json(),
                "from_defaults": request.from_defaults,
                "actuated_knobs": sorted(knobs),
                "purpose": request.purpose,
                **({"thermal_prior": prior.to_json()} if prior is not None else {}),
            },
            simulated=runner.simulated,
        )
        if on_record is not None:
            on_record(record)
    if on_start is not None:
        on_start(strategy.planned())
    kept = {m.point.key for m in record.points}  # measured by earlier parts of this run
    try:
        result = run_sweep(
            measurer,
            strategy,
            record,
            request.objectives,
            max_power_w=max_power_w,
            measured={m.point.key: m for m in record.points},
            idle_power_w=record.idle_power_w,
            on_point=on_point,
        )
    finally:
        # what the runner learnt while running (a real GPU's: a CUDA graph or not); a failed
        # write leaves the record as run_sweep finished it
        with contextlib.suppress(RecordError):
            new = [m.point.key for m in record.points if m.point.key not in kept]
            record.set_runner(runner.describe(), new)
    if request.settings.method == "fast" and measurer.thermal.points:
        save_model(thermal_folder, device.identity.uuid, measurer.thermal.model)
    return SweepOutcome(record, result, runner.simulated, observe_only=not knobs)


def thermal_dir(device: Device) -> Path:
    """Where the thermal models of GPUs persist: beside simulated GPUs' state, else
    ``$XDG_STATE_HOME/wattbench/thermal`` (default ``~/.local/state/wattbench/thermal``)."""
    if device.simulated is not None:
        from wattbench.profiler.sim.state import state_dir

        return state_dir() / "thermal"
    return state_home() / "thermal"
