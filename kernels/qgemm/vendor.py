"""The vendor baselines of the quantized GEMMs (what every "vs vendor" speedup is against).

* W8A8 int8: ``torch._int_mm`` (cuBLASLt int8 GEMM, int32 out) into a buffer, then the scales:
  ``out = (C32 * scale_a) * scale_b`` (two elementwise launches). On a CUDA device
  ``torch._int_mm`` needs M > 16, K % 8 == 0 and N % 8 == 0: M <= 16 runs on a zero-padded
  32-row copy of A (the copy is part of each launch).
* W8A8 fp8: ``torch._scaled_mm`` (cuBLASLt fp8; per-row scales: torch's row-wise kernel, which
  needs compute capability 9.0 on CUDA).
* W4A16: dequantize with torch ops into a preallocated weight of the activation dtype, then
  ``torch.matmul`` (cuBLAS): unpack nibbles (2 launches), reorder and convert (1), subtract the
  zeros (1), multiply by the scales (1), matmul (1). Dequantized weights are rounded to the
  activation dtype, as every implementation of this family does.

Launches allocate nothing: buffers are made once in ``make_*_launch``. On the CPU the same code
runs on torch's CPU kernels (a correctness point, never timed).
"""

from __future__ import annotations

from wattbench.kernels.family import Inputs, Launch, Shape
from wattbench.kernels.qgemm.names import group_of

#: torch._int_mm on CUDA needs more rows than this
INT_MM_MIN_ROWS = 17
_PAD_ROWS = 32


def make_w8a8_launch(inputs: Inputs) -> Launch:
    import torch

    a, b, out = inputs["a"], inputs["b"], inputs.out
    scale_a, scale_b = inputs["scale_a"], inputs["scale_b"]
    m, n = out.shape
    if inputs.dtype.startswith("fp8"):

        def launch_fp8() -> None:
            torch._scaled_mm(a, b, scale_a, scale_b, out_dtype=out.dtype, out=out)

        return launch_fp8

    pad = a.is_cuda and m < INT_MM_MIN_ROWS
    a_run = torch.zeros(_PAD_ROWS, a.shape[1], dtype=a.dtype, device=a.device) if pad else a
    c32 = torch.empty(a_run.shape[0], n, dtype=torch.int32, device=a.device)
    c32_m = c32[:m]
    f32 = torch.empty(m, n, dtype=torch.float32, device=a.device)

    def launch_int8() -> None:
        if pad:
            a_run[:m].copy_(a)
        torch._int_mm(a_run, b, out=c32)
        torch.mul(c32_m, scale_a, out=f32)
        torch.mul(f32, scale_b, out=out)

    return launch_int8


def w8a8_limits(shape: Shape, dtype: str, on_cuda: bool) -> str | None:
    _m, n, k = shape
    if not on_cuda:
        return None
    if dtype.startswith("fp8") and (k % 16 or n % 16):
        return "torch._scaled_mm (cuBLASLt fp8) needs K and N to be multiples of 16"
    if not dtype.startswith("fp8") and (k % 8 or n % 8):
        return "torch._int_mm (cuBLASLt int8) needs K and N to be multiples of 8"
    return None


def make_w4a16_launch(inputs: Inputs) -> Launch:
    """Dequantize (pack.py layout) into ``w`` then ``x @ w``. A word's byte b holds nibbles
    2b (low) and 2b + 1 (high); nibble j = 2b + h holds k offset e = 4 (b % 2) + 2 h + b // 2
    (pack.OFFSET_OF_NIBBLE), so the reorder is a permutation of axes, not a gather."""
    import torch

    x, qw, scales, zeros, out = (
        inputs["x"],
        inputs["qweight"],
        inputs["scales"],
        inputs["zeros"],
        inputs.out,
    )
    rows, n = qw.shape
    k = 8 * rows
    group = group_of(inputs.dtype)
    qbytes = qw.view(torch.uint8).view(rows, n, 4)  # little-endian: byte b = bits 8b .. 8b + 7
    nib = torch.empty(rows, n, 4, 2, dtype=torch.uint8, device=qw.device)
    lo, hi = nib[..., 0], nib[..., 1]
    # nib[r, n, b_hi, b_lo, h] -> w[r, b_lo, h, b_hi, n]: e = 4 b_lo + 2 h + b_hi
    src = nib.view(rows, n, 2, 2, 2).permute(0, 3, 4, 2, 1)
    w = torch.empty(k, n, dtype=x.dtype, device=x.device)
    w5 = w.view(rows, 2, 2, 2, n)
    wg = w.view(k // group, group, n)
    z3, s3 = zeros.unsqueeze(1), scales.unsqueeze(1)

    def launch() -> None:
        torch.bitwise_and(qbytes, 15, out=lo)
        torch.bitwise_right_shift(qbytes, 4, out=hi)
        w5.copy_(src)
        wg.sub_(z3)
        wg.mul_(s3)
        torch.matmul(x, w, out=out)

    return launch
