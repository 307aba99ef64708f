"""The quantized GEMM families of this folder, for the catalog: ``w8a8``, then ``w4a16``."""

from __future__ import annotations

from wattbench.kernels.qgemm.w4a16 import FAMILY as W4A16
from wattbench.kernels.qgemm.w8a8 import FAMILY as W8A8

FAMILIES = (W8A8, W4A16)
