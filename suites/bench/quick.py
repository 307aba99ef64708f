"""GPU time of the quick pytest suite's sweeps, per measurement method, side by side.

    python suites/bench/quick.py [--device sim:h100-sxm] [--sweep sm=all]
                                 [--measurement steady,fast] [--out results/measurement]

Runs ``pytest suites/ -m quick`` once per method (``--wattbench-measurement``) on the device,
sweeping ``--sweep`` with the default objectives, each method with fresh simulator state, and
sums what every case's run record says it spent on the device's clock (``gpu_time_s``: idle
power, calibration, warm-up, windows; virtual time on a simulated GPU). Prints a table and writes
it with provenance under ``--out``. On a simulated GPU every figure is simulated and says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.store import collect_versions

REPO = Path(__file__).resolve().parents[2]  # the repository (this file: suites/bench/)


def run_suite(device: str, sweep: str, method: str, scratch: Path) -> dict:
    """One quick-suite run; what its run records say."""
    out = scratch / method / "runs"
    env = {**os.environ, "WATTBENCH_SIM_STATE_DIR": str(scratch / method / "sim")}
    cmd = [
        sys.executable, "-m", "pytest", "suites/", "-q", "-p", "no:cacheprovider", "-m", "quick",
        "--wattbench-device", device, "--wattbench-sweep", sweep,
        "--wattbench-measurement", method, "--wattbench-out", str(out),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    records = []
    for path in sorted(out.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("wattbench.run/"):
            records.append(doc)
    times = [float(d.get("gpu_time_s", 0.0)) for d in records]
    return {
        "method": method,
        "pytest_exit": proc.returncode,
        "pytest_tail": proc.stdout.strip().splitlines()[-1:] if proc.stdout else [],
        "cases": len(records),
        "complete": sum(d.get("status") == "complete" for d in records),
        "gpu_time_s_total": sum(times),
        "gpu_time_s_max": max(times, default=0.0),
        "points_total": sum(len(d.get("points", [])) for d in records),
        "simulated": all(d.get("simulated") for d in records) if records else None,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="sim:h100-sxm")
    p.add_argument("--sweep", default="sm=all")
    p.add_argument("--measurement", default="steady,fast")
    p.add_argument("--out", default="results/measurement")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wattbench-bench-quick-") as scratch:
        rows = [
            run_suite(args.device, args.sweep, m, Path(scratch))
            for m in args.measurement.split(",")
        ]
    now = dt.datetime.now(dt.timezone.utc)
    command = "python " + shlex.join(["suites/bench/quick.py", *(argv or sys.argv[1:])])
    simulated = all(r["simulated"] for r in rows)
    base = rows[0]["gpu_time_s_total"] or None
    lines = [
        "# The quick pytest suite's sweeps: GPU time per measurement method"
        + (" (SIMULATED GPU)" if simulated else ""),
        "",
        *(
            ["SIMULATED: times are the simulated GPU's virtual clock, not a real GPU's."]
            if simulated
            else []
        ),
        "",
        f"- date (UTC): {now.isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        f"- device: {args.device}; sweep: {args.sweep}; objectives: the defaults",
        f"- versions: {json.dumps(collect_versions())}",
        "",
        "| method | cases (complete) | points | GPU time total | worst case | vs first | "
        "pytest | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['gpu_time_s_total'] / base:.2f}x" if base else "-"
        lines.append(
            f"| {r['method']} | {r['cases']} ({r['complete']}) | {r['points_total']} "
            f"| {r['gpu_time_s_total'] / 60:.1f} min | {r['gpu_time_s_max']:.0f} s | {ratio} "
            f"| exit {r['pytest_exit']} | {r['wall_s']:.0f} s |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{now.date().isoformat()}-quick-suite"
    doc = {
        "schema": "wattbench.bench-quick/1",
        "simulated": simulated,
        "date_utc": now.isoformat(timespec="seconds"),
        "command": command,
        "device": args.device,
        "sweep": args.sweep,
        "versions": collect_versions(),
        "rows": rows,
    }
    write_json_atomic(out / f"{stem}.json", doc, indent=1)
    (out / f"{stem}.md").write_text(table, encoding="utf-8")
    print(f"written: {out / stem}.json, .md")
    return 0 if all(r["pytest_exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
