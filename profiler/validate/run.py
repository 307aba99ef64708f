"""The acceptance run: which steps, in which order, and what each measures.

Steps, by priority (the most valuable first, so a short budget still gets them):

0. **provenance**: commit, versions, GPU identity, driver, CUDA, clocks and limits in force;
1. **correctness**: every implementation of every family and dtype at one shape, against the
   float64 reference on fresh random inputs with outputs poisoned (a real shape on a GPU; the
   smallest preset shape in a dry run, in Triton's interpreter);
2. **bandwidth**: HBM copy and read bandwidth; **anchor**: cuBLAS bf16 TFLOP/s at 8192^3;
3. **targets** (``targets.py``): implementation and reference as CUDA graphs (launch overhead
   out), timed interleaved, inputs rotated past L2, SDPA restricted to its flash kernel;
4. **sensors** (``sensors.py``): the NVML sensors around a load step, and the same load on
   zeros between two on random data, observe-only;
5. **configs**: every Triton autotune config compiled for sm_90a; **config-checks**: each forced
   in turn and checked against float64 (``kernels/config_check.py``).

A dry run (``--dry-run``) runs the same flow on this machine: a simulated GPU answers NVML (the
sensors step runs there on virtual time) and kernels run in Triton's interpreter; the steps that
need a GPU say what they would measure. Nothing changes a GPU setting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattbench.kernels import catalog
from wattbench.kernels.costs import Problem
from wattbench.kernels.env import Environment
from wattbench.kernels.family import Family, Shape, choice_text, launch_choice, shape_text
from wattbench.kernels.verify import PASS, UNAVAILABLE, check
from wattbench.kernels.work import Work
from wattbench.profiler.device.device import Device
from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.store.provenance import provenance as store_provenance
from wattbench.profiler.validate import sensors
from wattbench.profiler.validate.steps import Step
from wattbench.profiler.validate.targets import TARGETS, Target

#: the load of the sensor step: long enough per launch to keep the GPU busy between polls
SENSOR_PROBLEM = Problem("matmul", "vendor", (8192, 8192, 8192), "bf16")


@dataclass
class Context:
    """What the steps share: the GPU (observe-only), the kernel environment, the output folder;
    the HBM read bandwidth once measured (GB/s, 1e9 B/s)."""

    dry_run: bool
    device: Device
    env: Environment
    folder: Path
    argv: list[str]
    hbm_read_gbs: float | None = None
    notes: list[str] = field(default_factory=list)


def _gpu_only(what: str) -> dict[str, Any]:
    return {"status": "unavailable", "summary": f"needs a GPU: {what}"}


# --- provenance ---------------------------------------------------------------------------------


def provenance(ctx: Context) -> dict[str, Any]:
    dev = ctx.device
    doc = store_provenance(["wattbench", *ctx.argv], device=dev, env=ctx.env)
    write_json_atomic(ctx.folder / "provenance.json", doc)
    ident = dev.identity
    return {
        "status": "info",
        "summary": f"{ident.name} {ident.uuid}, driver "
        f"{ident.driver_version}" + (" [SIMULATED]" if doc["simulated"] else ""),
        "provenance": doc,
    }


# --- correctness --------------------------------------------------------------------------------


def check_shape(fam: Family, dtype: str, dry_run: bool) -> Shape:
    """One shape per family: its first preset's first (a real one) on a GPU; in a dry run the
    preset shape of least work (the interpreter is slow)."""
    shapes = [s for p in fam.presets for s in p.shapes]
    if not dry_run:
        return fam.presets[0].shapes[0]
    return min(shapes, key=lambda s: fam.work(s, dtype).flops)


def correctness(fam: Family, dtype: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        shape = check_shape(fam, dtype, ctx.dry_run)
        rep = check(fam, shape, dtype, ctx.env, timing=None)
        ran = [r for r in rep.results if r.ran]
        bad = [
            f"{r.impl} {r.status}" + (f" ({r.reason})" if r.reason else "")
            for r in rep.results
            if r.failed
        ]
        off = [f"{r.impl} ({r.reason})" for r in rep.results if r.status == UNAVAILABLE]
        status = "fail" if bad else "pass" if ran else "unavailable"
        parts = [f"{shape_text(shape)}: {sum(r.status == PASS for r in ran)} pass"]
        parts += [f"failed: {', '.join(bad)}"] if bad else []
        parts += [f"not run: {', '.join(off)}"] if off else []
        return {"status": status, "summary": "; ".join(parts), "report": rep.to_json()}

    return run


# --- bandwidth, anchor, targets (GPU) -------------------------------------------------------------


def bandwidth(ctx: Context) -> dict[str, Any]:
    if ctx.dry_run or not ctx.env.cuda:
        return _gpu_only("HBM copy and read bandwidth over a 2 GiB buffer, graph-timed")
    import torch

    from wattbench.kernels.timing import time_graphs_interleaved

    n_bytes = 2 * 2**30
    a = torch.ones(n_bytes // 4, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    out = torch.empty((), dtype=torch.float32, device="cuda")
    t = time_graphs_interleaved(
        # (torch.sum takes out= only beside dim: without it, the call raises TypeError)
        {"copy": lambda: b.copy_(a), "read": lambda: torch.sum(a, 0, out=out)},
        reps=10,
    )
    read = Work(flops=0, bytes=n_bytes, dtype="fp32")  # one pass over the buffer
    copy = Work(flops=0, bytes=2 * n_bytes, dtype="fp32")  # read a, write b
    copy_gbs = copy.gbs(t.median_ms("copy") * 1e-3)
    read_gbs = read.gbs(t.median_ms("read") * 1e-3)
    ctx.hbm_read_gbs = read_gbs
    return {
        "status": "info",
        "summary": f"copy {copy_gbs:,.0f} GB/s, read {read_gbs:,.0f} GB/s",
        "copy_gbs": copy_gbs,
        "read_gbs": read_gbs,
    }


def _launch(p: Problem, *, flash_only: bool = False):
    launch = catalog.gpu_launch(p.family, p.impl, p.shape, p.dtype)
    if not flash_only:
        return launch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def flash():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return launch()

    flash.sets = getattr(launch, "sets", 1)  # type: ignore[attr-defined]
    flash()  # no flash kernel for this problem: raises here, and is reported, not timed
    return flash


def anchor(ctx: Context) -> dict[str, Any]:
    p = Problem("matmul", "vendor", (8192, 8192, 8192), "bf16")
    if ctx.dry_run or not ctx.env.cuda:
        return _gpu_only(f"cuBLAS TFLOP/s of {p.label}, graph-timed")
    from wattbench.kernels.timing import time_graphs_interleaved

    t = time_graphs_interleaved({"cublas": _launch(p)})
    work = catalog.family(p.family).work(p.shape, p.dtype)
    tflops = work.tflops(t.median_ms("cublas") * 1e-3)
    return {"status": "info", "summary": f"{p.label}: {tflops:,.0f} TFLOP/s", "tflops": tflops}


def target(t: Target) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        if ctx.dry_run or not ctx.env.cuda:
            return _gpu_only(t.text() + " (CUDA graphs, interleaved, inputs rotated past L2)")
        from wattbench.kernels.timing import time_graphs_interleaved

        launches = {"measured": _launch(t.measured)}
        if t.reference is not None:
            try:
                launches["reference"] = _launch(t.reference, flash_only=t.flash_only)
            except RuntimeError as exc:  # SDPA has no flash kernel here: not a fair reference
                first = (str(exc).splitlines() or [""])[0][:200]
                return {"status": "unavailable", "summary": f"reference not timed: {first}"}
        times = time_graphs_interleaved(launches)
        measured_ms = times.median_ms("measured")
        kernel = launch_choice(launches["measured"])  # which variant the ratio is of
        doc: dict[str, Any] = {
            "measured_ms": measured_ms,
            "threshold": t.threshold,
            "kernel": kernel,
        }
        if t.reference is not None:
            doc["reference_ms"] = times.median_ms("reference")
            ratio = doc["reference_ms"] / measured_ms
        else:
            if ctx.hbm_read_gbs is None:
                return {"status": "unavailable", "summary": "no HBM read bandwidth measured"}
            work = catalog.family(t.measured.family).work(t.measured.shape, t.measured.dtype)
            doc["achieved_gbs"] = work.gbs(measured_ms * 1e-3)
            ratio = doc["achieved_gbs"] / ctx.hbm_read_gbs
        doc["ratio"] = ratio
        doc["status"] = "pass" if ratio >= t.threshold else "fail"
        doc["summary"] = f"ratio {ratio:.2f} (need >= {t.threshold:g})" + (
            f" [{choice_text(kernel)}]" if kernel else ""
        )
        return doc

    return run


# --- sensors --------------------------------------------------------------------------------------


def sensor_step(ctx: Context) -> dict[str, Any]:
    from wattbench.kernels.costs import work_of
    from wattbench.profiler.sweep.session import make_runner

    problem = SENSOR_PROBLEM
    runner, clock = make_runner(ctx.device, problem)
    samples, load = sensors.trace(ctx.device, runner, clock)
    figures = sensors.characterise(samples, load)
    zeros, _ = make_runner(ctx.device, problem, data="zeros")
    zeros.run(1)  # as the random runner was: its first runs (a graph is sized after them)
    zeros.run(30)
    data = sensors.data_trace(ctx.device, {"random": runner, "zeros": zeros}, clock)
    figures["data"] = sensors.characterise_data(data)
    w = work_of(problem)
    write_json_atomic(
        ctx.folder / "sensor-trace.json",
        {
            "load": load,
            "samples": [s.__dict__ for s in samples],
            "work": w.to_json(),
            "data_samples": [s.__dict__ for s in data],
            "runners": {"random": runner.describe(), "zeros": zeros.describe()},
        },
    )
    period = figures["counter_period_s"]
    usage = figures.get("usage_to_counter")
    rise = figures["rise_s"].get("usage")
    ratio = figures["data"]["zeros_to_random"]
    clocks = figures["data"]["zeros_to_random_sm_mhz"]
    summary = (
        (f"counter period {period * 1e3:.0f} ms" if period else "no counter updates seen")
        + (f"; GetPowerUsage / counter {usage:.3f}" if usage else "")
        + (f"; GetPowerUsage follows a step in {rise:.2f} s" if rise is not None else "")
        + (f"; zeros / random power {ratio:.3f}" if ratio is not None else "")
        + (f", SM clock {clocks:.3f}" if ratio is not None and clocks is not None else "")
    )
    sim = " [SIMULATED GPU]" if ctx.device.simulated is not None else ""
    return {"status": "info", "summary": summary + sim, "figures": figures}


# --- configs ------------------------------------------------------------------------------------


def configs(ctx: Context) -> dict[str, Any]:
    """Every config each Triton autotuner can choose, compiled for sm_90a in parallel processes
    (``kernels/compile_report.py``): none may spill or exceed the shared memory of a block."""
    from wattbench.kernels import compile_report as cr

    why = cr.unavailable_reason()
    if why is not None:
        return {"status": "unavailable", "summary": why}
    results = cr.run(cr.jobs())
    bad = [r for r in results if not r.ok]
    write_json_atomic(ctx.folder / "compile-report.json", [
        {"kernel": r.job.kernel, "variant": r.job.variant, "config": r.job.config,
         "registers": r.registers, "spill_stores": r.spill_stores, "spill_loads": r.spill_loads,
         "shared_bytes": r.shared_bytes, "ok": r.ok, "error": r.error} for r in results
    ])  # fmt: skip
    names = ", ".join(f"{r.job.kernel} {r.job.variant} {r.job.config}" for r in bad[:3])
    summary = f"{len(results)} compiled for sm_90a, {len(results) - len(bad)} ok"
    return {"status": "fail" if bad else "pass",
            "summary": summary + (f"; not ok: {names}" if bad else "")}  # fmt: skip


#: the largest launch (FLOP) a config check takes on a GPU: every kernel variant is reached
#: below it (the persistent matmul from 4096^3 on 132 SMs), the float64 references stay short
CONFIG_CHECK_MAX_FLOPS = 2.0**38


def config_checks(ctx: Context) -> dict[str, Any]:
    """Every config each Triton autotuner can choose, forced one at a time and checked against
    float64 (``kernels/config_check.py``), cases spread over parallel processes; a dry run
    checks the interpreter's one config per autotuner at one shape per dtype, in-process."""
    from wattbench.kernels import config_check as cc

    if ctx.dry_run or not ctx.env.cuda:
        case_list = cc.cases(catalog.FAMILIES, ctx.env, per_dtype=1)
        outcomes = cc.run(case_list, processes=0)
    else:
        case_list = cc.cases(catalog.FAMILIES, ctx.env, max_flops=CONFIG_CHECK_MAX_FLOPS)
        outcomes = cc.run(case_list)
    write_json_atomic(ctx.folder / "config-checks.json", [o.to_json() for o in outcomes])
    bad = [o for o in outcomes if o.status != "pass"]
    names = "; ".join(
        f"{o.found.case.label} {o.found.config}: {o.status}"
        + (f" ({o.message})" if o.message else "")
        for o in bad[:3]
    )
    summary = (
        f"{len(outcomes)} (autotuner, config) pairs over {len(case_list)} cases checked "
        f"against float64, {len(outcomes) - len(bad)} pass"
    )
    return {"status": "fail" if bad else "pass",
            "summary": summary + (f"; not ok: {names}" if bad else "")}  # fmt: skip


