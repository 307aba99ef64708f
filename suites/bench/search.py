"""Grid vs adaptive search, side by side on the simulated H100, H200, A100 and L4, sensor noise on.

    python suites/bench/search.py [--seeds 20] [--gpus h100-sxm,h200,a100-sxm,l4] [--jobs 2]
                                  [--measurement steady,fast]
                                  [--out results/search]

For every GPU, workload and seed (``WATTBENCH_SIM_SEED``, which seeds the simulated sensors'
noise), one grid sweep over every supported SM clock is measured and reused for every objective;
the adaptive search runs once per objective (its cost for that objective alone) and once with
the CLI's default objectives together (``energy, edp, slowdown:0.05``: what ``wattbench sweep``
does). Each sweep starts from a fresh simulated GPU at idle and is driven in-process through the
real measurement path (``PointMeasurer``, ``Actuator``, an actuation session, ``run_sweep``).

Every sweep runs once per measurement method named (``--measurement``; ``fast`` is wattbench's
default, ``steady`` the old method), side by side. ``--study methods`` compares the two methods
instead, with the default objectives together, on robustness variants too
(``suites/bench/search_methods.py``; results in ``results/measurement/``).

Figures per sweep:

* measurements: points measured, counting every pass of a re-measured point (the baseline too);
* regret: the objective's own cost at the chosen point over its optimum among all grid points,
  minus 1 (energy per unit work for ``energy`` and ``slowdown:<s>``; J*s for EDP, J*s^2 for
  ED2P, J for Zeus's cost), both costs taken from the NOISE-FREE model at thermal steady state
  (``physics.steady_state``: the simulator's governor at the temperature its own power
  produces, for the simulated unit's own leakage, voltage and thermal resistance) -- not from
  what was measured. For ``slowdown:<s>`` the optimum is over the
  points truly within the bound, and a chosen point truly beyond it is counted as a violation.
  The grid's own regret is reported too: the measurements it chooses from are biased by the
  GPU's temperature history (the calibrated heat sink settles over tens of seconds; a point is
  measured for a few seconds), so the grid is not regret-free either;
* point bias: the largest |measured / true - 1| of energy per iteration over the grid's points
  (median and worst over seeds), against the same noise-free steady state;
* estimated real-GPU time: the virtual time the sweep spent on the simulated GPU's clock (idle
  power, counter-period estimate, batch calibration, warm-up and trial windows of every point),
  which is what the same procedure spends on a real GPU, less NVML and setter latencies.

Workloads: compute-bound matmul 8192^3 bf16; prefill attention, batch 8, 32 query / 8 KV
heads, sequence 2048, head dim 128, causal, bf16 (the ``prefill`` kernel family's Work; without
that family, a Work with the same FlashAttention-forward flops and bytes at 60% of the
tensor-core peak, stated as such in the output); memory-bound decode GEMV, matmul 1x8192x8192
bf16.

Everything here is simulated: the output says so. Written under ``--out`` as JSON and Markdown
with provenance (date, command, versions, settings).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattbench.kernels import catalog
from wattbench.kernels.costs import make_problem, work_of
from wattbench.kernels.work import Work
from wattbench.profiler.device import nvml as device_nvml
from wattbench.profiler.device import open_device
from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.measure import (
    Actuator,
    Measurement,
    MeasureSettings,
    OperatingPoint,
    PointMeasurer,
)
from wattbench.profiler.runners import SimulatedRunner
from wattbench.profiler.safety import ActuationGuard
from wattbench.profiler.select.objectives import (
    SLOWDOWN_TOLERANCE_REL,
    Objective,
    parse_objective,
)
from wattbench.profiler.sim import physics
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim.gpu import VirtualClock
from wattbench.profiler.store import collect_versions
from wattbench.profiler.sweep import Space
from wattbench.profiler.sweep.adaptive import AdaptiveSettings, AdaptiveStrategy, cost_function
from wattbench.profiler.sweep.run import run_sweep
from wattbench.profiler.sweep.session import DEFAULT_OBJECTIVES
from wattbench.profiler.sweep.strategy import GridStrategy, passes_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_methods

SCHEMA = "wattbench.bench-search/1"
GPUS = ("h100-sxm", "h200", "a100-sxm", "l4")
OBJECTIVES = ("energy", "edp", "ed2p", "zeus:0.5", "slowdown:0.05")
TARGET_RATIO = 0.25
TARGET_MEDIAN_REGRET = 0.005
TARGET_WORST_REGRET = 0.02
BASELINE_KEY = OperatingPoint().key  # sm=default,mem=default,pl=default


# --- workloads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    work: Work
    note: str
    compute_efficiency: float | None = None


#: prefill attention: batch 8, 32 query / 8 KV heads, sequence 2048, head dim 128 (BxHQxHKVxNxD)
PREFILL_SHAPE = (8, 32, 8, 2048, 128)


def _attention_work() -> tuple[Work, str, float | None]:
    """Prefill attention: the catalog's ``prefill`` family at :data:`PREFILL_SHAPE` if it has
    one, else a Work with FlashAttention-forward flops and bytes at 60% of the tensor peak."""
    b, hq, hkv, s, d = PREFILL_SHAPE
    text = "x".join(map(str, PREFILL_SHAPE))
    if "prefill" in catalog.names():
        work = work_of(make_problem("prefill", text, "bf16"))
        return work, f"kernel family prefill, shape {text} (BxHQxHKVxNxD, causal), bf16", None
    flops = 4 * b * hq * s * s * d / 2  # QK^T and PV, causal half
    nbytes = 2 * (2 * b * hq * s * d + 2 * b * hkv * s * d)  # Q, O; K, V (bf16)
    note = (
        f"constructed Work (no prefill family in the catalog): FlashAttention forward, batch {b}, "
        f"{hq} query / {hkv} KV heads, seq {s}, head dim {d}, causal, bf16, at 60% of peak"
    )
    return Work(flops, nbytes, "bf16"), note, 0.6


def workloads() -> list[Workload]:
    attn, attn_note, attn_eff = _attention_work()
    return [
        Workload(
            "matmul-8192x8192x8192-bf16",
            work_of(make_problem("matmul", "8192x8192x8192", "bf16")),
            "compute-bound GEMM (kernel family matmul)",
        ),
        Workload("prefill-attention-bf16", attn, attn_note, attn_eff),
        Workload(
            "decode-gemv-1x8192x8192-bf16",
            work_of(make_problem("matmul", "1x8192x8192", "bf16")),
            "memory-bound decode GEMV (kernel family matmul, M = 1)",
        ),
    ]


# --- the noise-free truth -------------------------------------------------------------------------


def truth_table(
    spec: sim_spec.GpuSpec, wl: Workload, keys: dict[str, int | None], unit: physics.Unit
) -> dict[str, tuple[float, float]]:
    """point key -> (energy_j, time_s) per iteration: the simulator's steady-state truth
    (:func:`physics.steady_state`, noise-free) for this unit at each requested SM clock (None:
    unlocked), default memory clock and power limit."""
    # the workload SimulatedRunner(gpu, wl.work, compute_efficiency=...) runs
    work = physics.Workload.of(wl.work, compute_efficiency=wl.compute_efficiency)
    states = {
        k: physics.steady_state(spec, work, sm_lock_mhz=sm, unit=unit) for k, sm in keys.items()
    }
    return {k: (s.energy_j, s.time_s) for k, s in states.items()}


def regret(objective: Objective, chosen_key: str, truth: dict, max_power_w: float) -> tuple:
    """(regret, violated): the chosen point's true cost over the true optimum, minus 1."""
    fn = cost_function(objective, max_power_w)
    pool = truth
    violated = False
    if objective.kind == "slowdown":
        base_t = truth[BASELINE_KEY][1]
        limit = base_t * (1 + objective.param) * (1 + SLOWDOWN_TOLERANCE_REL)
        pool = {k: v for k, v in truth.items() if v[1] <= limit}
        violated = truth[chosen_key][1] > limit * (1 + 1e-9)
    best = min(fn(e, t) for e, t in pool.values())
    e, t = truth[chosen_key]
    return fn(e, t) / best - 1.0, violated


