"""Regenerate the example comparison and plots in docs/img/ from sweeps on simulated GPUs.

    python suites/bench/examples.py [--out docs/img] [--keep RUNS_DIR] [--clocks every:4]

Sweeps (grid strategy) one compute-bound problem (matmul 8192x8192x8192 bf16) and one
memory-bound problem (decode attention ``llama3-8b@8192`` bf16 when the ``decode`` family is in
the catalog, else the GEMV-like matmul 1x8192x8192) on sim:h100-sxm, sim:h200, sim:a100-sxm and
sim:l4, prints ``wattbench compare``, and writes the four plot kinds per problem as PNG into
``--out``.

Everything is simulated: the figures are model outputs. The simulated GPUs keep their state in a
temporary folder (never the user's), and the run records go to a temporary folder unless
``--keep`` names one; nothing is written into results/.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file: suites/bench/)
GPUS = ("sim:h100-sxm", "sim:h200", "sim:a100-sxm", "sim:l4")
MAX_PNG_BYTES = 150_000


def problems() -> list[tuple[str, str, str]]:
    """(kernel, shape, dtype): one compute-bound, one memory-bound."""
    from wattbench.kernels import catalog

    memory = ("decode", "llama3-8b@8192", "bf16")
    if "decode" not in catalog.names():
        memory = ("matmul", "1x8192x8192", "bf16")
    return [("matmul", "8192x8192x8192", "bf16"), memory]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder for the PNGs")
    p.add_argument("--keep", type=Path, help="keep the run records in this folder")
    p.add_argument("--clocks", default="every:4", help="SM clocks to sweep (default every:4)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="wattbench-examples-") as tmp:
        os.environ["WATTBENCH_SIM_STATE_DIR"] = str(Path(tmp) / "sim-state")
        os.environ.pop("WATTBENCH_NO_ACTUATE", None)
        from wattbench.profiler.cli.main import main as wattbench

        runs = args.keep or Path(tmp) / "runs"
        for kernel, shape, dtype in problems():
            for gpu in GPUS:
                print(f"sweeping {kernel} {shape} {dtype} on {gpu} ...", file=sys.stderr)
                argv = ["sweep", "--device", gpu, "--kernel", kernel, "--shape", shape]
                argv += ["--dtype", dtype, "--strategy", "grid", "--sm-clocks", args.clocks]
                with contextlib.redirect_stdout(io.StringIO()):  # the per-run summaries
                    rc = wattbench([*argv, "--out", str(runs), "--quiet"])
                if rc != 0:
                    return rc
        print()
        if wattbench(["compare", str(runs)]) != 0:
            return 1
        print()
        if wattbench(["plot", str(runs), "-o", str(args.out), "--format", "png"]) != 0:
            return 1
    too_big = [f for f in args.out.glob("*.png") if f.stat().st_size > MAX_PNG_BYTES]
    for f in too_big:
        print(f"warning: {f} is {f.stat().st_size} bytes (> {MAX_PNG_BYTES})", file=sys.stderr)
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
