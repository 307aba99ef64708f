"""``wattbench sweep``: measure a kernel over operating points and choose the energy-optimal one.

On a simulated GPU the kernel is not executed: its Work runs on the simulator's virtual clock,
and every output says so. On a real GPU the chosen implementation (``--impl``, default the vendor
baseline) runs on the selected GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattbench.kernels.costs import Problem, make_problem
from wattbench.profiler.cli.args import bounded, nonempty, positive_float, positive_int
from wattbench.profiler.device import Device, open_device
from wattbench.profiler.errors import UsageError, WattbenchError
from wattbench.profiler.measure import Measurement, MeasureSettings
from wattbench.profiler.measure.measure import METHODS
from wattbench.profiler.select.objectives import Choice, parse_objective
from wattbench.profiler.signals import Terminated
from wattbench.profiler.store import RunRecord, default_results_dir
from wattbench.profiler.store.header import RecordSettings
from wattbench.profiler.sweep.session import (
    DEFAULT_OBJECTIVES,
    DEFAULT_STRATEGY,
    STRATEGIES,
    SweepRequest,
    resume_request,
    sweep_problem,
)
from wattbench.profiler.textfmt import percent

if TYPE_CHECKING:
    from tqdm import tqdm


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
        help="implementation: vendor, triton, cupy, cublas-cupy (default: vendor; "
        "`wattbench kernels` lists them)",
    )
    p.add_argument(
        "--sm-clocks",
        metavar="SPEC",
        type=nonempty,
        help="all | every:K | 1200,1500 | 900:1800[:STEP] (default: all, unless only "
        "--power-limits is given)",
    )
    p.add_argument(
        "--mem-clocks", metavar="SPEC", type=nonempty, help="default | all | list | range"
    )
    p.add_argument("--power-limits", metavar="SPEC", type=nonempty, help="W: 200:700:50 or a list")
    p.add_argument(
        "--objective",
        action="append",
        metavar="OBJ",
        help="energy | edp | ed2p | zeus:<eta> | slowdown:<s> (repeatable; default: "
        + ", ".join(DEFAULT_OBJECTIVES)
        + ")",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="how to search the space: adaptive brackets each objective's optimum and refines "
        "it (golden section), measuring a fraction of the points; grid measures every point "
        f"(default: {DEFAULT_STRATEGY})",
    )
    p.add_argument(
        "--out",
        help="folder for the run file (default: $WATTBENCH_RESULTS_DIR, else "
        "~/.local/share/wattbench/runs)",
    )
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
    p.add_argument(
        "--from-defaults",
        action="store_true",
        help="put the knobs the sweep does not sweep at their driver defaults for the sweep "
        "(put back afterwards); without it they stay as found, and the baseline says so",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("measurement")
    d = MeasureSettings()
    g.add_argument(
        "--spread",
        type=bounded(float, minimum=0, maximum=1, open_min=True),
        help=f"trial spread target, 0..1 (default {d.spread_threshold:g})",
    )
    g.add_argument(
        "--measurement",
        choices=METHODS,
        help="fast: short asynchronous windows, each point carried to its steady temperature "
        "by the sweep's thermal model; steady: warm each point up until power is steady, "
        f"trials until their spread is small (the old method) (default: {d.method})",
    )
    g.add_argument(
        "--max-trials", type=positive_int, help=f"at most this many trials (default {d.max_trials})"
    )
    g.add_argument(
        "--min-window-s",
        type=positive_float,
        help=f"shortest trial window, s (default {d.min_window_s:g})",
    )
    p.set_defaults(run=run)


#: options that choose what a run measures: a resumed run continues as recorded, so none of
#: these may be given with --resume (attribute -> option)
_FIXED_BY_RECORD = {
    "device": "--device",
    "kernel": "--kernel",
    "shape": "--shape",
    "dtype": "--dtype",
    "impl": "--impl",
    "sm_clocks": "--sm-clocks",
    "mem_clocks": "--mem-clocks",
    "power_limits": "--power-limits",
    "objective": "--objective",
    "strategy": "--strategy",
    "out": "--out",
    "spread": "--spread",
    "max_trials": "--max-trials",
    "min_window_s": "--min-window-s",
    "from_defaults": "--from-defaults",
    "measurement": "--measurement",
}


def run(args: argparse.Namespace) -> int:
    record: RunRecord | None
    if args.resume:
        given = [opt for attr, opt in _FIXED_BY_RECORD.items() if getattr(args, attr)]
        if given:
            raise UsageError(
                f"--resume continues the run as it was recorded; {', '.join(given)} cannot "
                "change it",
                "drop " + ", ".join(given) + ", or start a new run without --resume",
            )
        record, problem, device, request = _resumed(args)
    else:
        record, problem, device, request = _new(args)
    bar = _progress(args.quiet)
    opened: list[RunRecord] = [record] if record is not None else []
    try:
        outcome = sweep_problem(
            device,
            problem,
            request,
            out_dir=args.out or default_results_dir(),
            record=record,
            on_start=bar.start,
            on_point=bar,
            on_record=opened.append,
        )
    except (KeyboardInterrupt, Terminated) as exc:
        bar.close()
        code = 130 if isinstance(exc, KeyboardInterrupt) else 128 + exc.signum
        what = "interrupted" if code == 130 else str(exc)
        if opened:
            print(
                f"wattbench: {what}; the GPU was restored and {_kept(opened[-1])}", file=sys.stderr
            )
        else:
            print(f"wattbench: {what} before the first point; nothing was kept", file=sys.stderr)
        return code
    except WattbenchError as exc:  # a runtime failure mid-sweep: say where the points are
        if opened and not isinstance(exc, UsageError):
            hint = _kept(opened[-1])
            exc.remedy = f"{exc.remedy}; {hint}" if exc.remedy else hint
        raise
    finally:
        bar.close()
    result = outcome.result
    print(render_summary(device, problem, result.choices, result.baseline, outcome.simulated))
    record = outcome.record
    print(render_effort(record.settings, result.measurements))
    print(render_measurement(record, result.measurements, outcome.simulated))
    print(f"run file: {outcome.record.path}")
    return 0


def _kept(record: RunRecord) -> str:
    """Where a cut-short sweep's points are and how to continue it."""
    path = record.path
    return (
        f"{path} keeps the {record.point_count} points measured; continue with "
        f"`wattbench sweep --resume {path}`"
    )


