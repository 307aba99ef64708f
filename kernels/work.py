"""Work: what one iteration of a problem does, so that throughput is computed one way everywhere.

``flops`` counts floating-point (or integer multiply-add, as 2 ops) operations of one launch;
``bytes`` is the minimum traffic to and from device memory (each operand read once, each result
written once). TFLOP/s, GB/s, roofline fraction and TFLOP/J derive from these.
"""

from __future__ import annotations

from dataclasses import dataclass

#: bytes per element of each dtype wattbench knows
DTYPE_BYTES = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}


@dataclass(frozen=True)
class Work:
    flops: float  # per iteration
    bytes: float  # minimum bytes moved per iteration
    dtype: str  # the dtype that sets the compute peak (e.g. bf16 for a bf16 GEMM)

    def __post_init__(self) -> None:
        if self.flops < 0 or self.bytes < 0:
            raise ValueError("Work.flops and Work.bytes must be >= 0")
        if self.flops == 0 and self.bytes == 0:
            raise ValueError("Work must have flops or bytes")

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte (inf for pure compute)."""
        return self.flops / self.bytes if self.bytes else float("inf")

    def to_json(self) -> dict:
        return {"flops": self.flops, "bytes": self.bytes, "dtype": self.dtype}
