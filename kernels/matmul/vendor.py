"""The vendor baseline: torch.matmul (cuBLAS); fp8 through torch._scaled_mm (cuBLASLt).

Every speedup wattbench reports is against this implementation. The launch writes the
preallocated output with ``out=`` and allocates nothing. TF32 is a global torch switch, so each
launch sets ``torch.backends.cuda.matmul.allow_tf32`` for its own dtype (on for "tf32", off for
"fp32"). On the CPU it runs torch's CPU matmul: a correctness reference point, never timed.
"""

from __future__ import annotations

from wattbench.kernels.family import Impl, Inputs, Launch, Shape


def make_launch(inputs: Inputs) -> Launch:
    import torch

    a, b, out = inputs["a"], inputs["b"], inputs.out
    if inputs.dtype == "fp8":
        # cuBLASLt wants B column-major: one copy here, none per launch
        b_cm = b.t().contiguous().t() if b.is_cuda else b
        scale_a, scale_b = inputs["scale_a"], inputs["scale_b"]

        def launch_fp8() -> None:
            torch._scaled_mm(a, b_cm, scale_a, scale_b, out_dtype=out.dtype, out=out)

        return launch_fp8

    flags = torch.backends.cuda.matmul
    tf32 = inputs.dtype == "tf32"
    if not a.is_cuda:

        def launch_cpu() -> None:
            torch.matmul(a, b, out=out)

        return launch_cpu

    def launch() -> None:
        flags.allow_tf32 = tf32
        torch.matmul(a, b, out=out)

    return launch


def limits(shape: Shape, dtype: str, on_cuda: bool) -> str | None:
    _m, n, k = shape
    if dtype == "fp8" and on_cuda and (k % 16 or n % 16):
        return "torch._scaled_mm (cuBLASLt fp8) needs K and N to be multiples of 16"
    return None


IMPL = Impl(
    name="vendor",
    description="torch.matmul (cuBLAS); fp8: torch._scaled_mm (cuBLASLt). The baseline.",
    min_compute_capability={
        "bf16": (8, 0),
        "fp16": (7, 0),
        "fp32": (7, 0),
        "tf32": (8, 0),
        "fp8": (8, 9),
    },
    math={
        "fp32": "IEEE fp32 (allow_tf32 off)",
        "tf32": "TF32 tensor cores (allow_tf32 on; IEEE fp32 on the CPU)",
        "fp8": "per-tensor scales, bf16 out, full fp32 accumulation (no fast accumulate)",
    },
    requires=("torch",),
    cpu_path="torch",
    make_launch=make_launch,
    limits=limits,
)