# --- one sweep, in process ------------------------------------------------------------------------


class _NullRecord:
    """A run-record sink that keeps nothing (the bench reads the result instead)."""

    def add_point(self, measurement: Measurement) -> None:
        pass

    def set_idle_power_w(self, idle_power_w: float) -> None:
        pass

    def set_choices(self, choices) -> None:
        pass

    def add_gpu_time_s(self, seconds: float) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


def run_one(
    gpu_key: str,
    wl: Workload,
    seed: int,
    strategy: str,
    objectives: Sequence[Objective],
    settings: AdaptiveSettings | None,
    scratch: Path,
    method: str = "steady",
) -> dict[str, Any]:
    """One sweep on a fresh simulated GPU (``gpu_key``: a built-in key or a spec file) seeded
    with ``seed``, measured by ``method``; a summary of what it did. ``settings`` None: the
    adaptive defaults for the method (``AdaptiveSettings.for_method``)."""
    if settings is None:
        settings = AdaptiveSettings.for_method(method)
    os.environ["WATTBENCH_SIM_STATE_DIR"] = tempfile.mkdtemp(dir=scratch)
    os.environ["WATTBENCH_SIM_SEED"] = str(seed)
    device_nvml.shutdown_all()  # a fresh simulated GPU: new state file, noise seeded anew
    device = open_device(f"sim:{gpu_key}")
    gpu = device.simulated
    space = Space.from_specs(device.capabilities, sm="all")
    if strategy == "grid":
        strat = GridStrategy(space.points())
    else:
        strat = AdaptiveStrategy(
            space, objectives, max_power_w=space.max_power_limit_w, settings=settings
        )
    runner = SimulatedRunner(gpu, wl.work, compute_efficiency=wl.compute_efficiency)
    measurer = PointMeasurer(
        device,
        runner,
        VirtualClock(gpu),
        MeasureSettings(method=method),
        actuator=Actuator(device, space.knobs),
    )
    t0_virtual, t0_wall = gpu.now_s, time.perf_counter()
    with ActuationGuard(device, "bench-search", notify=lambda _m: None):
        result = run_sweep(
            measurer, strat, _NullRecord(), objectives, max_power_w=space.max_power_limit_w
        )
    device_nvml.shutdown_all()
    ms = result.measurements
    return {
        "measurements": sum(passes_of(m) for m in ms),
        "points": len(ms),
        "grid_points": len(space.points()),
        "virtual_s": gpu.now_s - t0_virtual,
        "warmup_and_windows_s": sum(
            m.warmup_s + sum(s["end_s"] - s["start_s"] for s in m.samples) for m in ms
        ),
        "wall_s": time.perf_counter() - t0_wall,
        "chosen": {name: c.chosen.point.key for name, c in result.choices.items()},
        "max_power_w": space.max_power_limit_w,
        "unit": dataclasses.asdict(gpu.unit),
        "energy_by_key": {m.point.key: m.energy_j for m in ms},
    }


