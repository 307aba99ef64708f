"""The hand-written tensor-core GEMM (``gemm.cu``) through CuPy, and cuBLAS through ``cupy.matmul``.

C = A @ B with A (M, K), B (K, N) and C (M, N), all 2-D, C-contiguous (row-major) and on the
current CUDA device. Sizes are counted in elements, shared memory in bytes.

* ``make_launch``: ``gemm.cu`` compiled by NVRTC (``cupy.RawModule``); fp16 and bf16 in and out,
  fp32 accumulation. Any M, N, K >= 1 is correct. The fast entry point (cp.async 16-byte copies)
  is chosen when K % 8 == 0, N % 8 == 0 and A, B and C start on 16-byte boundaries; other problems
  run the guarded 2-byte-load entry point of the same tiling.
* ``make_cublas_launch``: ``cupy.matmul(a, b, out=c)``; fp16, bf16 (CuPy with ``ml_dtypes``
  bfloat16 support) and fp32.

Operands are CuPy arrays or anything exposing ``__cuda_array_interface__`` (a torch CUDA tensor,
for instance). bf16 that is not a CuPy bfloat16 array -- a torch tensor, or typestr ``<V2`` in the
interface (``ml_dtypes``' spelling) -- is viewed as raw 16-bit storage, which is all the
hand-written kernel needs (cupy.matmul then needs CuPy's own bfloat16).
Both ``make_*`` functions validate once and return a closure that only launches: no allocation,
no validation, on CuPy's current stream.

CuPy is imported only inside functions, so this module imports without the GPU stack; without
CuPy every entry that needs it raises a UsageError naming the install command.

The build side needs no GPU: ``compile_report`` compiles ``gemm.cu`` (with a tile
configuration's defines) for one architecture through ``wattbench.kernels.cuda_build`` (nvcc,
ptxas' resource report per entry point); ``wattbench.kernels.nvrtc`` does it through NVRTC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wattbench.kernels import cuda_build
from wattbench.kernels.cuda_build import PtxasEntry, import_cupy
from wattbench.kernels.errors import ShapeError, UnknownKernelError, UsageError

#: dtypes of the hand-written kernel (wattbench vocabulary)
SUPPORTED_DTYPES: tuple[str, ...] = ("fp16", "bf16")
#: dtypes of the cuBLAS launch through cupy.matmul
CUBLAS_DTYPES: tuple[str, ...] = ("fp16", "bf16", "fp32")
#: extern "C" entry points of gemm.cu
ENTRY_POINTS: tuple[str, ...] = tuple(
    f"wb_gemm_{dtype}_{path}" for dtype in SUPPORTED_DTYPES for path in ("aligned", "unaligned")
)
#: the source file, package data of this package
SOURCE_NAME = "gemm.cu"
_PACKAGE = __name__.rpartition(".")[0]

_DTYPE_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
_MAX_DIM = 2**30  # the kernel indexes rows and columns with int (offsets are 64-bit)
_ALIGN_BYTES = 16  # one cp.async chunk


@dataclass(frozen=True)
class TileConfig:
    """The compile-time tiling of ``gemm.cu`` (its ``WB_GEMM_*`` macros); defaults equal the
    source's. The kernel's static_asserts reject combinations it cannot run."""

    bm: int = 128  # block tile rows
    bn: int = 256  # block tile columns
    bk: int = 64  # k depth of one pipeline stage
    warps_m: int = 2
    warps_n: int = 4
    stages: int = 3  # shared-memory pipeline stages
    group_m: int = 8  # block rows per group of the grouped block order

    @property
    def threads(self) -> int:
        """Threads per block."""
        return 32 * self.warps_m * self.warps_n

    @property
    def smem_bytes(self) -> int:
        """Dynamic shared memory per block: stages of A (bm x bk) and B (bk x bn) tiles, each row
        padded by 8 elements of 2 bytes."""
        return self.stages * (self.bm * (self.bk + 8) + self.bk * (self.bn + 8)) * 2

    def blocks(self, m: int, n: int) -> int:
        """Blocks of the 1-D grid for an (m, n) output."""
        return math.ceil(m / self.bm) * math.ceil(n / self.bn)

    def defines(self) -> tuple[str, ...]:
        """Compiler options that set every tiling macro."""
        values = {
            "BM": self.bm,
            "BN": self.bn,
            "BK": self.bk,
            "WARPS_M": self.warps_m,
            "WARPS_N": self.warps_n,
            "STAGES": self.stages,
            "GROUP_M": self.group_m,
        }
        return tuple(f"-DWB_GEMM_{name}={value}" for name, value in values.items())


DEFAULT_TILES = TileConfig()


def source() -> str:
    """The CUDA C source of the kernel."""
    return cuda_build.source_text(_PACKAGE, SOURCE_NAME)


# --- build side: nvcc and the ptxas resource report ----------------------------------------------


def normalize_arch(arch: str | int) -> str:
    """``"sm_90"``, ``"90"`` or ``90`` -> ``"sm_90"``; the kernel needs sm_80 or newer."""
    return cuda_build.normalize_arch(arch, lowest=80, what="the GEMM")


def compile_report(
    arch: str | int,
    workdir: str | Path,
    *,
    tiles: TileConfig = DEFAULT_TILES,
    nvcc: str | None = None,
) -> list[PtxasEntry]:
    """Compile ``gemm.cu`` with nvcc for ``arch`` into ``workdir`` and return ptxas' report."""
    return cuda_build.compile_report(
        _PACKAGE, SOURCE_NAME, arch, workdir, defines=tiles.defines(), nvcc=nvcc,
        remedy="check the tile configuration against the static_asserts in gemm.cu",
    )  # fmt: skip


