"""What the Triton kernel modules share: the tiled-GEMM autotune config, the grouped tile order,
autotune size buckets and the SM count a kernel sizes its grid by."""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from wattbench.kernels.env import triton_interpreting

#: SMs assumed under Triton's interpreter (grids stay small, and persistent / split paths run)
INTERPRETER_NUM_SMS = 4


def gemm_config(bm: int, bn: int, bk: int, group_m: int, warps: int, stages: int) -> triton.Config:
    """A config of a tiled GEMM kernel: BLOCK_M x BLOCK_N output tiles, BLOCK_K deep steps,
    GROUP_M tile rows per group of the grouped order, ``warps`` warps, ``stages`` stages."""
    return triton.Config(
        {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group_m},
        num_warps=warps,
        num_stages=stages,
    )


@triton.jit
def last_to_arrive(counter_ptr, arrivals):
    """Count this program in on ``counter_ptr`` once its partial results are stored, and return
    whether it is the last of ``arrivals``. A block barrier first (every thread's stores are
    issued), then one acq_rel atomic at GPU scope: the release publishes this program's stores to
    whoever arrives after it, the acquire lets the last one's later loads (``.cg``, past L1) see
    every earlier program's. The one mechanism of the one-launch split reductions (matmul
    split-K, the W4A16 GEMV, decode); the last program resets the counter (:func:`reset_counter`)
    so a later launch or a CUDA graph replay needs no memset."""
    tl.debug_barrier()
    arrived = tl.atomic_add(counter_ptr, 1, sem="acq_rel", scope="gpu")
    return arrived == arrivals - 1


@triton.jit
def reset_counter(counter_ptr):
    """Set the counter of :func:`last_to_arrive` back to 0 (only its last program does, after
    every other has counted in, so nothing races with it)."""
    tl.atomic_xchg(counter_ptr, 0, sem="relaxed", scope="gpu")


@triton.jit
def grouped_tile(
    tile_id, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr
):
    """Grouped ordering: tile ``tile_id`` -> (row block, column block), GROUP_M row blocks per
    band, so that consecutive programs share operand tiles in L2."""
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_n
    first_m = (tile_id // per_group) * GROUP_M
    rows = tl.minimum(num_m - first_m, GROUP_M)
    in_group = tile_id % per_group
    return first_m + in_group % rows, in_group // rows


def size_bucket(size: int, lo: int = 16, hi: int = 16384) -> int:
    """The autotune bucket of a size: its next power of two, clamped to [lo, hi]."""
    return min(max(triton.next_power_of_2(size), lo), hi)


@functools.cache
def _cuda_sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (``INTERPRETER_NUM_SMS`` in the interpreter)."""
    if triton_interpreting() or device.type != "cuda":
        return INTERPRETER_NUM_SMS
    return _cuda_sm_count(device.index if device.index is not None else torch.cuda.current_device())
