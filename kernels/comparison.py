"""A family's comparison problem (``Family.comparison``, e.g. bf16 cuBLAS on the quantized GEMMs'
(M, N, K)), timed as the implementations are, for ``wattbench check`` and
``suites/bench/kernels.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wattbench.kernels import catalog
from wattbench.kernels.env import Environment
from wattbench.kernels.family import Family, Launch, Shape, shape_text
from wattbench.kernels.l2 import rotating_launch
from wattbench.kernels.timing import TimingSettings, median_ms, time_launch_ms
from wattbench.kernels.verify import Report


@dataclass(frozen=True)
class ComparisonTiming:
    """The time of a family's comparison problem (``Family.comparison``) for one shape:
    ``time_ms`` (median per launch) or, when it was not timed, ``reason``; ``l2``: the L2 plan
    it was timed under (``L2Plan.to_json``)."""

    label: str
    family: str
    impl: str
    shape: Shape
    dtype: str
    time_ms: float | None = None
    reason: str | None = None
    l2: dict | None = None

    def speedup(self, time_ms: float | None) -> float | None:
        """comparison time / ``time_ms`` (> 1: faster than the comparison), or None."""
        if self.time_ms is None or not time_ms:
            return None
        return self.time_ms / time_ms

    def describe(self) -> str:
        problem = f"{self.family} {self.impl} {self.dtype} {shape_text(self.shape)}"
        if self.time_ms is None:
            return f"vs {self.label} ({problem}): not timed: {self.reason}"
        return f"vs {self.label} ({problem}): {self.time_ms:.4f} ms"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "family": self.family,
            "impl": self.impl,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "time_ms": self.time_ms,
            "reason": self.reason,
            "l2": self.l2,
        }


def time_comparison(
    fam: Family,
    shape: Shape,
    env: Environment,
    timing: TimingSettings | None,
    *,
    seed: int = 0,
    device: str | None = None,
    timer: Callable[[Launch, TimingSettings], list[float]] = time_launch_ms,
) -> ComparisonTiming | None:
    """Time ``fam``'s comparison problem for ``shape`` (None when the family declares none).

    Timed only with ``timing`` and a CUDA device (``env.cuda``); otherwise, or when that
    implementation cannot run the problem here or raises, ``reason`` says why. ``device`` and
    ``timer`` default to the CUDA device and CUDA-event timing (tests give a CPU timer). The
    launch follows ``timing.l2`` as the implementations' timings do."""
    cmp = fam.comparison
    if cmp is None:
        return None
    other = catalog.family(cmp.family)
    impl = other.impl(cmp.impl)
    other_shape = cmp.problem_shape(shape)
    result = ComparisonTiming(cmp.label, other.name, impl.name, other_shape, cmp.dtype)
    if timing is None or (device is None and not env.cuda):
        return _with(result, reason="timed only on a CUDA GPU")
    reason = impl.why_unavailable(
        cmp.dtype, env, other_shape, other.work(other_shape, cmp.dtype).flops
    )
    if reason:
        return _with(result, reason=reason)
    try:
        launch = rotating_launch(
            other,
            impl,
            other_shape,
            cmp.dtype,
            device=device or env.device,
            seed=seed,
            policy=timing.l2,
        )
        time_ms = median_ms(timer(launch, timing))
    except Exception as exc:  # e.g. out of memory: the column stays empty, the check goes on
        return _with(result, reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:200])
    return _with(result, time_ms=time_ms, l2=launch.describe())


def _with(result: ComparisonTiming, **changes: Any) -> ComparisonTiming:
    return ComparisonTiming(**{**result.__dict__, **changes})


def report_json(rep: Report, comparison: ComparisonTiming | None) -> dict[str, Any]:
    """``rep.to_json()`` plus, for families with a comparison, ``comparison`` and each result's
    ``speedup_vs_comparison``."""
    doc = rep.to_json()
    if comparison is not None:
        doc["comparison"] = comparison.to_json()
        for r, r_doc in zip(rep.results, doc["results"], strict=True):
            r_doc["speedup_vs_comparison"] = comparison.speedup(r.time_ms)
    return doc