def run_task(args: tuple) -> dict[str, Any]:
    """Grid once, adaptive per objective and (``with_defaults``) with the default objectives
    together, for one seed."""
    gpu_key, wl, seed, objective_names, settings, scratch, with_defaults, method = args
    settings = settings if method == "steady" else AdaptiveSettings.for_method(method)
    objectives = [parse_objective(o) for o in objective_names]
    out: dict[str, Any] = {"gpu": gpu_key, "workload": wl.name, "seed": seed, "method": method}
    out["grid"] = run_one(gpu_key, wl, seed, "grid", objectives, settings, scratch, method)
    out["adaptive"] = {
        o.name: run_one(gpu_key, wl, seed, "adaptive", [o], settings, scratch, method)
        for o in objectives
    }
    if with_defaults:
        defaults = [parse_objective(o) for o in DEFAULT_OBJECTIVES]
        out["adaptive_defaults"] = run_one(
            gpu_key, wl, seed, "adaptive", defaults, settings, scratch, method
        )
    return out


def run_methods_task(args: tuple) -> dict[str, Any]:
    """The adaptive sweep with the CLI's default objectives, one method, one seed."""
    label, selection, wl, seed, scratch, method = args
    defaults = [parse_objective(o) for o in DEFAULT_OBJECTIVES]
    sweep = run_one(selection, wl, seed, "adaptive", defaults, None, scratch, method)
    return {"gpu": label, "selection": selection, "workload": wl.name, "seed": seed,
            "method": method, "sweep": sweep}  # fmt: skip


