"""Triton matmul: C = scale_a * scale_b * (A @ B), tiled, grouped, optionally persistent.

Operands are 2-D: A is (M, K), B is (K, N), C is (M, N); sizes and strides are counted in
elements, and any strides work (row-major, transposed views, slices). Every size M, N, K >= 1 is
correct: loads and stores are masked, so no size needs to be a multiple of a block.

Invariants:

* Accumulation is fp32 for every input dtype; C is written once, rounded to its dtype.
* fp16 / bf16 inputs give C of the same dtype. fp32 inputs give fp32; ``allow_tf32=False`` (the
  default) means exact IEEE fp32 products (``input_precision="ieee"``), ``True`` lets the tensor
  cores round inputs to tf32 (10-bit mantissa).
* fp8 means ``torch.float8_e4m3fn`` inputs; C is bf16 unless another of fp16 / bf16 / fp32 is
  asked for. On Hopper the fp8 products of each BLOCK_K slice are added into the fp32 accumulator
  (``max_num_imprecise_acc=BLOCK_K``), not accumulated in the tensor cores' reduced precision over
  all of K. fp8 needs compute capability >= 8.9 on a real GPU. For tensor-core-friendly fp8, pass
  B K-contiguous (``b_t.T`` of an (N, K) row-major tensor); any layout is correct.
* ``scale_a`` / ``scale_b`` are per-tensor float32 multipliers (0-d or 1-element tensors on the
  operands' device, or Python floats), applied to the fp32 accumulator before rounding; they are
  read on the device at each launch, so updating them in place needs no new launch closure.

Tiling: programs are mapped to output tiles in GROUP_M super-rows (consecutive programs share
A rows and sweep a band of B columns, which keeps both in L2). The persistent variant launches at
most one program per SM, each looping over tiles with a stride of the grid size in the same order.

Autotuning: the GPU configs of the input kind (16-bit, fp32 / tf32, fp8: ``gpu_configs``; the
autotuner prunes the others) are tuned per (M, N, K) *bucket* -- each size rounded up to a power of
two and clamped to [16, 16384] -- plus dtypes, fp32 precision and scaling, so odd sizes in one
bucket reuse one tuned config. Under ``TRITON_INTERPRET`` (read at import, like Triton itself) the
list is the single small ``_INTERPRETER_CONFIG`` instead: the interpreter is too slow to tune, and
its timings would mean nothing.

Persistent rule: with ``persistent=None``, the persistent kernel is used when the problem has at
least ``PERSISTENT_MIN_WAVES`` (4) full waves of 128x128 reference tiles on the device's SMs, i.e.
``cdiv(M, 128) * cdiv(N, 128) >= 4 * SMs``; the interpreter counts
``triton_support.INTERPRETER_NUM_SMS``.

``make_launch`` validates and precomputes everything once; its closure only launches (the first
call autotunes and compiles, so warm up before measuring).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from wattbench.kernels.env import triton_interpreting
from wattbench.kernels.errors import ShapeError, UnknownKernelError, UsageError
from wattbench.kernels.triton_support import (
    gemm_config,
    grouped_tile,
    num_sms,
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
#: within 227 KiB of shared memory in both kernels (``tests/kernels/test_compile_sm90.py``, the
#: table: ``python -m wattbench.kernels.compile_report --kernel matmul``). Every BLOCK_K >= 32
#: (fp8 tensor cores need it).
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
}
_GPU_CONFIGS: list[triton.Config] = [c for cs in _GPU_CONFIGS_BY_KIND.values() for c in cs]
#: the one config used under TRITON_INTERPRET
_INTERPRETER_CONFIG = gemm_config(32, 32, 32, 4, 4, 1)
_CONFIGS: list[triton.Config] = [_INTERPRETER_CONFIG] if _INTERPRET else _GPU_CONFIGS


def config_kind(dtype: str) -> str:
    """The config list (``"16-bit"``, ``"fp32"``, ``"fp8"``) inputs of a family dtype name
    (``bf16``, ``fp16``, ``fp32``, ``tf32``, ``fp8``) tune over."""
    return {"bf16": "16-bit", "fp16": "16-bit", "tf32": "fp32"}.get(dtype, dtype)


def gpu_configs(kind: str) -> list[triton.Config]:
    """The GPU configs the autotuner can choose for inputs of ``kind`` (:func:`config_kind`)."""
    return _GPU_CONFIGS_BY_KIND[kind]


def _prune(configs: list[triton.Config], named_args: dict, **meta: object) -> list[triton.Config]:
    """The autotuner's early pruning: only the configs of the launch's input kind (none under
    the interpreter: its one config is for every launch)."""
    if _INTERPRET:
        return configs
    keep = gpu_configs(config_kind(_NAMES[named_args["a_ptr"].dtype]))
    return [c for c in configs if any(c is k for k in keep)]


_PRUNE = {"early_config_prune": _prune}
_TUNE_KEY = ["M_BUCKET", "N_BUCKET", "K_BUCKET", "INPUT_PRECISION", "HAS_SCALE"]


# --- device code ----------------------------------------------------------------------------------


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
):
    """Compute and store one BLOCK_M x BLOCK_N tile of C; fp32 accumulator, masked edges."""
    # 64-bit tile origins (large operands overflow int32 offsets); in-tile offsets stay 32-bit.
    row0 = pid_m.to(tl.int64) * BLOCK_M
    col0 = pid_n.to(tl.int64) * BLOCK_N
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
        if IS_FP8:
            # promote the tensor cores' partial sums into fp32 after every BLOCK_K products
            acc = tl.dot(a, b, acc, max_num_imprecise_acc=BLOCK_K)
        else:
            acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    if HAS_SCALE:
        acc = acc * (tl.load(scale_a_ptr) * tl.load(scale_b_ptr))
    c_ptrs = c_ptr + row0 * stride_cm + col0 * stride_cn
    c_ptrs += rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


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
        pid_m, pid_n, BLOCK_M, BLOCK_N, BLOCK_K, INPUT_PRECISION, HAS_SCALE, IS_FP8,
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
            pid_m, pid_n, BLOCK_M, BLOCK_N, BLOCK_K, INPUT_PRECISION, HAS_SCALE, IS_FP8,
        )  # fmt: skip


# --- host side ------------------------------------------------------------------------------------


def use_persistent(m: int, n: int, sms: int) -> bool:
    """The automatic choice: at least PERSISTENT_MIN_WAVES waves of 128x128 tiles on ``sms``."""
    tiles = triton.cdiv(m, _REFERENCE_TILE) * triton.cdiv(n, _REFERENCE_TILE)
    return tiles >= PERSISTENT_MIN_WAVES * sms


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
) -> Callable[[], None]:
    """Validate once and return a closure that writes ``scale_a * scale_b * (a @ b)`` into ``out``.

    ``out`` (M, N) must have the inputs' dtype (fp8: bf16, fp16 or fp32). ``allow_tf32`` only
    affects fp32 inputs (default False: exact IEEE fp32). A missing scale counts as 1.0; float
    scales become 0-d float32 tensors here, once. ``persistent=None`` applies the module's
    persistent rule. The closure allocates and checks nothing; its first call autotunes.
    """
    m, n, k, name = _check_operands(a, b)
    _check_out(out, m, n, name, a)
    has_scale = scale_a is not None or scale_b is not None
    sa = sb = None
    if has_scale:
        sa = _scale(1.0 if scale_a is None else scale_a, "scale_a", a.device)
        sb = _scale(1.0 if scale_b is None else scale_b, "scale_b", a.device)
    sms = num_sms(a.device)
    if persistent is None:
        persistent = use_persistent(m, n, sms)

    def tiles(meta: dict) -> int:
        return triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])

    if persistent:
        kernel = _matmul_persistent_kernel[lambda meta: (min(sms, tiles(meta)),)]
    else:
        kernel = _matmul_kernel[lambda meta: (tiles(meta),)]
    args = (
        a, b, out, sa, sb, m, n, k,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        size_bucket(m), size_bucket(n), size_bucket(k),
    )  # fmt: skip
    meta = {
        "INPUT_PRECISION": "tf32" if (allow_tf32 and name == "fp32") else "ieee",
        "HAS_SCALE": has_scale,
        "IS_FP8": name == "fp8",
    }
    guard = (
        functools.partial(torch.cuda.device, a.device)
        if a.device.type == "cuda"
        else contextlib.nullcontext
    )

    def launch() -> None:
        with guard():
            kernel(*args, **meta)

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
        a, b, out, scale_a=scale_a, scale_b=scale_b, allow_tf32=allow_tf32, persistent=persistent
    )()
    return out