def build_steps() -> list[Step]:
    steps = [Step("provenance", "provenance", 2, 0, provenance)]
    for fam in catalog.FAMILIES:
        for dtype in fam.dtypes:
            steps.append(
                Step(
                    f"correctness:{fam.name}:{dtype}",
                    f"correctness {fam.name} {dtype}",
                    10,
                    10,
                    correctness(fam, dtype),
                    "the same check at a real shape on the GPU",
                )
            )
    steps.append(Step("bandwidth", "HBM bandwidth", 10, 20, bandwidth, "copy and read GB/s"))
    steps.append(Step("anchor", "cuBLAS anchor", 10, 21, anchor, "cuBLAS bf16 TFLOP/s"))
    for i, t in enumerate(TARGETS):
        steps.append(Step(f"target:{t.key}", t.title, 15, 30 + i, target(t), t.text()))
    steps.append(
        Step(
            "configs",
            "Triton configs for sm_90a",
            60,
            45,
            configs,
            "every autotune config compiled in parallel processes (spills, shared memory)",
        )
    )
    steps.append(
        Step(
            "config-checks",
            "Triton configs against float64",
            90,
            46,
            config_checks,
            "every config each autotuner can choose, at the GPU shapes that reach it",
        )
    )
    steps.append(
        Step(
            "sensors",
            "NVML sensors",
            22,
            40,
            sensor_step,
            "the real sensors' periods, averaging and lag; zeros vs random power",
        )
    )
    return steps


def run_validate(
    ctx: Context,
    budget_s: float,
    *,
    resume: bool,
    echo: Callable[[dict[str, Any]], None],
    skip: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every step within ``budget_s``; the outcomes and the verdict rows (also written:
    ``steps.jsonl``, ``verdict.json``, ``verdict.md`` in ``ctx.folder``)."""
    from wattbench.profiler.validate.steps import Budget, Journal, run_steps
    from wattbench.profiler.validate.targets import render_verdict, verdict

    journal = Journal(ctx.folder, resume=resume)
    kept = journal.kept.get("bandwidth")
    if kept is not None:
        ctx.hbm_read_gbs = kept.get("read_gbs")
    outcomes = run_steps(build_steps(), ctx, journal, Budget(budget_s), echo=echo, skip=skip)
    rows = verdict(outcomes)
    sim = ctx.device.simulated is not None
    write_json_atomic(
        ctx.folder / "verdict.json",
        {
            "schema": "wattbench.validate-verdict/1",
            "dry_run": ctx.dry_run,
            "simulated": sim,
            "targets": rows,
        },
    )
    (ctx.folder / "verdict.md").write_text(render_verdict(rows, markdown=True) + "\n")
    return outcomes, rows
