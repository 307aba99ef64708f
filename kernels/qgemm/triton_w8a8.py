"""Triton W8A8: ``C = (A @ B) * scale_a[m] * scale_b[n]`` for int8 and fp8 e4m3 operands.

A (M, K) and B (K, N) may have any strides (B is usually the K-contiguous view of an (N, K)
weight); sizes are elements. Every M, N, K >= 1 is correct (masked loads and stores).

* int8: ``tl.dot(..., out_dtype=int32)`` -- exact int32 accumulation (K <= 133143); the scales
  are applied to the accumulator converted to fp32.
* fp8 (``torch.float8_e4m3fn``): fp32 accumulation; on Hopper the tensor cores' partial sums are
  added into the fp32 accumulator after every BLOCK_K products (``max_num_imprecise_acc``).
  ``fast_acc=True`` (the ``triton-fastacc`` implementation, fp8 only, as cuBLAS'
  ``use_fast_accum``) omits it: the Hopper tensor cores then accumulate the whole K in their own
  reduced-precision fp32 adder, with no second accumulator (so no partial-sum adds and fewer
  registers: the 128x256x128 tile fits).
* Scales are float32: ``scale_a`` one per row of A or one for all (a 1-element tensor),
  ``scale_b`` one per column of B or one for all; a 1-element scale is read with stride 0.
* C is bf16 or fp16, rounded once from fp32.

Tiles are visited in GROUP_M bands (A rows reused from L2). The GPU configs of the operand kind
(``gpu_configs``; the autotuner prunes the others) are tuned per power-of-two bucket of
(M, N, K); under ``TRITON_INTERPRET`` the one small ``_INTERPRETER_CONFIG`` is used.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from wattbench.kernels.env import triton_interpreting
from wattbench.kernels.errors import UsageError
from wattbench.kernels.qgemm import operands
from wattbench.kernels.triton_support import gemm_config, grouped_tile, size_bucket

_INTERPRET = triton_interpreting()


#: GPU configs per operand kind, each compiled for sm_90a without spills and within 227 KiB of
#: shared memory (``tests/kernels/test_compile_sm90.py``). BLOCK_K >= 64 (int8 / fp8 MMAs are 32
#: deep); 128x256x128 is the large int8 tile.
_GPU_CONFIGS_INT8 = [
    gemm_config(128, 256, 128, 8, 8, 3),
    gemm_config(256, 128, 128, 8, 8, 3),
    gemm_config(128, 128, 128, 8, 4, 4),
    gemm_config(128, 128, 64, 8, 4, 4),
    gemm_config(64, 128, 128, 8, 4, 4),
    gemm_config(64, 64, 64, 8, 4, 3),
    gemm_config(16, 64, 256, 1, 4, 4),  # decode-like M <= 16
    gemm_config(32, 128, 128, 1, 4, 4),
]
#: fp8: the precise accumulation (max_num_imprecise_acc=BLOCK_K) keeps a partial accumulator
#: beside the fp32 one, so 128x128 tiles need 8 warps and larger ones spill
_GPU_CONFIGS_FP8 = [
    gemm_config(128, 128, 128, 8, 8, 3),
    gemm_config(128, 128, 64, 8, 8, 4),
    gemm_config(64, 128, 128, 8, 4, 4),
    gemm_config(64, 64, 64, 8, 4, 3),
    gemm_config(16, 64, 256, 1, 4, 4),  # decode-like M <= 16
    gemm_config(32, 128, 128, 1, 4, 4),
]
#: fp8 fast accumulation: one accumulator, so 128x256 tiles compile without spills
_GPU_CONFIGS_FP8_FAST = [
    gemm_config(128, 256, 128, 8, 8, 3),
    gemm_config(128, 128, 128, 8, 8, 4),
    gemm_config(128, 128, 128, 8, 4, 4),
    gemm_config(64, 128, 128, 8, 4, 4),
    gemm_config(64, 64, 64, 8, 4, 3),
    gemm_config(16, 64, 256, 1, 4, 4),  # decode-like M <= 16
    gemm_config(32, 128, 128, 1, 4, 4),
]
_GPU_CONFIGS = _GPU_CONFIGS_INT8 + _GPU_CONFIGS_FP8 + _GPU_CONFIGS_FP8_FAST
_INTERPRETER_CONFIG = gemm_config(32, 32, 32, 4, 4, 1)
_CONFIGS = [_INTERPRETER_CONFIG] if _INTERPRET else _GPU_CONFIGS


def gpu_configs(fp8: bool, fast_acc: bool = False) -> list[triton.Config]:
    """The GPU configs the autotuner can choose for fp8 (else int8) operands; ``fast_acc``: those
    of the fp8 fast-accumulation kernel."""
    if fp8:
        return _GPU_CONFIGS_FP8_FAST if fast_acc else _GPU_CONFIGS_FP8
    return _GPU_CONFIGS_INT8


def _prune(configs: list[triton.Config], named_args: dict, **meta: object) -> list[triton.Config]:
    """The autotuner's early pruning: only the configs of the launch's operand kind (none under
    the interpreter: its one config is for every launch)."""
    if _INTERPRET:
        return configs
    keep = gpu_configs(bool(meta.get("IS_FP8")), bool(meta.get("FAST_ACC")))
    return [c for c in configs if any(c is k for k in keep)]


_PRUNE = {"early_config_prune": _prune}


@triton.autotune(
    configs=_CONFIGS,
    key=["M_BUCKET", "N_BUCKET", "K_BUCKET", "IS_FP8", "FAST_ACC"],
    prune_configs_by=_PRUNE,
)
@triton.jit
def _w8a8_kernel(
    a_ptr, b_ptr, c_ptr, sa_ptr, sb_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_sa, stride_sb,
    M_BUCKET, N_BUCKET, K_BUCKET,  # autotune key only
    IS_FP8: tl.constexpr, FAST_ACC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """One program per BLOCK_M x BLOCK_N tile of C."""
    pid_m, pid_n = grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    row0 = pid_m.to(tl.int64) * BLOCK_M
    col0 = pid_n.to(tl.int64) * BLOCK_N
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M - row0
    col_ok = cols < N - col0
    a_ptrs = a_ptr + row0 * stride_am + (rows[:, None] * stride_am + ks[None, :] * stride_ak)
    b_ptrs = b_ptr + col0 * stride_bn + (ks[:, None] * stride_bk + cols[None, :] * stride_bn)
    if IS_FP8:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        k_ok = ks < K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        if IS_FP8 and FAST_ACC:
            acc = tl.dot(a, b, acc)
        elif IS_FP8:
            acc = tl.dot(a, b, acc, max_num_imprecise_acc=BLOCK_K)
        else:
            acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    sa = tl.load(sa_ptr + (row0 + rows) * stride_sa, mask=row_ok, other=0.0)
    sb = tl.load(sb_ptr + (col0 + cols) * stride_sb, mask=col_ok, other=0.0)
    c = acc.to(tl.float32) * sa[:, None] * sb[None, :]
    c_ptrs = c_ptr + row0 * stride_cm + col0 * stride_cn
    c_ptrs += rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, c.to(c_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


def make_launch(
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    *,
    fast_acc: bool = False,
) -> Callable[[], None]:
    """Validate once; the closure writes ``(a @ b) * scale_a * scale_b`` into ``out`` (its first
    call autotunes and compiles). ``fast_acc``: fp8 fast accumulation (module docstring)."""
    m, n, k = operands.w8a8(a, b, out, scale_a, scale_b)
    is_fp8 = a.dtype == torch.float8_e4m3fn
    if fast_acc and not is_fp8:
        raise UsageError(
            f"fast accumulation is for fp8 operands, got {a.dtype}",
            "use the plain Triton W8A8 for int8",
        )
    if not _INTERPRET and a.device.type != "cuda":
        raise UsageError(
            f"the Triton W8A8 needs CUDA tensors, got {a.device}",
            "use a GPU, or set TRITON_INTERPRET=1 before importing for the CPU interpreter",
        )
    args = (
        a, b, out, scale_a, scale_b, m, n, k,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        int(scale_a.numel() > 1), int(scale_b.numel() > 1),
        size_bucket(m), size_bucket(n), size_bucket(k),
    )  # fmt: skip
    kernel = _w8a8_kernel[
        lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)
    ]
    guard = (
        functools.partial(torch.cuda.device, a.device)
        if a.device.type == "cuda"
        else contextlib.nullcontext
    )

    def launch() -> None:
        with guard():
            kernel(*args, IS_FP8=is_fp8, FAST_ACC=fast_acc)

    return launch