def _new(args: argparse.Namespace) -> tuple[None, Problem, Device, SweepRequest]:
    missing = [f"--{k}" for k in ("kernel", "shape", "dtype") if not getattr(args, k)]
    if missing:
        raise UsageError(
            f"missing {', '.join(missing)}", "give the problem to sweep, or --resume RUN.json"
        )
    problem = make_problem(args.kernel, args.shape, args.dtype, args.impl or "vendor")
    device = open_device(args.device, observe_only=args.observe_only)
    space_given = [
        opt
        for opt, v in (
            ("--sm-clocks", args.sm_clocks),
            ("--mem-clocks", args.mem_clocks),
            ("--power-limits", args.power_limits),
        )
        if v is not None
    ]
    if space_given and not device.actuation_allowed:
        why = "--observe-only" if args.observe_only else "WATTBENCH_NO_ACTUATE=1"
        raise UsageError(
            f"{', '.join(space_given)} asks to change settings, which {why} forbids",
            "drop "
            + ", ".join(space_given)
            + " to measure the GPU as it is, or run without "
            + why,
        )
    d = MeasureSettings()
    settings = MeasureSettings(
        spread_threshold=d.spread_threshold if args.spread is None else args.spread,
        max_trials=args.max_trials or d.max_trials,
        min_window_s=args.min_window_s or d.min_window_s,
        method=args.measurement or d.method,
    )
    request = SweepRequest(
        sm=args.sm_clocks,
        mem=args.mem_clocks,
        power=args.power_limits,
        objectives=tuple(parse_objective(o) for o in (args.objective or DEFAULT_OBJECTIVES)),
        settings=settings,
        strategy=args.strategy or DEFAULT_STRATEGY,
        allow_shared=args.allow_shared,
        from_defaults=args.from_defaults,
    )
    return None, problem, device, request


