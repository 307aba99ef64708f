"""Triton W4A16: ``C = X @ W`` with W int4-packed (``pack.py``), group-wise scales and zeros.

X (M, K) and C (M, N) are fp16 or bf16 with unit column stride; ``qweight`` (K // 8, N) int32,
``scales`` (K // G, N) in X's dtype and ``zeros`` (K // G, N) uint8 are contiguous. K % G == 0,
G % 32 == 0; every M, N >= 1 is correct (masked). The dequantized weight
``(q - zero) * scale`` is computed exactly in fp32 and rounded to X's dtype for the tensor cores;
accumulation is fp32 and C is rounded once.

Two kernels, chosen by M:

* M <= ``GEMV_MAX_M`` (16): split-K GEMV. Program (n, s) reads a BLOCK_N-wide column band of
  packed words over its slice of K (word rows ``[s * rows_per_split, ...)``), each word once
  (coalesced along N). For M <= ``FMA_MAX_M`` (4) the weights are dequantized in packed 16-bit
  pairs (:func:`dequantize_pairs`: nibbles i and i + 4 of a word, k offsets 2i and 2i + 1) and
  multiplied by X in registers: one fp32 FMA per weight and row of X into a
  (BLOCK_R, BLOCK_N) accumulator per row, summed over the word rows after the loop (tl.sum).
  For 4 < M <= 16 each nibble plane is dequantized in fp32 (:func:`magic_f32`) and the eight
  nibbles are eight ``tl.dot``s of X[:, 8r + e] (BLOCK_M = 16 rows, masked) by the plane. Either
  way the sum over k is reordered, not the data. With more than one split, each program stores
  its fp32 partial tile into a workspace (split, M, N); the last program of a column band to
  arrive (an acq_rel atomic counter per band, after a block barrier) adds the partials in split
  order -- deterministic -- writes C and resets the counter to 0, so launches need no memset.

  The rule for FMA_MAX_M (an estimate from H100 figures, not a measurement): register FMAs cost
  M fp32 FMAs per weight on 128 FMA lanes per SM and clock; the tl.dot path instead writes each
  dequantized 2-byte weight to shared memory and reads it back for the MMA (4 bytes per weight
  at 128 bytes per clock: 4 lane-clocks per weight, whatever M) and pads M to 16. FMAs are no
  dearer up to M = 4 lane-clocks per weight: FMA_MAX_M = 4. GEMV_MAX_M = 16 is the MMA's M.
  The packed pairs pay only on the FMA path: in the tl.dot path Triton lays the dequantized
  tile out for the MMA, and the pairs compiled to scalar 16-bit operations there (more
  instructions and registers than the fp32 planes, measured with the sm_90a compile report).
* M > 16: tiled GEMM (GROUP_M band order, autotuned). Each k of the BLOCK_K x BLOCK_N weight
  tile is unpacked from its word with a per-k shift, dequantized in registers and fed to one
  ``tl.dot`` with the contiguous X tile.

Dequantization is conversion-free: codes and zeros become floats through :func:`magic_f32`
(``2^23 + i`` by OR-ing ``i`` into the mantissa of 2^23) or, two at a time, through
:func:`dequantize_pairs` (``MAGIC + i`` in each half of a 32-bit word: fp16 1024.0, bf16 128.0),
whose difference is exactly ``q - zero``, so ``(q - zero) * scale`` is bit for bit what
converting each integer gives, without an integer-to-float conversion per weight (the sm_90a
compile report counts none). Both round the weight once to X's dtype (the FMA path then widens
it to fp32 exactly: ``cvt.f32.f16``, which ptxas emits as an HADD2.F32, not a conversion-unit
instruction; bf16 widens by a shift).

The launch closure allocates nothing (workspace and counters are made once per closure).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from wattbench.kernels.env import triton_interpreting
from wattbench.kernels.errors import UsageError
from wattbench.kernels.qgemm import operands
from wattbench.kernels.triton_support import (
    gemm_config,
    grouped_tile,
    last_to_arrive,
    num_sms,
    reset_counter,
    size_bucket,
)

_INTERPRET = triton_interpreting()
#: the GEMV serves M up to this (its tl.dot pads M to 16, the smallest MMA M); the tiled GEMM above
GEMV_MAX_M = 16
#: the GEMV uses register FMAs instead of tl.dot up to this M (module docstring: the rule)
FMA_MAX_M = 4
#: (BLOCK_N, BLOCK_R word rows = 8 * BLOCK_R k) of the GEMV's tl.dot and FMA paths on a GPU
GEMV_GPU_BLOCK = (128, 32)
FMA_GPU_BLOCK = (128, 16)
#: the same in the interpreter: small
GEMV_INTERPRETER_BLOCK = (32, 16)
FMA_INTERPRETER_BLOCK = (32, 8)
#: warps and pipeline stages of the GEMV on a GPU (the interpreter: 1 stage)
GEMV_WARPS = 4
GEMV_GPU_STAGES = 3
FMA_GPU_STAGES = 4
#: programs the GEMV aims at per SM when it picks its split
GEMV_PROGRAMS_PER_SM = 4
#: bits of the 16-bit float whose mantissa unit is 1 (fp16 1024.0, bf16 128.0), per X dtype
MAGIC_16 = {"float16": 0x6400, "bfloat16": 0x4300}


def gemv_block(m: int, interpret: bool = _INTERPRET) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_R) of the GEMV at ``m <= GEMV_MAX_M`` rows (``interpret``: the
    interpreter's small blocks, else the GPU's): the FMA path's BLOCK_M is ``m`` rounded up to a
    power of two (1, 2, 4), the tl.dot path's 16."""
    if m <= FMA_MAX_M:
        return (triton.next_power_of_2(m), *(FMA_INTERPRETER_BLOCK if interpret else FMA_GPU_BLOCK))
    return (16, *(GEMV_INTERPRETER_BLOCK if interpret else GEMV_GPU_BLOCK))