# --- run side: CuPy ------------------------------------------------------------------------------


def _cupy() -> Any:
    return import_cupy("the CuPy GEMM")


def load_module(tiles: TileConfig = DEFAULT_TILES) -> Any:
    """``gemm.cu`` as a ``cupy.RawModule`` (NVRTC; compiled for the current device on first use),
    cached per tile configuration for the life of the process (``cuda_build.clear_module_cache``).
    """
    return cuda_build.load_module(_PACKAGE, SOURCE_NAME, tiles.defines(), what="the CuPy GEMM")


def _as_device_array(cp: Any, x: Any, role: str) -> tuple[Any, str]:
    """(CuPy array sharing x's memory, dtype name). bf16 that is not a CuPy array (a torch
    tensor, or typestr ``<V2`` in ``__cuda_array_interface__``) becomes a 16-bit integer view,
    since CuPy may have no bfloat16 dtype."""
    if isinstance(x, cp.ndarray):
        return x, _DTYPE_NAMES.get(x.dtype.name, x.dtype.name)
    if str(getattr(x, "dtype", "")) == "torch.bfloat16":
        # torch releases differ on exporting bf16 through the interface; int16 always works
        import torch

        return cp.asarray(x.view(torch.int16)), "bf16"
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is None:
        raise ShapeError(
            f"{role} is not a CUDA array: {type(x).__name__}",
            "pass a CuPy array or a CUDA tensor (anything with __cuda_array_interface__)",
        )
    if cai["typestr"][1:] != "V2":
        arr = cp.asarray(x)
        return arr, _DTYPE_NAMES.get(arr.dtype.name, arr.dtype.name)
    shape = tuple(int(d) for d in cai["shape"])
    strides = cai.get("strides")
    if strides is not None and tuple(strides) != _c_strides(shape, 2):
        raise ShapeError(
            f"{role} is not C-contiguous (strides {tuple(strides)} bytes)",
            "pass a row-major contiguous array (e.g. tensor.contiguous())",
        )
    nbytes = 2 * math.prod(shape)
    memory = cp.cuda.UnownedMemory(int(cai["data"][0]), nbytes, x)
    arr = cp.ndarray(shape, dtype=cp.uint16, memptr=cp.cuda.MemoryPointer(memory, 0))
    return arr, "bf16"


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


@dataclass(frozen=True)
class _Operands:
    a: Any
    b: Any
    out: Any
    m: int
    n: int
    k: int
    dtype: str


def _operands(a: Any, b: Any, out: Any, dtypes: Sequence[str], impl: str) -> _Operands:
    """Wrap and validate (a, b, out) once: 2-D, C-contiguous, matching shapes, one dtype."""
    cp = _cupy()
    wrapped = [_as_device_array(cp, x, role) for x, role in ((a, "a"), (b, "b"), (out, "out"))]
    (a_arr, a_dt), (b_arr, b_dt), (c_arr, c_dt) = wrapped
    for arr, role, form in (
        (a_arr, "a", "(M, K)"),
        (b_arr, "b", "(K, N)"),
        (c_arr, "out", "(M, N)"),
    ):
        if arr.ndim != 2:
            raise ShapeError(f"{role} must be 2-D {form}; got shape {arr.shape}", "pass matrices")
        if not arr.flags.c_contiguous:
            raise ShapeError(
                f"{role} is not C-contiguous (strides {arr.strides} bytes)",
                "pass a row-major contiguous array (e.g. cupy.ascontiguousarray)",
            )
    (m, k), (k2, n) = a_arr.shape, b_arr.shape
    if k != k2:
        raise ShapeError(
            f"inner dimensions differ: a is {a_arr.shape}, b is {b_arr.shape}",
            "a must be (M, K) and b (K, N)",
        )
    if c_arr.shape != (m, n):
        raise ShapeError(f"out is {c_arr.shape}; a @ b is {(m, n)}", "allocate out as (M, N)")
    if min(m, n, k) < 1 or max(m, n, k) >= _MAX_DIM:
        raise ShapeError(
            f"M, N, K = {m}, {n}, {k} is outside [1, 2**30)", "use sizes from 1 to 2**30 - 1"
        )
    if not a_dt == b_dt == c_dt:
        raise UnknownKernelError(
            f"operand dtypes differ: a {a_dt}, b {b_dt}, out {c_dt}",
            "give a, b and out one dtype",
        )
    if a_dt not in dtypes:
        raise UnknownKernelError(
            f"{impl} has no dtype {a_dt!r}", f"use one of: {', '.join(dtypes)}"
        )
    device = cp.cuda.Device().id
    if any(arr.data.device_id != device for arr in (a_arr, b_arr, c_arr)):
        raise UsageError(
            f"the operands are not all on the current CUDA device ({device})",
            "allocate them on one device and make it current (cupy.cuda.Device(i).use())",
        )
    spans = [(arr.data.ptr, arr.data.ptr + arr.nbytes) for arr in (a_arr, b_arr)]
    if any(lo < c_arr.data.ptr + c_arr.nbytes and c_arr.data.ptr < hi for lo, hi in spans):
        raise ShapeError("out overlaps an input", "give out its own memory")
    return _Operands(a_arr, b_arr, c_arr, m, n, k, a_dt)


