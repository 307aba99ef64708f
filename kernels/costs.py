"""Cost declarations: the Work of a problem from its family, shape and dtype alone.

This is what the profiler needs to turn time and energy into TFLOP/s, GB/s and TFLOP/J, and all a
simulated GPU needs to run a problem. Shapes are written ``MxNxK`` for matmul.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from wattbench.kernels.work import DTYPE_BYTES, Work
from wattbench.profiler.errors import ShapeError, UnknownKernelError


@dataclass(frozen=True)
class Problem:
    """One thing to measure: a kernel family, an implementation, a shape and a dtype."""

    family: str
    impl: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.shape))

    @property
    def label(self) -> str:
        """Readable id, e.g. ``matmul-vendor-bf16-8192x8192x8192``."""
        return f"{self.family}-{self.impl}-{self.dtype}-{self.shape_text}"

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "impl": self.impl,
            "shape": list(self.shape),
            "dtype": self.dtype,
        }


@dataclass(frozen=True)
class FamilyCost:
    """How a family's shape is written and what one launch costs."""

    shape_form: str  # e.g. "MxNxK"
    dims: int
    dtypes: tuple[str, ...]
    work: Callable[[tuple[int, ...], str], Work]


def _matmul_work(shape: tuple[int, ...], dtype: str) -> Work:
    m, n, k = shape
    return Work(
        flops=2.0 * m * n * k,
        bytes=(m * k + k * n + m * n) * DTYPE_BYTES[dtype],
        dtype=dtype,
    )


FAMILIES: dict[str, FamilyCost] = {
    "matmul": FamilyCost("MxNxK", 3, ("bf16", "fp16", "fp32", "tf32", "fp8"), _matmul_work),
}


def family_cost(family: str) -> FamilyCost:
    try:
        return FAMILIES[family]
    except KeyError:
        raise UnknownKernelError(
            f"unknown kernel {family!r}",
            f"choose one of: {', '.join(sorted(FAMILIES))} (`wattbench kernels` lists them)",
        ) from None


def parse_shape(family: str, text: str) -> tuple[int, ...]:
    cost = family_cost(family)
    parts = re.split(r"[xX×,]", text.strip())
    if len(parts) != cost.dims or not all(p.strip().isdigit() for p in parts):
        raise ShapeError(
            f"malformed {family} shape {text!r}",
            f"write it as {cost.shape_form} with positive integers, e.g. "
            + "x".join(["4096"] * cost.dims),
        )
    shape = tuple(int(p) for p in parts)
    if min(shape) < 1:
        raise ShapeError(f"{family} shape {text!r} has a zero dimension", "use sizes >= 1")
    return shape


def make_problem(family: str, shape: str, dtype: str, impl: str = "vendor") -> Problem:
    """Validate and build a Problem (unknown family / dtype, malformed shape: UsageError)."""
    cost = family_cost(family)
    if dtype not in cost.dtypes:
        raise UnknownKernelError(
            f"{family} has no dtype {dtype!r}", f"choose one of: {', '.join(cost.dtypes)}"
        )
    return Problem(family, impl, parse_shape(family, shape), dtype)


def work_of(problem: Problem) -> Work:
    return family_cost(problem.family).work(problem.shape, problem.dtype)
