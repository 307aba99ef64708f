"""Triton FlashAttention-2 forward (prefill): ``o = softmax(q k^T * scale [+ causal mask]) v``.

q, out ``[B, HQ, N, D]``, k, v ``[B, HKV, N, D]`` (fp16 or bf16, last dimension contiguous, any
other strides), HQ a multiple of HKV (grouped-query attention: query head h reads KV head
``h // (HQ // HKV)``), D = 64 or 128, any N >= 1 (rows and keys past N are masked). Optionally
``lse [B, HQ, N]`` float32 receives each row's natural log-sum-exp of the scaled scores.

Algorithm (FlashAttention-2): one program per (BLOCK_M query rows, batch x query head); q stays
in registers while BLOCK_N-key blocks of k and v stream through; scores are kept in the log2
domain (``scale * log2(e)`` folded into one multiply, ``exp2``), the running row maximum ``m``
and row sum ``l`` rescale the fp32 accumulator; ``o = acc / l`` is written once in the input
dtype. P is rounded to the input dtype for the second product, as every FlashAttention does.

Masking costs nothing where it is not needed: key blocks wholly below the query block (causal) or
wholly inside N (non-causal) run an unmasked loop; only the diagonal blocks and the last partial
block are masked. Causal programs stop at their diagonal (no work above it) and start from the
last query block, so the longest programs are scheduled first.

Autotuning: ``_GPU_CONFIGS`` (BLOCK_M 128 or 64, BLOCK_N 64 / 128, 4 or 8 warps, 2-4 stages),
pruned per head dimension (``gpu_configs``), keyed on N rounded up to a power of two, D,
causality and the dtype. Under ``TRITON_INTERPRET``
(read at import) the single ``_INTERPRETER_CONFIG`` is used instead.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from wattbench.kernels.attention.problem import check_operands, head_dim_reason
from wattbench.kernels.env import triton_interpreting
from wattbench.kernels.errors import ShapeError
from wattbench.kernels.triton_support import size_bucket

_INTERPRET = triton_interpreting()
LOG2E = 1.4426950408889634


def _config(bm: int, bn: int, warps: int, stages: int) -> triton.Config:
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages)


_GPU_CONFIGS: list[triton.Config] = [
    _config(128, 64, 4, 3),
    _config(128, 64, 4, 4),
    _config(128, 64, 8, 3),
    _config(128, 128, 8, 2),
    _config(128, 128, 8, 3),
    _config(128, 64, 8, 4),
    _config(64, 64, 4, 3),  # short sequences: more programs
    _config(64, 64, 4, 4),
]
#: the one config of the interpreter: blocks of 16 keep N = 67 spread over several blocks
_INTERPRETER_CONFIG = _config(32, 16, 4, 1)
_CONFIGS = [_INTERPRETER_CONFIG] if _INTERPRET else _GPU_CONFIGS


def gpu_configs(head_dim: int) -> list[triton.Config]:
    """The GPU configs the autotuner can choose at head dimension ``head_dim``: at D = 128 a
    128-row query block needs 8 warps (with 4, q, the accumulator and the scores spill on sm_90a:
    ``tests/kernels/test_compile_sm90.py``)."""
    if head_dim <= 64:
        return _GPU_CONFIGS
    return [c for c in _GPU_CONFIGS if c.kwargs["BLOCK_M"] < 128 or c.num_warps >= 8]


def _prune(configs: list[triton.Config], named_args: dict, **meta: object) -> list[triton.Config]:
    """The autotuner's early pruning: only the configs of the launch's head dimension (none under
    the interpreter: its one config is for every launch)."""
    if _INTERPRET:
        return configs
    head_dim = meta["HEAD_DIM"]
    assert isinstance(head_dim, int), "HEAD_DIM is a constexpr int"
    keep = gpu_configs(head_dim)
    return [c for c in configs if any(c is k for k in keep)]


_PRUNE = {"early_config_prune": _prune}


@triton.jit
def _attend_blocks(
    acc,
    l_i,
    m_i,
    q,
    k_ptrs,
    v_ptrs,
    stride_kn,
    stride_vn,
    offs_m,
    offs_n,
    lo,
    hi,
    N,
    qk_scale,
    MASKED: tl.constexpr,
    CAUSAL: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Fold key blocks [lo, hi) into (acc, l_i, m_i); scores in the log2 domain."""
    for start_n in range(lo, hi, BLOCK_N):
        keys = start_n + offs_n
        if MASKED:
            k = tl.load(k_ptrs + start_n * stride_kn, mask=(keys < N)[:, None], other=0.0)
        else:
            k = tl.load(k_ptrs + start_n * stride_kn)
        s = tl.dot(q, tl.trans(k)) * qk_scale
        if MASKED:
            keep = keys[None, :] < N
            if CAUSAL:
                keep = keep & (keys[None, :] <= offs_m[:, None])
            s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no key yet
        alpha = tl.math.exp2(m_i - m_use)
        p = tl.math.exp2(s - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        if MASKED:
            v = tl.load(v_ptrs + start_n * stride_vn, mask=(keys < N)[:, None], other=0.0)
        else:
            v = tl.load(v_ptrs + start_n * stride_vn)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    return acc, l_i, m_i


@triton.autotune(
    configs=_CONFIGS,
    key=["N_BUCKET", "HEAD_DIM", "CAUSAL", "HAS_LSE"],
    prune_configs_by=_PRUNE,
)
@triton.jit
def _prefill_kernel(
    Q, K, V, OUT, LSE, N, HQ, GROUP, qk_scale,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_on,
    N_BUCKET,  # autotune key only
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_LSE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(N, BLOCK_M), B * HQ): program (i, bh) computes rows of query block
    ``cdiv(N, BLOCK_M) - 1 - i`` of head ``bh % HQ`` in batch ``bh // HQ``."""
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // HQ).to(tl.int64)
    h = bh % HQ
    hk = (h // GROUP).to(tl.int64)
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = Q + b * stride_qb + h.to(tl.int64) * stride_qh
    q_ptrs += offs_m[:, None] * stride_qn + offs_d[None, :]
    k_ptrs = K + b * stride_kb + hk * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :]
    v_ptrs = V + b * stride_vb + hk * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :]
    row_ok = offs_m < N
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    if CAUSAL:
        full_hi = (m0 // BLOCK_N) * BLOCK_N  # keys < m0 are visible to every row of the block
        hi = tl.minimum(m0 + BLOCK_M, N)
    else:
        full_hi = (N // BLOCK_N) * BLOCK_N
        hi = N
    acc, l_i, m_i = _attend_blocks(
        acc, l_i, m_i, q, k_ptrs, v_ptrs, stride_kn, stride_vn, offs_m, offs_n, 0, full_hi, N,
        qk_scale, False, CAUSAL, BLOCK_N,
    )  # fmt: skip
    acc, l_i, m_i = _attend_blocks(
        acc, l_i, m_i, q, k_ptrs, v_ptrs, stride_kn, stride_vn, offs_m, offs_n, full_hi, hi, N,
        qk_scale, True, CAUSAL, BLOCK_N,
    )  # fmt: skip
    out = acc / l_i[:, None]
    o_ptrs = OUT + b * stride_ob + h.to(tl.int64) * stride_oh
    o_ptrs += offs_m[:, None] * stride_on + offs_d[None, :]
    tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=row_ok[:, None])
    if HAS_LSE:
        lse = (m_i + tl.math.log2(l_i)) * 0.6931471805599453  # log2 -> natural log
        tl.store(LSE + bh.to(tl.int64) * N + offs_m, lse, mask=row_ok)


def make_launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    *,
    causal: bool,
    lse: torch.Tensor | None = None,
    scale: float | None = None,
) -> Callable[[], None]:
    """Validate once and return a closure writing attention of (q, k, v) into ``out`` (and the
    natural log-sum-exp into ``lse`` when given). ``scale`` defaults to ``D ** -0.5``. Prefill
    needs as many keys as queries (N); the closure allocates nothing; its first call autotunes."""
    ops = check_operands(q, k, v, out, what="Triton prefill", lse=lse)
    reason = head_dim_reason(ops.d)
    if reason:
        raise ShapeError(f"Triton prefill: {reason}", "use D = 64 or 128, or the vendor impl")
    if ops.nq != ops.nkv:
        raise ShapeError(
            f"Triton prefill: {ops.nq} queries against {ops.nkv} keys",
            "prefill takes Nq == Nkv; use the decode kernel for one query against a cache",
        )
    n = ops.nq
    qk_scale = (ops.d**-0.5 if scale is None else float(scale)) * LOG2E
    if not math.isfinite(qk_scale):
        raise ShapeError(f"Triton prefill: scale {scale} is not finite", "pass a finite scale")
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_M"]), ops.batch * ops.hq)  # noqa: E731
    args = (
        q, k, v, out, lse if lse is not None else out, n, ops.hq, ops.group, qk_scale,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        size_bucket(n, lo=64),
    )  # fmt: skip
    meta = {"HEAD_DIM": ops.d, "CAUSAL": bool(causal), "HAS_LSE": lse is not None}
    kernel = _prefill_kernel[grid]
    guard = (
        functools.partial(torch.cuda.device, q.device)
        if q.device.type == "cuda"
        else contextlib.nullcontext
    )

    def launch() -> None:
        with guard():
            kernel(*args, **meta)

    return launch
