"""The attention families: ``prefill`` (causal), ``prefill-full`` (no mask) and ``decode``.

Prefill shapes are ``BxHQxHKVxNxD``: batch, query heads, KV heads, sequence length and head dim;
q and o are ``[B, HQ, N, D]``, k and v ``[B, HKV, N, D]``. Decode shapes are ``BxHQxHKVxLxD``: one
query token per sequence (q, o ``[B, HQ, 1, D]``) against a KV cache of L tokens (k, v
``[B, HKV, L, D]``). HQ must be a multiple of HKV (grouped-query attention: query head h reads KV
head ``h // (HQ // HKV)``); a shape that breaks this is a ShapeError from :func:`work` and
:func:`make_inputs`. The custom kernels take D = 64 or 128 (their ``limits`` say so otherwise).

Model presets use the real head layouts (Llama-3 8B: 32 query / 8 KV heads of D = 128; Llama-3
70B: 64 / 8 of 128; Llama-3.2 1B: 32 / 8 of 64). Prefill presets (one prompt, B = 1) sweep N over
:data:`SEQ_LENS`, decode presets (a serving batch) sweep L over :data:`CACHE_LENS`; ``NAME@V``
fixes that length. ``<model>-batch`` decode presets sweep the batch (``@V`` sets B) at L = 8192.
``odd`` holds lengths that are multiples of no block size.

Inputs are standard normal float32 from a torch generator seeded with ``seed`` on the inputs'
device, rounded to the dtype (q, then k, then v, in slices of at most 2**26 elements so large
caches need no float32 copy). The reference is float64 on those rounded inputs
(:mod:`~wattbench.kernels.attention.reference`, chunked), so a tolerance bounds the kernel's own
error. Work: FLOPs ``4 * B * HQ * Nq * Nkv * D`` (two products of 2 FLOPs per multiply-add),
halved when causal; bytes: q, k, v read once and o written once (decode: the KV cache + q + o).
"""

from __future__ import annotations

from wattbench.kernels.attention import cupy_impl, triton_impl, vendor
from wattbench.kernels.attention.problem import check_heads
from wattbench.kernels.attention.reference import attention_float64
from wattbench.kernels.errors import ShapeError
from wattbench.kernels.family import DtypeSpec, Family, Inputs, Preset, Shape, Suite
from wattbench.kernels.work import DTYPE_BYTES, Work

TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}

#: measured relative Frobenius errors on normal inputs (CPU: a float32 FlashAttention model with
#: P rounded to the dtype, and torch's CPU SDPA; N = 67 .. 4096, D = 128, causal or not): fp16
#: 2.5e-4 .. 2.9e-4, bf16 2.0e-3 .. 2.3e-3 -- mostly the rounding of o itself (fp16 2.0e-4,
#: bf16 1.6e-3). Tolerances leave a margin of 4x or more and stay far below the O(1) error of a
#: wrong block, mask or rescale.
DTYPES = {
    "bf16": DtypeSpec(1e-2, "bf16 in and out, fp32 scores, softmax and accumulation"),
    "fp16": DtypeSpec(2e-3, "fp16 in and out, fp32 scores, softmax and accumulation"),
}

#: (query heads, KV heads, head dim) of the model presets
MODELS = {
    "llama3-8b": (32, 8, 128),
    "llama3-70b": (64, 8, 128),
    "llama3.2-1b": (32, 8, 64),
}
#: prefill sequence lengths N of the model presets (one prompt, B = 1)
SEQ_LENS = (512, 1024, 2048, 4096, 8192, 16384)
#: decode KV-cache lengths L of the model presets, and their batch per model
CACHE_LENS = (1024, 4096, 8192, 16384, 32768, 65536, 131072)
DECODE_BATCH = {"llama3-8b": 16, "llama3-70b": 8, "llama3.2-1b": 32}
#: batches of the ``<model>-batch`` decode presets, at L = BATCH_CACHE_LEN
BATCHES = (1, 4, 16, 64)
BATCH_CACHE_LEN = 8192

