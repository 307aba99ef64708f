"""Implementations of ``w4a16`` (baseline first): vendor (dequantize + torch.matmul), Triton
(``triton_w4a16.py``), CuPy (``w4a16.cu``); both kernels dispatch M <= 16 to a split-K GEMV
(Triton: register FMAs on f16x2 / bf16x2-dequantized weights for M <= 4, tl.dot above)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattbench.kernels.errors import UsageError
from wattbench.kernels.family import Impl, ImplUnavailable, Inputs, Launch, Shape
from wattbench.kernels.qgemm import vendor
from wattbench.kernels.qgemm.names import W4A16_DTYPES, group_of

if TYPE_CHECKING:
    from torch import Tensor


def _operands(inputs: Inputs) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """x, qweight, scales, zeros, out."""
    return (inputs["x"], inputs["qweight"], inputs["scales"], inputs["zeros"], inputs.out)


def _triton_launch(inputs: Inputs) -> Launch:
    from wattbench.kernels.qgemm import triton_w4a16

    return triton_w4a16.make_launch(*_operands(inputs), group_of(inputs.dtype))


def _cupy_launch(inputs: Inputs) -> Launch:
    from wattbench.kernels.qgemm import cupy_qgemm

    try:
        return cupy_qgemm.make_w4a16_launch(*_operands(inputs), group_of(inputs.dtype))
    except UsageError as exc:
        if "cupy" in exc.message:  # not installed: not here, not wrong
            raise ImplUnavailable(exc.message, exc.remedy) from exc
        raise


def _cupy_limits(shape: Shape, dtype: str, on_cuda: bool) -> str | None:
    if shape[1] % 4:
        return "the CuPy W4A16 reads 4 packed words (16 bytes) at a time: N must be a multiple of 4"
    return None


_ALL = {name: (8, 0) for name in W4A16_DTYPES}

VENDOR = Impl(
    name="vendor",
    description="dequantize with torch ops into a bf16 / fp16 weight, then torch.matmul "
    "(cuBLAS). The baseline.",
    min_compute_capability=_ALL,
    requires=("torch",),
    cpu_path="torch",
    make_launch=vendor.make_w4a16_launch,
)

TRITON = Impl(
    name="triton",
    description="Triton: split-K GEMV for M <= 16 (register FMAs on weights dequantized in "
    "f16x2 / bf16x2 pairs for M <= 4, tl.dot above), tiled GEMM dequantizing in registers above "
    "(kernels/qgemm/triton_w4a16.py)",
    min_compute_capability=_ALL,
    math={d: "weights dequantized exactly, rounded to the activation dtype" for d in _ALL},
    requires=("torch", "triton"),
    cpu_path="triton-interpreter",
    cpu_dtypes=tuple(d for d in W4A16_DTYPES if d.startswith("fp16")),
    cpu_max_flops=2.0**23,
    make_launch=_triton_launch,
)

CUPY = Impl(
    name="cupy",
    description="hand-written CUDA (kernels/qgemm/w4a16.cu): split-K GEMV with 16-byte loads "
    "for M <= 16, mma.sync GEMM dequantizing B fragments in registers above",
    min_compute_capability=_ALL,
    math={
        d: "GEMV: exact (q - z) in fp32, scale per group; GEMM: weights rounded to the "
        "activation dtype"
        for d in _ALL
    },
    requires=("torch", "cupy"),
    make_launch=_cupy_launch,
    limits=_cupy_limits,
)

IMPLS = (VENDOR, TRITON, CUPY)
