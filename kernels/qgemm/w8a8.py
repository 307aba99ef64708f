"""The ``w8a8`` family: ``C = (sa * A_q) @ (B_q * sb)`` with 8-bit A (activations) and B (weights).

Shapes ``MxNxK``: A_q is (M, K), B_q is (K, N), C is (M, N). B_q is stored like a linear
layer's weight, (N, K) row-major, so ``inputs["b"]`` is its (K, N) transposed view (strides
(1, K)): K-contiguous, the layout int8 / fp8 tensor cores and cuBLASLt want for B.

dtypes (label-safe names; the Work dtype in brackets is the simulator's peak key):

* ``int8`` [int8]: int8 A with per-token (row) float32 scales ``scale_a`` (M, 1), int8 B with
  per-output-channel float32 scales ``scale_b`` (1, N); exact int32 accumulation, scales applied
  in fp32, bf16 out. ``int8-fp16``: the same, fp16 out. K <= 133143 keeps int32 exact.
* ``fp8`` [fp8]: e4m3 A and B with per-tensor float32 scales (0-d), fp32 accumulation, bf16
  out. ``fp8-row``: per-row scales (M, 1) for A and per-column (1, N) for B.

Activations are quantized before the kernel (their quantization is not part of the measured
launch). Inputs are seeded standard normal float32 X and W, quantized with ``quantize``; the
reference is float64 on the dequantized operands ``(A_q * sa) @ (B_q * sb)``, so a tolerance
bounds the kernel's error (fp32 scaling, output rounding), not the quantization error.
"""

from __future__ import annotations

from wattbench.kernels.errors import ShapeError
from wattbench.kernels.family import Comparison, DtypeSpec, Family, Inputs, Shape, Suite
from wattbench.kernels.qgemm import impls_w8a8, presets, quantize
from wattbench.kernels.work import Work

#: out dtype (torch attribute) per family dtype
OUT_DTYPES = {"int8": "bfloat16", "int8-fp16": "float16", "fp8": "bfloat16", "fp8-row": "bfloat16"}
#: largest K whose int32 sum of int8 products cannot overflow: K * 127 * 127 < 2**31
INT8_MAX_K = (2**31 - 1) // (127 * 127)

#: errors on normal inputs (products and int32 sums exact; fp32 scaling ~1e-7): bf16 output
#: rounding ~2e-3, fp16 ~3e-4 (relative Frobenius); tolerances leave a margin of about 5x
DTYPES = {
    "int8": DtypeSpec(1e-2, "int8 A (per-token scales) x int8 B (per-channel scales), bf16 out"),
    "int8-fp16": DtypeSpec(3e-3, "as int8, fp16 out"),
    "fp8": DtypeSpec(1e-2, "e4m3 A and B, per-tensor scales, fp32 accumulate, bf16 out (sm_89+)"),
    "fp8-row": DtypeSpec(1e-2, "e4m3, per-row A and per-column B scales, bf16 out (sm_89+)"),
}


def is_fp8(dtype: str) -> bool:
    return dtype.startswith("fp8")


def _check(shape: Shape, dtype: str) -> None:
    if not is_fp8(dtype) and shape[2] > INT8_MAX_K:
        raise ShapeError(
            f"int8 W8A8 with K = {shape[2]} could overflow its int32 accumulator",
            f"use K <= {INT8_MAX_K}",
        )


def work(shape: Shape, dtype: str) -> Work:
    """2*M*N*K ops; bytes: A and B at 1 byte, their float32 scales, C at 2 bytes."""
    _check(shape, dtype)
    m, n, k = shape
    scales = 2 if dtype == "fp8" else m + n
    return Work(
        flops=2.0 * m * n * k,
        bytes=m * k + k * n + 4 * scales + 2 * m * n,
        dtype="fp8" if is_fp8(dtype) else "int8",
    )


def make_inputs(shape: Shape, dtype: str, seed: int, device: str) -> Inputs:
    """Seeded random X (M, K) and W (K, N), quantized; B_q stored (N, K) row-major."""
    import torch

    _check(shape, dtype)
    m, n, k = shape
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(m, k, generator=gen, device=device, dtype=torch.float32)
    w_t = torch.randn(n, k, generator=gen, device=device, dtype=torch.float32)  # W^T
    if is_fp8(dtype):
        per_row = dtype == "fp8-row"
        a, scale_a = quantize.quantize_fp8(x, per_row)
        b_t, scale_b = quantize.quantize_fp8(w_t, per_row)
    else:
        a, scale_a = quantize.quantize_int8_rows(x)
        b_t, scale_b = quantize.quantize_int8_rows(w_t)
    del x, w_t
    if scale_b.dim() == 2:
        scale_b = scale_b.reshape(1, n)
    tensors = {"a": a, "b": b_t.t(), "scale_a": scale_a, "scale_b": scale_b}
    out = torch.empty(m, n, device=device, dtype=getattr(torch, OUT_DTYPES[dtype]))
    return Inputs("w8a8", tuple(shape), dtype, seed, str(device), tensors, out)


def reference(inputs: Inputs, device: str):
    """float64 ``(A_q * scale_a) @ (B_q * scale_b)`` on ``device``."""
    import torch

    def f64(name: str):
        return inputs[name].to(device=device).to(torch.float64)

    return (f64("a") * f64("scale_a")) @ (f64("b") * f64("scale_b"))


FAMILY = Family(
    name="w8a8",
    description="C = (sa * A) @ (B * sb): int8 / fp8 A (M, K) and B (K, N; stored N x K), "
    "per-token / per-channel or per-tensor scales, bf16 / fp16 C; shapes MxNxK",
    dims=("M", "N", "K"),
    dtypes=DTYPES,
    presets=presets.presets(),
    impls=impls_w8a8.IMPLS,
    make_inputs=make_inputs,
    reference=reference,
    work=work,
    comparison=Comparison("bf16 cuBLAS", "matmul", "vendor", "bf16"),
    suite=Suite(
        full=("decode", "prefill", "square", "small"),
        quick=("8192x8192x8192",),
        quick_dtypes=("int8",),
    ),
)