#: GPU configs of the tiled GEMM, each compiled for sm_90a without spills and within 227 KiB of
#: shared memory (``tests/kernels/test_compile_sm90.py``): the dequantized weight tile is staged
#: through shared memory too, so the large tiles take BLOCK_K = 32
_GPU_CONFIGS = [
    gemm_config(128, 256, 32, 8, 8, 3),
    gemm_config(128, 128, 64, 8, 8, 3),
    gemm_config(128, 128, 32, 8, 4, 4),
    gemm_config(64, 128, 64, 8, 4, 4),
    gemm_config(64, 64, 64, 8, 4, 3),
    gemm_config(32, 128, 64, 1, 4, 3),  # 17 <= M <= 32
]
_INTERPRETER_CONFIG = gemm_config(32, 32, 32, 4, 4, 1)
_CONFIGS = [_INTERPRETER_CONFIG] if _INTERPRET else _GPU_CONFIGS


def gpu_configs() -> list[triton.Config]:
    """The GPU configs the autotuner can choose for the tiled GEMM."""
    return _GPU_CONFIGS


#: the bits of the float32 2^23 (8388608.0): its mantissa's unit is 1
MAGIC_F32_BITS = tl.constexpr(0x4B000000)


@triton.jit
def magic_f32(i):
    """``2^23 + i`` as float32, exactly, for int32 ``0 <= i < 2^23``, with no integer-to-float
    conversion: ``i`` is OR-ed into the mantissa of 2^23 and the bits are reinterpreted. The
    difference of two such values is ``float(i - j)`` bit for bit (both exact, and so is their
    difference), which is how the kernels dequantize: ``(q - zero) * scale``."""
    return (i | MAGIC_F32_BITS).to(tl.float32, bitcast=True)


@triton.jit
def dequantize_pairs(words, i: tl.constexpr, zero16, scale, MAGIC: tl.constexpr):
    """The weights of nibbles i and i + 4 of each packed word (k offsets 2i and 2i + 1, see
    ``pack.py``), dequantized in packed 16-bit pairs: shape ``words.shape + (2,)`` (``tl.split``
    gives the two k), in the dtype of ``scale`` (X's; ``scale`` and ``zero16`` shaped like
    ``words``). One shift and one AND / OR put both codes into the mantissas
    of a pair of 16-bit floats ``MAGIC + q`` (MAGIC: fp16 1024.0 = 0x6400, bf16 128.0 = 0x4300,
    whose mantissa unit is 1); one packed subtract of ``zero16`` (``MAGIC + zero``, from
    :func:`magic_16`) gives ``q - zero`` exactly and one packed multiply by the scale rounds
    ``(q - zero) * scale`` once to X's dtype: bit for bit the converting dequantization rounded
    to X's dtype, with no integer-to-float conversion."""
    v = ((words >> (4 * i)) & 0x000F000F) | (MAGIC * 0x10001)
    pair = tl.join(v.to(tl.int16), (v >> 16).to(tl.int16)).to(scale.dtype, bitcast=True)
    return (pair - zero16[:, :, None]) * scale[:, :, None]