def methods_study(args: argparse.Namespace, wls: list[Workload], scratch: Path) -> tuple:
    """(rows, runs, header lines) of the steady-vs-fast study (``search_methods``)."""
    variants = [v for v in (args.variants or "").split(",") if v]
    selections = search_methods.gpu_selections(args.gpus.split(","), variants, scratch)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    methods = args.measurement.split(",")
    tasks = [
        (label, sel, w, s, scratch, m)
        for label, sel in selections.items()
        for w in wls
        for s in seeds
        for m in methods
    ]
    runs = _map(run_methods_task, tasks, args.jobs)
    truths: dict[tuple, dict] = {}
    cache: dict[tuple, dict] = {}
    for r in runs:
        unit = r["sweep"]["unit"]
        ck = (r["gpu"], r["workload"], tuple(sorted(unit.items())))
        if ck not in cache:
            wl = next(w for w in wls if w.name == r["workload"])
            spec = search_methods.load_spec(r["selection"])
            cache[ck] = truth_table(spec, wl, _keys_of(r["selection"]), physics.Unit(**unit))
        truths[(r["gpu"], r["workload"], r["seed"])] = cache[ck]
    defaults = [parse_objective(o) for o in DEFAULT_OBJECTIVES]
    rows = search_methods.summarise(runs, truths, regret, defaults)
    header = [
        "# Steady vs fast measurement (SIMULATED GPUs)",
        "",
        "SIMULATED: every number below comes from wattbench's simulated GPUs (sensor noise and "
        "unit variation on), not from a real GPU. Truth: the noise-free model at thermal steady "
        "state for the simulated unit.",
        "",
        "- one adaptive sweep per GPU, workload, seed and method, with the CLI's default "
        f"objectives together ({', '.join(DEFAULT_OBJECTIVES)}); its GPU time is shared by the "
        "three rows",
        f"- variants of {search_methods.VARIANT_BASE} (stress tests, not published GPUs): "
        + (", ".join(variants) or "none")
        + " (see suites/bench/search_methods.py)",
        f"- targets (fast): GPU time per sweep median <= {search_methods.TARGET_MEDIAN_S:.0f} s "
        f"over all rows, every row <= {search_methods.TARGET_WORST_S:.0f} s; regret median <= "
        f"{search_methods.TARGET_MEDIAN_REGRET:.1%}, worst <= "
        f"{search_methods.TARGET_WORST_REGRET:.0%}; no violation; point bias <= "
        f"{search_methods.TARGET_BIAS:.0%}",
    ]
    return rows, runs, header


