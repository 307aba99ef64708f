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
records the plan. :func:`check_one` is the same check for one implementation on inputs of its
own (the pytest plugin's), keeping the checked launch for timing. Nothing here changes
a GPU setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from wattbench.kernels.env import Environment
from wattbench.kernels.family import (
    Family,
    Impl,
    ImplUnavailable,
    Inputs,
    Launch,
    Shape,
    launch_choice,
    shape_text,
)
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
    kernel: dict | None = None  # which kernel variant the launch ran (family.launch_choice)

    @property
    def failed(self) -> bool:
        return self.status in (FAIL, ERROR)

    @property
    def ran(self) -> bool:
        return self.status in (PASS, FAIL, UNVERIFIED)

    def to_json(self) -> dict:
        return {**asdict(self), "rel_error": error_json(self.rel_error)}


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


def error_json(rel_error: float | None) -> float | str | None:
    """A relative error as JSON has it: NaN and inf as text ("nan", "inf"; JSON has neither)."""
    if rel_error is not None and not math.isfinite(rel_error):
        return str(rel_error)
    return rel_error


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


def reference_device(device: str, flops: float) -> str:
    """Where the float64 reference of a problem of ``flops`` (one launch) run on ``device`` is
    computed: the CPU up to :data:`REFERENCE_CPU_MAX_FLOPS` (and always without CUDA), else
    ``device``."""
    return "cpu" if device == "cpu" or flops <= REFERENCE_CPU_MAX_FLOPS else device


def launch_and_compare(
    impl: Impl, inputs: Inputs, ref, tolerance: float
) -> tuple[Launch, float | None, str]:
    """Build ``impl``'s launch on ``inputs``, poison the output, launch once (synchronised) and
    compare with ``ref`` (None: not compared). Returns the launch, the relative Frobenius error
    (None without ``ref``) and the status: pass / FAIL / unverified. Raises what the
    implementation raises."""
    import torch

    launch = impl.make_launch(inputs)
    inputs.poison()
    launch()
    if inputs.device.startswith("cuda"):
        torch.cuda.synchronize()
    if ref is None:
        return launch, None, UNVERIFIED
    err = rel_fro_error(inputs.out, ref)
    return launch, err, PASS if err <= tolerance else FAIL  # NaN (nothing written) is not <= x


@dataclass
class OneCheck:
    """One implementation checked by :func:`check_one`: ``status`` pass / FAIL, the error and
    tolerance (relative Frobenius), where the kernel ran (``device``: "cpu", "cuda:0") and where
    the float64 reference was computed; the checked ``inputs`` and ``launch``, to be timed next
    (set 0 of an L2 rotation) so that they are allocated once: drop the OneCheck to free them."""

    status: str
    tolerance_rel_fro: float
    rel_error: float
    device: str
    reference_device: str
    inputs: Inputs
    launch: Launch

    def kept(self) -> tuple[Inputs, Launch]:
        """The checked inputs and their launch."""
        return self.inputs, self.launch


def check_one(
    family: Family, impl: Impl, shape: Shape, dtype: str, device: str, *, seed: int = 0
) -> OneCheck:
    """Run ``impl`` once on ``device`` ("cpu" or "cuda:N") on inputs seeded ``seed`` and compare
    with float64. Raises ``ImplUnavailable`` when the implementation finds it cannot run here,
    and whatever the implementation raises."""
    tolerance = family.tolerance(dtype, impl)
    ref_device = reference_device(device, family.work(shape, dtype).flops)
    inputs = family.make_inputs(shape, dtype, seed, device)
    ref = family.reference(inputs, ref_device)
    launch, err, status = launch_and_compare(impl, inputs, ref, tolerance)
    del ref
    assert err is not None  # compared with a reference
    return OneCheck(status, tolerance, err, device, ref_device, inputs, launch)


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
    family.dtype(dtype)  # an unknown dtype is a usage error
    chosen = choose_impls(family, impls)
    tolerance = {i.name: family.tolerance(dtype, i) for i in chosen}  # the impl's, if its own
    shape = tuple(shape)
    work = family.work(shape, dtype)
    reasons = {i.name: i.why_unavailable(dtype, env, shape, work.flops) for i in chosen}
    results: dict[str, ImplResult] = {
        name: ImplResult(name, UNAVAILABLE, tolerance[name], reason=reason)
        for name, reason in reasons.items()
        if reason is not None
    }
    ref_device = None
    if len(results) < len(chosen):
        device = env.device
        if verify:
            ref_device = reference_device(device, work.flops)
        try:
            inputs = family.make_inputs(shape, dtype, seed, device)
            ref = family.reference(inputs, ref_device) if ref_device else None
        except Exception as exc:  # e.g. out of memory: every runnable impl is in error
            reason = f"inputs or reference failed: {_one_line(exc)}"
            for impl in chosen:
                results.setdefault(
                    impl.name, ImplResult(impl.name, ERROR, tolerance[impl.name], None, reason)
                )
        else:
            for impl in chosen:
                if impl.name not in results:
                    results[impl.name] = _run_one(
                        family,
                        impl,
                        inputs,
                        ref,
                        tolerance[impl.name],
                        work,
                        timing if env.cuda else None,
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
    launch = timed = None
    try:
        launch, err, status = launch_and_compare(impl, inputs, ref, tolerance)
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
            tflops, gbs = work.tflops(time_ms * 1e-3), work.gbs(time_ms * 1e-3)
            l2 = timed.describe()
        return ImplResult(
            impl.name, status, tolerance, err, None, time_ms, tflops, gbs,
            l2=l2, kernel=launch_choice(launch),
        )  # fmt: skip
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