ODD_PREFILL = ((1, 8, 2, 1000, 128), (1, 4, 4, 4097, 64), (1, 4, 2, 67, 64))
ODD_DECODE = ((1, 4, 2, 131, 64), (3, 12, 4, 1000, 128), (2, 32, 8, 8191, 128), (1, 8, 8, 4097, 64))


def _prefill_presets() -> tuple[Preset, ...]:
    out = []
    for model, (hq, hkv, d) in MODELS.items():
        out.append(
            Preset(
                model,
                f"{model} prefill: one prompt, {hq} query / {hkv} KV heads of D = {d}, "
                f"N = {', '.join(map(str, SEQ_LENS))}",
                tuple((1, hq, hkv, n, d) for n in SEQ_LENS),
                sweep_dim=3,
            )
        )
    out.append(Preset("odd", "N a multiple of no block size (edge blocks, masking)", ODD_PREFILL))
    return tuple(out)


def _decode_presets() -> tuple[Preset, ...]:
    out = []
    for model, (hq, hkv, d) in MODELS.items():
        b = DECODE_BATCH[model]
        out.append(
            Preset(
                model,
                f"{model} decode: batch {b}, {hq} query / {hkv} KV heads of D = {d}, "
                f"L = {', '.join(map(str, CACHE_LENS))}",
                tuple((b, hq, hkv, n, d) for n in CACHE_LENS),
                sweep_dim=3,
            )
        )
        out.append(
            Preset(
                f"{model}-batch",
                f"{model} decode at L = {BATCH_CACHE_LEN}, batch {', '.join(map(str, BATCHES))} "
                "(B = 1: a 34 MB cache, L2-resident on H100 under --l2 warm)",
                tuple((b, hq, hkv, BATCH_CACHE_LEN, d) for b in BATCHES),
                sweep_dim=0,
            )
        )
    out.append(
        Preset("odd", "L a multiple of no block size; G = 3 and G = 1 head groups", ODD_DECODE)
    )
    return tuple(out)


def _check(shape: Shape, family: str) -> tuple[int, int, int, int, int]:
    if len(shape) != 5 or min(shape) < 1:
        raise ShapeError(
            f"{family} shape {shape} is not 5 positive sizes",
            "write it as BxHQxHKVxNxD, e.g. 1x32x8x4096x128",
        )
    b, hq, hkv, n, d = shape
    check_heads(hq, hkv)
    return b, hq, hkv, n, d


def prefill_work(shape: Shape, dtype: str, *, causal: bool) -> Work:
    """``4 * B * HQ * N^2 * D`` FLOPs (halved when causal); q, k, v read and o written once."""
    b, hq, hkv, n, d = _check(shape, "prefill")
    flops = 4.0 * b * hq * n * n * d / (2 if causal else 1)
    elements = 2 * b * hq * n * d + 2 * b * hkv * n * d  # q + o, k + v
    return Work(flops=flops, bytes=elements * DTYPE_BYTES[dtype], dtype=dtype)


def decode_work(shape: Shape, dtype: str) -> Work:
    """``4 * B * HQ * L * D`` FLOPs; bytes: the KV cache (``2 * B * HKV * L * D``) + q + o."""
    b, hq, hkv, length, d = _check(shape, "decode")
    elements = 2 * b * hkv * length * d + 2 * b * hq * d
    return Work(flops=4.0 * b * hq * length * d, bytes=elements * DTYPE_BYTES[dtype], dtype=dtype)


def _randn(shape: tuple[int, ...], dtype, gen, device):
    """Seeded standard normal values rounded to ``dtype``, made in slices of <= 2**26."""
    import torch

    out = torch.empty(shape, dtype=dtype, device=device)
    flat = out.view(-1)
    step = 2**26
    for i in range(0, flat.numel(), step):
        n = min(step, flat.numel() - i)
        flat[i : i + n] = torch.randn(n, generator=gen, device=device, dtype=torch.float32)
    return out