def _write(out: Path, stem: str, doc: dict[str, Any], table: str) -> None:
    """``doc`` as ``<out>/<stem>.json`` and ``table`` as ``<out>/<stem>.md``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{stem}.json", doc, indent=1)
    (out / f"{stem}.md").write_text(table, encoding="utf-8")
    print(f"written: {out / stem}.json, .md")


def _map(fn, tasks: list, jobs: int) -> list:
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            return pool.map(fn, tasks, chunksize=1)
    return [fn(t) for t in tasks]


# --- summary --------------------------------------------------------------------------------------


def _keys_of(gpu_key: str) -> dict[str, int | None]:
    """Point key -> requested SM clock (None: the baseline) of every grid point (``sm=all``)."""
    spec = search_methods.load_spec(gpu_key)
    keys: dict[str, int | None] = {BASELINE_KEY: None}
    for c in spec.clocks.sm_clocks_mhz():
        keys[OperatingPoint(sm_mhz=c).key] = c
    return keys


def summarise(runs: list[dict], wls: list[Workload], objective_names: Sequence[str]) -> list:
    rows = []
    truths = {}
    for run in runs:
        key = (run["gpu"], run["workload"])
        if key not in truths:
            wl = next(w for w in wls if w.name == run["workload"])
            unit = physics.Unit(**run["grid"]["unit"])
            spec = sim_spec.load_builtin(run["gpu"])
            truths[key] = truth_table(spec, wl, _keys_of(run["gpu"]), unit)
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["gpu"], run["workload"], run["method"]), []).append(run)
    defaults = [parse_objective(o) for o in DEFAULT_OBJECTIVES]
    for (gpu_key, wl_name, method), group in groups.items():
        truth = truths[(gpu_key, wl_name)]
        for name in objective_names:
            o = parse_objective(name)
            pick = lambda r, o=o: r["adaptive"][o.name]  # noqa: E731
            rows.append(_row(gpu_key, wl_name, method, o, "single", group, truth, pick))
        with_defaults = [r for r in group if "adaptive_defaults" in r]
        for o in defaults if with_defaults else ():
            pick = lambda r: r["adaptive_defaults"]  # noqa: E731
            rows.append(_row(gpu_key, wl_name, method, o, "defaults", with_defaults, truth, pick))
    return rows


def point_bias(run: dict[str, Any], truth: dict) -> float:
    """Largest |measured / true - 1| of energy per iteration over the grid's points."""
    return max(abs(e / truth[k][0] - 1) for k, e in run["grid"]["energy_by_key"].items())


def _row(gpu_key, wl_name, method, o, mode, group, truth, pick) -> dict[str, Any]:
    grid = [r["grid"] for r in group]
    ada = [pick(r) for r in group]
    max_w = grid[0]["max_power_w"]
    g_reg = [regret(o, g["chosen"][o.name], truth, max_w) for g in grid]
    a_reg = [regret(o, a["chosen"][o.name], truth, max_w) for a in ada]
    n_grid = grid[0]["measurements"]
    n_ada = [a["measurements"] for a in ada]
    bias = [point_bias(r, truth) for r in group]
    return {
        "measurement": method,
        "point_bias_median": statistics.median(bias),
        "point_bias_max": max(bias),
        "gpu": f"sim:{gpu_key}",
        "workload": wl_name,
        "objective": o.name,
        "adaptive_run": mode,
        "seeds": len(group),
        "grid_measurements": n_grid,
        "adaptive_measurements_median": statistics.median(n_ada),
        "adaptive_measurements_max": max(n_ada),
        "measurement_ratio_max": max(n_ada) / n_grid,
        "grid_regret_median": statistics.median(r for r, _ in g_reg),
        "grid_regret_max": max(r for r, _ in g_reg),
        "adaptive_regret_median": statistics.median(r for r, _ in a_reg),
        "adaptive_regret_max": max(r for r, _ in a_reg),
        "grid_violations": sum(v for _, v in g_reg),
        "adaptive_violations": sum(v for _, v in a_reg),
        "grid_time_s_mean": statistics.fmean(g["virtual_s"] for g in grid),
        "adaptive_time_s_mean": statistics.fmean(a["virtual_s"] for a in ada),
        "grid_window_s_mean": statistics.fmean(g["warmup_and_windows_s"] for g in grid),
        "adaptive_window_s_mean": statistics.fmean(a["warmup_and_windows_s"] for a in ada),
    }


def meets(row: dict[str, Any]) -> bool:
    """The issue's targets, for a single-objective row."""
    return (
        row["measurement_ratio_max"] <= TARGET_RATIO
        and row["adaptive_regret_median"] <= TARGET_MEDIAN_REGRET
        and row["adaptive_regret_max"] <= TARGET_WORST_REGRET
        and row["adaptive_violations"] == 0
    )


