"""Operand checks shared by the Triton and CUDA launchers (torch tensors; no GPU stack imported).

Each returns the problem size and raises ShapeError (shapes, layout), UnknownKernelError
(dtypes) or UsageError (devices, types) with what to pass instead.
"""

from __future__ import annotations

from wattbench.kernels.errors import ShapeError, UnknownKernelError, UsageError
from wattbench.kernels.qgemm import quantize


def _tensors(named: dict) -> None:
    import torch

    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise UsageError(f"{name} is a {type(t).__name__}, not a torch tensor", "pass tensors")
    if len({t.device for t in named.values()}) != 1:
        raise UsageError("the operands are on different devices", "put them on one device")


def w8a8(a, b, out, scale_a, scale_b) -> tuple[int, int, int]:
    """(M, N, K) of ``out = (a @ b) * scale_a * scale_b``: a (M, K), b (K, N) int8 or
    float8_e4m3fn, out (M, N) bf16 / fp16, float32 scales with 1 or M (N) elements."""
    import torch

    _tensors({"a": a, "b": b, "out": out, "scale_a": scale_a, "scale_b": scale_b})
    if a.dim() != 2 or b.dim() != 2 or out.dim() != 2:
        raise ShapeError("W8A8 operands must be 2-D", "pass A (M, K), B (K, N), out (M, N)")
    m, k = a.shape
    k_b, n = b.shape
    if k != k_b or tuple(out.shape) != (m, n) or min(m, n, k) < 1:
        raise ShapeError(
            f"W8A8 shapes do not fit: A {tuple(a.shape)}, B {tuple(b.shape)}, out "
            f"{tuple(out.shape)}",
            "A (M, K) @ B (K, N) -> out (M, N), sizes >= 1",
        )
    if (
        a.dtype != b.dtype
        or a.dtype not in (torch.int8, torch.float8_e4m3fn)
        or out.dtype not in (torch.bfloat16, torch.float16)
    ):
        raise UnknownKernelError(
            f"W8A8 has no {a.dtype} x {b.dtype} -> {out.dtype} path",
            "use int8 or float8_e4m3fn operands (both the same) and a bf16 or fp16 out",
        )
    for name, s, length in (("scale_a", scale_a, m), ("scale_b", scale_b, n)):
        if s.dtype != torch.float32:
            raise UnknownKernelError(f"{name} is {s.dtype}", "scales must be torch.float32")
        if s.numel() not in (1, length) or not s.is_contiguous():
            raise ShapeError(
                f"{name} has {s.numel()} elements, expected 1 or {length} (contiguous)",
                "pass one scale per row of A / column of B, or one for the tensor",
            )
    return m, n, k


def w4a16(x, qweight, scales, zeros, out, group: int) -> tuple[int, int, int]:
    """(M, N, K) of ``out = x @ W``: x (M, K) fp16 / bf16 with unit column stride, qweight
    (K // 8, N) int32, scales (K // G, N) in x's dtype, zeros (K // G, N) uint8 (all
    contiguous), out (M, N) in x's dtype; K % G == 0, G % 32 == 0."""
    import torch

    named = {"x": x, "qweight": qweight, "scales": scales, "zeros": zeros, "out": out}
    _tensors(named)
    if any(t.dim() != 2 for t in named.values()):
        raise ShapeError("W4A16 operands must be 2-D", "pass x, qweight, scales, zeros, out")
    m, k = x.shape
    n = qweight.shape[1]
    quantize.check_group(k, group)
    if m < 1 or n < 1:
        raise ShapeError(f"W4A16 sizes must be >= 1, got M = {m}, N = {n}", "pass non-empty x, W")
    expected = {
        "qweight": (qweight, (k // 8, n)),
        "scales": (scales, (k // group, n)),
        "zeros": (zeros, (k // group, n)),
        "out": (out, (m, n)),
    }
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ShapeError(
                f"W4A16 {name} is {tuple(t.shape)}, expected {shape} for x {tuple(x.shape)}",
                "qweight (K // 8, N), scales and zeros (K // G, N), out (M, N)",
            )
    if x.dtype not in (torch.float16, torch.bfloat16) or not (x.dtype == out.dtype == scales.dtype):
        raise UnknownKernelError(
            f"W4A16 needs x, scales and out of one dtype, fp16 or bf16 (got {x.dtype}, "
            f"{scales.dtype}, {out.dtype})",
            "convert them to torch.float16 or torch.bfloat16",
        )
    if qweight.dtype != torch.int32 or zeros.dtype != torch.uint8:
        raise UnknownKernelError(
            f"W4A16 qweight must be int32 and zeros uint8 (got {qweight.dtype}, {zeros.dtype})",
            "pack with pack.pack_int4 and quantize with quantize.quantize_int4",
        )
    if (
        x.stride(1) != 1
        or out.stride(1) != 1
        or not all(t.is_contiguous() for t in (qweight, scales, zeros))
    ):
        raise ShapeError("W4A16 tensors must be row-major", "pass .contiguous() tensors")
    # the packed-pair dequantization ORs the zero point into a 16-bit float's mantissa: a zero
    # above 15 (no int4 code) would corrupt its exponent, so it is refused here, once
    if zeros.numel() and int(zeros.max()) > 15:
        raise UsageError(
            f"W4A16 zero points must be int4 codes 0..15, the largest is {int(zeros.max())}",
            "quantize with quantize.quantize_int4",
        )
    return m, n, k
