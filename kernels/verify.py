"""Checking implementations: run each once on fresh seeded inputs, compare with float64.

For one problem (family, shape, dtype) every chosen implementation runs on the same inputs; the
output is poisoned (NaN) before each run, so an implementation that writes nothing fails. The
error is the relative Frobenius norm ``||C - C_ref|| / ||C_ref||`` against the family's float64
reference, computed on the CPU for problems up to :data:`REFERENCE_CPU_MAX_FLOPS` (and always
without CUDA), on the GPU in float64 above. On a CUDA device, passing implementations are timed
(:mod:`wattbench.kernels.timing`) and compared with the baseline (``speedup = baseline time /
time``). The timing follows the L2 policy of ``TimingSettings.l2`` (:mod:`wattbench.kernels.l2`):
under ``"rotate"`` the checked inputs are set 0 and the further sets (seeds ``seed + 1``, ...)
are allocated for the timing of each implementation and freed after it; each result's ``l2``
records the plan. Nothing here changes a GPU setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from wattbench.kernels.env import Environment
from wattbench.kernels.family import Family, Impl, ImplUnavailable, Shape, shape_text
from wattbench.kernels.l2 import L2Plan, rotating_launch
from wattbench.kernels.timing import TimingSettings, median_ms, time_launch_ms
from wattbench.kernels.work import Work

#: largest problem (FLOPs of one launch) whose float64 reference is computed on the CPU
REFERENCE_CPU_MAX_FLOPS = 2.0**32

PASS, FAIL, ERROR, UNAVAILABLE, UNVERIFIED = "pass", "FAIL", "error", "unavailable", "unverified"


@dataclass(frozen=True)
class ImplResult:
    """One implementation on one problem. ``status``: pass / FAIL (error above tolerance) /
    error (it raised) / unavailable (``reason`` says why) / unverified (timed, not compared)."""

    impl: str
    status: str
    tolerance_rel_fro: float
    rel_error: float | None = None
    reason: str | None = None
    time_ms: float | None = None  # median per launch
    tflops: float | None = None
    gbs: float | None = None  # the Work's minimum bytes over the median time, GB/s (1e9 B/s)
    speedup_vs_baseline: float | None = None  # baseline time / this time; > 1 is faster
    l2: dict | None = None  # the L2 plan the timing ran under (L2Plan.to_json); None: not timed

    @property
    def failed(self) -> bool:
        return self.status in (FAIL, ERROR)

    @property
    def ran(self) -> bool:
        return self.status in (PASS, FAIL, UNVERIFIED)

    def to_json(self) -> dict:
        doc = asdict(self)
        if doc["rel_error"] is not None and not math.isfinite(doc["rel_error"]):
            doc["rel_error"] = str(doc["rel_error"])  # JSON has no NaN / inf
        return doc


@dataclass(frozen=True)
class Report:
    """All chosen implementations of one problem; ``baseline`` names the speedup reference."""

    family: str
    shape: Shape
    dtype: str
    seed: int
    device: str  # "cuda" or "cpu"
    reference_device: str | None  # None: not verified
    work: Work
    baseline: str
    results: tuple[ImplResult, ...]

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.results)

    def result(self, impl: str) -> ImplResult:
        return next(r for r in self.results if r.impl == impl)

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "shape": list(self.shape),
            "shape_text": shape_text(self.shape),
            "dtype": self.dtype,
            "seed": self.seed,
            "device": self.device,
            "reference_device": self.reference_device,
            "work": self.work.to_json(),
            "baseline": self.baseline,
            "failed": self.failed,
            "results": [r.to_json() for r in self.results],
        }


def rel_fro_error(out, ref) -> float:
    """``||out - ref||_F / ||ref||_F`` in float64 on ref's device (NaN if out holds NaN)."""
    import torch

    diff = out.to(device=ref.device).to(torch.float64)
    diff.sub_(ref)
    num = torch.linalg.vector_norm(diff).item()
    den = torch.linalg.vector_norm(ref).item()
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


def choose_impls(family: Family, names: Sequence[str] | None) -> tuple[Impl, ...]:
    """The named implementations (all without names), baseline first, always included."""
    picked = [family.impl(n) for n in names] if names else list(family.impls)
    ordered = [family.baseline, *(i for i in picked if i is not family.baseline)]
    return tuple(dict.fromkeys(ordered))