@triton.jit
def magic_16(zero, dtype: tl.constexpr, MAGIC: tl.constexpr):
    """``MAGIC + zero`` as the 16-bit float ``dtype`` (``0 <= zero < 16``), by OR-ing the code
    into the mantissa: what :func:`dequantize_pairs` subtracts."""
    return (zero.to(tl.int16) | MAGIC).to(dtype, bitcast=True)


@triton.jit
def _fma_row(acc, x_ptr, pair_off, r_ok, tt, m: tl.constexpr, M, lo, hi):
    """``acc + x[m, k] * lo + x[m, k + 1] * hi`` in fp32 FMAs, k = the even k of ``pair_off``
    (word rows x 2 offsets into row m of X, one 4-byte load per word row); row m >= M reads 0."""
    x_ok = r_ok[:, None] & (tt * 0 + m < M)[None, :]
    x_lo, x_hi = tl.split(tl.load(x_ptr + pair_off, mask=x_ok, other=0).to(tl.float32))
    acc += x_lo[:, None] * lo  # fused: one FMA per weight
    acc += x_hi[:, None] * hi
    return acc


@triton.jit
def _gemv_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, c_ptr, ws_ptr, cnt_ptr, M, N, K, G, stride_xm, stride_cm,
    rows_per_split, num_splits,
    SPLIT: tl.constexpr, FMA: tl.constexpr, MAGIC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    """Grid (column bands, splits); see the module docstring."""
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    ms = tl.arange(0, BLOCK_M)
    m_ok = ms < M
    rr = tl.arange(0, BLOCK_R)
    r_begin = pid_s * rows_per_split
    r_end = tl.minimum(K // 8, r_begin + rows_per_split)
    # FMA: one (BLOCK_R, BLOCK_N) fp32 accumulator per row of X, reduced over the word rows after
    # the loop; those of rows m >= BLOCK_M (and all three with tl.dot) are 1 x 1 and unused
    acc0 = tl.zeros((BLOCK_R, BLOCK_N) if FMA else (BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_R, BLOCK_N) if FMA and BLOCK_M > 1 else (1, 1), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_R, BLOCK_N) if FMA and BLOCK_M > 2 else (1, 1), dtype=tl.float32)
    acc3 = tl.zeros((BLOCK_R, BLOCK_N) if FMA and BLOCK_M > 2 else (1, 1), dtype=tl.float32)
    tt = tl.arange(0, 2)
    for r0 in range(r_begin, r_end, BLOCK_R):
        rows = r0 + rr
        r_ok = rows < r_end
        w_ok = r_ok[:, None] & col_ok[None, :]
        words = tl.load(qw_ptr + rows[:, None].to(tl.int64) * N + cols[None, :], mask=w_ok, other=0)
        g_off = ((rows * 8) // G)[:, None].to(tl.int64) * N + cols[None, :]
        scale = tl.load(s_ptr + g_off, mask=w_ok, other=0.0)  # masked: weight 0
        zero = tl.load(z_ptr + g_off, mask=w_ok, other=0)
        if FMA:
            zero16 = magic_16(zero, scale.dtype, MAGIC)
            for i in tl.static_range(4):  # k = 8 r + 2 i (lo) and 8 r + 2 i + 1 (hi)
                lo, hi = tl.split(dequantize_pairs(words, i, zero16, scale, MAGIC))
                lo = lo.to(tl.float32)  # exact (f16: HADD2.F32 in SASS; bf16: a shift)
                hi = hi.to(tl.float32)
                pair_off = (rows * 8 + 2 * i)[:, None] + tt[None, :]  # k = 8 r + 2 i + t
                acc0 = _fma_row(acc0, x_ptr, pair_off, r_ok, tt, 0, M, lo, hi)
                if BLOCK_M > 1:
                    acc1 = _fma_row(acc1, x_ptr + stride_xm, pair_off, r_ok, tt, 1, M, lo, hi)
                if BLOCK_M > 2:
                    acc2 = _fma_row(acc2, x_ptr + 2 * stride_xm, pair_off, r_ok, tt, 2, M, lo, hi)
                    acc3 = _fma_row(acc3, x_ptr + 3 * stride_xm, pair_off, r_ok, tt, 3, M, lo, hi)
        else:
            scale = scale.to(tl.float32)
            zero = magic_f32(zero.to(tl.int32))
            x_ok = m_ok[:, None] & r_ok[None, :]
            for j in tl.static_range(8):
                e = 2 * (j % 4) + j // 4  # k offset held by nibble j
                q = magic_f32((words >> (4 * j)) & 15)
                w = ((q - zero) * scale).to(x_ptr.dtype.element_ty)
                x_ptrs = x_ptr + ms[:, None] * stride_xm + (rows * 8 + e)[None, :]
                x = tl.load(x_ptrs, mask=x_ok, other=0)
                acc0 = tl.dot(x, w, acc0)
    if FMA:
        out = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        out = tl.where(ms[:, None] == 0, tl.sum(acc0, axis=0)[None, :], out)
        if BLOCK_M > 1:
            out = tl.where(ms[:, None] == 1, tl.sum(acc1, axis=0)[None, :], out)
        if BLOCK_M > 2:
            out = tl.where(ms[:, None] == 2, tl.sum(acc2, axis=0)[None, :], out)
            out = tl.where(ms[:, None] == 3, tl.sum(acc3, axis=0)[None, :], out)
    else:
        out = acc0
    out_ok = m_ok[:, None] & col_ok[None, :]
    c_ptrs = c_ptr + ms[:, None] * stride_cm + cols[None, :]
    if SPLIT:
        tile = ms[:, None] * N + cols[None, :]
        slice_size = tl.cast(M, tl.int64) * N  # 64-bit: splits * M * N may pass 2^31
        tl.store(ws_ptr + pid_s * slice_size + tile, out, mask=out_ok)
        if last_to_arrive(cnt_ptr + pid_n, num_splits):  # the last of this band: split order
            total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for s in range(0, num_splits):
                part = ws_ptr + s * slice_size + tile
                total += tl.load(part, mask=out_ok, other=0.0, cache_modifier=".cg")
            tl.store(c_ptrs, total.to(c_ptr.dtype.element_ty), mask=out_ok)
            reset_counter(cnt_ptr + pid_n)
    else:
        tl.store(c_ptrs, out.to(c_ptr.dtype.element_ty), mask=out_ok)


@triton.autotune(configs=_CONFIGS, key=["M_BUCKET", "N_BUCKET", "K_BUCKET", "G"])
@triton.jit
def _gemm_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, c_ptr, M, N, K, G, stride_xm, stride_cm,
    M_BUCKET, N_BUCKET, K_BUCKET,  # autotune key only
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """One program per BLOCK_M x BLOCK_N tile of C."""
    pid_m, pid_n = grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M
    col_ok = cols < N
    shift = ((ks % 8) // 2 + 4 * (ks % 2)) * 4  # nibble of k offset e = k % 8, times 4 bits
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        kk = kb * BLOCK_K + ks
        k_ok = kk < K
        x = tl.load(
            x_ptr + rows[:, None].to(tl.int64) * stride_xm + kk[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0,
        )
        w_ok = k_ok[:, None] & col_ok[None, :]
        words = tl.load(qw_ptr + (kk // 8)[:, None].to(tl.int64) * N + cols[None, :], mask=w_ok)
        g_off = (kk // G)[:, None].to(tl.int64) * N + cols[None, :]
        scale = tl.load(s_ptr + g_off, mask=w_ok, other=0.0).to(tl.float32)
        zero = magic_f32(tl.load(z_ptr + g_off, mask=w_ok, other=0).to(tl.int32))
        q = magic_f32((words >> shift[:, None]) & 15)
        w = tl.where(w_ok, (q - zero) * scale, 0.0).to(x_ptr.dtype.element_ty)
        acc = tl.dot(x, w, acc)
    c_ptrs = c_ptr + rows[:, None].to(tl.int64) * stride_cm + cols[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


# --- host side ------------------------------------------------------------------------------------


def gemv_split(m: int, n: int, k: int, sms: int) -> tuple[int, int]:
    """(splits, word rows per split) of the GEMV at ``m`` rows: enough programs for
    GEMV_PROGRAMS_PER_SM per SM, each split a whole number of BLOCK_R row blocks, no split
    empty."""
    _, block_n, block_r = gemv_block(m)
    bands = triton.cdiv(n, block_n)
    row_blocks = triton.cdiv(k // 8, block_r)
    want = max(1, min(row_blocks, triton.cdiv(GEMV_PROGRAMS_PER_SM * sms, bands)))
    rows_per_split = triton.cdiv(row_blocks, want) * block_r
    return triton.cdiv(k // 8, rows_per_split), rows_per_split


def make_launch(
    x, qweight, scales, zeros, out, group: int, *, split: int | None = None
) -> Callable[[], None]:
    """Validate once; the closure writes ``x @ dequantize(qweight, scales, zeros)`` into ``out``.
    ``split`` forces the GEMV's number of K splits (default: chosen from the SM count)."""
    m, n, k = operands.w4a16(x, qweight, scales, zeros, out, group)
    device = x.device
    if not _INTERPRET and device.type != "cuda":
        raise UsageError(
            f"the Triton W4A16 needs CUDA tensors, got {device}",
            "use a GPU, or set TRITON_INTERPRET=1 before importing for the CPU interpreter",
        )
    on_cuda = device.type == "cuda"
    guard = functools.partial(torch.cuda.device, device) if on_cuda else contextlib.nullcontext
    if m <= GEMV_MAX_M:
        block_m, block_n, block_r = gemv_block(m)
        fma = m <= FMA_MAX_M
        splits, rows_per_split = gemv_split(m, n, k, num_sms(device))
        if split is not None:
            rows_per_split = triton.cdiv(triton.cdiv(k // 8, max(1, split)), block_r) * block_r
            splits = triton.cdiv(k // 8, rows_per_split)
        bands = triton.cdiv(n, block_n)
        ws = torch.empty(splits * m * n if splits > 1 else 1, dtype=torch.float32, device=device)
        counters = torch.zeros(bands, dtype=torch.int32, device=device)
        grid = (bands, splits)
        args: tuple[Any, ...] = (
            x, qweight, scales, zeros, out, ws, counters, m, n, k, group, x.stride(0),
            out.stride(0), rows_per_split, splits,
        )  # fmt: skip
        stages = FMA_GPU_STAGES if fma else GEMV_GPU_STAGES
        meta = {
            "SPLIT": splits > 1,
            "FMA": fma,
            "MAGIC": MAGIC_16[str(x.dtype).removeprefix("torch.")],
            "BLOCK_M": block_m,
            "BLOCK_N": block_n,
            "BLOCK_R": block_r,
            "num_warps": GEMV_WARPS,
            "num_stages": 1 if _INTERPRET else stages,
        }

        def launch_gemv() -> None:
            with guard():
                _gemv_kernel[grid](*args, **meta)

        launch_gemv.splits = splits  # type: ignore[attr-defined]  # for tests and reports
        launch_gemv.fma = fma  # type: ignore[attr-defined]
        launch_gemv.choice = {  # type: ignore[attr-defined]  # family.launch_choice
            "variant": "gemv-fma" if fma else "gemv-dot",
            "splits": splits,
        }
        return launch_gemv

    kernel = _gemm_kernel[
        lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)
    ]
    args = (
        x, qweight, scales, zeros, out, m, n, k, group, x.stride(0), out.stride(0),
        size_bucket(m), size_bucket(n), size_bucket(k),
    )  # fmt: skip

    def launch_gemm() -> None:
        with guard():
            kernel(*args)

    launch_gemm.splits = 0  # type: ignore[attr-defined]
    launch_gemm.choice = {"variant": "gemm", "splits": 1}  # type: ignore[attr-defined]
    launch_gemm.fma = False  # type: ignore[attr-defined]
    return launch_gemm
