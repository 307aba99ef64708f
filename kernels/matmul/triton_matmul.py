"""Triton matmul: C = scale_a * scale_b * (A @ B): tiled, persistent (TMA or pointers), split-K.

Operands are 2-D: A is (M, K), B is (K, N), C is (M, N); sizes and strides are counted in
elements, and any strides work (row-major, transposed views, slices). Every size M, N, K >= 1 is
correct: loads and stores are masked, so no size needs to be a multiple of a block.

Invariants:

* Accumulation is fp32 for every input dtype; C is written once, rounded to its dtype. Split-K
  is deterministic: its fp32 partials are added in split order, whichever program finishes
  last, and no atomic touches C (only a per-tile arrival counter).
* fp16 / bf16 inputs give C of the same dtype. fp32 inputs give fp32; ``allow_tf32=False`` (the
  default) means exact IEEE fp32 products (``input_precision="ieee"``), ``True`` lets the tensor
  cores round inputs to tf32 (10-bit mantissa).
* fp8 means ``torch.float8_e4m3fn`` inputs; C is bf16 unless another of fp16 / bf16 / fp32 is
  asked for. On Hopper the fp8 products of each BLOCK_K slice are added into the fp32 accumulator
  (``max_num_imprecise_acc=BLOCK_K``), not accumulated in the tensor cores' reduced precision over
  all of K -- unless ``fast_accum=True`` (the ``triton-fastacc`` impl): then Triton's fp8 default
  holds, reduced-precision accumulation over all of K on sm_90 (as cuBLAS ``use_fast_accum``),
  with configs of its own (``"fp8-fastacc"``). fp8 needs compute capability >= 8.9 on a real
  GPU. For tensor-core-friendly fp8, pass B K-contiguous (``b_t.T`` of an (N, K) row-major
  tensor); any layout is correct.
* ``scale_a`` / ``scale_b`` are per-tensor float32 multipliers (0-d or 1-element tensors on the
  operands' device, or Python floats), applied to the fp32 accumulator before rounding; they are
  read on the device at each launch, so updating them in place needs no new launch closure.

Tiling: programs are mapped to output tiles in GROUP_M super-rows (consecutive programs share
A rows and sweep a band of B columns, which keeps both in L2). The persistent variant launches at
most one program per SM, each looping over tiles with a stride of the grid size in the same order.
Where the operands allow TMA (:func:`tma_reason`: Triton's host tensor descriptors, compute
capability >= 9.0, tensor-core math, unit-stride rows, 16-byte aligned bases and row strides) the
persistent launch runs the TMA kernel instead (``variant`` ``"tma-persistent"``): operands move
by tensor descriptors, and each program runs ONE flattened loop over all its (tile, K block)
steps, storing a tile at its last K block, so the software pipeline does not drain between tiles.
The pointer kernels stay the fallback (any strides or alignment, older Triton, IEEE fp32, pre-
Hopper GPUs); the launch's ``tma_unavailable`` says why a persistent launch fell back.
Split-K (for skinny problems whose tile grid fills a fraction of the SMs) runs ``tiles * splits``
programs, each over one slice of K, into an fp32 workspace (splits, M, N); the last program of a
tile to arrive reduces the slices in order, scales, rounds and stores, and resets the tile's
counter (workspace and counters are allocated by ``make_launch``, once).

Autotuning: the GPU configs of the input kind (16-bit, fp32 / tf32, fp8, fp8 fast accumulation:
``gpu_configs``; the autotuner prunes the others) are tuned per (M, N, K) *bucket* -- each size
rounded up to a power of two and clamped to [16, 16384] -- plus dtypes, fp32 precision, scaling
and fast accumulation, so odd sizes in one bucket reuse one tuned config. The TMA kernel tunes
the same tiles (``tma_gpu_configs``, each with a pre-hook that gives the descriptors the config's
block shapes); split-K has configs of its own (``split_gpu_configs``). Under ``TRITON_INTERPRET``
(read at import, like Triton itself) each kernel has one small 32x32x32 config instead: the
interpreter is too slow to tune, and its timings would mean nothing. Every kernel, TMA included,
runs in the interpreter.

Persistent rule: with ``persistent=None``, the persistent kernel is used when the problem has at
least ``PERSISTENT_MIN_WAVES`` (4) full waves of 128x128 reference tiles on the device's SMs, i.e.
``cdiv(M, 128) * cdiv(N, 128) >= 4 * SMs``; the interpreter counts
``triton_support.INTERPRETER_NUM_SMS``.

Split-K rule (``split_k=None``, :func:`split_k_plan`): M <= ``SPLIT_K_MAX_M`` (64) only; tiles
of M's next power of two (16..64) x 64 (the host fixes them, so the grid is known); as many splits
as one wave of ``SPLIT_K_PROGRAMS_PER_SM`` (2) programs per SM holds, each at least 512 of K long
and a multiple of 128 (every split BLOCK_K); never an empty split. On 132 SMs
``llama3-8b-qkv@16`` (16x6144x4096, 96 tiles) gets 2 splits, 1x4096x4096 gets 4. The split
configs (``split_gpu_configs``) tune BLOCK_K, warps and stages only.

``make_launch`` validates and precomputes everything once; its closure only launches (the first
call autotunes and compiles, so warm up before measuring).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from wattbench.kernels.env import triton_interpreting
from wattbench.kernels.errors import ShapeError, UnknownKernelError, UsageError
from wattbench.kernels.triton_support import (
    gemm_config,
    grouped_tile,
    last_to_arrive,
    num_sms,
    reset_counter,
    size_bucket,
)

#: dtype names of the wattbench vocabulary this implementation supports
SUPPORTED_DTYPES: tuple[str, ...] = ("fp16", "bf16", "fp32", "fp8")

_TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
    "fp8": torch.float8_e4m3fn,
}
_NAMES: dict[torch.dtype, str] = {v: k for k, v in _TORCH_DTYPES.items()}
#: output dtypes allowed for fp8 inputs (the first is the default)
_FP8_OUT_DTYPES: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16, torch.float32)

_INTERPRET = triton_interpreting()

#: use the persistent kernel from this many waves of 128x128 tiles per SM (persistent=None)
PERSISTENT_MIN_WAVES = 4
_REFERENCE_TILE = 128


#: GPU configs per input kind (:func:`config_kind`), each compiled for sm_90a without spills and
#: within 227 KiB of shared memory in the tiled, pointer-persistent and (but IEEE fp32) TMA
#: kernels (``tests/kernels/test_compile_sm90.py``, the table: ``python -m
#: wattbench.kernels.compile_report --kernel matmul``). Every BLOCK_K >= 32 (fp8 needs it).
_GPU_CONFIGS_BY_KIND: dict[str, list[triton.Config]] = {
    "16-bit": [
        gemm_config(128, 256, 64, 8, 8, 3),  # large square problems (Hopper / Ampere)
        gemm_config(128, 128, 64, 8, 4, 4),
        gemm_config(128, 64, 64, 8, 4, 4),
        gemm_config(64, 128, 64, 8, 4, 4),
        gemm_config(64, 64, 64, 8, 4, 3),
        gemm_config(64, 64, 32, 8, 4, 3),  # small shared memory (L4)
        gemm_config(16, 64, 128, 1, 2, 3),  # decode-like M <= 16 (4 warps spill on sm_90a)
    ],
    # fp32 (IEEE or tf32): 4-byte elements halve the tile a warp can hold; 128x128 tiles need 8
    # warps and BLOCK_K = 32
    "fp32": [
        gemm_config(128, 128, 32, 8, 8, 3),
        gemm_config(128, 64, 64, 8, 8, 3),
        gemm_config(64, 64, 64, 8, 4, 3),
        gemm_config(64, 64, 32, 8, 4, 3),
        gemm_config(16, 64, 128, 1, 4, 3),
    ],
    # fp8: the fp32 accumulator and the partial one of the precise accumulation
    # (max_num_imprecise_acc=BLOCK_K) both live in registers: 128x128 tiles need 8 warps
    "fp8": [
        gemm_config(128, 128, 128, 8, 8, 3),
        gemm_config(128, 128, 64, 8, 8, 4),
        gemm_config(128, 64, 64, 8, 4, 4),
        gemm_config(64, 128, 64, 8, 4, 4),
        gemm_config(64, 64, 64, 8, 4, 3),
        gemm_config(64, 64, 32, 8, 4, 3),
        gemm_config(16, 64, 128, 1, 4, 3),
    ],
    # fp8 fast accumulation (FAST_ACC): no partial accumulator, so 128x256 tiles fit 8 warps
    "fp8-fastacc": [
        gemm_config(128, 256, 128, 8, 8, 3),
        gemm_config(128, 128, 128, 8, 8, 4),
        gemm_config(64, 128, 128, 8, 4, 4),
        gemm_config(64, 64, 128, 8, 4, 4),
        gemm_config(16, 64, 128, 1, 4, 3),
    ],
}
_GPU_CONFIGS: list[triton.Config] = [c for cs in _GPU_CONFIGS_BY_KIND.values() for c in cs]
#: the one config used under TRITON_INTERPRET
_INTERPRETER_CONFIG = gemm_config(32, 32, 32, 4, 4, 1)
_CONFIGS: list[triton.Config] = [_INTERPRETER_CONFIG] if _INTERPRET else _GPU_CONFIGS


def _split_config(bk: int, warps: int, stages: int) -> triton.Config:
    """A split-K config: BLOCK_M and BLOCK_N are the host's (:func:`split_k_plan`), not tuned."""
    return triton.Config({"BLOCK_K": bk}, num_warps=warps, num_stages=stages)


