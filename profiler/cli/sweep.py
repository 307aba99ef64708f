"""``wattbench sweep``: measure a kernel over operating points and choose the energy-optimal one.

On a simulated GPU the kernel is not executed: its Work runs on the simulator's virtual clock,
and every output says so. On a real GPU the chosen implementation (``--impl``, default the vendor
baseline) runs on the selected GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wattbench.kernels.costs import Problem, make_problem, work_of
from wattbench.profiler.device import Device, open_device, visible_real_indices
from wattbench.profiler.errors import UsageError
from wattbench.profiler.measure import (
    Actuator,
    Measurement,
    MeasureSettings,
    OperatingPoint,
    PointMeasurer,
    VirtualClock,
    WallClock,
)
from wattbench.profiler.runners import GpuRunner, SimulatedRunner
from wattbench.profiler.safety import ActuationGuard, stale_journal_warning
from wattbench.profiler.safety.preflight import check_not_shared, check_privileges
from wattbench.profiler.select.objectives import Choice, parse_objective
from wattbench.profiler.store import (
    RunRecord,
    collect_versions,
    default_run_path,
    device_json,
    ensure_writable_dir,
)
from wattbench.profiler.sweep.run import run_sweep
from wattbench.profiler.sweep.space import Space
from wattbench.profiler.sweep.strategy import GridStrategy

DEFAULT_OBJECTIVES = ("energy", "edp", "slowdown:0.05")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="sweep clocks / power limits and choose the energy-optimal point",
        description="Measure a kernel's time and energy at many operating points and choose "
        "the best per objective. Results are written point by point to a run file.",
    )
    p.add_argument("--device", help="0, GPU-<uuid>, sim:h100-sxm, sim:path/to/spec.toml")
    p.add_argument("--kernel", help="kernel family, e.g. matmul (required unless --resume)")
    p.add_argument("--shape", help="problem shape, e.g. 8192x8192x8192 (required unless --resume)")
    p.add_argument("--dtype", help="bf16, fp16, fp32, tf32, fp8 (required unless --resume)")
    p.add_argument(
        "--impl",
        default="vendor",
        help="implementation: vendor, triton, cupy, cublas-cupy (default: vendor; "
        "`wattbench kernels` lists them)",
    )
    p.add_argument(
        "--sm-clocks",
        metavar="SPEC",
        help="all | every:K | 1200,1500 | 900:1800[:STEP] (default: all, unless only "
        "--power-limits is given)",
    )
    p.add_argument("--mem-clocks", metavar="SPEC", help="default | all | list | range")
    p.add_argument("--power-limits", metavar="SPEC", help="W: 200:700:50 or a list")
    p.add_argument(
        "--objective",
        action="append",
        metavar="OBJ",
        help="energy | edp | ed2p | zeus:<eta> | slowdown:<s> (repeatable; default: "
        + ", ".join(DEFAULT_OBJECTIVES)
        + ")",
    )
    p.add_argument("--out", default="results", help="output directory (default: results/)")
    p.add_argument("--resume", metavar="RUN.json", help="complete an interrupted run file")
    p.add_argument(
        "--observe-only",
        action="store_true",
        help="change no setting: measure the GPU as it is, as one point",
    )
    p.add_argument(
        "--allow-shared",
        action="store_true",
        help="measure even while other processes use the GPU (their work disturbs the figures)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("measurement")
    d = MeasureSettings()
    g.add_argument("--spread", type=float, default=d.spread_threshold, help="trial spread target")
    g.add_argument("--max-trials", type=int, default=d.max_trials)
    g.add_argument("--min-window-s", type=float, default=d.min_window_s)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    objectives = [parse_objective(o) for o in (args.objective or DEFAULT_OBJECTIVES)]
    settings = MeasureSettings(
        spread_threshold=args.spread, max_trials=args.max_trials, min_window_s=args.min_window_s
    )
    sm, mem, power = args.sm_clocks, args.mem_clocks, args.power_limits
    if args.resume:
        # a resumed run continues with the settings, space and objectives it was started with
        record = RunRecord.resume(Path(args.resume))
        recorded = record.doc["settings"]
        settings = MeasureSettings(**recorded["measurement"])
        objectives = [parse_objective(o) for o in recorded["objectives"]]
        specs = (recorded.get("space") or {}).get("specs") or {}
        sm, mem, power = specs.get("sm"), specs.get("mem"), specs.get("power")
        pj = record.doc["problem"]
        problem = make_problem(
            pj["family"], "x".join(map(str, pj["shape"])), pj["dtype"], pj["impl"]
        )
        device = open_device(record.doc["device"]["selection"], observe_only=args.observe_only)
        if device.identity.uuid != record.doc["device"]["uuid"]:
            raise UsageError(
                f"run file {record.path} was measured on {record.doc['device']['uuid']}, "
                f"not on {device.identity.uuid}",
                "resume it on the same GPU, or start a new run without --resume",
            )
    else:
        missing = [f"--{k}" for k in ("kernel", "shape", "dtype") if not getattr(args, k)]
        if missing:
            raise UsageError(
                f"missing {', '.join(missing)}", "give the problem to sweep, or --resume RUN.json"
            )
        problem = make_problem(args.kernel, args.shape, args.dtype, args.impl)
        device = open_device(args.device, observe_only=args.observe_only)
        record = None
    out_dir = Path(record.path.parent if record is not None else args.out)
    ensure_writable_dir(out_dir)
    if not device.actuation_allowed:
        return _sweep_observed(args, device, problem, settings, objectives, record, sm, mem, power)
    if sm is None and mem is None and power is None:
        sm = "all"
    space = Space.from_specs(device.capabilities, sm=sm, mem=mem, power=power)
    # the actuation session: recovers a crashed run's changes, journals the settings in force
    # before anything changes, and puts them back however this ends (signals included)
    with ActuationGuard(device, "sweep"):
        check_not_shared(device, allow_shared=args.allow_shared)
        check_privileges(device, space.knobs)
        return _sweep(
            args,
            device,
            problem,
            settings,
            objectives,
            record,
            points=space.points(),
            space_desc=space.describe(),
            max_power_w=space.max_power_limit_w,
            knobs=space.knobs,
        )


def _sweep_observed(args, device, problem, settings, objectives, record, sm, mem, power) -> int:
    """Observe-only: no setter is called; the GPU as it is, measured as one point."""
    warning = stale_journal_warning(device)
    if warning:
        print(f"wattbench: warning: {warning}", file=sys.stderr)
    check_not_shared(device, allow_shared=args.allow_shared)
    why = "WATTBENCH_NO_ACTUATE is set" if not device.observe_only else "--observe-only"
    ignored = {k: v for k, v in (("sm", sm), ("mem", mem), ("power", power)) if v is not None}
    print(
        f"observe-only ({why}): no setting will be changed; measuring the GPU as it is, as one "
        "point" + (f" (ignoring the requested space {ignored})" if ignored else ""),
        file=sys.stderr,
    )
    space_desc = {"mode": "observe-only", "n_points": 1, "requested": ignored}
    return _sweep(
        args,
        device,
        problem,
        settings,
        objectives,
        record,
        points=[OperatingPoint()],
        space_desc=space_desc,
        max_power_w=device.power_limit_w(),
        knobs=frozenset(),
    )


def _sweep(
    args,
    device,
    problem,
    settings,
    objectives,
    record,
    *,
    points,
    space_desc,
    max_power_w,
    knobs: frozenset[str],
) -> int:
    """Measure ``points``, changing only ``knobs`` (none: observe-only, no actuator)."""
    runner, clock = make_runner(device, problem)
    measurer = PointMeasurer(
        device, runner, clock, settings, actuator=Actuator(device, knobs) if knobs else None
    )
    if record is None:
        path = default_run_path(Path(args.out), device_key(device), problem)
        record = RunRecord.create(
            path,
            device=device_json(device),
            versions=collect_versions(device.identity),
            problem=problem,
            work=runner.work,
            settings={
                "measurement": settings.to_json(),
                "space": space_desc,
                "objectives": [o.name for o in objectives],
                "runner": runner.describe(),
            },
            simulated=runner.simulated,
        )
    strategy = GridStrategy(points)
    bar = _progress(strategy.planned(), args.quiet)
    result = run_sweep(
        measurer,
        strategy,
        record,
        objectives,
        max_power_w=max_power_w,
        measured={m.point.key: m for m in record.points},
        idle_power_w=record.idle_power_w,
        on_point=lambda m, resumed: bar(m, resumed),
    )
    bar.close()
    print(render_summary(device, problem, result.choices, result.baseline, runner.simulated))
    print(f"run file: {record.path}")
    return 0


def device_key(device: Device) -> str:
    sim = device.simulated
    if sim is not None:
        return "sim-" + sim.spec.key
    return device.identity.name.replace("NVIDIA ", "").replace(" ", "-").lower()


def make_runner(device: Device, problem: Problem):
    work = work_of(problem)
    sim = device.simulated
    if sim is not None:
        return SimulatedRunner(sim, work), VirtualClock(sim)
    from wattbench.kernels.catalog import gpu_launch

    # NVML and CUDA number GPUs differently; the visible list is in CUDA's order
    cuda_index = visible_real_indices().index(device.index)
    launch = gpu_launch(
        problem.family, problem.impl, problem.shape, problem.dtype, cuda_index=cuda_index
    )
    return GpuRunner(launch, work), WallClock()


class _progress:
    """A tqdm bar when stderr is a terminal (and not --quiet); silent otherwise."""

    def __init__(self, total: int | None, quiet: bool) -> None:
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="point", file=sys.stderr, leave=False)

    def __call__(self, m: Measurement, resumed: bool) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(("resumed " if resumed else "") + m.point.key, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def render_summary(
    device: Device,
    problem: Problem,
    choices: dict[str, Choice],
    baseline: Measurement | None,
    simulated: bool,
) -> str:
    lines = [f"{problem.label} on {device.identity}"]
    if simulated:
        lines.append(
            "SIMULATED GPU: the kernel was not executed; figures are model outputs, "
            "not measurements."
        )
    head = (
        f"{'':<16}{'point':<26}{'SM MHz':>7}{'power W':>9}{'time ms':>10}{'energy J':>10}"
        f"{'TFLOP/J':>9}{'saving':>8}{'slowdown':>10}"
    )
    lines.append(head)

    def row(label: str, m: Measurement, c: Choice | None) -> str:
        saving = f"{c.saving_rel * 100:.1f}%" if c and c.saving_rel is not None else "-"
        slow = f"{c.slowdown_rel * 100:.1f}%" if c and c.slowdown_rel is not None else "-"
        tpj = f"{m.tflop_per_j:.3f}" if m.tflop_per_j else "-"
        flags = f" [{','.join(m.flags)}]" if m.flags else ""
        return (
            f"{label:<16}{str(m.point)[:25]:<26}{m.sm_mhz_mean:>7.0f}{m.avg_power_w:>9.1f}"
            f"{m.time_s * 1e3:>10.3f}{m.energy_j:>10.4g}{tpj:>9}{saving:>8}{slow:>10}{flags}"
        )

    if baseline is not None:
        lines.append(row("baseline", baseline, None))
    for name, c in choices.items():
        lines.append(row(name, c.chosen, c))
    return "\n".join(lines)
