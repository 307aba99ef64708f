"""Triton split-KV decode (flash-decoding), one launch per step: one query token per sequence
against a KV cache.

q, out ``[B, HQ, 1, D]``, k, v ``[B, HKV, L, D]`` (fp16 or bf16, last dimension contiguous), HQ a
multiple of HKV, D = 64 or 128, any L >= 1; optionally ``lse [B, HQ, 1]`` float32 (natural log).

One kernel, ``_decode_kernel``, grid ``(splits, B * HKV)``. Program (s, b * HKV + hk) reads keys
``[s * chunk, min(L, (s + 1) * chunk))`` of KV head hk once for all G = HQ / HKV query heads that
share it (the G query rows padded to ``G_PAD >= 16`` rows, so both products are tensor-core dots)
and runs the online softmax over BLOCK_N-key blocks. It stores its normalised partial output and
log2-domain log-sum-exp in the float32 workspace ``o_part [B, HKV, splits, G, D]``, ``lse_part
[B, HKV, splits, G]`` and increments the (b, hk) counter of ``counters [B * HKV]`` (int32). The
program that sees ``splits - 1`` arrived last: it merges the splits in split order 0, 1, ...,
reading every partial (its own included) back from the workspace, ``o = sum_s 2^(lse_s - big)
o_s / sum_s 2^(lse_s - big)`` (in one pass, ``big`` the running largest ``lse_s``), writes
``out`` in the input dtype (and ``lse`` in natural log), and sets the counter back to 0. Which
program merges changes nothing: the result is bitwise the same whatever order the programs
finish in, and the next launch (or a CUDA graph replay) finds the counters at 0 without a
memset. One split takes the same path (its merge is exact: weight 1); a separate direct-store
path for it spilled on sm_90a (D=128, BLOCK_N=128, 8 warps, 4 stages) and saved only a G x D
round trip through L2.

Memory ordering (PTX memory model, GPU scope): the partial stores are plain stores by every
thread of the program; ``tl.debug_barrier()`` (``bar.sync``) orders them before the increment,
which is one ``atom.add.acq_rel.gpu``. Its release half publishes the program's stores (cumulative
through the barrier) with the increment; each increment continues the release sequence on the
counter, so the acquire half of the last increment synchronises with every earlier program's
release, and its partials are visible to the last program's loads that follow it (the branch on
the returned count orders them after the atomic; Triton has one thread issue a scalar atomic and
hands its result to the others through shared memory and a block barrier, which carries the
acquire to every thread; the loads also read through L2, ``.cg``, never a stale L1 line). The
reset is relaxed: the kernel's end orders it before the next launch.

An empty split (no key in its range: a grid sized with ``splits=`` for a longer cache) weighs
nothing: zero output and log-sum-exp -inf (its 0 / 0 would be NaN, and NaN
times a zero weight is still NaN in the merge). Split 0 always has keys, so the merge is finite.

The split count comes from :func:`wattbench.kernels.attention.problem.choose_splits` (L, the
B * HKV programs, the SM count); chunks are multiples of 128 keys, so every BLOCK_N divides them.
Decode is memory-bound: the minimum traffic is the KV cache, read exactly once; the workspace adds
``2 * splits * HQ * (D + 1) * 4`` bytes per sequence (written once, read once by the merge).

Autotuning: ``_GPU_CONFIGS`` (BLOCK_N 32-128, 4 or 8 warps, 2-4 stages) keyed on the chunk, D and
G_PAD; under ``TRITON_INTERPRET`` one fixed config, and chunks of 32-key multiples on 4 "SMs", so
that small tests still have several splits. Every benchmark run of the autotuner leaves the
counters at 0, so tuning needs no reset either.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

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
from wattbench.kernels.triton_support import last_to_arrive, num_sms, reset_counter

_INTERPRET = triton_interpreting()
LOG2E = 1.4426950408889634
#: ln 2, a constexpr so that the kernel may read it (log2 -> natural log)
LN2 = tl.constexpr(0.6931471805599453)
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
    """The GPU configs the autotuner can choose for the decode kernel."""
    return _GPU_CONFIGS


_CONFIGS = [_INTERPRETER_CONFIG] if _INTERPRET else _GPU_CONFIGS


@triton.autotune(configs=_CONFIGS, key=["CHUNK", "HEAD_DIM", "G_PAD"])
@triton.jit
def _decode_kernel(
    Q, K, V, OUT, LSE, OP, LP, COUNT, L, CHUNK, HKV, GROUP, SPLITS, qk_scale,
    stride_qb, stride_qh, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh,
    HEAD_DIM: tl.constexpr, G_PAD: tl.constexpr, HAS_LSE: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Program (split, b * HKV + hk); see the module docstring."""
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
    # an empty split (no key in [lo, hi)) weighs nothing: zero output, log-sum-exp -inf
    seen = l_i > 0
    part = acc / tl.where(seen, l_i, 1.0)[:, None]
    part_lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("-inf"))
    out_ptrs = OUT + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :]
    lse_ptrs = LSE + b * HKV * GROUP + heads
    # workspace rows of (b, hk): [splits, GROUP] (row s * GROUP + g), each HEAD_DIM floats
    first = (b * HKV + hk) * SPLITS * GROUP
    rows = first + split * GROUP + offs_g
    tl.store(OP + rows[:, None] * HEAD_DIM + offs_d[None, :], part, mask=g_ok[:, None])
    tl.store(LP + rows, part_lse, mask=g_ok)
    if last_to_arrive(COUNT + bh, SPLITS):  # the last program of (b, hk): merge in split order
        # online over the splits (split 0 always has keys, so ``big`` is finite from it on)
        big = tl.full([G_PAD], float("-inf"), dtype=tl.float32)
        total = tl.zeros([G_PAD], dtype=tl.float32)
        merged = tl.zeros([G_PAD, HEAD_DIM], dtype=tl.float32)
        for s_i in range(0, SPLITS):
            row_s = first + s_i * GROUP + offs_g
            lse_s = tl.load(LP + row_s, mask=g_ok, other=0.0, cache_modifier=".cg")
            o_s = tl.load(OP + row_s[:, None] * HEAD_DIM + offs_d[None, :],
                          mask=g_ok[:, None], other=0.0, cache_modifier=".cg")  # fmt: skip
            new_big = tl.maximum(big, lse_s)
            rescale = tl.math.exp2(big - new_big)
            w = tl.math.exp2(lse_s - new_big)
            total = total * rescale + w
            merged = merged * rescale[:, None] + o_s * w[:, None]
            big = new_big
        tl.store(out_ptrs, (merged / total[:, None]).to(OUT.dtype.element_ty),
                 mask=g_ok[:, None])  # fmt: skip
        if HAS_LSE:
            tl.store(lse_ptrs, (big + tl.math.log2(total)) * LN2, mask=g_ok)
        reset_counter(COUNT + bh)


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


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class DecodeLaunch:
    """One prepared decode step: calling it launches ``_decode_kernel`` once and allocates
    nothing. Its workspace, made once: ``o_part`` and ``lse_part`` (float32 partials) and
    ``counters`` (int32, one per (batch, KV head), 0 between launches)."""

    splits: int
    chunk: int
    o_part: torch.Tensor
    lse_part: torch.Tensor
    counters: torch.Tensor
    _args: tuple[object, ...]
    _meta: dict[str, object]
    _grid: tuple[int, int]
    _device: torch.device

    @property
    def choice(self) -> dict[str, int]:
        """Splits of the KV cache and keys per split (``family.launch_choice``)."""
        return {"splits": self.splits, "chunk": self.chunk}

    def __call__(self) -> None:
        guard = (
            functools.partial(torch.cuda.device, self._device)
            if self._device.type == "cuda"
            else contextlib.nullcontext
        )
        with guard():
            _decode_kernel[self._grid](*self._args, **self._meta)


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
) -> DecodeLaunch:
    """Validate once, allocate the workspace, and return the launch that writes decode attention
    of q (one token) against (k, v) into ``out`` (and ``lse``, natural log) in one kernel.
    ``chunk`` (keys per split, a multiple of every BLOCK_N: 128 on a GPU, 32 in the
    interpreter) overrides the split rule; ``splits`` (at least enough to cover the keys)
    fixes the grid, the trailing splits then being empty -- a launch sized once for a cache
    that grows. An empty split weighs nothing."""
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
    shape = (ops.batch, ops.hkv, splits, ops.group)
    o_part = torch.empty(*shape, ops.d, device=q.device, dtype=torch.float32)
    lse_part = torch.empty(*shape, device=q.device, dtype=torch.float32)
    counters = torch.zeros(programs, device=q.device, dtype=torch.int32)
    args = (
        q, k, v, out, lse if lse is not None else lse_part, o_part, lse_part, counters, length,
        chunk, ops.hkv, ops.group, splits, qk_scale,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1),
    )  # fmt: skip
    meta = {
        "HEAD_DIM": ops.d,
        "G_PAD": max(16, triton.next_power_of_2(ops.group)),
        "HAS_LSE": lse is not None,
    }
    return DecodeLaunch(
        splits, chunk, o_part, lse_part, counters, args, meta, (splits, programs), q.device
    )
