"""``wattbench sim``: how far to trust a simulated GPU.

``sim check`` runs the published observations of a GPU model on its simulated GPU and prints
published value, simulated value, band and verdict (exit 1 when one is out of band); ``sim units``
shows the units of a simulated node side by side; the shared node's commands are in
:mod:`~wattbench.profiler.cli.sim_shared`.
"""

from __future__ import annotations

import argparse
import json
import sys

from wattbench.kernels.costs import parse_shape
from wattbench.profiler.cli import sim_shared
from wattbench.profiler.cli.args import positive_int
from wattbench.profiler.device.select import load_sim_selection
from wattbench.profiler.errors import UsageError
from wattbench.profiler.sim import calibration
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim.calibration.experiments import workload
from wattbench.profiler.sim.calibration.units import spread, unit_rows


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="check simulated GPUs against published measurements; compare units; the shared "
        "node for other NVML tools",
        description="Simulated GPUs: `check` reproduces published real-GPU observations and says "
        "which lie in their band; `units` shows how the units of a simulated node differ; "
        "`run`, `load`, `serve`, `status`, `stop`: the shared simulated node that every NVML "
        "tool sees when WATTBENCH_SIM_NVML is set.",
    )
    s = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    c = s.add_parser(
        "check",
        help="published vs simulated, per observation",
        description="Run every published observation of a GPU model on its simulated GPU "
        "(nominal unit, sensor noise off) and print published, simulated, band and verdict. "
        "Exit status 1 when an observation is out of band.",
    )
    c.add_argument(
        "--device",
        metavar="SEL",
        help="sim:<key> or sim:path/to/spec.toml (default: every built-in simulated GPU)",
    )
    c.add_argument(
        "--as",
        dest="as_model",
        metavar="KEY",
        help="check a spec file against the observations of this built-in model (default: its key)",
    )
    c.add_argument("--observations", metavar="FILE", help="an observations file of your own (TOML)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=run_check)
    u = s.add_parser(
        "units",
        help="the units of a simulated node side by side",
        description="For each unit of a simulated node: its offsets (drawn from its UUID), its "
        "power at a locked clock, its clock and throughput at default settings, and its "
        "energy-optimal clock, for a bf16 GEMM on random data (noise-free model, steady state).",
    )
    u.add_argument("--device", metavar="SEL", default="sim:8xh100-sxm", help="sim:<N>x<key>")
    u.add_argument("--shape", default="8192x8192x8192", metavar="MxNxK", help="GEMM shape (bf16)")
    u.add_argument(
        "--sm-mhz", type=positive_int, metavar="MHZ", help="locked clock for the power column"
    )
    u.add_argument("--json", action="store_true", help="machine-readable output")
    u.set_defaults(run=run_units)
    f = s.add_parser(
        "fit",
        help="fit a simulator spec to a real GPU's sweep records and sensor trace",
        description="Starting from a built-in spec of the same model, fit compute efficiency, "
        "idle power, dynamic power and the voltage curve's exponent, ambient temperature and "
        "thermal resistance (from sweep records at the default power limit), and the sensors' "
        "update period, GetPowerUsage's averaging window and the slow thermal time constant "
        "(from a `wattbench validate` run's sensor trace). Writes the spec and prints each "
        "fitted value beside the base one, and how well both specs reproduce every point.",
    )
    f.add_argument("records", nargs="+", metavar="RUN", help="run records or folders of them")
    f.add_argument("--sensors", metavar="DIR", help="a `wattbench validate` run's folder")
    f.add_argument("--base", metavar="KEY", help="built-in spec to start from (default: by name)")
    f.add_argument("-o", "--output", required=True, metavar="SPEC.toml")
    f.add_argument("--json", action="store_true", help="machine-readable output")
    f.set_defaults(run=run_fit)
    sim_shared.add_parsers(s)


def run_check(args: argparse.Namespace) -> int:
    observations = calibration.load_observations(args.observations)
    if args.device:
        specs = [load_sim_selection(args.device)[0]]
    else:
        specs = [sim_spec.load_builtin(k) for k in sim_spec.builtin_keys()]
    report = []
    for spec in specs:
        model = args.as_model or spec.key
        obs = calibration.observations_for(model, observations)
        if not obs and args.device:
            models = sorted({o.gpu for o in observations})
            raise UsageError(
                f"no observations of model {model!r}",
                f"pass --as with one of {', '.join(models)}, or --observations with your own",
            )
        report.append((spec, model, calibration.check(spec, obs)))
    if args.json:
        doc = {
            "schema": "wattbench.sim-check/1",
            "gpus": [
                {"spec": spec.source, "model": model, "observations": [v.to_json() for v in vs]}
                for spec, model, vs in report
            ],
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(render_check(report))
    return 0 if all(v.ok for _, _, vs in report for v in vs) else 1


def render_check(report) -> str:
    lines = []
    for spec, model, verdicts in report:
        n_ok = sum(v.ok for v in verdicts)
        lines.append(
            f"sim:{spec.key} ({spec.identity.name}) against published {model} observations: "
            f"{n_ok} of {len(verdicts)} in band (nominal unit, sensor noise off)"
        )
        lines.append(f"  {'observation':32} {'simulated':>12} {'band':>17}  verdict")
        for v in verdicts:
            o = v.observation
            got = f"{v.simulated:.4g}" if v.simulated is not None else "error"
            band = f"{o.band[0]:g}-{o.band[1]:g}"
            mark = "ok" if v.ok else "OUT OF BAND"
            lines.append(f"  {o.id:32} {got:>12} {band:>11} {o.unit:5}  {mark}")
            lines.append(f"      published: {o.published}")
            lines.append(f"      source: {o.source}")
            if v.error:
                lines.append(f"      error: {v.error}")
        lines.append("")
    return "\n".join(lines).rstrip()


def run_units(args: argparse.Namespace) -> int:
    spec, units, _ = load_sim_selection(args.device)
    m, n, k = parse_shape("matmul", args.shape)
    work = workload({"dtype": "bf16", "shape": [m, n, k]})
    spec.peak_tflops("bf16")
    clocks = spec.clocks.sm_clocks_mhz()
    # default: the supported clock nearest 60% of the top, where no power cap binds
    lock = args.sm_mhz or min(clocks, key=lambda f: abs(f - 0.6 * spec.clocks.sm_mhz_max))
    if lock not in clocks:
        raise UsageError(
            f"--sm-mhz {lock}: not a supported clock of {spec.identity.name}",
            f"use one of {clocks[0]}, {clocks[1]} ... {clocks[-1]} MHz",
        )
    rows = unit_rows(spec, units, work, lock)
    if args.json:
        doc = {
            "schema": "wattbench.sim-units/1",
            "spec": spec.source,
            "workload": {"dtype": "bf16", "shape": [m, n, k], "inputs": "random"},
            "lock_sm_mhz": lock,
            "units": [r.__dict__ for r in rows],
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"{units} units of sim:{spec.key} ({spec.identity.name}), bf16 {m}x{n}x{k} GEMM on random "
        "data, noise-free model at steady state (SIMULATED)"
    )
    print(
        f"{'unit':>4} {'serial':>14} {'leak x':>7} {'dV mV':>6} {'Rth x':>6} "
        f"{'W @' + str(lock):>8} {'MHz cap':>8} {'TFLOP/s':>8} {'opt MHz':>8} {'saves':>6} "
        f"{'slower':>7}  uuid"
    )
    for r in rows:
        print(
            f"{r.index:>4} {r.serial:>14} {r.leakage_scale:>7.2f} {r.voltage_offset_mv:>+6.1f} "
            f"{r.resistance_scale:>6.2f} {r.power_at_lock_w:>8.1f} {r.capped_sm_mhz:>8} "
            f"{r.tflops_default:>8.1f} {r.optimal_sm_mhz:>8} {r.optimal_saving:>6.1%} "
            f"{r.optimal_slowdown:>7.1%}  {r.uuid}"
        )
    sd, rng = spread([r.power_at_lock_w for r in rows])
    csd, crng = spread([float(r.capped_sm_mhz) for r in rows])
    print(
        f"power at {lock} MHz: s.d. {sd:.1%}, range {rng:.1%} of the mean; clock at the cap: "
        f"s.d. {csd:.1%}, range {crng:.1%} (published: 8 H200 at 700 W, 1405-1527 MHz, ~8%)"
    )
    return 0


def run_fit(args: argparse.Namespace) -> int:
    import json
    import statistics
    from pathlib import Path

    from wattbench.profiler.report.runs import expand
    from wattbench.profiler.store import RunRecord
    from wattbench.profiler.store.record import RecordError
    from wattbench.profiler.validate import fit as fitting

    records = []
    for path, named in expand(args.records):
        try:
            records.append(RunRecord.load(path))
        except RecordError as exc:
            if named:
                raise UsageError(f"{path} is not a run record ({exc})", "pass records") from None
    if not records:
        raise UsageError("no run records found", "pass run records or folders of them")
    names = sorted({r.device.name for r in records})
    if len(names) > 1:
        raise UsageError(f"records of several GPU models: {', '.join(names)}", "fit one model")
    if args.base:
        base = sim_spec.load_builtin(args.base)
    else:
        found = [k for k in sim_spec.builtin_keys()
                 if sim_spec.load_builtin(k).identity.name == names[0]]  # fmt: skip
        if not found:
            raise UsageError(f"no built-in spec is a {names[0]}", "name one with --base KEY")
        base = sim_spec.load_builtin(found[0])
    out = Path(args.output)
    if out.exists():
        raise UsageError(f"{out} exists", "choose another -o, or remove it")
    trace = fitting.load_trace(args.sensors) if args.sensors else None
    result = fitting.fit(base, records, trace)
    out.write_text(result.text, encoding="utf-8")
    rows = fitting.agreement(result)
    if args.json:
        doc = {
            "schema": "wattbench.sim-fit/1",
            "base": base.key,
            "spec": str(out),
            "fitted": {
                k: {"base": v[0], "fitted": v[1], "how": v[2]} for k, v in result.fitted.items()
            },
            "not_fitted": result.not_fitted,
            "points": rows,
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    print(f"fitted from {len(records)} record(s), {len(result.points)} point(s); base {base.key}")
    for k, (old, new, how) in result.fitted.items():
        print(f"  {k:40} {old!s:>8} -> {new!s:<8} {how}")
    for k, why in result.not_fitted.items():
        print(f"  {k:40} not fitted (base kept): {why}")

    def rms(key: str) -> float:
        return statistics.fmean(r[key] ** 2 for r in rows) ** 0.5

    print(f"agreement over the points (rms): power {rms('fitted_power_rel'):.1%} fitted, "
          f"{rms('base_power_rel'):.1%} base; time {rms('fitted_time_rel'):.1%} fitted, "
          f"{rms('base_time_rel'):.1%} base")  # fmt: skip
    print(f"written: {out} (use it as --device sim:{out})")
    return 0