def _resumed(args: argparse.Namespace) -> tuple[RunRecord, Problem, Device, SweepRequest]:
    """A resumed run continues with the device, problem, settings, space, objectives and
    strategy it was started with."""
    record = RunRecord.resume(Path(args.resume))
    problem, device, request = resume_request(
        record, observe_only=args.observe_only, allow_shared=args.allow_shared
    )
    return record, problem, device, request


class _progress:
    """A tqdm bar when stderr is a terminal (and not --quiet); silent otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.bar: tqdm[Any] | None = None
        self.quiet = quiet

    def start(self, total: int | None) -> None:
        if not self.quiet and sys.stderr.isatty():
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
        f"{'':<16}{'SM MHz':>7}{'power W':>9}{'time ms':>10}{'energy J':>10}"
        f"{'TFLOP/J':>9}{'saving':>8}{'slowdown':>10}  settings in force"
    )
    lines.append(head)

    def row(label: str, m: Measurement, c: Choice | None) -> str:
        saving = percent(c.saving_rel) if c else "-"
        slow = percent(c.slowdown_rel) if c else "-"
        tpj = f"{m.tflop_per_j:.3f}" if m.tflop_per_j else "-"
        flags = f" [{','.join(m.flags)}]" if m.flags else ""
        return (
            f"{label:<16}{m.sm_mhz_mean:>7.0f}{m.avg_power_w:>9.1f}"
            f"{m.time_s * 1e3:>10.3f}{m.energy_j:>10.4g}{tpj:>9}{saving:>8}{slow:>10}  "
            f"{m.settings_text}{flags}"
        )

    if baseline is not None:
        lines.append(row("baseline", baseline, None))
    for name, c in choices.items():
        lines.append(row(name, c.chosen, c))
    return "\n".join(lines)


def render_measurement(record: RunRecord, measurements: list[Measurement], simulated: bool) -> str:
    """One line: the method, the device time the run spent, and how far the fast method carried
    its points towards their steady temperature (the range of corrections, the largest standard
    error)."""
    method = record.settings.method
    gpu_s = record.gpu_time_s
    clock = "simulated GPU time" if simulated else "GPU time"
    text = f"measurement {method}"
    if gpu_s is not None:
        text += f": {gpu_s:.0f} s of {clock}"
    rels = [m.thermal["rel"] for m in measurements if "rel" in m.thermal]
    if rels:
        worst_se = max(m.thermal["rel_se"] for m in measurements if "rel_se" in m.thermal)
        text += (
            f"; each point carried to its steady temperature by the sweep's thermal model "
            f"(corrections {percent(min(rels), signed=True)} to {percent(max(rels), signed=True)}, "
            f"s.e. at most {percent(worst_se)})"
        )
    elif method == "steady":
        text += "; each point warmed up until its power was steady"
    return text


def render_effort(settings: RecordSettings, measurements: list[Measurement]) -> str:
    """One line: how many points the strategy measured, re-measured, and of how many."""
    from wattbench.profiler.sweep.strategy import passes_of

    name = settings.strategy_name
    total = sum(passes_of(m) for m in measurements)
    again = sum(passes_of(m) > 1 for m in measurements)
    text = f"strategy {name}: {total} measurements of {len(measurements)} points"
    if again:
        text += f" ({again} measured again)"
    grid = (settings.strategy or {}).get("grid_points")
    if grid:
        text += f"; the grid has {grid} points"
    return text
