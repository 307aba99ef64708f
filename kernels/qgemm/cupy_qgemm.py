"""The hand-written quantized GEMMs (``w8a8.cu``, ``w4a16.cu``) launched through CuPy.

Operands are torch CUDA tensors on the current device, handed to CuPy without a copy
(``__cuda_array_interface__``; bf16 as its raw 16-bit storage). Each ``make_*_launch`` validates
once (shapes, dtypes and layout before CuPy is imported, so those errors come first anywhere),
compiles the source with NVRTC on first use (``cupy.RawModule``, cached per source) and
returns a closure that only launches, on CuPy's current stream (the legacy default stream, which
torch's default stream and its timing events share).

* ``make_w8a8_launch(a, b_t, out, scale_a, scale_b)``: int8 A (M, K) and the weight B^T (N, K),
  both row-major; float32 scales (1 or M, 1 or N); bf16 / fp16 out. K % 16 == 0 and 16-byte
  aligned A and B^T. Compute capability >= 8.0: ``wb_w8a8_mma_*``; below: ``wb_w8a8_dp4a_*``.
* ``make_w4a16_launch(x, qweight, scales, zeros, out, group)``: the ``pack.py`` layout; N % 4 == 0,
  x and qweight 16-byte aligned. M <= 16: the split-K GEMV entry of the smallest row count >= M
  (its fp32 workspace and self-resetting counters are allocated here, once); M > 16: the tiled
  GEMM.

The build side needs no GPU: ``wattbench.kernels.cuda_build.compile_report`` (nvcc) and
``wattbench.kernels.nvrtc.compile_report`` (NVRTC, as CuPy) compile a source for one architecture
(at least its ``MIN_ARCH``) with ptxas' resource report.
CuPy is imported only inside functions; without it every launcher raises a UsageError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from wattbench.kernels import cuda_build
from wattbench.kernels.cuda_build import import_cupy
from wattbench.kernels.errors import ShapeError, UnknownKernelError, UsageError
from wattbench.kernels.qgemm import operands

#: the sources (package data) and their extern "C" entry points
ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "w8a8.cu": tuple(
        f"wb_w8a8_{path}_{out}" for path in ("mma", "dp4a") for out in ("bf16", "fp16")
    ),
    "w4a16.cu": tuple(
        [f"wb_w4a16_gemv_{act}_m{mt}" for act in ("fp16", "bf16") for mt in (1, 2, 4, 8, 16)]
        + [f"wb_w4a16_gemm_{act}" for act in ("fp16", "bf16")]
    ),
}
_PACKAGE = __name__.rpartition(".")[0]
#: lowest architecture each source builds for (w8a8: the dp4a entries; w4a16: bf16 and cp.async)
MIN_ARCH = {"w8a8.cu": 75, "w4a16.cu": 80}

# Launch geometry: must match the constants of the .cu files (checked by tests on the source).
W8A8_MMA_TILE = (128, 256)  # BM, BN
W8A8_MMA_THREADS = 256
W8A8_MMA_SMEM_BYTES = 4 * (128 + 256) * 80
W8A8_DP4A_TILE = 64
W4A16_GEMV_BN = 128
W4A16_GEMV_THREADS = 128
W4A16_GEMV_WARPS = 4
W4A16_CHUNK_K = 32
W4A16_GEMV_ROWS = (1, 2, 4, 8, 16)
W4A16_GEMM_TILE = (128, 128)
W4A16_GEMM_THREADS = 256
W4A16_GEMM_SMEM_BYTES = 50688
#: GEMV blocks (128 threads) aimed at per SM when the split is chosen
GEMV_BLOCKS_PER_SM = 8


def source(name: str) -> str:
    return cuda_build.source_text(_PACKAGE, _known(name))


def _known(name: str) -> str:
    return cuda_build.known_source(name, tuple(ENTRY_POINTS), "quantized GEMM")


# --- build side ------------------------------------------------------------------------------


def normalize_arch(arch: str | int, name: str) -> str:
    """``"sm_90"``, ``"90"`` or ``90`` -> ``"sm_90"``, at least the source's MIN_ARCH."""
    return cuda_build.normalize_arch(arch, lowest=MIN_ARCH[_known(name)], what=name)