@dataclass(frozen=True)
class SplitGeometry:
    """What the split-K rule plans with: the tile width ``block_n`` (the tile height is M's next
    power of two in [16, 64]), the K granule ``k_multiple`` every split's length is a multiple of
    (the largest BLOCK_K of the split configs), and the least K per split ``min_k`` the automatic
    rule gives (a 64x64 tile's fp32 partial then adds at most ~1/8 of its 16-bit operand
    traffic)."""

    block_n: int
    k_multiple: int
    min_k: int


#: split-K geometry on a GPU and under the interpreter (whose config has BLOCK_K = 32)
GPU_SPLIT = SplitGeometry(block_n=64, k_multiple=128, min_k=512)
INTERPRETER_SPLIT = SplitGeometry(block_n=32, k_multiple=32, min_k=32)
_SPLIT = INTERPRETER_SPLIT if _INTERPRET else GPU_SPLIT

#: split-K configs per input kind (BLOCK_K, warps, stages); every BLOCK_K divides
#: GPU_SPLIT.k_multiple. Compiled for sm_90a at every tile height (16, 32, 64) x 64.
_SPLIT_GPU_CONFIGS_BY_KIND: dict[str, list[triton.Config]] = {
    "16-bit": [_split_config(128, 4, 4), _split_config(64, 4, 6), _split_config(128, 8, 3)],
    "fp32": [_split_config(32, 4, 4), _split_config(64, 4, 3)],
    "fp8": [_split_config(128, 4, 5), _split_config(128, 8, 4)],
}
# fast accumulation frees no registers a 64-wide split tile needs: the fp8 list serves both
_SPLIT_GPU_CONFIGS_BY_KIND["fp8-fastacc"] = _SPLIT_GPU_CONFIGS_BY_KIND["fp8"]
_SPLIT_GPU_CONFIGS = list(
    {id(c): c for cs in _SPLIT_GPU_CONFIGS_BY_KIND.values() for c in cs}.values()
)
_SPLIT_CONFIGS: list[triton.Config] = (
    [_split_config(32, 4, 1)] if _INTERPRET else _SPLIT_GPU_CONFIGS
)