def _verdict(row: dict[str, Any]) -> str:
    if row["adaptive_run"] != "single":
        return "(info)"
    return "met" if meets(row) else "MISSED"


def render(rows: list[dict], header: list[str]) -> str:
    lines = [*header, ""]
    cols = (
        "| GPU | workload | meas. | objective | run | grid n | adaptive n med/max | max ratio | "
        "grid regret med/max | adaptive regret med/max | viol. g/a | point bias med/max "
        "| est. GPU time grid/adaptive | targets |"
    )
    lines += [cols, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r['gpu']} | {r['workload']} | {r['measurement']} | {r['objective']} "
            f"| {r['adaptive_run']} "
            f"| {r['grid_measurements']} "
            f"| {r['adaptive_measurements_median']:g}/{r['adaptive_measurements_max']} "
            f"| {r['measurement_ratio_max']:.1%} "
            f"| {r['grid_regret_median']:.2%}/{r['grid_regret_max']:.2%} "
            f"| {r['adaptive_regret_median']:.2%}/{r['adaptive_regret_max']:.2%} "
            f"| {r['grid_violations']}/{r['adaptive_violations']} "
            f"| {r['point_bias_median']:.2%}/{r['point_bias_max']:.2%} "
            f"| {r['grid_time_s_mean']:.0f} s/{r['adaptive_time_s_mean']:.0f} s "
            f"| {_verdict(r)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--gpus", default=",".join(GPUS))
    p.add_argument("--workloads", help="comma-separated workload names (default: all)")
    p.add_argument("--objectives", default=",".join(OBJECTIVES))
    p.add_argument(
        "--defaults-seeds",
        type=int,
        default=5,
        help="run the adaptive sweep with the CLI's default objectives together for the first "
        "N seeds (default 5)",
    )
    p.add_argument(
        "--measurement",
        default="steady,fast",
        help="measurement methods to run side by side (default steady,fast)",
    )
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument(
        "--study",
        choices=("search", "methods"),
        default="search",
        help="search: grid vs adaptive per objective; methods: steady vs fast measurement, "
        "the adaptive sweep with the default objectives (suites/bench/search_methods.py)",
    )
    p.add_argument(
        "--variants",
        default="",
        help="methods study: robustness variants of the H100 to add (comma-separated: "
        + ",".join(search_methods.VARIANTS)
        + ")",
    )
    p.add_argument("--out", default=None, help="default results/search or results/measurement")
    args = p.parse_args(argv)

    wls = workloads()
    if args.workloads:
        wanted = args.workloads.split(",")
        wls = [w for w in wls if w.name in wanted]
    if args.study == "methods":
        return _methods_main(args, wls, argv)
    objective_names = [parse_objective(o).name for o in args.objectives.split(",")]
    settings = AdaptiveSettings()
    gpus = args.gpus.split(",")
    methods = args.measurement.split(",")
    first = args.first_seed
    seeds = range(first, first + args.seeds)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wattbench-bench-search-") as scratch:
        tasks = [
            (g, w, s, objective_names, settings, Path(scratch), s < first + args.defaults_seeds, m)
            for g in gpus
            for w in wls
            for s in seeds
            for m in methods
        ]
        runs = _map(run_task, tasks, args.jobs)
    rows = summarise(runs, wls, objective_names)
    elapsed = time.perf_counter() - t0
    now = dt.datetime.now(dt.timezone.utc)
    command = "python " + shlex.join(["suites/bench/search.py", *(argv or sys.argv[1:])])
    header = [
        "# Grid vs adaptive search (SIMULATED GPUs)",
        "",
        "SIMULATED: every number below comes from wattbench's simulated GPUs (sensor noise on), "
        "not from a real GPU. Regret is against the noise-free model at thermal steady state.",
        "",
        f"- date (UTC): {now.isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        f"- seeds: {args.first_seed}..{args.first_seed + args.seeds - 1} "
        f"(WATTBENCH_SIM_SEED); bench wall time {elapsed:.0f} s",
        f"- adaptive settings: {json.dumps(settings.to_json())}",
        f"- versions: {json.dumps(collect_versions())}",
        "- workloads: " + "; ".join(f"{w.name}: {w.note}" for w in wls),
        "- targets: adaptive measurements <= 25% of the grid's (worst seed), median regret "
        "<= 0.5%, worst regret <= 2%, no slowdown-bound violation",
        "- run `single`: one adaptive sweep for that objective alone (every seed); `defaults`: "
        f"one sweep for the CLI defaults {', '.join(DEFAULT_OBJECTIVES)} together (its n covers "
        f"all three; first {min(args.defaults_seeds, args.seeds)} seeds), not a target row",
        "- grid regret: the grid's own choice against the same noise-free truth (its measurements "
        "carry the same thermal-history bias); viol.: chosen points truly beyond the slowdown "
        "bound",
        "- est. GPU time: virtual time each sweep spent on the simulated GPU's clock (idle power, "
        "calibration, warm-up, trial windows), mean over seeds",
    ]
    table = render(rows, header)
    print(table)
    doc = {
        "schema": SCHEMA,
        "simulated": True,
        "date_utc": now.isoformat(timespec="seconds"),
        "command": command,
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "versions": collect_versions(),
        "adaptive_settings": settings.to_json(),
        "measure_settings": MeasureSettings().to_json(),
        "seeds": list(seeds),
        "workloads": [
            {
                "name": w.name,
                "note": w.note,
                "work": w.work.to_json(),
                "compute_efficiency": w.compute_efficiency,
            }
            for w in wls
        ],
        "targets": {
            "measurement_ratio": TARGET_RATIO,
            "median_regret": TARGET_MEDIAN_REGRET,
            "worst_regret": TARGET_WORST_REGRET,
        },
        "bench_wall_s": elapsed,
        "rows": rows,
        "runs": runs,
    }
    stem = f"{now.date().isoformat()}-grid-vs-adaptive-{'-'.join(methods)}"
    _write(Path(args.out or "results/search"), stem, doc, table)
    return 0 if all(meets(r) for r in rows if r["adaptive_run"] == "single") else 1