def make_inputs(shape: Shape, dtype: str, seed: int, device: str, *, family: str) -> Inputs:
    """Seeded random q, k, v (``[B, H, N, D]``, contiguous) and an output of q's shape."""
    import torch

    b, hq, hkv, n, d = _check(shape, family)
    nq = 1 if family == "decode" else n
    storage = getattr(torch, TORCH_DTYPES[dtype])
    gen = torch.Generator(device=device).manual_seed(seed)
    tensors = {
        "q": _randn((b, hq, nq, d), storage, gen, device),
        "k": _randn((b, hkv, n, d), storage, gen, device),
        "v": _randn((b, hkv, n, d), storage, gen, device),
    }
    out = torch.empty(b, hq, nq, d, device=device, dtype=storage)
    return Inputs(family, tuple(shape), dtype, seed, str(device), tensors, out)


def reference(inputs: Inputs, device: str, *, causal: bool):
    """float64 attention output (out's shape) computed on ``device``."""
    o, _lse = attention_float64(inputs["q"], inputs["k"], inputs["v"], causal=causal, device=device)
    return o


def _family(
    name: str, description: str, dims, presets, impls, *, causal: bool, suite: Suite
) -> Family:
    def inputs(shape, dtype, seed, device):
        return make_inputs(shape, dtype, seed, device, family=name)

    def ref(inp, device):
        return reference(inp, device, causal=causal)

    def work(shape, dtype):
        if name == "decode":
            return decode_work(shape, dtype)
        return prefill_work(shape, dtype, causal=causal)

    return Family(
        name=name,
        description=description,
        dims=dims,
        dtypes=DTYPES,
        presets=presets,
        impls=impls,
        make_inputs=inputs,
        reference=ref,
        work=work,
        suite=suite,
    )


PREFILL = _family(
    "prefill",
    "causal attention forward, FlashAttention-2 style: q [B,HQ,N,D], k, v [B,HKV,N,D]; "
    "shapes BxHQxHKVxNxD",
    ("B", "HQ", "HKV", "N", "D"),
    _prefill_presets(),
    (vendor.impl(causal=True), triton_impl.prefill(causal=True), cupy_impl.prefill(causal=True)),
    causal=True,
    # quick: bf16 Llama-3 8B at N = 4096 (compute-bound)
    suite=Suite(
        full=("llama3-8b", "llama3-70b", "llama3.2-1b", "odd"),
        quick=("llama3-8b@4096",),
        quick_dtypes=("bf16",),
    ),
)

PREFILL_FULL = _family(
    "prefill-full",
    "non-causal attention forward (every query sees every key); shapes BxHQxHKVxNxD",
    ("B", "HQ", "HKV", "N", "D"),
    _prefill_presets(),
    (vendor.impl(causal=False), triton_impl.prefill(causal=False), cupy_impl.prefill(causal=False)),
    causal=False,
    suite=Suite(full=("llama3-8b", "llama3.2-1b", "odd"), quick=()),
)

DECODE = _family(
    "decode",
    "one query token per sequence against a KV cache of L tokens, split-KV (flash-decoding): "
    "q [B,HQ,1,D], k, v [B,HKV,L,D]; shapes BxHQxHKVxLxD",
    ("B", "HQ", "HKV", "L", "D"),
    _decode_presets(),
    (vendor.impl(causal=False), triton_impl.decode(), cupy_impl.decode()),
    causal=False,
    # quick: bf16 Llama-3 8B (batch 16) against an 8192-token cache (memory-bound)
    suite=Suite(
        full=("llama3-8b", "llama3-70b", "llama3-8b-batch", "llama3.2-1b", "odd"),
        quick=("llama3-8b@8192",),
        quick_dtypes=("bf16",),
    ),
)

FAMILIES = (PREFILL, PREFILL_FULL, DECODE)