#: split-K rule: only M <= SPLIT_K_MAX_M; aim at this many programs per SM (one wave)
SPLIT_K_MAX_M = 64
SPLIT_K_PROGRAMS_PER_SM = 2


def config_kind(dtype: str, fast_acc: bool = False) -> str:
    """The config list (``"16-bit"``, ``"fp32"``, ``"fp8"``, ``"fp8-fastacc"``) inputs of a
    family dtype name (``bf16``, ``fp16``, ``fp32``, ``tf32``, ``fp8``) tune over; ``fast_acc``
    (fp8 only) selects the fast-accumulation list."""
    kind = {"bf16": "16-bit", "fp16": "16-bit", "tf32": "fp32"}.get(dtype, dtype)
    return "fp8-fastacc" if kind == "fp8" and fast_acc else kind


def gpu_configs(kind: str) -> list[triton.Config]:
    """The GPU configs the autotuner can choose for inputs of ``kind`` (:func:`config_kind`)."""
    return _GPU_CONFIGS_BY_KIND[kind]


def tma_gpu_configs(kind: str) -> list[triton.Config]:
    """The GPU configs the autotuner can choose for a TMA persistent launch of ``kind``."""
    return _TMA_GPU_CONFIGS_BY_KIND[kind]


def split_gpu_configs(kind: str) -> list[triton.Config]:
    """The GPU configs the autotuner can choose for a split-K launch of inputs of ``kind``."""
    return _SPLIT_GPU_CONFIGS_BY_KIND[kind]


def _pruner(by_kind: dict[str, list[triton.Config]]) -> Callable[..., list[triton.Config]]:
    """The autotuner's early pruning: only the configs of the launch's input kind (its A dtype
    and FAST_ACC) in ``by_kind`` (none pruned under the interpreter: its one config is for
    every launch)."""

    def prune(
        configs: list[triton.Config], named_args: dict, **meta: object
    ) -> list[triton.Config]:
        if _INTERPRET:
            return configs
        a = named_args["a_desc"].base if "a_desc" in named_args else named_args["a_ptr"]
        kind = config_kind(_NAMES[a.dtype], bool(meta.get("FAST_ACC")))
        keep = by_kind[kind]
        return [c for c in configs if any(c is k for k in keep)]

    return prune


_prune = _pruner(_GPU_CONFIGS_BY_KIND)
_PRUNE = {"early_config_prune": _prune}
_prune_split = _pruner(_SPLIT_GPU_CONFIGS_BY_KIND)
_PRUNE_SPLIT = {"early_config_prune": _prune_split}
_TUNE_KEY = ["M_BUCKET", "N_BUCKET", "K_BUCKET", "INPUT_PRECISION", "HAS_SCALE", "FAST_ACC"]


def _tensor_descriptor_class() -> type | None:
    """Triton's host-side ``TensorDescriptor`` (Triton >= 3.4), or None when this Triton lacks
    it or ``tl.tensor_descriptor`` (then the TMA kernel is never chosen)."""
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor
    except ImportError:
        return None
    return TensorDescriptor if hasattr(tl, "tensor_descriptor") else None


_TENSOR_DESCRIPTOR = _tensor_descriptor_class()


def tma_descriptors_available() -> bool:
    """Whether this Triton has the tensor descriptors the TMA kernel needs."""
    return _TENSOR_DESCRIPTOR is not None