# --- run side -----------------------------------------------------------------------------------


def _cupy() -> Any:
    return import_cupy("the CuPy quantized GEMMs")


def load_module(name: str) -> Any:
    """Source ``name`` as a ``cupy.RawModule`` (NVRTC, for the current device), cached."""
    return cuda_build.load_module(_PACKAGE, _known(name), what="the CuPy quantized GEMMs")


def _array(cp: Any, t: Any) -> Any:
    """A CuPy view of a torch CUDA tensor (bf16 as int16 storage: the kernels take raw bits)."""
    import torch

    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return cp.asarray(t)


def _on_current_cuda_device(cp: Any, tensors: list) -> None:
    device = cp.cuda.Device().id
    for t in tensors:
        if t.device.type != "cuda" or t.device.index not in (None, device):
            raise UsageError(
                f"the CuPy kernels need tensors on the current CUDA device ({device}), got "
                f"{t.device}",
                "allocate them there and make it current (torch.cuda.set_device)",
            )


def _aligned(named: dict[str, tuple[Any, int]]) -> None:
    for what, (t, align) in named.items():
        if t.data_ptr() % align:
            raise ShapeError(
                f"{what} is not {align}-byte aligned", "pass a freshly allocated contiguous tensor"
            )


def _opt_in(kernel: Any, smem: int) -> None:
    cuda_build.opt_in_smem(
        kernel, smem, what="the kernel", remedy="use the Triton implementation on this GPU"
    )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def make_w8a8_launch(a: Any, b_t: Any, out: Any, scale_a: Any, scale_b: Any) -> Callable[[], None]:
    """``out = (a @ b_t.T) * scale_a * scale_b`` with the int8 kernel of ``w8a8.cu``."""
    import torch

    if not isinstance(b_t, torch.Tensor):
        raise UsageError(f"b_t is a {type(b_t).__name__}", "pass torch CUDA tensors")
    m, n, k = operands.w8a8(a, b_t.t(), out, scale_a, scale_b)
    if a.dtype != torch.int8:
        raise UnknownKernelError(f"the CuPy W8A8 has no {a.dtype} path", "use int8 operands")
    if not (a.is_contiguous() and b_t.is_contiguous() and out.is_contiguous()):
        raise ShapeError("the CuPy W8A8 needs row-major A, B^T and out", "pass .contiguous()")
    if k % 16:
        raise ShapeError(f"the CuPy W8A8 needs K % 16 == 0, got K = {k}", "use Triton for it")
    cp = _cupy()
    _on_current_cuda_device(cp, [a, b_t, out, scale_a, scale_b])
    _aligned({"A": (a, 16), "B^T": (b_t, 16), "out": (out, 4)})
    major = int(cp.cuda.Device().compute_capability) // 10
    out_name = "bf16" if out.dtype == torch.bfloat16 else "fp16"
    path = "mma" if major >= 8 else "dp4a"
    kernel = load_module("w8a8.cu").get_function(f"wb_w8a8_{path}_{out_name}")
    grid: tuple[int, ...]  # blocks: (x,) or (x, y)
    if path == "mma":
        bm, bn = W8A8_MMA_TILE
        grid, block, smem = (_cdiv(m, bm) * _cdiv(n, bn),), (W8A8_MMA_THREADS,), W8A8_MMA_SMEM_BYTES
        _opt_in(kernel, smem)
    else:
        t = W8A8_DP4A_TILE
        grid, block, smem = (_cdiv(n, t), _cdiv(m, t)), (256,), 0
    args = (
        _array(cp, a), _array(cp, b_t), _array(cp, scale_a), _array(cp, scale_b),
        _array(cp, out), np.int32(m), np.int32(n), np.int32(k),
        np.int32(scale_a.numel() > 1), np.int32(scale_b.numel() > 1),
    )  # fmt: skip

    def launch() -> None:
        kernel(grid, block, args, shared_mem=smem)

    launch.entry = kernel  # type: ignore[attr-defined]
    launch.geometry = (grid, block, smem)  # type: ignore[attr-defined]
    return launch


