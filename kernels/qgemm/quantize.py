"""Quantizers for the quantized GEMMs, and the dequantizers their float64 references use.

* int8, symmetric per row: ``scale[i] = max|x[i, :]| / 127`` (1 for an all-zero row),
  ``q = clamp(round(x / scale), -127, 127)``; ``|x - q * scale| <= scale / 2``. Activations are
  quantized per token (row of X), weights per output channel (column of W, i.e. row of W^T).
* fp8 e4m3, per tensor or per row: ``scale = amax / 448``, ``q = (x / scale)`` rounded to e4m3.
* int4, asymmetric per group of G consecutive k in each column of W (K, N), min-max over the
  group with 0 included (as GPTQ): ``scale = (max - min) / 15`` rounded to the scale dtype,
  ``zero = clamp(round(-min / scale), 0, 15)``, ``q = clamp(round(w / scale) + zero, 0, 15)``;
  dequantized ``(q - zero) * scale`` is within ``scale * (1/2 + 15 u)`` of w (u: the scale
  dtype's unit roundoff). Codes pack with ``pack.pack_int4``.

Scales are float32 except the int4 group scales, which are in the activation dtype (as the
kernels read them). Every function works on any torch device and returns new tensors.
"""

from __future__ import annotations

from wattbench.kernels.errors import ShapeError

INT8_MAX = 127
FP8_E4M3_MAX = 448.0
INT4_MAX = 15


def quantize_int8_rows(x):
    """x (R, C) float -> (q int8 (R, C), scale float32 (R, 1)); symmetric per row."""
    import torch

    x = x.to(torch.float32)
    amax = x.abs().amax(dim=1, keepdim=True)
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    q = torch.round(x / scale).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def quantize_fp8(x, per_row: bool):
    """x (R, C) float -> (q float8_e4m3fn, scale float32): per tensor a 0-d scale, per row an
    (R, 1) scale; the largest magnitude (of the tensor / row) maps to 448."""
    import torch

    x = x.to(torch.float32)
    amax = x.abs().amax(dim=1, keepdim=True) if per_row else x.abs().amax()
    scale = torch.where(amax > 0, amax / FP8_E4M3_MAX, torch.ones_like(amax))
    q = (x / scale).clamp_(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale.to(torch.float32)


def check_group(k: int, group: int) -> None:
    """ShapeError unless K splits into whole groups of ``group`` (a multiple of 32)."""
    if group < 32 or group % 32:
        raise ShapeError(f"int4 group size {group} is not a multiple of 32", "use 32, 64 or 128")
    if k % group:
        raise ShapeError(
            f"int4 groups of {group} need K to be a multiple of {group}, got K = {k}",
            f"use K = {max(group, k - k % group)} or {k + group - k % group}, or a smaller group",
        )


def quantize_int4(w, group: int, scale_dtype):
    """W (K, N) float -> (codes uint8 (K, N), scales (K // G, N) ``scale_dtype``, zeros uint8
    (K // G, N)): asymmetric min-max per group of ``group`` consecutive k per column."""
    import torch

    k, n = w.shape
    check_group(k, group)
    g = w.to(torch.float32).reshape(k // group, group, n)
    lo = g.amin(dim=1).clamp_(max=0.0)
    hi = g.amax(dim=1).clamp_(min=0.0)
    both_zero = (lo == 0) & (hi == 0)
    lo = torch.where(both_zero, -1.0, lo)
    hi = torch.where(both_zero, 1.0, hi)
    scale = ((hi - lo) / INT4_MAX).to(scale_dtype)
    s32 = scale.to(torch.float32).unsqueeze(1)
    zero = torch.round(-lo / scale.to(torch.float32)).clamp_(0, INT4_MAX)
    q = torch.round(g / s32).add_(zero.unsqueeze(1)).clamp_(0, INT4_MAX)
    return q.reshape(k, n).to(torch.uint8), scale, zero.to(torch.uint8)


def dequantize_int4(codes, scales, zeros, dtype=None):
    """(codes (K, N) in [0, 15], scales, zeros (K // G, N)) -> W (K, N) in ``dtype`` (default
    float64, where it is exact)."""
    import torch

    k, n = codes.shape
    groups = scales.shape[0]
    if groups == 0 or k % groups or not tuple(scales.shape) == tuple(zeros.shape) == (groups, n):
        raise ShapeError(
            f"int4 codes {tuple(codes.shape)} do not fit scales {tuple(scales.shape)} and zeros "
            f"{tuple(zeros.shape)}",
            "scales and zeros are (K // G, N) for codes (K, N)",
        )
    dt = torch.float64 if dtype is None else dtype
    q = codes.to(dt).reshape(groups, k // groups, n)
    w = (q - zeros.to(dt).unsqueeze(1)) * scales.to(dt).unsqueeze(1)
    return w.reshape(k, n)