def _set_block_shapes(nargs: dict) -> None:
    """A TMA config's pre-hook: the descriptors' block shapes are the config's tiles."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bm, bk]
    nargs["b_desc"].block_shape = [bn, bk] if nargs["B_KMAJOR"] else [bk, bn]
    nargs["c_desc"].block_shape = [bm, bn]


def _tma_config(c: triton.Config) -> triton.Config:
    return triton.Config(
        dict(c.kwargs), num_warps=c.num_warps, num_stages=c.num_stages, pre_hook=_set_block_shapes
    )


#: TMA persistent configs per input kind: the tile kernels' configs, each with the pre-hook
_TMA_GPU_CONFIGS_BY_KIND: dict[str, list[triton.Config]] = {
    kind: [_tma_config(c) for c in cs] for kind, cs in _GPU_CONFIGS_BY_KIND.items()
}
_TMA_GPU_CONFIGS = [c for cs in _TMA_GPU_CONFIGS_BY_KIND.values() for c in cs]
_TMA_CONFIGS = [_tma_config(_INTERPRETER_CONFIG)] if _INTERPRET else _TMA_GPU_CONFIGS
_prune_tma = _pruner(_TMA_GPU_CONFIGS_BY_KIND)
_PRUNE_TMA = {"early_config_prune": _prune_tma}


# --- device code ----------------------------------------------------------------------------------


@triton.jit
def _dot(
    a,
    b,
    acc,
    BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    IS_FP8: tl.constexpr,
    FAST_ACC: tl.constexpr,
):
    """``acc + a @ b`` in the precision the launch asked for."""
    if IS_FP8 and FAST_ACC:
        # Triton's fp8 default: on sm_90 the tensor cores accumulate over all of K in their
        # reduced precision (max_num_imprecise_acc 2**30), as cuBLAS use_fast_accum
        acc = tl.dot(a, b, acc)
    elif IS_FP8:
        # promote the tensor cores' partial sums into fp32 after every BLOCK_K products
        acc = tl.dot(a, b, acc, max_num_imprecise_acc=BLOCK_K)
    else:
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    return acc


@triton.jit
def _tile_acc(
    a_ptr,
    b_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    row0,
    col0,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    IS_FP8: tl.constexpr,
    FAST_ACC: tl.constexpr,
):
    """The fp32 BLOCK_M x BLOCK_N accumulator of rows ``row0 + [0, BLOCK_M)`` and columns
    ``col0 + [0, BLOCK_N)`` over K (A and B start at the first K element to add); masked edges."""
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M - row0
    col_ok = cols < N - col0
    a_ptrs = a_ptr + row0 * stride_am + (rows[:, None] * stride_am + ks[None, :] * stride_ak)
    b_ptrs = b_ptr + col0 * stride_bn + (ks[:, None] * stride_bk + cols[None, :] * stride_bn)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        k_ok = ks < K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        acc = _dot(a, b, acc, BLOCK_K, INPUT_PRECISION, IS_FP8, FAST_ACC)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    return acc


@triton.jit
def _store_tile(
    c_ptr,
    acc,
    scale_a_ptr,
    scale_b_ptr,
    M,
    N,
    stride_cm,
    stride_cn,
    row0,
    col0,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_SCALE: tl.constexpr,
):
    """Scale the fp32 tile ``acc`` (origin ``row0``, ``col0``), round it to C's dtype, store it."""
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    if HAS_SCALE:
        acc = acc * (tl.load(scale_a_ptr) * tl.load(scale_b_ptr))
    c_ptrs = c_ptr + row0 * stride_cm + col0 * stride_cn
    c_ptrs += rows[:, None] * stride_cm + cols[None, :] * stride_cn
    ok = (rows < M - row0)[:, None] & (cols < N - col0)[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _matmul_tile(
    a_ptr,
    b_ptr,
    c_ptr,
    scale_a_ptr,
    scale_b_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    pid_m,
    pid_n,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    IS_FP8: tl.constexpr,
    FAST_ACC: tl.constexpr,
):
    """Compute and store one BLOCK_M x BLOCK_N tile of C over all of K."""
    # 64-bit tile origins (large operands overflow int32 offsets); in-tile offsets stay 32-bit.
    row0 = pid_m.to(tl.int64) * BLOCK_M
    col0 = pid_n.to(tl.int64) * BLOCK_N
    acc = _tile_acc(
        a_ptr, b_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, row0, col0,
        BLOCK_M, BLOCK_N, BLOCK_K, INPUT_PRECISION, IS_FP8, FAST_ACC,
    )  # fmt: skip
    _store_tile(
        c_ptr, acc, scale_a_ptr, scale_b_ptr, M, N, stride_cm, stride_cn, row0, col0,
        BLOCK_M, BLOCK_N, HAS_SCALE,
    )  # fmt: skip


@triton.autotune(configs=_SPLIT_CONFIGS, key=_TUNE_KEY, prune_configs_by=_PRUNE_SPLIT)
@triton.jit
def _matmul_split_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    scale_a_ptr,
    scale_b_ptr,
    ws_ptr,
    cnt_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    k_per_split,
    num_splits,
    M_BUCKET,  # autotune key only
    N_BUCKET,
    K_BUCKET,
    INPUT_PRECISION: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    IS_FP8: tl.constexpr,
    FAST_ACC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Split-K: grid = tiles * num_splits; program p computes tile p % tiles over K slice
    p // tiles (``[s * k_per_split, min(K, (s + 1) * k_per_split))``, never empty: the host's
    plan guarantees it) into an fp32 partial of the workspace (split, M, N). The last program of a
    tile to arrive (an acq_rel counter per tile, after a block barrier) adds the partials in
    split order -- deterministic, whichever program arrives last --, scales, rounds and stores C,
    and resets the counter to 0, so launches need no memset and no atomics touch C."""
    num_n = tl.cdiv(N, BLOCK_N)
    num_tiles = tl.cdiv(M, BLOCK_M) * num_n
    pid = tl.program_id(0)
    tile = pid % num_tiles
    split = pid // num_tiles
    row0 = (tile // num_n).to(tl.int64) * BLOCK_M
    col0 = (tile % num_n).to(tl.int64) * BLOCK_N
    k0 = split.to(tl.int64) * k_per_split
    k_len = tl.minimum(K - k0, k_per_split)
    acc = _tile_acc(
        a_ptr + k0 * stride_ak, b_ptr + k0 * stride_bk, M, N, k_len,
        stride_am, stride_ak, stride_bk, stride_bn, row0, col0,
        BLOCK_M, BLOCK_N, BLOCK_K, INPUT_PRECISION, IS_FP8, FAST_ACC,
    )  # fmt: skip
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    ok = (rows < M - row0)[:, None] & (cols < N - col0)[None, :]
    part = ws_ptr + row0 * N + col0 + (rows[:, None] * N + cols[None, :])
    slice_size = tl.cast(M, tl.int64) * N  # M == 1 arrives as a constant int: no .to()
    tl.store(part + split * slice_size, acc, mask=ok)
    if last_to_arrive(cnt_ptr + tile, num_splits):  # the last of this tile: sum in split order
        total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for s in range(0, num_splits):
            total += tl.load(part + s * slice_size, mask=ok, other=0.0, cache_modifier=".cg")
        _store_tile(
            c_ptr, total, scale_a_ptr, scale_b_ptr, M, N, stride_cm, stride_cn, row0, col0,
            BLOCK_M, BLOCK_N, HAS_SCALE,
        )  # fmt: skip
        reset_counter(cnt_ptr + tile)


@triton.autotune(configs=_CONFIGS, key=_TUNE_KEY, prune_configs_by=_PRUNE)
@triton.jit
def _matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    scale_a_ptr,
    scale_b_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    M_BUCKET,  # autotune key only
    N_BUCKET,
    K_BUCKET,
    INPUT_PRECISION: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    IS_FP8: tl.constexpr,
    FAST_ACC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """One program per output tile, grid = cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N)."""
    pid_m, pid_n = grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    _matmul_tile(
        a_ptr, b_ptr, c_ptr, scale_a_ptr, scale_b_ptr, M, N, K,
        stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
        pid_m, pid_n, BLOCK_M, BLOCK_N, BLOCK_K, INPUT_PRECISION, HAS_SCALE, IS_FP8, FAST_ACC,
    )  # fmt: skip


@triton.autotune(configs=_CONFIGS, key=_TUNE_KEY, prune_configs_by=_PRUNE)
@triton.jit
def _matmul_persistent_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    scale_a_ptr,
    scale_b_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    M_BUCKET,  # autotune key only
    N_BUCKET,
    K_BUCKET,
    INPUT_PRECISION: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    IS_FP8: tl.constexpr,
    FAST_ACC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """Grid = min(SMs, tiles); program p computes tiles p, p + grid, p + 2 * grid, ..."""
    num_tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N)
    num_programs = tl.num_programs(0)
    for tile_id in range(tl.program_id(0), num_tiles, num_programs):
        pid_m, pid_n = grouped_tile(tile_id, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        _matmul_tile(
            a_ptr, b_ptr, c_ptr, scale_a_ptr, scale_b_ptr, M, N, K,
            stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
            pid_m, pid_n, BLOCK_M, BLOCK_N, BLOCK_K, INPUT_PRECISION, HAS_SCALE, IS_FP8, FAST_ACC,
        )  # fmt: skip


#: descriptors carry no dtype the autotuner could see: the TMA key names dtypes and layout
_TMA_TUNE_KEY = [*_TUNE_KEY, "IS_FP8", "B_KMAJOR", "DTYPES"]


@triton.autotune(configs=_TMA_CONFIGS, key=_TMA_TUNE_KEY, prune_configs_by=_PRUNE_TMA)
@triton.jit
def _matmul_tma_kernel(
    a_desc,
    b_desc,
    c_desc,
    scale_a_ptr,
    scale_b_ptr,
    M,
    N,
    K,
    M_BUCKET,  # autotune key only
    N_BUCKET,
    K_BUCKET,
    INPUT_PRECISION: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    IS_FP8: tl.constexpr,
    FAST_ACC: tl.constexpr,
    B_KMAJOR: tl.constexpr,
    DTYPES: tl.constexpr,  # autotune key only: "<A dtype>-><C dtype>"
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """TMA persistent: grid = min(SMs, tiles); program p owns tiles p, p + grid, ... (grouped
    order) and runs ONE loop over all its (tile, K block) steps, so the software pipeline keeps
    loading the next tile's blocks while the last MMAs of a tile finish (no drain per tile).
    Operands come through tensor descriptors (A (M, K) and C (M, N) row-major; B (K, N)
    row-major, or K-major when B_KMAJOR: its descriptor is over B^T (N, K)); TMA zero-fills
    loads past the edges and clips the store, so nothing is masked."""
    num_tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N)
    k_blocks = tl.cdiv(K, BLOCK_K)
    pid = tl.program_id(0)
    grid = tl.num_programs(0)
    steps = tl.cdiv(num_tiles - pid, grid) * k_blocks  # the grid never exceeds the tiles
    scale = 1.0
    if HAS_SCALE:
        scale = tl.load(scale_a_ptr) * tl.load(scale_b_ptr)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for step in range(0, steps):
        # every address is a function of the step alone: the pipeline prefetches across tiles
        pid_m, pid_n = grouped_tile(
            pid + (step // k_blocks) * grid, M, N, BLOCK_M, BLOCK_N, GROUP_M
        )
        kb = step % k_blocks
        row0 = pid_m * BLOCK_M
        col0 = pid_n * BLOCK_N
        a = a_desc.load([row0, kb * BLOCK_K])
        if B_KMAJOR:  # noqa: SIM108  (a constexpr branch reads clearer)
            b = b_desc.load([col0, kb * BLOCK_K]).T
        else:
            b = b_desc.load([kb * BLOCK_K, col0])
        acc = _dot(a, b, acc, BLOCK_K, INPUT_PRECISION, IS_FP8, FAST_ACC)
        if kb == k_blocks - 1:  # the tile's last K block: scale, round, store, start afresh
            c_desc.store([row0, col0], (acc * scale).to(c_desc.dtype))
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)


# --- host side ------------------------------------------------------------------------------------


def use_persistent(m: int, n: int, sms: int) -> bool:
    """The automatic choice: at least PERSISTENT_MIN_WAVES waves of 128x128 tiles on ``sms``."""
    tiles = triton.cdiv(m, _REFERENCE_TILE) * triton.cdiv(n, _REFERENCE_TILE)
    return tiles >= PERSISTENT_MIN_WAVES * sms


@dataclass(frozen=True)
class SplitPlan:
    """A split-K launch: ``splits`` slices of K, each ``k_per_split`` long (the last may be
    shorter, none is empty), over ``tiles`` tiles of ``block_m`` x ``block_n``."""

    splits: int
    k_per_split: int
    block_m: int
    block_n: int
    tiles: int


def split_k_plan(
    m: int,
    n: int,
    k: int,
    sms: int,
    split_k: int | None = None,
    geometry: SplitGeometry = _SPLIT,
) -> SplitPlan:
    """The split-K plan of an M x N x K problem on ``sms`` SMs.

    Tiles are ``block_m`` x ``geometry.block_n`` with ``block_m`` M's next power of two in
    [16, 64]. The rule (``split_k=None``): M > SPLIT_K_MAX_M gives 1 split; otherwise as many
    splits as one wave of SPLIT_K_PROGRAMS_PER_SM programs per SM holds
    (``floor(2 * sms / tiles)``), at most ``k // geometry.min_k``, at least 1. A given
    ``split_k`` (>= 1) is taken as the wish instead. Either way the wish becomes a K length per
    split, a multiple of ``geometry.k_multiple``, and the splits actually made are
    ``cdiv(k, k_per_split)``: never one with no K to do (a wish above what K holds gives fewer).
    """
    block_m = min(max(triton.next_power_of_2(m), 16), 64)
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, geometry.block_n)
    if split_k is None:
        want = 1
        if m <= SPLIT_K_MAX_M:
            want = min(SPLIT_K_PROGRAMS_PER_SM * sms // tiles, k // geometry.min_k)
    else:
        want = split_k
    granules = triton.cdiv(k, geometry.k_multiple)
    want = max(1, min(want, granules))
    k_per_split = triton.cdiv(granules, want) * geometry.k_multiple
    return SplitPlan(triton.cdiv(k, k_per_split), k_per_split, block_m, geometry.block_n, tiles)


#: TMA's alignment: base addresses and the leading stride in bytes are multiples of this
TMA_ALIGN_BYTES = 16


def _fast_accum_effective(device: torch.device) -> bool:
    """Whether fp8 fast accumulation differs from the precise path on ``device``: Triton lowers
    fp8 dots with reduced-precision accumulation by default only for compute capability 9.0."""
    if _INTERPRET or device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) == (9, 0)


def tma_reason(
    a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, allow_tf32: bool = False
) -> str | None:
    """Why the TMA kernel cannot take these operands (None: it can). It needs Triton's tensor
    descriptors, tensor-core math (not IEEE fp32: its CUDA-core dot spills registers by the
    kilobyte when fed from TMA's shared-memory layout on sm_90a), compute capability >= 9.0 (or
    the interpreter), A and C row-major and B row-major or K-major (unit stride in their last
    or, for B, first dimension), and every base address and leading stride 16-byte aligned."""
    if not tma_descriptors_available():
        return f"Triton {triton.__version__} has no host tensor descriptors"
    if a.dtype == torch.float32 and not allow_tf32:
        return "IEEE fp32 products do not run on tensor cores (allow_tf32=True would)"
    if a.dtype == torch.float8_e4m3fn and out.dtype != torch.bfloat16:
        # the TMA store stages C in shared memory: an fp16 / fp32 C is compiled for no config
        # (fp32 C under 128x256x128 would need ~272 KiB)
        return f"fp8 with {str(out.dtype).removeprefix('torch.')} output (TMA: bf16 only)"
    if not _INTERPRET:
        if a.device.type != "cuda":
            return "TMA needs a CUDA device"
        cap = torch.cuda.get_device_capability(a.device)
        if cap < (9, 0):
            return f"TMA needs compute capability >= 9.0, {a.device} has {cap[0]}.{cap[1]}"
    b_lead = b.stride(0) if b.stride(1) == 1 else b.stride(1) if b.stride(0) == 1 else None
    leads = {"A": a.stride(0) if a.stride(1) == 1 else None, "B": b_lead}
    leads["C"] = out.stride(0) if out.stride(1) == 1 else None
    for what, t in (("A", a), ("B", b), ("C", out)):
        lead = leads[what]
        if lead is None:
            return f"{what} has no unit stride (strides {tuple(t.stride())})"
        if (lead * t.element_size()) % TMA_ALIGN_BYTES or t.data_ptr() % TMA_ALIGN_BYTES:
            return f"{what}'s base or leading stride is not {TMA_ALIGN_BYTES}-byte aligned"
    return None


def _descriptors(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> tuple[object, ...]:
    """(A, B, C descriptors, B K-major): B's is over B^T (N, K) when B is K-major; the block
    shapes are placeholders the config's pre-hook sets."""
    desc = _TENSOR_DESCRIPTOR
    assert desc is not None
    (m, k), n = a.shape, b.shape[1]
    b_kmajor = b.stride(1) != 1
    block = [16, 16]
    a_desc = desc(a, [m, k], [a.stride(0), 1], block)
    if b_kmajor:
        b_desc = desc(b, [n, k], [b.stride(1), 1], block)
    else:
        b_desc = desc(b, [k, n], [b.stride(0), 1], block)
    c_desc = desc(out, [m, n], [out.stride(0), 1], block)
    return a_desc, b_desc, c_desc, b_kmajor