def gemv_rows(m: int) -> int:
    """The GEMV entry's row count for M (the smallest of 1, 2, 4, 8, 16 that is >= M)."""
    for rows in W4A16_GEMV_ROWS:
        if m <= rows:
            return rows
    raise ShapeError(f"the GEMV serves M <= 16, got M = {m}", "use the tiled GEMM")


def gemv_split(n: int, k: int, sms: int) -> tuple[int, int]:
    """(splits, chunks per split) for the GEMV: about GEMV_BLOCKS_PER_SM blocks per SM, every
    warp of a block at least one 32-k chunk, no split empty."""
    bands = _cdiv(n, W4A16_GEMV_BN)
    chunks = k // W4A16_CHUNK_K
    most = max(1, chunks // W4A16_GEMV_WARPS)
    want = min(most, max(1, _cdiv(GEMV_BLOCKS_PER_SM * sms, bands)))
    per_split = _cdiv(chunks, want)
    return _cdiv(chunks, per_split), per_split


def make_w4a16_launch(
    x: Any, qweight: Any, scales: Any, zeros: Any, out: Any, group: int, *, split: int | None = None
) -> Callable[[], None]:
    """``out = x @ dequantize(qweight, scales, zeros)`` with ``w4a16.cu``. ``split`` forces the
    GEMV's number of K splits (default: from the SM count)."""
    import torch

    m, n, k = operands.w4a16(x, qweight, scales, zeros, out, group)
    if n % 4:
        raise ShapeError(f"the CuPy W4A16 needs N % 4 == 0, got N = {n}", "use Triton for it")
    if not (x.is_contiguous() and out.is_contiguous()):
        raise ShapeError("the CuPy W4A16 needs row-major x and out", "pass .contiguous()")
    cp = _cupy()
    _on_current_cuda_device(cp, [x, qweight, scales, zeros, out])
    _aligned(
        {"x": (x, 16), "qweight": (qweight, 16), "scales": (scales, 8), "zeros": (zeros, 4),
         "out": (out, 4)}
    )  # fmt: skip
    act = "bf16" if x.dtype == torch.bfloat16 else "fp16"
    module = load_module("w4a16.cu")
    tensors = [_array(cp, t) for t in (x, qweight, scales, zeros, out)]
    grid: tuple[int, ...]  # blocks: (x,) or (x, y)
    args: tuple[Any, ...]  # the kernel's arguments
    keep: tuple[Any, ...]  # the closure owns its workspace
    if m <= 16:
        sms = cp.cuda.Device().attributes["MultiProcessorCount"]
        splits, per_split = gemv_split(n, k, sms)
        if split is not None:
            per_split = _cdiv(k // W4A16_CHUNK_K, max(1, split))
            splits = _cdiv(k // W4A16_CHUNK_K, per_split)
        kernel = module.get_function(f"wb_w4a16_gemv_{act}_m{gemv_rows(m)}")
        partial = torch.empty(max(1, splits * m * n), dtype=torch.float32, device=x.device)
        counters = torch.zeros(_cdiv(n, W4A16_GEMV_BN), dtype=torch.int32, device=x.device)
        grid, block, smem = (_cdiv(n, W4A16_GEMV_BN), splits), (W4A16_GEMV_THREADS,), 0
        args = (*tensors, _array(cp, partial), _array(cp, counters), np.int32(m), np.int32(n),
                np.int32(k), np.int32(group), np.int32(per_split))  # fmt: skip
        keep = (partial, counters)
    else:
        kernel = module.get_function(f"wb_w4a16_gemm_{act}")
        bm, bn = W4A16_GEMM_TILE
        grid, block = (_cdiv(m, bm) * _cdiv(n, bn),), (W4A16_GEMM_THREADS,)
        smem = W4A16_GEMM_SMEM_BYTES
        _opt_in(kernel, smem)
        args = (*tensors, np.int32(m), np.int32(n), np.int32(k), np.int32(group))
        keep = ()

    def launch() -> None:
        kernel(grid, block, args, shared_mem=smem)

    launch.entry = kernel  # type: ignore[attr-defined]
    launch.geometry = (grid, block, smem)  # type: ignore[attr-defined]
    launch.workspace = keep  # type: ignore[attr-defined]
    return launch
