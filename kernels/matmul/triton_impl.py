"""The Triton matmul (``wattbench.kernels.matmul.triton_matmul``), fp32 accumulate.

Without a CUDA device it runs in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before
the kernel module is imported (``wattbench check`` sets it), at small shapes only. bf16 is not
offered there: Triton 3.9's interpreter computes ``tl.dot`` on bf16 operands wrongly.
"""

from __future__ import annotations

from wattbench.kernels.family import Impl, Inputs, Launch


def make_launch(inputs: Inputs) -> Launch:
    from wattbench.kernels.matmul import triton_matmul

    b = inputs["b"]
    if inputs.dtype == "fp8" and b.is_cuda:
        b = b.t().contiguous().t()  # K-contiguous B for fp8 tensor cores (as the vendor gets)
    return triton_matmul.make_launch(
        inputs["a"],
        b,
        inputs.out,
        scale_a=inputs.get("scale_a"),
        scale_b=inputs.get("scale_b"),
        allow_tf32=inputs.dtype == "tf32",
    )


IMPL = Impl(
    name="triton",
    description="Triton tiled matmul (kernels/matmul/triton_matmul.py), fp32 accumulate",
    min_compute_capability={
        "bf16": (8, 0),
        "fp16": (8, 0),
        "fp32": (8, 0),
        "tf32": (8, 0),
        "fp8": (8, 9),
    },
    math={
        "fp32": "IEEE fp32 (allow_tf32=False)",
        "tf32": "TF32 tensor cores (allow_tf32=True)",
        "fp8": "e4m3 with per-tensor scales, bf16 out",
    },
    requires=("torch", "triton"),
    cpu_path="triton-interpreter",
    cpu_dtypes=("fp16", "fp32", "tf32", "fp8"),
    cpu_max_flops=2.0**24,  # the interpreter takes ~1-2 s for 67x45x93 (5.6e5 FLOP)
    make_launch=make_launch,
)
