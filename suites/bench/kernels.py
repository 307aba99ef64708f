"""Throughput of every available implementation of a kernel family against its vendor baseline.

    python suites/bench/kernels.py --kernel matmul [--shapes 4096,8192 | --preset square]
        [--dtype bf16] [--impl triton ...] [--out results/] [--l2 rotate|warm]
    python suites/bench/kernels.py --kernel w4a16 --preset decode --dtype bf16-g128
    python suites/bench/kernels.py --kernel w8a8 --shapes 8192 --dtype int8

Per shape, each implementation is checked once against the float64 reference (``--no-verify``
skips it), then timed with CUDA events: warm-up, then the median of ``--reps`` repetitions
(``wattbench.kernels.timing``) under the L2 policy ``--l2`` (``wattbench.kernels.l2``):
``rotate`` (default; ``--flush-l2`` is its old name) runs each launch on the next of several
seeded input sets that together hold twice the L2, as the energy loop does; ``warm`` reuses one
set. Each row records the plan (``l2``). The table gives time (ms), TFLOP/s, achieved GB/s (the
family's minimum traffic over the time) and the ratio to the vendor baseline (> 1: faster);
families that declare a comparison problem (the quantized GEMMs: bf16 cuBLAS on the same
(M, N, K)) get one more ratio, ``vs bf16 cuBLAS``, from that problem timed the same way. It is
written as JSON and Markdown under ``--out`` with provenance
(``wattbench.profiler.store.provenance``: GPU, driver, CUDA, torch / triton / cupy versions,
commit, date, command).

A benchmark, not a test: it needs a CUDA GPU and exits 1 with one line without one. It reads
the GPU's identity, clocks and power limit through NVML and never changes a GPU setting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from pathlib import Path
from typing import Any

from wattbench.kernels import catalog
from wattbench.kernels.comparison import ComparisonTiming, report_json, time_comparison
from wattbench.kernels.env import Environment, probe
from wattbench.kernels.family import Family, Shape, choice_text, shape_text
from wattbench.kernels.timing import TimingSettings
from wattbench.kernels.verify import Report, check, l2_lines
from wattbench.profiler.cli.args import add_l2_arguments
from wattbench.profiler.errors import ShapeError, WattbenchError
from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.store.provenance import provenance as store_provenance

SCHEMA = "wattbench.bench/2"  # /2: provenance "device" + "in_force" (was "nvml")
PROG = "bench"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="TFLOP/s and GB/s of each available implementation of a kernel family and "
        "its ratio to the vendor baseline, on a CUDA GPU. Never changes a GPU setting.",
    )
    p.add_argument(
        "--kernel", default="matmul", help="kernel family (default: matmul; `wattbench kernels`)"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--shapes",
        help="comma-separated shapes as the family writes them (MxNxK, or N for NxNxN), "
        "or presets (default: the family's first preset)",
    )
    src.add_argument("--preset", help="a preset of the family (`wattbench kernels` lists them)")
    p.add_argument(
        "--dtype",
        help="a dtype of the family, e.g. bf16 (matmul), int8 (w8a8), bf16-g128 (w4a16); default: "
        "the family's first (`wattbench kernels` lists them)",
    )
    p.add_argument(
        "--impl", action="append", help="implementations (repeatable; default: all available)"
    )
    p.add_argument("--out", default="results", help="output directory (default: results/)")
    p.add_argument("--warmup", type=int, default=5, help="launches before timing (default: 5)")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions (default: 20)")
    add_l2_arguments(p)
    p.add_argument("--no-verify", action="store_true", help="skip the float64 correctness check")
    p.add_argument("--seed", type=int, default=0, help="input seed (default: 0)")
    return p


def parse_shapes(fam: Family, text: str) -> tuple[Shape, ...]:
    """Shapes and presets (``PRESET@V``) as the family reads them; for an (M, N, K) family a bare
    ``N`` is the square ``NxNxN``."""
    shapes: list[Shape] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            raise ShapeError(f"empty entry in --shapes {text!r}", "e.g. --shapes 4096,8192")
        square = item.isdigit() and tuple(fam.dims) == ("M", "N", "K")
        shapes.extend(((int(item),) * 3,) if square else fam.shapes(item))
    if any(min(s) < 1 for s in shapes):
        raise ShapeError(f"--shapes {text!r} has a zero size", "use sizes >= 1")
    return tuple(dict.fromkeys(shapes))


def provenance(env: Environment, argv: list[str]) -> dict[str, Any]:
    """Who measured what, where (``wattbench.profiler.store.provenance``): GPU 0 through NVML
    (identity, driver, CUDA driver; clocks, power limit and temperature as read), the kernel
    stack, versions, commit, date, command."""
    from wattbench.profiler.device import open_device

    command = [sys.executable, os.path.relpath(__file__), *argv]  # runnable again from here
    try:
        device = open_device("0", observe_only=True)
    except WattbenchError as exc:
        return store_provenance(command, env=env, device_error=str(exc))
    return store_provenance(command, device=device, env=env)


def _comparisons(
    reports: list[Report], comparisons: list[ComparisonTiming | None] | None
) -> list[ComparisonTiming | None]:
    return list(comparisons) if comparisons is not None else [None] * len(reports)


def rows(
    reports: list[Report], comparisons: list[ComparisonTiming | None] | None = None
) -> list[dict[str, Any]]:
    out = []
    for rep, cmp in zip(reports, _comparisons(reports, comparisons), strict=True):
        for r in rep.results:
            row = {"shape": shape_text(rep.shape), **r.to_json()}
            if cmp is not None:
                row["speedup_vs_comparison"] = cmp.speedup(r.time_ms)
                row["comparison_time_ms"] = cmp.time_ms
            out.append(row)
    return out


def _label(comparisons: list[ComparisonTiming | None]) -> str | None:
    return next((c.label for c in comparisons if c is not None), None)


def render_table(
    reports: list[Report],
    baseline: str,
    comparisons: list[ComparisonTiming | None] | None = None,
    label: str | None = None,
) -> str:
    """The table; with comparisons (or a ``label`` for the header alone) a ``vs <label>`` column
    follows the baseline ratio."""
    cmps = _comparisons(reports, comparisons)
    label = label or _label(cmps)
    head = (
        f"{'shape':<20}{'impl':<13}{'time ms':>10}{'TFLOP/s':>10}{'GB/s':>9}{'vs ' + baseline:>11}"
        + (f"{'vs ' + label:>16}" if label else "")
        + f"{'rel.error':>11}  {'result':<12}note"
    )
    lines = [head]
    for rep, cmp in zip(reports, cmps, strict=True):
        for r in rep.results:
            vs = f"{_fmt(cmp.speedup(r.time_ms) if cmp else None, '.2f', 'x'):>16}"
            lines.append(
                f"{shape_text(rep.shape):<20}{r.impl:<13}"
                f"{_fmt(r.time_ms, '.4f'):>10}{_fmt(r.tflops, '.1f'):>10}{_fmt(r.gbs, '.0f'):>9}"
                f"{_fmt(r.speedup_vs_baseline, '.2f', 'x'):>11}{vs if label else ''}"
                f"{_fmt(r.rel_error, '.1e'):>11}  {r.status:<12}"
                f"{r.reason or choice_text(r.kernel)}".rstrip()
            )
    return "\n".join(lines)


def render_markdown(
    doc: dict[str, Any],
    reports: list[Report],
    baseline: str,
    comparisons: list[ComparisonTiming | None] | None = None,
) -> str:
    cmps = _comparisons(reports, comparisons)
    label = _label(cmps)
    prov, settings = doc["provenance"], doc["settings"]
    ident, now = prov.get("device") or {}, prov.get("in_force") or {}
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in prov["versions"].items())
    lines = [
        f"# {settings.get('kernel', 'matmul')} {settings['dtype']} on {prov['gpu']}",
        "",
        f"- date (UTC): {prov['date_utc']}",
        f"- GPU: {prov['gpu']} (compute capability {prov['compute_capability']}), driver "
        f"{ident.get('driver_version', '?')}, CUDA driver {ident.get('cuda_driver_version', '?')}, "
        f"CUDA runtime (torch) {prov['cuda_runtime_torch']}",
        f"- at start: power limit {now.get('power_limit_w', '?')} W, SM {now.get('sm_mhz', '?')} "
        f"MHz, {now.get('temperature_c', '?')} C (settings unchanged)",
        f"- versions: {versions}",
        f"- timing: CUDA events, {settings['warmup']} warm-up launches, median of "
        f"{settings['reps']}, L2 policy {settings['l2']}; "
        f"verified against float64: {'no' if settings['no_verify'] else 'yes'}",
        f"- command: `{prov['command']}`",
    ]
    lines += [f"- {c.describe()}" for c in cmps if c is not None]
    lines += [
        f"- {shape_text(rep.shape)}: {line.strip()}" for rep in reports for line in l2_lines(rep)
    ]
    vs_head, vs_rule = (f" vs {label} |", "---:|") if label else ("", "")
    lines += [
        "",
        f"| shape | impl | time ms | TFLOP/s | GB/s | vs {baseline} |{vs_head} rel. error "
        "| result |",
        f"|---|---|---:|---:|---:|---:|{vs_rule}---:|---|",
    ]
    for rep, cmp in zip(reports, cmps, strict=True):
        for r in rep.results:
            note = r.reason or choice_text(r.kernel)  # why not run, or which kernel ran
            result = r.status + (f" ({note})" if note else "")
            vs = f" {_fmt(cmp.speedup(r.time_ms) if cmp else None, '.2f', 'x')} |" if label else ""
            lines.append(
                f"| {shape_text(rep.shape)} | {r.impl} | {_fmt(r.time_ms, '.4f')} | "
                f"{_fmt(r.tflops, '.1f')} | {_fmt(r.gbs, '.0f')} | "
                f"{_fmt(r.speedup_vs_baseline, '.2f', 'x')} |{vs} "
                f"{_fmt(r.rel_error, '.1e')} | {result.replace('|', '/')} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text.replace("NVIDIA ", "")).strip("-.").lower() or "gpu"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        fam = catalog.family(args.kernel)
        args.dtype = args.dtype or next(iter(fam.dtypes))
        fam.dtype(args.dtype)
        if args.shapes:
            shapes = parse_shapes(fam, args.shapes)
        else:
            shapes = fam.preset(args.preset or fam.presets[0].name).shapes
        names = [n for v in args.impl or () for n in v.split(",") if n]
        for name in names:
            fam.impl(name)
        env = probe(catalog.required_modules())
        if not env.cuda:
            cpu_dtype = next((d for d in fam.dtypes if d.startswith("fp16")), args.dtype)
            print(
                f"{PROG}: a CUDA GPU is needed ({env.cuda_error}); for a CPU correctness check "
                f"use: wattbench check --kernel {fam.name} --shape SHAPE --dtype {cpu_dtype}",
                file=sys.stderr,
            )
            return 1
        timing = TimingSettings(warmup=args.warmup, reps=args.reps, l2=args.l2)
        reports: list[Report] = []
        comparisons: list[ComparisonTiming | None] = []
        label = fam.comparison.label if fam.comparison else None
        print(f"{fam.name} {args.dtype} on {env.device_name}; never changes a GPU setting")
        print(render_table([], fam.baseline.name, label=label), flush=True)
        for shape in shapes:
            rep = check(
                fam,
                shape,
                args.dtype,
                env,
                impls=names or None,
                seed=args.seed,
                timing=timing,
                verify=not args.no_verify,
            )
            cmp = time_comparison(fam, shape, env, timing, seed=args.seed)
            reports.append(rep)
            comparisons.append(cmp)
            table = render_table([rep], fam.baseline.name, [cmp], label=label)
            print("\n".join([table.split("\n", 1)[1], *l2_lines(rep)]), flush=True)
        doc = {
            "schema": SCHEMA,
            "provenance": provenance(env, [sys.argv[0], *argv]),
            "settings": {
                "kernel": fam.name,
                "dtype": args.dtype,
                "warmup": args.warmup,
                "reps": args.reps,
                "l2": args.l2,
                "no_verify": args.no_verify,
                "seed": args.seed,
                "baseline": fam.baseline.name,
                "comparison": label,
            },
            "rows": rows(reports, comparisons),
            "reports": [
                report_json(rep, cmp) for rep, cmp in zip(reports, comparisons, strict=True)
            ],
        }
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        stem = f"bench_{fam.name}-{_slug(env.device_name or 'gpu')}-{args.dtype}-{stamp}"
        json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
        write_json_atomic(json_path, doc)
        md_path.write_text(
            render_markdown(doc, reports, fam.baseline.name, comparisons), encoding="utf-8"
        )
        print(f"written: {json_path}, {md_path}")
        return 1 if any(rep.failed for rep in reports) else 0
    except WattbenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