def check(
    family: Family,
    shape: Shape,
    dtype: str,
    env: Environment,
    *,
    impls: Sequence[str] | None = None,
    seed: int = 0,
    timing: TimingSettings | None = None,
    verify: bool = True,
) -> Report:
    """Run the chosen implementations (all, or ``impls``, plus the baseline) on one problem.

    Timing happens only with a CUDA device and ``timing`` given; ``verify=False`` skips the
    reference (status ``unverified``). Exceptions of an implementation become its ``error``
    result; usage errors (unknown impl or dtype) propagate.
    """
    tolerance = family.tolerance(dtype)
    chosen = choose_impls(family, impls)
    shape = tuple(shape)
    work = family.work(shape, dtype)
    reasons = {i.name: i.why_unavailable(dtype, env, shape, work.flops) for i in chosen}
    results: dict[str, ImplResult] = {
        name: ImplResult(name, UNAVAILABLE, tolerance, reason=reason)
        for name, reason in reasons.items()
        if reason is not None
    }
    ref_device = None
    if len(results) < len(chosen):
        device = env.device
        if verify:
            ref_device = (
                "cpu" if device == "cpu" or work.flops <= REFERENCE_CPU_MAX_FLOPS else device
            )
        try:
            inputs = family.make_inputs(shape, dtype, seed, device)
            ref = family.reference(inputs, ref_device) if ref_device else None
        except Exception as exc:  # e.g. out of memory: every runnable impl is in error
            reason = f"inputs or reference failed: {_one_line(exc)}"
            for impl in chosen:
                results.setdefault(impl.name, ImplResult(impl.name, ERROR, tolerance, None, reason))
        else:
            for impl in chosen:
                if impl.name not in results:
                    results[impl.name] = _run_one(
                        family, impl, inputs, ref, tolerance, work, timing if env.cuda else None
                    )
            del inputs, ref
    base = results[family.baseline.name]
    final = []
    for impl in chosen:
        r = results[impl.name]
        if r.time_ms and base.time_ms:
            r = replace(r, speedup_vs_baseline=base.time_ms / r.time_ms)
        final.append(r)
    return Report(
        family.name,
        shape,
        dtype,
        seed,
        env.device,
        ref_device,
        work,
        family.baseline.name,
        tuple(final),
    )


def _run_one(
    family: Family, impl: Impl, inputs, ref, tolerance: float, work: Work, timing
) -> ImplResult:
    import torch

    on_cuda = inputs.device.startswith("cuda")
    launch = timed = None
    try:
        launch = impl.make_launch(inputs)
        inputs.poison()
        launch()
        if on_cuda:
            torch.cuda.synchronize()
        err = rel_fro_error(inputs.out, ref) if ref is not None else None
        status = UNVERIFIED if err is None else (PASS if err <= tolerance else FAIL)
        time_ms = tflops = gbs = l2 = None
        if timing is not None and status != FAIL:
            timed = rotating_launch(
                family,
                impl,
                inputs.shape,
                inputs.dtype,
                device=inputs.device,
                seed=inputs.seed,
                policy=timing.l2,
                first=(inputs, launch),
            )
            time_ms = median_ms(time_launch_ms(timed, timing))
            tflops = work.flops / (time_ms * 1e-3) / 1e12
            gbs = work.bytes / (time_ms * 1e-3) / 1e9
            l2 = timed.describe()
        return ImplResult(impl.name, status, tolerance, err, None, time_ms, tflops, gbs, l2=l2)
    except ImplUnavailable as exc:
        return ImplResult(impl.name, UNAVAILABLE, tolerance, reason=str(exc))
    except Exception as exc:  # the implementation's failure is its result, not the check's
        return ImplResult(impl.name, ERROR, tolerance, reason=_one_line(exc))
    finally:
        del launch, timed  # the further input sets go with the rotating launch


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def l2_lines(rep: Report) -> list[str]:
    """How the timed implementations met L2: one line when they all came to the same plan, else
    one per implementation; none when nothing was timed."""
    texts = {r.impl: L2Plan.from_json(r.l2).text() for r in rep.results if r.l2 is not None}
    if len(set(texts.values())) == 1:
        return [f"  L2: {next(iter(texts.values()))}"]
    return [f"  L2 ({impl}): {text}" for impl, text in texts.items()]
