"""Triton split-KV decode (flash-decoding): one query token per sequence against a KV cache.

q, out ``[B, HQ, 1, D]``, k, v ``[B, HKV, L, D]`` (fp16 or bf16, last dimension contiguous), HQ a
multiple of HKV, D = 64 or 128, any L >= 1; optionally ``lse [B, HQ, 1]`` float32 (natural log).

Two kernels:

* ``_split_kernel``, grid ``(splits, B * HKV)``: program (s, b * HKV + hk) reads keys
  ``[s * chunk, min(L, (s + 1) * chunk))`` of KV head hk once for all G = HQ / HKV query heads
  that share it (the G query rows padded to ``G_PAD >= 16`` rows, so both products are tensor-core
  dots), runs the online softmax over BLOCK_N-key blocks and writes the normalised partial output
  ``o_part [B, HQ, splits, D]`` and its log2-domain log-sum-exp ``lse_part [B, HQ, splits]``
  (float32 scratch, allocated once by :func:`make_launch`).
* ``_combine_kernel``, grid ``(B * HQ,)``: ``o = sum_s 2^(lse_s - lse) o_s`` with
  ``lse = log2 sum_s 2^lse_s``, written in the input dtype (and lse in natural log); it reads the
  splits ``COMBINE_BLOCK_S`` at a time.

The split count comes from :func:`wattbench.kernels.attention.problem.choose_splits` (L, the
B * HKV programs, the SM count); chunks are multiples of 128 keys, so every BLOCK_N divides them.
Decode is memory-bound: the minimum traffic is the KV cache, read exactly once.

Autotuning: ``_GPU_CONFIGS`` (BLOCK_N 32-128, 4 or 8 warps, 2-4 stages) keyed on the chunk, D and
G_PAD; under ``TRITON_INTERPRET`` one fixed config, and chunks of 32-key multiples on 4 "SMs", so
that small tests still have several splits.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from wattbench.kernels.attention.problem import (
    CHUNK_MULTIPLE,
    MIN_CHUNK,
    check_operands,
    choose_splits,
    head_dim_reason,
)
from wattbench.kernels.env import triton_interpreting
from wattbench.kernels.errors import ShapeError
from wattbench.kernels.triton_support import num_sms

_INTERPRET = triton_interpreting()
LOG2E = 1.4426950408889634
#: fewest keys per split and chunk multiple under the interpreter (its SMs: triton_support)
INTERPRETER_CHUNK = 32


def _config(bn: int, warps: int, stages: int) -> triton.Config:
    return triton.Config({"BLOCK_N": bn}, num_warps=warps, num_stages=stages)


_GPU_CONFIGS: list[triton.Config] = [
    _config(64, 4, 3),
    _config(64, 4, 4),
    _config(128, 4, 3),
    _config(128, 8, 3),
    _config(128, 8, 4),
    _config(32, 4, 4),
    _config(64, 8, 2),
]
_INTERPRETER_CONFIG = _config(INTERPRETER_CHUNK, 4, 1)


def gpu_configs() -> list[triton.Config]:
    """The GPU configs the autotuner can choose for the split kernel."""
    return _GPU_CONFIGS


#: splits the combine kernel reads at a time (fewer when there are fewer): its registers stay
#: bounded whatever the split count (1024 splits read at once spill on sm_90a)
COMBINE_BLOCK_S = 16
_CONFIGS = [_INTERPRETER_CONFIG] if _INTERPRET else _GPU_CONFIGS


@triton.autotune(configs=_CONFIGS, key=["CHUNK", "HEAD_DIM", "G_PAD"])
@triton.jit
def _split_kernel(
    Q, K, V, OP, LP, L, CHUNK, HKV, GROUP, SPLITS, qk_scale,
    stride_qb, stride_qh, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    HEAD_DIM: tl.constexpr, G_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    split = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // HKV).to(tl.int64)
    hk = bh % HKV
    offs_g = tl.arange(0, G_PAD)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    g_ok = offs_g < GROUP
    heads = (hk * GROUP + offs_g).to(tl.int64)  # query heads of this KV head
    q_ptrs = Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :]
    q = tl.load(q_ptrs, mask=g_ok[:, None], other=0.0)
    kv_b = hk.to(tl.int64)
    k_ptrs = K + b * stride_kb + kv_b * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :]
    v_ptrs = V + b * stride_vb + kv_b * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :]
    lo = split * CHUNK
    hi = tl.minimum(lo + CHUNK, L)

    m_i = tl.full([G_PAD], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([G_PAD], dtype=tl.float32)
    acc = tl.zeros([G_PAD, HEAD_DIM], dtype=tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        keys = start_n + offs_n
        ok = keys < hi
        k = tl.load(k_ptrs + start_n * stride_kn, mask=ok[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k)) * qk_scale
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_use)
        p = tl.math.exp2(s - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_ptrs + start_n * stride_vn, mask=ok[:, None], other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    # partial results: o_part[b, head, split, :], lse_part[b, head, split] (log2 domain)
    # an empty split (no key in [lo, hi)) weighs nothing: zero output, log-sum-exp -inf (its
    # 0 / 0 would be NaN, and NaN times a zero weight is still NaN in the combine)
    row = ((b * HKV + hk) * GROUP + offs_g) * SPLITS + split
    seen = l_i > 0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("-inf"))
    tl.store(OP + row[:, None] * HEAD_DIM + offs_d[None, :], out, mask=g_ok[:, None])
    tl.store(LP + row, lse, mask=g_ok)


@triton.jit
def _combine_kernel(
    OP, LP, OUT, LSE, SPLITS, HQ, stride_ob, stride_oh,
    HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr, HAS_LSE: tl.constexpr,
):  # fmt: skip
    """Program bh: ``o = sum_s 2^(lse_s - big) o_s / sum_s 2^(lse_s - big)``, ``big`` the largest
    lse_s; splits are read BLOCK_S at a time (any number of splits, registers bounded)."""
    bh = tl.program_id(0).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, HEAD_DIM)
    big = tl.max(tl.full([BLOCK_S], float("-inf"), dtype=tl.float32), 0)
    for s0 in range(0, SPLITS, BLOCK_S):
        s_ok = s0 + offs_s < SPLITS
        lse_s = tl.load(LP + bh * SPLITS + s0 + offs_s, mask=s_ok, other=float("-inf"))
        big = tl.maximum(big, tl.max(lse_s, 0))
    total = tl.sum(tl.zeros([BLOCK_S], dtype=tl.float32), 0)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for s0 in range(0, SPLITS, BLOCK_S):
        s_ok = s0 + offs_s < SPLITS
        lse_s = tl.load(LP + bh * SPLITS + s0 + offs_s, mask=s_ok, other=float("-inf"))
        w = tl.math.exp2(lse_s - big)
        total += tl.sum(w, 0)
        parts = tl.load(
            OP + (bh * SPLITS + s0 + offs_s)[:, None] * HEAD_DIM + offs_d[None, :],
            mask=s_ok[:, None],
            other=0.0,
        )
        acc += tl.sum(parts * w[:, None], 0)
    out = acc / total
    b = bh // HQ
    h = bh % HQ
    tl.store(OUT + b * stride_ob + h * stride_oh + offs_d, out.to(OUT.dtype.element_ty))
    if HAS_LSE:
        tl.store(LSE + bh, (big + tl.math.log2(total)) * 0.6931471805599453)


def splits_for(length: int, programs: int, device: torch.device) -> tuple[int, int]:
    """``(splits, chunk)`` this module uses for ``length`` keys and ``programs`` programs."""
    if _INTERPRET or device.type != "cuda":
        return choose_splits(
            length, programs, num_sms(device), min_chunk=INTERPRETER_CHUNK,
            multiple=INTERPRETER_CHUNK,
        )  # fmt: skip
    return choose_splits(
        length, programs, num_sms(device), min_chunk=MIN_CHUNK, multiple=CHUNK_MULTIPLE
    )


def make_launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    *,
    lse: torch.Tensor | None = None,
    scale: float | None = None,
    chunk: int | None = None,
    splits: int | None = None,
) -> Callable[[], None]:
    """Validate once, allocate the float32 partial results, and return a closure that writes
    decode attention of q (one token) against (k, v) into ``out`` (and ``lse``, natural log).
    ``chunk`` (keys per split, a multiple of every BLOCK_N: 128 on a GPU, 32 in the
    interpreter) overrides the split rule; ``splits`` (at least enough to cover the keys)
    fixes the grid, the trailing splits then being empty -- a launch sized once for a cache
    that grows. An empty split weighs nothing. The closure allocates nothing."""
    ops = check_operands(q, k, v, out, what="Triton decode", lse=lse)
    reason = head_dim_reason(ops.d)
    if reason:
        raise ShapeError(f"Triton decode: {reason}", "use D = 64 or 128, or the vendor impl")
    if ops.nq != 1:
        raise ShapeError(
            f"Triton decode: q has {ops.nq} tokens per sequence",
            "decode takes one query token (q [B, HQ, 1, D]); use prefill for more",
        )
    length = ops.nkv
    programs = ops.batch * ops.hkv
    wanted = splits
    if chunk is None:
        splits, chunk = splits_for(length, programs, q.device)
    else:
        multiple = INTERPRETER_CHUNK if _INTERPRET else CHUNK_MULTIPLE
        if chunk < 1 or chunk % multiple:
            raise ShapeError(f"Triton decode: chunk {chunk}", f"use a multiple of {multiple}")
        splits = math.ceil(length / chunk)
    if wanted is not None:
        if wanted < splits:
            raise ShapeError(
                f"Triton decode: {wanted} splits of {chunk} keys cannot hold {length} keys",
                f"use at least {splits} splits",
            )
        splits = int(wanted)
    qk_scale = (ops.d**-0.5 if scale is None else float(scale)) * LOG2E
    o_part = torch.empty(ops.batch, ops.hq, splits, ops.d, device=q.device, dtype=torch.float32)
    lse_part = torch.empty(ops.batch, ops.hq, splits, device=q.device, dtype=torch.float32)
    g_pad = max(16, triton.next_power_of_2(ops.group))
    split_args = (
        q, k, v, o_part, lse_part, length, chunk, ops.hkv, ops.group, splits, qk_scale,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
    )  # fmt: skip
    split_kernel = _split_kernel[(splits, programs)]
    combine_args = (
        o_part, lse_part, out, lse if lse is not None else lse_part, splits, ops.hq,
        out.stride(0), out.stride(1),
    )  # fmt: skip
    combine_meta = {
        "HEAD_DIM": ops.d,
        "BLOCK_S": min(COMBINE_BLOCK_S, max(2, triton.next_power_of_2(splits))),
        "HAS_LSE": lse is not None,
    }
    combine_kernel = _combine_kernel[(ops.batch * ops.hq,)]
    guard = (
        functools.partial(torch.cuda.device, q.device)
        if q.device.type == "cuda"
        else contextlib.nullcontext
    )

    def launch() -> None:
        with guard():
            split_kernel(*split_args, HEAD_DIM=ops.d, G_PAD=g_pad)
            combine_kernel(*combine_args, **combine_meta)

    return launch
