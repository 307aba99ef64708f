"""The hand-written CUDA attention kernels (``flash_fwd.cu``, ``flash_decode.cu``) through CuPy.

Operands are torch CUDA tensors as :mod:`~wattbench.kernels.attention.problem` describes them,
here also C-contiguous and 16-byte aligned (every row of D = 64 or 128 16-bit values is then a
whole number of 16-byte chunks). Sizes are counted in elements, shared memory in bytes.

* ``prefill_calls`` / ``decode_calls`` turn validated operands into :class:`KernelCall` s: entry
  point, grid, block, dynamic shared memory and the argument tuple (tensors, ``np.int32``,
  ``np.float32``), in the order the entry point takes them. They need no GPU and no CuPy; the
  CPU tests run exactly these calls through a host emulation of the kernels.
* ``make_prefill_launch`` / ``make_decode_launch`` compile the source with NVRTC
  (``cupy.RawModule``, cached per process), opt in to more than 48 KiB of shared memory where a
  call needs it, view each tensor as a CuPy array without a copy (16-bit tensors as int16, since
  CuPy may lack bfloat16) and return a closure that only launches, on CuPy's current stream.

Prefill always writes the row log-sum-exp (natural log, float32 ``[B, HQ, N]``): into ``lse``
when given, else into a buffer allocated once. Decode allocates its float32 partial results
(``[B, HQ, splits, D]`` and ``[B, HQ, splits]``) once; the split count comes from
:func:`~wattbench.kernels.attention.problem.choose_splits` with the device's SM count.

The build side needs no GPU: ``wattbench.kernels.cuda_build.compile_report`` (nvcc) and
``wattbench.kernels.nvrtc.compile_report`` (NVRTC, as CuPy) compile a source for one architecture
and return ptxas' per-entry report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattbench.kernels import cuda_build
from wattbench.kernels.attention.problem import (
    CHUNK_MULTIPLE,
    MIN_CHUNK,
    Operands,
    check_operands,
    choose_splits,
    head_dim_reason,
)
from wattbench.kernels.cuda_build import import_cupy
from wattbench.kernels.errors import ShapeError, UsageError

PREFILL_SOURCE = "flash_fwd.cu"
DECODE_SOURCE = "flash_decode.cu"
SOURCES = (PREFILL_SOURCE, DECODE_SOURCE)
_PACKAGE = __name__.rpartition(".")[0]
DTYPES: tuple[str, ...] = ("fp16", "bf16")

#: prefill tiling (flash_fwd.cu's wbfa constants): query rows per block, keys per block, threads
PREFILL_BM, PREFILL_BN, PREFILL_THREADS = 128, 64, 256
#: decode split kernel threads, its query-head tiles (one entry point each), combine threads = D
DECODE_THREADS = 128
GROUP_TILES = (1, 2, 4, 8)

_ALIGN_BYTES = 16
_MAX_GRID_YZ = 65535


def prefill_entries() -> tuple[str, ...]:
    return tuple(
        f"wb_flash_fwd_{dt}_d{d}_{mask}"
        for dt in DTYPES
        for d in (64, 128)
        for mask in ("causal", "full")
    )


def decode_entries() -> tuple[str, ...]:
    split = tuple(f"wb_decode_split_{dt}_d{d}_g{g}" for dt in DTYPES for d in (64, 128)
                  for g in GROUP_TILES)  # fmt: skip
    return split + tuple(f"wb_decode_combine_{dt}" for dt in DTYPES)


ENTRY_POINTS = {PREFILL_SOURCE: prefill_entries(), DECODE_SOURCE: decode_entries()}


def prefill_smem_bytes(d: int) -> int:
    """Dynamic shared memory of a prefill block: the q tile and two stages of k and v, rows
    padded by 8 elements of 2 bytes (flash_fwd.cu's ``Tile<D>::SMEM_BYTES``)."""
    return (PREFILL_BM + 4 * PREFILL_BN) * (d + 8) * 2


def source(name: str) -> str:
    """The CUDA C source ``name`` (one of :data:`SOURCES`)."""
    return cuda_build.source_text(_PACKAGE, _known(name))


def _known(name: str) -> str:
    return cuda_build.known_source(name, SOURCES, "attention")


@dataclass(frozen=True)
class KernelCall:
    """One kernel launch: ``args`` holds torch tensors (passed as device pointers), ``np.int32``
    and ``np.float32`` scalars, in the entry point's parameter order."""

    source: str
    entry: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    smem_bytes: int
    args: tuple


def _check(q, k, v, out, lse, what: str) -> Operands:
    ops = check_operands(q, k, v, out, what=what, lse=lse)
    reason = head_dim_reason(ops.d)
    if reason:
        raise ShapeError(f"{what}: {reason}", "use D = 64 or 128, or the vendor impl")
    for role, t in (("q", q), ("k", k), ("v", v), ("out", out), ("lse", lse)):
        if t is None:
            continue
        if not t.is_contiguous():
            raise ShapeError(f"{what}: {role} is not contiguous", "pass .contiguous() tensors")
        if t.data_ptr() % _ALIGN_BYTES:
            raise ShapeError(
                f"{what}: {role} does not start on a 16-byte boundary",
                "pass tensors that own their storage (e.g. .clone())",
            )
    if ops.batch > _MAX_GRID_YZ:
        raise ShapeError(f"{what}: batch {ops.batch} > {_MAX_GRID_YZ}", "split the batch")
    return ops


def _scale_log2(d: int, scale: float | None) -> np.float32:
    value = d**-0.5 if scale is None else float(scale)
    if not (math.isfinite(value) and value > 0):
        raise ShapeError(f"softmax scale {scale} is not a positive number", "pass scale > 0")
    return np.float32(value * math.log2(math.e))


def prefill_calls(q, k, v, out, lse, *, causal: bool, scale: float | None = None):
    """The one launch of ``flash_fwd.cu`` writing attention of (q, k, v) into ``out`` and the
    natural row log-sum-exp into ``lse`` (float32 ``[B, HQ, N]``, required)."""
    what = "CUDA prefill"
    if lse is None:
        raise UsageError(f"{what}: the kernel writes lse", "pass a float32 [B, HQ, N] tensor")
    ops = _check(q, k, v, out, lse, what)
    if ops.nq != ops.nkv:
        raise ShapeError(
            f"{what}: {ops.nq} queries against {ops.nkv} keys",
            "prefill takes Nq == Nkv; use decode for one query against a cache",
        )
    if ops.hq > _MAX_GRID_YZ:
        raise ShapeError(f"{what}: {ops.hq} query heads > {_MAX_GRID_YZ}", "use fewer heads")
    entry = f"wb_flash_fwd_{ops.dtype}_d{ops.d}_{'causal' if causal else 'full'}"
    grid = (math.ceil(ops.nq / PREFILL_BM), ops.hq, ops.batch)
    args = (q, k, v, out, lse, np.int32(ops.nq), np.int32(ops.hq), np.int32(ops.hkv),
            _scale_log2(ops.d, scale))  # fmt: skip
    return (
        KernelCall(PREFILL_SOURCE, entry, grid, (PREFILL_THREADS, 1, 1),
                   prefill_smem_bytes(ops.d), args),
    )  # fmt: skip


def group_tile(group: int) -> int:
    """The query-head tile of the split kernel for G query heads per KV head: the smallest of
    :data:`GROUP_TILES` holding G, else the largest (G > 8 takes ceil(G / 8) blocks)."""
    return next((g for g in GROUP_TILES if g >= group), GROUP_TILES[-1])


def decode_calls(
    q, k, v, out, lse, *, sms: int, scale: float | None = None, chunk: int | None = None
):
    """``(calls, scratch)``: the split and combine launches of ``flash_decode.cu`` for one query
    token per sequence, and the float32 partial results they share (allocated here, on q's
    device). ``lse`` (float32 ``[B, HQ, 1]``) is required. ``chunk`` (keys per split, a
    multiple of 128) overrides the split rule, which sizes splits for ``sms`` SMs."""
    import torch

    what = "CUDA decode"
    if lse is None:
        raise UsageError(f"{what}: the kernel writes lse", "pass a float32 [B, HQ, 1] tensor")
    ops = _check(q, k, v, out, lse, what)
    if ops.nq != 1:
        raise ShapeError(
            f"{what}: q has {ops.nq} tokens per sequence",
            "decode takes one query token (q [B, HQ, 1, D]); use prefill for more",
        )
    gt = group_tile(ops.group)
    head_chunks = math.ceil(ops.group / gt)
    if ops.hkv * head_chunks > _MAX_GRID_YZ:
        raise ShapeError(f"{what}: {ops.hkv * head_chunks} head blocks", "use fewer heads")
    length = ops.nkv
    if chunk is None:
        splits, chunk = choose_splits(
            length,
            ops.batch * ops.hkv * head_chunks,
            sms,
            min_chunk=MIN_CHUNK,
            multiple=CHUNK_MULTIPLE,
        )
    else:
        if chunk < 1 or chunk % CHUNK_MULTIPLE:
            raise ShapeError(f"{what}: chunk {chunk}", f"use a multiple of {CHUNK_MULTIPLE}")
        splits = math.ceil(length / chunk)
    if splits >= 2**31:
        raise ShapeError(f"{what}: {splits} splits", "use a larger chunk")
    o_part = torch.empty(ops.batch, ops.hq, splits, ops.d, device=q.device, dtype=torch.float32)
    lse_part = torch.empty(ops.batch, ops.hq, splits, device=q.device, dtype=torch.float32)
    split = KernelCall(
        DECODE_SOURCE,
        f"wb_decode_split_{ops.dtype}_d{ops.d}_g{gt}",
        (splits, ops.hkv * head_chunks, ops.batch),
        (DECODE_THREADS, 1, 1),
        0,
        (q, k, v, o_part, lse_part, np.int32(length), np.int32(ops.hq), np.int32(ops.hkv),
         np.int32(chunk), _scale_log2(ops.d, scale)),
    )  # fmt: skip
    combine = KernelCall(
        DECODE_SOURCE,
        f"wb_decode_combine_{ops.dtype}",
        (ops.batch * ops.hq, 1, 1),
        (ops.d, 1, 1),
        0,
        (o_part, lse_part, out, lse, np.int32(splits), np.int32(ops.d)),
    )
    return (split, combine), (o_part, lse_part)


# --- run side: CuPy ------------------------------------------------------------------------------


def _cupy() -> Any:
    return import_cupy("the CUDA attention kernels")


def load_module(name: str) -> Any:
    """Source ``name`` as a ``cupy.RawModule`` (NVRTC), compiled once per process."""
    return cuda_build.load_module(_PACKAGE, _known(name), what="the CUDA attention kernels")


def _device_arg(cp: Any, x: Any) -> Any:
    """A CuPy view of a torch CUDA tensor (16-bit as int16), or the scalar itself."""
    import torch

    if not isinstance(x, torch.Tensor):
        return x
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.view(torch.int16)
    return cp.asarray(x)


def _require_cuda(*tensors) -> None:
    import torch

    for t in tensors:
        if isinstance(t, torch.Tensor) and not t.is_cuda:
            raise UsageError(
                f"the CUDA attention kernels need CUDA tensors, got one on {t.device}",
                "move the operands to the GPU (these kernels have no CPU path)",
            )


def build_launch(calls, keep: tuple = ()) -> Callable[[], None]:
    """Compile (once) and size the calls now; the closure launches them in order. ``keep`` holds
    tensors the closure must keep alive (scratch). The tensors must live where the kernels run
    (``make_*_launch`` check for CUDA tensors)."""
    cp = _cupy()
    prepared = []
    for call in calls:
        kernel = load_module(call.source).get_function(call.entry)
        cuda_build.opt_in_smem(
            kernel, call.smem_bytes, what=call.entry,
            remedy="use an sm_80 or newer GPU with more shared memory per block",
        )  # fmt: skip
        args = tuple(_device_arg(cp, x) for x in call.args)
        prepared.append((kernel, call.grid, call.block, args, call.smem_bytes))

    def launch() -> None:
        _ = keep
        for kernel, grid, block, args, smem in prepared:
            kernel(grid, block, args, shared_mem=smem)

    return launch


def make_prefill_launch(
    q, k, v, out, *, causal: bool, lse=None, scale: float | None = None
) -> Callable[[], None]:
    """A closure writing prefill attention into ``out`` (and ``lse``) with ``flash_fwd.cu``."""
    import torch

    _cupy()
    _require_cuda(q, k, v, out, lse)
    if lse is None and isinstance(q, torch.Tensor) and q.dim() == 4:
        lse = torch.empty(q.shape[:3], device=q.device, dtype=torch.float32)
    calls = prefill_calls(q, k, v, out, lse, causal=causal, scale=scale)
    return build_launch(calls, keep=(lse,))


def make_decode_launch(
    q, k, v, out, *, lse=None, scale: float | None = None, chunk: int | None = None
) -> Callable[[], None]:
    """A closure writing decode attention into ``out`` (and ``lse``) with ``flash_decode.cu``."""
    import torch

    _cupy()
    _require_cuda(q, k, v, out, lse)
    if lse is None and isinstance(q, torch.Tensor) and q.dim() == 4:
        lse = torch.empty(q.shape[:3], device=q.device, dtype=torch.float32)
    sms = 1
    if isinstance(q, torch.Tensor):
        sms = torch.cuda.get_device_properties(q.device).multi_processor_count
    calls, scratch = decode_calls(q, k, v, out, lse, sms=sms, scale=scale, chunk=chunk)
    return build_launch(calls, keep=(lse, *scratch))