def _dtype_name(t: torch.Tensor, what: str) -> str:
    name = _NAMES.get(t.dtype)
    if name is None:
        raise UnknownKernelError(
            f"the Triton matmul has no {t.dtype} path ({what})",
            f"use one of: {', '.join(SUPPORTED_DTYPES)} "
            "(torch.float16, torch.bfloat16, torch.float32, torch.float8_e4m3fn)",
        )
    return name


def _matrix(t: object, what: str) -> torch.Tensor:
    """``t`` when it is a 2-D tensor (operand ``what``)."""
    if not isinstance(t, torch.Tensor):
        raise UsageError(f"matmul operand {what} is a {type(t).__name__}", "pass torch tensors")
    if t.dim() != 2:
        raise ShapeError(
            f"matmul operand {what} has shape {tuple(t.shape)}, not 2-D",
            "pass A as (M, K) and B as (K, N)",
        )
    return t


def _check_operands(a_in: object, b_in: object) -> tuple[int, int, int, str]:
    """Validate A and B; returns (M, N, K, dtype name)."""
    a, b = _matrix(a_in, "A"), _matrix(b_in, "B")
    m, k = a.shape
    k_b, n = b.shape
    if k != k_b:
        raise ShapeError(
            f"matmul inner dimensions differ: A is {m}x{k}, B is {k_b}x{n}",
            "A (M, K) @ B (K, N) needs A.shape[1] == B.shape[0]",
        )
    if min(m, n, k) < 1:
        raise ShapeError(
            f"matmul sizes must be >= 1, got M={m}, N={n}, K={k}", "pass non-empty operands"
        )
    name = _dtype_name(a, "A")
    if b.dtype != a.dtype:
        raise UnknownKernelError(
            f"matmul operands differ in dtype: A is {a.dtype}, B is {b.dtype}",
            "convert both to one of: " + ", ".join(SUPPORTED_DTYPES),
        )
    if a.device != b.device:
        raise UsageError(
            f"matmul operands are on different devices: {a.device} and {b.device}",
            "move both to one CUDA device",
        )
    if not _INTERPRET and a.device.type != "cuda":
        raise UsageError(
            f"the Triton matmul needs CUDA tensors, got {a.device}",
            "move the operands to a GPU, or set TRITON_INTERPRET=1 before importing for the "
            "(slow) CPU interpreter",
        )
    if name == "fp8" and not _INTERPRET:
        cap = torch.cuda.get_device_capability(a.device)
        if cap < (8, 9):
            raise UnknownKernelError(
                f"fp8 matmul needs compute capability >= 8.9, {a.device} has {cap[0]}.{cap[1]}",
                "use fp16 / bf16 here, or an Ada / Hopper or newer GPU for fp8",
            )
    return m, n, k, name


