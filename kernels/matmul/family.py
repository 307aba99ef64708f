"""The matmul family: ``C = A @ B`` with A ``MxK``, B ``KxN``, C ``MxN``, all row-major.

Shapes are written ``MxNxK``. LLM projection presets follow ``X[M, K] @ W[K, N]``: M is the number
of tokens, K the layer's input width and N its output width (``llama3-8b-qkv`` is 4096 -> 6144,
so ``llama3-8b-qkv@128`` is 128x6144x4096). A ``(model, layer)`` preset sweeps M over
:data:`TOKENS`; ``llama3-8b`` / ``llama3-70b`` hold all four layers.

Inputs are standard normal in float32 from a torch generator seeded with ``seed`` on the
inputs' device, then rounded to the dtype (fp8: scaled per tensor so that the largest magnitude
maps to e4m3's 448, with the fp32 dequantisation scales ``scale_a``, ``scale_b``). The reference
is float64 on those rounded inputs, so a tolerance bounds the kernel's own error (accumulation and
output rounding), not the input rounding.
"""

from __future__ import annotations

from wattbench.kernels.family import DtypeSpec, Family, Inputs, Preset, Shape, Suite
from wattbench.kernels.matmul import cupy_impls, triton_impl, vendor
from wattbench.kernels.work import DTYPE_BYTES, Work

#: storage dtype of A and B, and of C (torch attribute names)
TORCH_DTYPES = {
    "bf16": ("bfloat16", "bfloat16"),
    "fp16": ("float16", "float16"),
    "fp32": ("float32", "float32"),
    "tf32": ("float32", "float32"),
    "fp8": ("float8_e4m3fn", "bfloat16"),
}
FP8_E4M3_MAX = 448.0

#: measured errors on normal inputs (CPU, float64 rounding model): fp32 ~4e-7, tf32 ~3e-4,
#: fp16 ~2e-4, bf16 and fp8 (bf16 output) ~2e-3; tolerances leave a margin of 5x or more and
#: keep fp32 30x below what TF32 math gives, so "fp32" catches a silent TF32 path.
DTYPES = {
    "bf16": DtypeSpec(1e-2, "bf16 in and out, fp32 accumulate"),
    "fp16": DtypeSpec(3e-3, "fp16 in and out, fp32 accumulate"),
    "fp32": DtypeSpec(1e-5, "fp32 storage, IEEE fp32 math where the impl can (see its math)"),
    "tf32": DtypeSpec(2e-3, "fp32 storage, TF32 tensor-core math (10-bit mantissa products)"),
    "fp8": DtypeSpec(
        1e-2, "e4m3 in with per-tensor fp32 scales, bf16 out, fp32 accumulate (sm_89+)"
    ),
}

#: tokens (M) of the LLM projection presets
TOKENS = (1, 16, 128, 1024, 4096, 16384)

#: (model, layer) -> (K, N): input and output width of the projection
LLAMA3 = {
    # Llama-3 8B: hidden 4096, intermediate 14336, 32 q heads / 8 kv heads of dim 128
    ("llama3-8b", "qkv"): (4096, 6144),
    ("llama3-8b", "o"): (4096, 4096),
    ("llama3-8b", "gate_up"): (4096, 28672),
    ("llama3-8b", "down"): (14336, 4096),
    # Llama-3 70B: hidden 8192, intermediate 28672, 64 q heads / 8 kv heads of dim 128
    ("llama3-70b", "qkv"): (8192, 10240),
    ("llama3-70b", "o"): (8192, 8192),
    ("llama3-70b", "gate_up"): (8192, 57344),
    ("llama3-70b", "down"): (28672, 8192),
}


