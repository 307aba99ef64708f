"""Problems and their cost: the Work of a problem from its family, shape and dtype alone.

This is what the profiler needs to turn time and energy into TFLOP/s, GB/s and TFLOP/J, and all a
simulated GPU needs to run a problem. Families, their shapes, dtypes and implementations are
declared in ``wattbench.kernels.catalog``; this module is the profiler's narrow view of them.
Shapes are written ``MxNxK`` for matmul, or as a preset naming one shape (``llama3-8b-qkv@128``).
"""

from __future__ import annotations

from dataclasses import dataclass

from wattbench.kernels import catalog
from wattbench.kernels.errors import UnknownKernelError
from wattbench.kernels.family import Shape
from wattbench.kernels.family import shape_text as _shape_text
from wattbench.kernels.work import Work


@dataclass(frozen=True)
class Problem:
    """One thing to measure: a kernel family, an implementation, a shape and a dtype."""

    family: str
    impl: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def shape_text(self) -> str:
        return _shape_text(self.shape)

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


def parse_shape(family: str, text: str) -> Shape:
    """One shape of ``family`` from ``MxNxK`` or a one-shape preset (ShapeError otherwise)."""
    return catalog.family(family).parse_shape(text)


def make_problem(family: str, shape: str, dtype: str, impl: str = "vendor") -> Problem:
    """Validate and build a Problem: unknown family / impl / dtype (UnknownKernelError) and
    malformed shapes (ShapeError) are usage errors that list the valid choices."""
    fam = catalog.family(family)
    fam.dtype(dtype)
    chosen = fam.impl(impl)
    if dtype not in chosen.dtypes:
        raise UnknownKernelError(
            f"{family} {impl} has no dtype {dtype!r}",
            f"it has: {', '.join(chosen.dtypes)}; implementations with {dtype}: "
            + ", ".join(i.name for i in fam.impls if dtype in i.dtypes),
        )
    return Problem(fam.name, chosen.name, fam.parse_shape(shape), dtype)


def work_of(problem: Problem) -> Work:
    return catalog.family(problem.family).work(problem.shape, problem.dtype)