def _out_dtype(name: str, a_dtype: torch.dtype, out_dtype: torch.dtype | None) -> torch.dtype:
    allowed = _FP8_OUT_DTYPES if name == "fp8" else (a_dtype,)
    chosen = allowed[0] if out_dtype is None else out_dtype
    if chosen not in allowed:
        raise UnknownKernelError(
            f"a {name} matmul cannot write {chosen}",
            "the output dtype must be one of: " + ", ".join(map(str, allowed)),
        )
    return chosen


def _check_out(out: object, m: int, n: int, name: str, a: torch.Tensor) -> None:
    if not isinstance(out, torch.Tensor):
        raise UsageError(f"matmul out is a {type(out).__name__}", "pass a torch tensor or None")
    if tuple(out.shape) != (m, n):
        raise ShapeError(
            f"matmul out has shape {tuple(out.shape)}, expected ({m}, {n})",
            "out must be (M, N) for A (M, K) @ B (K, N)",
        )
    _out_dtype(name, a.dtype, out.dtype)
    if out.device != a.device:
        raise UsageError(
            f"matmul out is on {out.device}, the operands on {a.device}", "use one device"
        )


def _scale(s: object, what: str, device: torch.device) -> torch.Tensor:
    if isinstance(s, (int, float)):
        return torch.full((), float(s), dtype=torch.float32, device=device)
    if not isinstance(s, torch.Tensor):
        raise UsageError(f"{what} is a {type(s).__name__}", "pass a float or a float32 tensor")
    if s.numel() != 1:
        raise ShapeError(
            f"{what} has {s.numel()} elements", "per-tensor scales are 0-d or 1-element tensors"
        )
    if s.dtype != torch.float32:
        raise UnknownKernelError(f"{what} is {s.dtype}", "scales must be torch.float32")
    if s.device != device:
        raise UsageError(f"{what} is on {s.device}, the operands on {device}", "use one device")
    return s


