"""A GPU's peak rates (dense TFLOP/s per dtype, memory GB/s), to say what fraction of them a
problem achieved, and whether a problem is compute- or memory-bound on that GPU.

Simulated GPUs carry their peaks in the spec recorded in every run (``device.spec``). For real
GPUs the only source is :data:`DATASHEET`, a short table of NVIDIA datasheet figures keyed by the
name NVML reports; a GPU or dtype not in it has *unknown* peaks (None) -- never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wattbench.profiler.store.header import RecordDevice


@dataclass(frozen=True)
class Peaks:
    """Peak rates of one GPU for one dtype. ``tflops`` (dense, TFLOP/s) and ``gbs`` (GB/s,
    1 GB = 1e9 B) are None when unknown; ``source`` says where they come from."""

    tflops: float | None
    gbs: float | None
    source: str

    @property
    def known(self) -> bool:
        return self.tflops is not None and self.gbs is not None

    @property
    def ridge_flop_per_byte(self) -> float | None:
        """Arithmetic intensity (FLOP/B) above which a problem is compute-bound here."""
        if self.tflops is None or self.gbs is None:
            return None
        return self.tflops * 1e12 / (self.gbs * 1e9)

    def roofline_fraction(self, tflops: float, gbs: float) -> float | None:
        """Achieved fraction of the roofline, ``max(tflops / peak, gbs / peak_bw)`` (None when
        a peak is unknown): the time the roofline allows over the time taken."""
        if self.tflops is None or self.gbs is None:
            return None
        return max(tflops / self.tflops, gbs / self.gbs)

    def to_json(self) -> dict[str, Any]:
        return {"tflops": self.tflops, "gbs": self.gbs, "source": self.source}


_H100 = "NVIDIA H100 Tensor Core GPU datasheet (SXM5; dense)"
_A100 = "NVIDIA A100 Tensor Core GPU datasheet (SXM4; dense)"
_L4 = "NVIDIA L4 Tensor Core GPU datasheet (dense = half the sparse figures)"
_L40S = "NVIDIA L40S GPU datasheet (dense)"

#: NVML name -> (dense TFLOP/s per dtype, memory GB/s, source). Only figures confirmed from a
#: primary source (the datasheet named in each entry); a dtype missing here is unknown.
DATASHEET: dict[str, tuple[dict[str, float], float, str]] = {
    "NVIDIA H100 80GB HBM3": (
        {"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
        3352.0,
        _H100,
    ),
    "NVIDIA A100-SXM4-80GB": (
        {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "int8": 624.0},
        2039.0,
        _A100,
    ),
    "NVIDIA A100-SXM4-40GB": (
        {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "int8": 624.0},
        1555.0,
        _A100,
    ),
    "NVIDIA L4": ({"bf16": 121.0, "fp16": 121.0, "fp8": 242.5, "int8": 242.5}, 300.0, _L4),
    "NVIDIA L40S": ({"bf16": 362.0, "fp16": 362.0, "fp8": 733.0}, 864.0, _L40S),
}

#: arithmetic intensity (FLOP/B) taken as the ridge point when a GPU's peaks are unknown; below
#: the ridge of every GPU in :data:`DATASHEET` (A100-SXM4-80GB bf16: 153 FLOP/B)
FALLBACK_RIDGE_FLOP_PER_BYTE = 64.0


def _positive(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    v = float(v)
    return v if math.isfinite(v) and v > 0 else None


def peaks_of(device: RecordDevice, dtype: str) -> Peaks:
    """Peaks for ``dtype`` of the device a run record measured (``RunRecord.device``)."""
    spec = device.spec
    if device.simulated and spec is not None:
        perf = spec.get("performance")
        perf = perf if isinstance(perf, Mapping) else {}
        tf = perf.get("tflops")
        tf = tf if isinstance(tf, Mapping) else {}
        source = f"simulated spec ({device.spec_source or 'in the run record'})"
        return Peaks(_positive(tf.get(dtype)), _positive(perf.get("memory_bandwidth_gbs")), source)
    if device.simulated:
        return Peaks(None, None, "unknown (simulated GPU without a spec in the record)")
    hit = DATASHEET.get(device.name)
    if hit is None:
        return Peaks(None, None, "unknown (GPU not in wattbench's datasheet table)")
    tflops, gbs, source = hit
    if dtype not in tflops:
        return Peaks(None, gbs, f"unknown for {dtype} ({source} has no {dtype} figure tabled)")
    return Peaks(tflops[dtype], gbs, source)


def bound_of(intensity_flop_per_byte: float, peaks: Peaks | None) -> str:
    """``"compute"`` or ``"memory"``: which roofline a problem of this intensity is under."""
    ridge = peaks.ridge_flop_per_byte if peaks is not None else None
    if ridge is None:
        ridge = FALLBACK_RIDGE_FLOP_PER_BYTE
    return "memory" if intensity_flop_per_byte < ridge else "compute"
