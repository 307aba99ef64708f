"""The ``w4a16`` family: ``C = X @ W`` with 4-bit packed W and fp16 / bf16 X and C.

Shapes ``MxNxK``: X is (M, K), W (K, N), C (M, N). W is stored packed (``pack.py``): int32
``qweight`` (K // 8, N), group-wise ``scales`` (K // G, N) in the activation dtype and
``zeros`` (K // G, N) uint8, ``W[k, n] = (q[k, n] - zeros[k // G, n]) * scales[k // G, n]``.
dtype names are ``<activation>-g<G>``: ``bf16-g32`` .. ``fp16-g128`` (G = 32, 64, 128); K must be
a multiple of G (ShapeError otherwise). The Work dtype is the activation dtype (bf16 / fp16:
the tensor-core peak the dequantized GEMM runs at).

Implementations dispatch on M: M <= 16 runs a split-K GEMV-style kernel (memory-bound: the packed
weight is read once; Triton's uses register FMAs for M <= 4), M > 16 a tiled GEMM that
dequantizes W in registers.

Inputs: seeded standard normal float32 X (rounded to the activation dtype) and W (quantized with
``quantize.quantize_int4``); the reference is float64 ``X @ dequantize(W)`` -- the quantization
error is not the kernel's. What remains: each implementation rounds the dequantized weight to the
activation dtype (or keeps it exact), accumulates in fp32 and rounds C.
"""

from __future__ import annotations

from wattbench.kernels.family import Comparison, DtypeSpec, Family, Inputs, Shape, Suite
from wattbench.kernels.qgemm import impls_w4a16, pack, presets, quantize
from wattbench.kernels.qgemm.names import ACTIVATIONS, GROUPS, TORCH_NAMES, act_of, group_of
from wattbench.kernels.work import DTYPE_BYTES, Work

#: weight rounding to the activation dtype (~u / sqrt(3)) plus output rounding (~u / sqrt(3)):
#: bf16 ~3e-3, fp16 ~4e-4 (relative Frobenius); tolerances as matmul's bf16 / fp16
_TOL = {"bf16": 1e-2, "fp16": 3e-3}
DTYPES = {
    f"{act}-g{g}": DtypeSpec(
        _TOL[act], f"{act} X and C, int4 W in groups of {g} (scales {act}, zeros uint8)"
    )
    for act in ACTIVATIONS
    for g in GROUPS
}


def work(shape: Shape, dtype: str) -> Work:
    """2*M*N*K FLOPs; bytes: X and C in the activation dtype, W at 4 bits, scales (2 B) and zeros
    (1 B) per group and column."""
    m, n, k = shape
    group = group_of(dtype)
    quantize.check_group(k, group)
    act = act_of(dtype)
    groups = k // group
    return Work(
        flops=2.0 * m * n * k,
        bytes=DTYPE_BYTES[act] * (m * k + m * n) + k * n // 2 + groups * n * (2 + 1),
        dtype=act,
    )


def make_inputs(shape: Shape, dtype: str, seed: int, device: str) -> Inputs:
    """Seeded random X and a quantized, packed W."""
    import torch

    m, n, k = shape
    quantize.check_group(k, group_of(dtype))
    act = getattr(torch, TORCH_NAMES[act_of(dtype)])
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(m, k, generator=gen, device=device, dtype=torch.float32).to(act)
    w = torch.randn(k, n, generator=gen, device=device, dtype=torch.float32)
    codes, scales, zeros = quantize.quantize_int4(w, group_of(dtype), act)
    del w
    tensors = {"x": x, "qweight": pack.pack_int4(codes), "scales": scales, "zeros": zeros}
    del codes
    out = torch.empty(m, n, device=device, dtype=act)
    return Inputs("w4a16", tuple(shape), dtype, seed, str(device), tensors, out)


def reference(inputs: Inputs, device: str):
    """float64 ``X @ W`` with W dequantized exactly (float64) on ``device``."""
    import torch

    codes = pack.unpack_int4(inputs["qweight"].to(device))
    w = quantize.dequantize_int4(codes, inputs["scales"].to(device), inputs["zeros"].to(device))
    return inputs["x"].to(device=device, dtype=torch.float64) @ w


FAMILY = Family(
    name="w4a16",
    description="C = X @ W: fp16 / bf16 X (M, K), int4 W (K, N) packed with group-wise scales "
    "and zero points (G = 32, 64, 128); shapes MxNxK",
    dims=("M", "N", "K"),
    dtypes=DTYPES,
    presets=presets.presets(),
    impls=impls_w4a16.IMPLS,
    make_inputs=make_inputs,
    reference=reference,
    work=work,
    comparison=Comparison("bf16 cuBLAS", "matmul", "vendor", "bf16"),
    suite=Suite(
        full=("decode", "prefill", "square", "small"),
        quick=("1x8192x8192",),
        quick_dtypes=("bf16-g128",),
    ),
)