def make_launch(
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor,
    *,
    scale_a: torch.Tensor | float | None = None,
    scale_b: torch.Tensor | float | None = None,
    allow_tf32: bool = False,
    persistent: bool | None = None,
    split_k: int | None = None,
    fast_accum: bool = False,
    tma: bool | None = None,
) -> Callable[[], None]:
    """Validate once and return a closure that writes ``scale_a * scale_b * (a @ b)`` into ``out``.

    ``out`` (M, N) must have the inputs' dtype (fp8: bf16, fp16 or fp32). ``allow_tf32`` only
    affects fp32 inputs (default False: exact IEEE fp32). A missing scale counts as 1.0; float
    scales become 0-d float32 tensors here, once. ``split_k=None`` applies the split-K rule
    (:func:`split_k_plan`) unless ``persistent=True``; an integer >= 1 asks for that many splits
    (1: none). Without a split, ``persistent=None`` applies the module's persistent rule. The
    split-K workspace and counters are allocated here, once: one closure must not run
    concurrently on two streams. The closure allocates and checks nothing; its first call
    autotunes. Its ``variant`` attribute says which kernel it launches (``"tiled"``,
    ``"persistent"``, ``"tma-persistent"`` or ``"split-k"``), ``splits`` how many K slices (1
    without split-K) and ``tma_unavailable`` why a persistent launch did not use TMA (None when
    it did or was not persistent). A persistent launch uses the TMA kernel where
    :func:`tma_reason` finds nothing against it (``tma=None``); ``tma=False`` keeps the pointer
    kernel; ``tma=True`` asks for the TMA kernel (persistent) and raises when it cannot run.
    ``fast_accum`` (fp8 inputs only) accumulates the fp8 products in the tensor cores' reduced
    precision over all of K on sm_90 (as cuBLAS ``use_fast_accum``), with its own configs.
    """
    m, n, k, name = _check_operands(a, b)
    _check_out(out, m, n, name, a)
    if split_k is not None and (
        isinstance(split_k, bool) or not isinstance(split_k, int) or split_k < 1
    ):
        raise UsageError(f"split_k must be an integer >= 1 or None, got {split_k!r}", "pass e.g. 4")
    if tma:
        if persistent is False:
            raise UsageError("the TMA kernel is persistent", "drop persistent=False or tma=True")
        persistent = True
    if persistent and split_k is not None and split_k > 1:
        raise UsageError(
            "the persistent kernels do not split K",
            "pass persistent=True (or tma=True) or split_k > 1, not both",
        )
    if fast_accum and name != "fp8":
        raise UsageError(
            f"fast_accum applies to fp8 inputs only, these are {name}", "drop fast_accum"
        )
    has_scale = scale_a is not None or scale_b is not None
    sa = sb = None
    if has_scale:
        sa = _scale(1.0 if scale_a is None else scale_a, "scale_a", a.device)
        sb = _scale(1.0 if scale_b is None else scale_b, "scale_b", a.device)
    sms = num_sms(a.device)
    plan = split_k_plan(m, n, k, sms, 1 if persistent else split_k)
    if plan.splits == 1 and persistent is None:
        persistent = use_persistent(m, n, sms)
    meta: dict[str, object] = {
        "INPUT_PRECISION": "tf32" if (allow_tf32 and name == "fp32") else "ieee",
        "HAS_SCALE": has_scale,
        "IS_FP8": name == "fp8",
        "FAST_ACC": bool(fast_accum),
    }
    buckets = (size_bucket(m), size_bucket(n), size_bucket(k))
    strides = (a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1))

    def tiles(meta: dict) -> int:
        return triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])

    tma_unavailable: str | None = None
    if plan.splits > 1:
        variant = "split-k"
        workspace = torch.empty(plan.splits * m * n, dtype=torch.float32, device=a.device)
        counters = torch.zeros(plan.tiles, dtype=torch.int32, device=a.device)
        kernel = _matmul_split_kernel[(plan.tiles * plan.splits,)]
        args: tuple = (
            a, b, out, sa, sb, workspace, counters, m, n, k, *strides,
            plan.k_per_split, plan.splits, *buckets,
        )  # fmt: skip
        meta |= {"BLOCK_M": plan.block_m, "BLOCK_N": plan.block_n}
    elif persistent:
        grid = lambda meta: (min(sms, tiles(meta)),)  # noqa: E731
        tma_unavailable = "tma=False" if tma is False else tma_reason(a, b, out, allow_tf32)
        if tma and tma_unavailable:
            raise UsageError(
                f"the TMA kernel cannot run: {tma_unavailable}", "pass tma=None or tma=False"
            )
        if tma_unavailable is None:
            variant = "tma-persistent"
            *descs, b_kmajor = _descriptors(a, b, out)
            kernel = _matmul_tma_kernel[grid]
            args = (*descs, sa, sb, m, n, k, *buckets)
            meta["B_KMAJOR"] = b_kmajor
            meta["DTYPES"] = f"{_NAMES[a.dtype]}->{str(out.dtype).removeprefix('torch.')}"
        else:
            variant = "persistent"
            kernel = _matmul_persistent_kernel[grid]
            args = (a, b, out, sa, sb, m, n, k, *strides, *buckets)
    else:
        variant = "tiled"
        kernel = _matmul_kernel[lambda meta: (tiles(meta),)]
        args = (a, b, out, sa, sb, m, n, k, *strides, *buckets)
    guard = (
        functools.partial(torch.cuda.device, a.device)
        if a.device.type == "cuda"
        else contextlib.nullcontext
    )

    def launch() -> None:
        with guard():
            kernel(*args, **meta)

    launch.variant = variant  # type: ignore[attr-defined]  # what a measurement ran
    launch.splits = plan.splits  # type: ignore[attr-defined]
    launch.tma_unavailable = tma_unavailable  # type: ignore[attr-defined]
    launch.choice = {  # type: ignore[attr-defined]  # family.launch_choice: kept with figures
        "variant": variant,
        "splits": plan.splits,
        "tma_unavailable": tma_unavailable,
        # Triton accumulates fp8 in reduced precision only on sm_90 (compute capability 9.0):
        # elsewhere, and in the interpreter, fast_accum computes what the precise path does
        "fast_accum_effective": _fast_accum_effective(a.device) if fast_accum else None,
    }
    return launch


def matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    scale_a: torch.Tensor | float | None = None,
    scale_b: torch.Tensor | float | None = None,
    allow_tf32: bool = False,
    persistent: bool | None = None,
    split_k: int | None = None,
    fast_accum: bool = False,
    tma: bool | None = None,
) -> torch.Tensor:
    """``scale_a * scale_b * (a @ b)`` for a (M, K) and b (K, N); returns the (M, N) result.

    ``out`` is allocated only when None, with ``out_dtype`` (default: the inputs' dtype, bf16
    for fp8). fp32 inputs are exact IEEE fp32 unless ``allow_tf32``. Raises ShapeError for
    non-2-D operands or mismatched inner sizes and UnknownKernelError for unsupported dtypes.
    """
    m, n, _, name = _check_operands(a, b)
    if out is None:
        dtype = _out_dtype(name, a.dtype, out_dtype)
        out = torch.empty((m, n), dtype=dtype, device=a.device)
    elif out_dtype is not None and out.dtype != out_dtype:
        raise UsageError(
            f"out is {out.dtype} but out_dtype is {out_dtype}", "pass one of out / out_dtype"
        )
    make_launch(
        a,
        b,
        out,
        scale_a=scale_a,
        scale_b=scale_b,
        allow_tf32=allow_tf32,
        persistent=persistent,
        split_k=split_k,
        fast_accum=fast_accum,
        tma=tma,
    )()
    return out
