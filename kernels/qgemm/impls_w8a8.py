"""Implementations of ``w8a8`` (baseline first): vendor (torch._int_mm / torch._scaled_mm),
Triton (``triton_w8a8.py``; ``triton-fastacc``: fp8 with fast accumulation), CuPy (``w8a8.cu``:
int8 mma.sync on sm_80+, dp4a below)."""

from __future__ import annotations

from wattbench.kernels.errors import UsageError
from wattbench.kernels.family import Impl, ImplUnavailable, Inputs, Launch, Shape
from wattbench.kernels.matmul.triton_impl import FASTACC_FP8_TOLERANCE  # the same accumulation
from wattbench.kernels.qgemm import vendor


def _triton_launch(inputs: Inputs) -> Launch:
    from wattbench.kernels.qgemm import triton_w8a8

    return triton_w8a8.make_launch(
        inputs["a"], inputs["b"], inputs.out, inputs["scale_a"], inputs["scale_b"]
    )


def _triton_fastacc_launch(inputs: Inputs) -> Launch:
    from wattbench.kernels.qgemm import triton_w8a8

    return triton_w8a8.make_launch(
        inputs["a"], inputs["b"], inputs.out, inputs["scale_a"], inputs["scale_b"], fast_acc=True
    )


def _cupy_launch(inputs: Inputs) -> Launch:
    from wattbench.kernels.qgemm import cupy_qgemm

    try:
        return cupy_qgemm.make_w8a8_launch(
            inputs["a"], inputs["b"].t(), inputs.out, inputs["scale_a"], inputs["scale_b"]
        )
    except UsageError as exc:
        if "cupy" in exc.message:  # not installed: not here, not wrong
            raise ImplUnavailable(exc.message, exc.remedy) from exc
        raise


def _cupy_limits(shape: Shape, dtype: str, on_cuda: bool) -> str | None:
    if shape[2] % 16:
        return "the CuPy W8A8 copies rows of A and B in 16-byte chunks: K must be a multiple of 16"
    return None


VENDOR = Impl(
    name="vendor",
    description="torch._int_mm (cuBLASLt int8) + scaling; fp8: torch._scaled_mm. The baseline.",
    min_compute_capability={"int8": (8, 0), "int8-fp16": (8, 0), "fp8": (8, 9), "fp8-row": (9, 0)},
    math={
        "int8": "cuBLASLt int32 out, then two fp32 scaling passes (M <= 16: A padded to 32 rows)",
        "fp8-row": "torch's row-wise scaled fp8 GEMM (sm_90 on CUDA)",
    },
    requires=("torch",),
    cpu_path="torch",
    make_launch=vendor.make_w8a8_launch,
    limits=vendor.w8a8_limits,
)

TRITON = Impl(
    name="triton",
    description="Triton tiled int8 / fp8 GEMM with fused scaling (kernels/qgemm/triton_w8a8.py)",
    min_compute_capability={"int8": (8, 0), "int8-fp16": (8, 0), "fp8": (8, 9), "fp8-row": (8, 9)},
    math={"int8": "exact int32 accumulation", "fp8": "fp32 accumulation"},
    requires=("torch", "triton"),
    cpu_path="triton-interpreter",
    cpu_max_flops=2.0**24,
    make_launch=_triton_launch,
)

TRITON_FASTACC = Impl(
    name="triton-fastacc",
    description="Triton fp8 GEMM with fast accumulation (no max_num_imprecise_acc, as cuBLAS "
    "use_fast_accum), 128x256x128 tiles (kernels/qgemm/triton_w8a8.py)",
    min_compute_capability={"fp8": (8, 9), "fp8-row": (8, 9)},
    math={
        d: "fp32 out of the tensor cores' own accumulation over all of K (Hopper: reduced-"
        "precision adds; not the partial-sum promotion of 'triton'); tolerance "
        f"{FASTACC_FP8_TOLERANCE:g}, estimated from a model of that accumulation"
        for d in ("fp8", "fp8-row")
    },
    requires=("torch", "triton"),
    cpu_path="triton-interpreter",
    cpu_max_flops=2.0**24,
    make_launch=_triton_fastacc_launch,
    tolerance_rel_fro={"fp8": FASTACC_FP8_TOLERANCE, "fp8-row": FASTACC_FP8_TOLERANCE},
)

CUPY = Impl(
    name="cupy",
    description="hand-written int8 GEMM (kernels/qgemm/w8a8.cu): mma.sync m16n8k32, 4-stage "
    "cp.async, fused scaling; dp4a on GPUs without int8 mma.sync",
    min_compute_capability={"int8": (7, 5), "int8-fp16": (7, 5)},
    math={"int8": "mma.sync s8 (sm_80+) or dp4a (sm_75), exact int32"},
    requires=("torch", "cupy"),
    make_launch=_cupy_launch,
    limits=_cupy_limits,
)

IMPLS = (VENDOR, TRITON, TRITON_FASTACC, CUPY)