def _methods_main(args: argparse.Namespace, wls: list[Workload], argv: list[str] | None) -> int:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wattbench-bench-methods-") as scratch:
        rows, runs, header = methods_study(args, wls, Path(scratch))
    elapsed = time.perf_counter() - t0
    now = dt.datetime.now(dt.timezone.utc)
    command = "python " + shlex.join(["suites/bench/search.py", *(argv or sys.argv[1:])])
    header[4:4] = [
        f"- date (UTC): {now.isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        f"- seeds: {args.first_seed}..{args.first_seed + args.seeds - 1} "
        f"(WATTBENCH_SIM_SEED); bench wall time {elapsed:.0f} s",
        f"- versions: {json.dumps(collect_versions())}",
        "- workloads: " + "; ".join(f"{w.name}: {w.note}" for w in wls),
    ]
    table = search_methods.render(rows, header)
    print(table)
    doc = {
        "schema": "wattbench.bench-methods/1",
        "simulated": True,
        "date_utc": now.isoformat(timespec="seconds"),
        "command": command,
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "versions": collect_versions(),
        "measure_settings": {
            m: MeasureSettings(method=m).to_json() for m in args.measurement.split(",")
        },
        "adaptive_settings": {
            m: AdaptiveSettings.for_method(m).to_json() for m in args.measurement.split(",")
        },
        "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
        "bench_wall_s": elapsed,
        "rows": rows,
        "runs": runs,
    }
    stem = f"{now.date().isoformat()}-steady-vs-fast"
    _write(Path(args.out or "results/measurement"), stem, doc, table)
    fast = [r for r in rows if r["measurement"] == "fast"]
    return 0 if all(search_methods.meets(r) for r in fast) else 1


if __name__ == "__main__":
    sys.exit(main())