def _presets() -> tuple[Preset, ...]:
    out = [
        Preset(
            "square",
            "square MxMxM, M = 1024 .. 16384 (powers of two)",
            tuple((s, s, s) for s in (1024, 2048, 4096, 8192, 16384)),
        ),
        Preset(
            "odd",
            "sizes that are multiples of no block size (edge tiles, masking)",
            ((1000, 1000, 1000), (4097, 4095, 4093), (67, 45, 93)),
        ),
    ]
    for model in dict.fromkeys(m for m, _ in LLAMA3):
        layers = [(layer, kn) for (m, layer), kn in LLAMA3.items() if m == model]
        for layer, (k, n) in layers:
            out.append(
                Preset(
                    f"{model}-{layer}",
                    f"{model} {layer}: X[M, {k}] @ W[{k}, {n}], "
                    f"M = {', '.join(map(str, TOKENS))} tokens",
                    tuple((m, n, k) for m in TOKENS),
                    sweep_dim=0,
                )
            )
        out.append(
            Preset(
                model,
                f"all {model} projections ({', '.join(layer for layer, _ in layers)}) at every M",
                tuple((m, n, k) for _, (k, n) in layers for m in TOKENS),
                sweep_dim=0,
            )
        )
    return tuple(out)


def work(shape: Shape, dtype: str) -> Work:
    """2*M*N*K FLOPs; bytes = (M*K + K*N) * input size + M*N * output size (fp8: bf16 out)."""
    m, n, k = shape
    in_bytes = DTYPE_BYTES[dtype]
    out_bytes = DTYPE_BYTES["bf16"] if dtype == "fp8" else in_bytes
    return Work(
        flops=2.0 * m * n * k, bytes=(m * k + k * n) * in_bytes + m * n * out_bytes, dtype=dtype
    )


def make_inputs(shape: Shape, dtype: str, seed: int, device: str) -> Inputs:
    """Seeded random A, B (and fp8 scales) and an output C, on ``device``."""
    import torch

    m, n, k = shape
    storage, out_storage = (getattr(torch, name) for name in TORCH_DTYPES[dtype])
    gen = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn(m, k, generator=gen, device=device, dtype=torch.float32)
    b = torch.randn(k, n, generator=gen, device=device, dtype=torch.float32)
    tensors = {}
    if dtype == "fp8":
        for name, x in (("a", a), ("b", b)):
            scale = (x.abs().amax() / FP8_E4M3_MAX).to(torch.float32)  # 0-dim, on device
            tensors[name] = (x / scale).clamp_(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(storage)
            tensors[f"scale_{name}"] = scale
            del x
    else:
        tensors["a"], tensors["b"] = a.to(storage), b.to(storage)
    del a, b
    out = torch.empty(m, n, device=device, dtype=out_storage)
    return Inputs("matmul", tuple(shape), dtype, seed, str(device), tensors, out)


def reference(inputs: Inputs, device: str):
    """float64 ``A @ B`` (dequantised for fp8) computed on ``device``."""
    import torch

    def operand(name: str):
        x = inputs[name].to(device=device).to(torch.float64)
        scale = inputs.get(f"scale_{name}")
        return x * scale.to(device=device, dtype=torch.float64) if scale is not None else x

    return operand("a") @ operand("b")


FAMILY = Family(
    name="matmul",
    description="C = A @ B; A is MxK, B is KxN, C is MxN (row-major); shapes MxNxK",
    dims=("M", "N", "K"),
    dtypes=DTYPES,
    presets=_presets(),
    impls=(
        vendor.IMPL,
        triton_impl.IMPL,
        triton_impl.FASTACC,
        cupy_impls.CUPY,
        cupy_impls.CUBLAS_CUPY,
    ),
    make_inputs=make_inputs,
    reference=reference,
    work=work,
    # quick: bf16 at 4096^3, 8192^3 and one Llama-3 8B decode projection (16 tokens x qkv)
    suite=Suite(
        full=("square", "odd", "llama3-8b", "llama3-70b"),
        quick=("4096x4096x4096", "8192x8192x8192", "llama3-8b-qkv@16"),
        quick_dtypes=("bf16",),
    ),
)