def entry_point(dtype: str, n: int, k: int, pointers: Sequence[int]) -> str:
    """The entry point of ``gemm.cu`` for a problem (any M works on both paths): ``aligned`` when
    K and N are multiples of 8 (rows of whole 16-byte chunks) and every pointer (bytes) is
    16-byte aligned, else ``unaligned``."""
    if dtype not in SUPPORTED_DTYPES:
        raise UnknownKernelError(
            f"the CuPy GEMM has no dtype {dtype!r}", f"use one of: {', '.join(SUPPORTED_DTYPES)}"
        )
    aligned = k % 8 == 0 and n % 8 == 0 and all(p % _ALIGN_BYTES == 0 for p in pointers)
    return f"wb_gemm_{dtype}_{'aligned' if aligned else 'unaligned'}"


def make_launch(
    a: Any, b: Any, out: Any, *, tiles: TileConfig = DEFAULT_TILES
) -> Callable[[], None]:
    """A closure computing ``out = a @ b`` with the hand-written kernel: validates, compiles (once
    per process) and sizes the launch now; each call only launches, asynchronously."""
    cp = _cupy()
    ops = _operands(a, b, out, SUPPORTED_DTYPES, "the CuPy GEMM")
    # Raw 16-bit views: the kernel takes u16 pointers whatever CuPy calls the dtype.
    a16, b16, c16 = (x.view(cp.uint16) for x in (ops.a, ops.b, ops.out))
    name = entry_point(ops.dtype, ops.n, ops.k, [x.data.ptr for x in (a16, b16, c16)])
    kernel = load_module(tiles).get_function(name)
    smem = tiles.smem_bytes
    cuda_build.opt_in_smem(
        kernel,
        smem,
        what="the GEMM tiles",
        remedy="use a TileConfig with fewer stages or smaller tiles",
    )
    grid = (tiles.blocks(ops.m, ops.n),)
    if grid[0] >= 2**31:
        raise ShapeError(f"{grid[0]} blocks exceed a CUDA grid", "split the problem")
    block = (tiles.threads,)
    args = (a16, b16, c16, np.int32(ops.m), np.int32(ops.n), np.int32(ops.k))

    def launch() -> None:
        kernel(grid, block, args, shared_mem=smem)

    return launch


def make_cublas_launch(a: Any, b: Any, out: Any) -> Callable[[], None]:
    """A closure computing ``out = a @ b`` with ``cupy.matmul`` (cuBLAS); validates now."""
    cp = _cupy()
    ops = _operands(a, b, out, CUBLAS_DTYPES, "cupy.matmul")
    a_arr, b_arr, c_arr = ops.a, ops.b, ops.out
    if ops.dtype == "bf16" and a_arr.dtype.name != "bfloat16":
        a_arr, b_arr, c_arr = _bf16_views((a_arr, b_arr, c_arr))

    def launch() -> None:
        cp.matmul(a_arr, b_arr, out=c_arr)

    return launch


def _bf16_views(arrays: Sequence[Any]) -> list[Any]:
    """16-bit integer storage viewed as CuPy's bfloat16 (``ml_dtypes``), where this CuPy has one."""
    remedy = "bf16 in cupy.matmul needs CuPy >= 14 with ml_dtypes installed (pip install ml_dtypes)"
    try:
        import ml_dtypes
    except ImportError:
        raise UnknownKernelError("cupy.matmul has no bf16 here: no ml_dtypes", remedy) from None
    try:
        return [x.view(ml_dtypes.bfloat16) for x in arrays]
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise UnknownKernelError(f"this CuPy has no bfloat16 dtype ({exc})", remedy) from None
