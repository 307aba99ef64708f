"""Old vs new measurement of one kernel at the GPU's current state, and the cost of polling NVML.

    WATTBENCH_NO_ACTUATE=1 python suites/bench/overhead.py [--device 0] [--kernel matmul]
        [--shape 8192x8192x8192] [--dtype bf16] [--repeats 3] [--out results/<gpu>-overhead]

Observe-only: changes no GPU setting (refuses to run on a real GPU without
``WATTBENCH_NO_ACTUATE=1``). Two parts:

* agreement: the same problem measured ``--repeats`` times alternately by the "steady" and the
  "fast" method (``PointMeasurer``, baseline point, nothing applied): energy and time per
  iteration of each, and fast / steady - 1;
* polling overhead: asynchronous windows of ``--window-s`` GPU seconds, in alternating order
  with the host polling NVML every millisecond (energy counter, clocks, temperature: what the fast
  method does) and with no polling at all; time per iteration from CUDA events and energy per
  iteration from the counter read once before and once after each window (the window is long,
  so the counter's granularity is negligible). Overhead = polled / quiet - 1, target <= 1% of
  energy per iteration.

On a simulated GPU (``--device sim:h100-sxm``) it runs the same code on the virtual clock; the
output then says SIMULATED. Writes ``overhead.json`` and ``overhead.md`` under ``--out`` (default
``$OUT`` when set, for a lent GPU's output folder) with provenance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from wattbench.kernels.costs import make_problem
from wattbench.profiler.device import open_device
from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.measure import MeasureSettings, PointMeasurer
from wattbench.profiler.measure.meter import ASYNC_POLL_S
from wattbench.profiler.measure.types import OperatingPoint
from wattbench.profiler.store import collect_versions
from wattbench.profiler.sweep.session import make_runner


def agreement(device, problem, repeats: int) -> list[dict[str, Any]]:
    """Alternate steady / fast measurements of the baseline point (nothing applied)."""
    runner, clock = make_runner(device, problem)
    rows = []
    for i in range(repeats):
        for method in ("steady", "fast"):
            m = PointMeasurer(device, runner, clock, MeasureSettings(method=method))
            t0 = clock.now_s()
            r = m.measure(OperatingPoint())
            rows.append(
                {
                    "repeat": i,
                    "method": method,
                    "energy_j": r.energy_j,
                    "time_s": r.time_s,
                    "avg_power_w": r.avg_power_w,
                    "temp_c": [r.temp_c_start, r.temp_c_end],
                    "flags": r.flags,
                    "gpu_time_s": clock.now_s() - t0,
                    "correction_rel": r.thermal.get("rel"),
                }
            )
    return rows


def polling(device, problem, repeats: int, window_s: float) -> list[dict[str, Any]]:
    """Alternate polled and quiet asynchronous windows; energy from the counter's ends."""
    runner, clock = make_runner(device, problem)
    runner.run(1)
    t0 = clock.now_s()
    runner.run(10)
    per = (clock.now_s() - t0) / 10
    n = max(1, round(window_s / max(per, 1e-9)))
    runner.run(n)  # warm
    rows = []

    def nvml_poll() -> None:
        device.energy_j()
        device.sm_clock_mhz()
        device.temperature_c()

    for i in range(repeats):
        for polled in (True, False) if i % 2 == 0 else (False, True):  # order alternates
            e0 = device.energy_j()
            gpu_s = runner.run_window(n, nvml_poll if polled else (lambda: None), ASYNC_POLL_S)
            clock.sleep(0.3)  # let the counter publish the window's tail (idle after it)
            e1 = device.energy_j()
            rows.append(
                {
                    "repeat": i,
                    "polled": polled,
                    "iterations": n,
                    "time_s": gpu_s / n,
                    "energy_j_incl_tail": (e1 - e0) / n,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="0")
    p.add_argument("--kernel", default="matmul")
    p.add_argument("--impl", default="vendor")
    p.add_argument("--shape", default="8192x8192x8192")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--window-s", type=float, default=5.0)
    p.add_argument("--out", default=os.environ.get("OUT") or "results/overhead")
    args = p.parse_args(argv)
    simulated = args.device.startswith("sim:")
    if not simulated and os.environ.get("WATTBENCH_NO_ACTUATE") != "1":
        print("overhead: set WATTBENCH_NO_ACTUATE=1 (observe-only)", file=sys.stderr)
        return 2
    device = open_device(args.device, observe_only=True)
    problem = make_problem(args.kernel, args.shape, args.dtype, args.impl)
    started = dt.datetime.now(dt.timezone.utc)
    agree = agreement(device, problem, args.repeats)
    poll = polling(device, problem, args.repeats, args.window_s)

    def mean(rows, key, **match):
        vals = [r[key] for r in rows if all(r[k] == v for k, v in match.items())]
        return statistics.fmean(vals)

    summary = {
        "fast_vs_steady_energy_rel": mean(agree, "energy_j", method="fast")
        / mean(agree, "energy_j", method="steady")
        - 1,
        "fast_vs_steady_time_rel": mean(agree, "time_s", method="fast")
        / mean(agree, "time_s", method="steady")
        - 1,
        "gpu_time_s_steady": mean(agree, "gpu_time_s", method="steady"),
        "gpu_time_s_fast": mean(agree, "gpu_time_s", method="fast"),
        "polling_energy_overhead_rel": mean(poll, "energy_j_incl_tail", polled=True)
        / mean(poll, "energy_j_incl_tail", polled=False)
        - 1,
        "polling_time_overhead_rel": mean(poll, "time_s", polled=True)
        / mean(poll, "time_s", polled=False)
        - 1,
    }
    command = "python " + shlex.join(["suites/bench/overhead.py", *(argv or sys.argv[1:])])
    doc = {
        "schema": "wattbench.bench-overhead/1",
        "simulated": simulated,
        "date_utc": started.isoformat(timespec="seconds"),
        "command": command,
        "device": device_json(device),
        "problem": problem.label,
        "versions": collect_versions(device.identity),
        "summary": summary,
        "agreement": agree,
        "polling": poll,
    }
    label = "SIMULATED GPU: model outputs, not measurements. " if simulated else ""
    lines = [
        f"# Measurement agreement and NVML polling overhead: {problem.label}",
        "",
        f"{label}Device {device.identity.name} ({device.identity.uuid}), observe-only, at its "
        f"current settings; {started.isoformat(timespec='seconds')}; `{command}`",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {v:+.3%} |" if k.endswith("_rel") else f"| {k} | {v:.1f} s |"
          for k, v in summary.items()),
    ]  # fmt: skip
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "overhead.json", doc, indent=1)
    (out / "overhead.md").write_text(table, encoding="utf-8")
    return 0


def device_json(device) -> dict[str, Any]:
    ident = device.identity
    return {"name": ident.name, "uuid": ident.uuid, "simulated": device.simulated is not None}


if __name__ == "__main__":
    sys.exit(main())
