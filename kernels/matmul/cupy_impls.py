"""CuPy implementations (``wattbench.kernels.matmul.cupy_matmul``): GPU only.

``cupy``: the hand-written tensor-core kernel (gemm.cu, sm_80+); ``cublas-cupy``: cupy.matmul
(cuBLAS through CuPy). The torch CUDA tensors are handed over as they are: cupy_matmul views them
through ``__cuda_array_interface__`` without a copy, so the kernel writes the same output tensor.
CuPy launches on its current stream, the legacy default stream, which torch's default stream (and
the timing events on it) share.
"""

from __future__ import annotations

from collections.abc import Callable

from wattbench.kernels.errors import UnknownKernelError
from wattbench.kernels.family import Impl, ImplUnavailable, Inputs, Launch


def _build(inputs: Inputs, make: Callable[..., Launch]) -> Launch:
    try:
        return make(inputs["a"], inputs["b"], inputs.out)
    except UnknownKernelError as exc:
        if inputs.dtype == "bf16":  # a CuPy without bfloat16 (no ml_dtypes): not here, not wrong
            raise ImplUnavailable(exc.message, exc.remedy) from exc
        raise


def make_kernel_launch(inputs: Inputs) -> Launch:
    from wattbench.kernels.matmul import cupy_matmul

    return _build(inputs, cupy_matmul.make_launch)


def make_cublas_launch(inputs: Inputs) -> Launch:
    from wattbench.kernels.matmul import cupy_matmul

    return _build(inputs, cupy_matmul.make_cublas_launch)


CUPY = Impl(
    name="cupy",
    description="hand-written tensor-core kernel (kernels/matmul/gemm.cu) launched by CuPy",
    min_compute_capability={"fp16": (8, 0), "bf16": (8, 0)},
    requires=("torch", "cupy"),
    make_launch=make_kernel_launch,
)

CUBLAS_CUPY = Impl(
    name="cublas-cupy",
    description="cupy.matmul (cuBLAS through CuPy)",
    min_compute_capability={"fp16": (7, 0), "bf16": (8, 0), "fp32": (7, 0)},
    math={
        "fp32": "IEEE fp32 (CuPy uses TF32 only when CUPY_TF32=1 is set)",
        "bf16": "needs CuPy with ml_dtypes bfloat16",
    },
    requires=("torch", "cupy"),
    make_launch=make_cublas_launch,
)
