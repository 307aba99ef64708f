"""Work: what one iteration of a problem does, so that throughput is computed one way everywhere.

``flops`` counts floating-point (or integer multiply-add, as 2 ops) operations of one launch;
``bytes`` is the minimum traffic to and from device memory (each operand read once, each result
written once). Every rate derives from these through Work's methods, one way everywhere:
``tflops(time_s)`` (TFLOP/s, 1e12 FLOP/s), ``gbs(time_s)`` (GB/s, 1e9 B/s),
``tflop_per_j(energy_j)`` and ``gb_per_j(energy_j)``, for one iteration's time and energy.
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
    """One iteration's work. Invariant: flops, bytes >= 0, not both 0."""

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

    @property
    def tflop(self) -> float:
        """The FLOPs in TFLOP (1e12)."""
        return self.flops / 1e12

    @property
    def gb(self) -> float:
        """The minimum bytes moved in GB (1e9)."""
        return self.bytes / 1e9

    def tflops(self, time_s: float) -> float:
        """TFLOP/s for one iteration in ``time_s`` (> 0) seconds."""
        return self.tflop / time_s

    def gbs(self, time_s: float) -> float:
        """GB/s (1e9 B/s) for one iteration in ``time_s`` (> 0) seconds."""
        return self.gb / time_s

    def tflop_per_j(self, energy_j: float) -> float:
        """TFLOP/J for one iteration that took ``energy_j`` (> 0) joules."""
        return self.tflop / energy_j

    def gb_per_j(self, energy_j: float) -> float:
        """GB/J for one iteration that took ``energy_j`` (> 0) joules."""
        return self.gb / energy_j

    def to_json(self) -> dict:
        return {"flops": self.flops, "bytes": self.bytes, "dtype": self.dtype}

    @classmethod
    def from_json(cls, doc: dict) -> Work:
        """The Work of ``to_json``'s document (a run record's ``work``)."""
        return cls(float(doc["flops"]), float(doc["bytes"]), str(doc["dtype"]))
