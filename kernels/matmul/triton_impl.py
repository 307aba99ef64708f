"""The Triton matmul (``wattbench.kernels.matmul.triton_matmul``), fp32 accumulate, and its fp8
fast-accumulation variant ``triton-fastacc``, reported under its own name.

Without a CUDA device they run in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before
the kernel module is imported (``wattbench check`` sets it), at small shapes only. bf16 is not
offered there: Triton 3.9's interpreter computes ``tl.dot`` on bf16 operands wrongly. The
interpreter computes fp8 products and sums exactly, so there ``triton-fastacc`` shows none of
its reduced-precision accumulation: its looser tolerance is for GPUs.
"""

from __future__ import annotations

import functools

from wattbench.kernels.family import Impl, Inputs, Launch

#: triton-fastacc's fp8 tolerance (relative Frobenius; W8A8's triton-fastacc uses it too), an
#: estimate, not a measurement: a model of the sm_90 accumulation (an fp32 accumulator truncated
#: to 13 mantissa bits after each 32-deep fp8 MMA step; published reports give ~14 retained bits
#: on H800) gives, on the family's normal inputs with bf16 output, 3.6e-3 at K = 4096, 1.1e-2 at
#: K = 14336 and 2.3e-2 at K = 28672 (its largest K); this allows twice the last.
FASTACC_FP8_TOLERANCE = 5e-2


def make_launch(inputs: Inputs, *, fast_accum: bool = False) -> Launch:
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
        fast_accum=fast_accum,
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


FASTACC = Impl(
    name="triton-fastacc",
    description="Triton tiled matmul, fp8 with fast accumulation (kernels/matmul/triton_matmul.py)",
    min_compute_capability={"fp8": (8, 9)},
    math={
        "fp8": "fp8 products accumulated in the tensor cores' reduced precision over all of K "
        "(as cuBLAS use_fast_accum; Triton's fp8 default, on sm_90), per-tensor scales, bf16 out; "
        f"tolerance {FASTACC_FP8_TOLERANCE:g}, estimated from a model of that accumulation",
    },
    requires=("torch", "triton"),
    cpu_path="triton-interpreter",
    cpu_max_flops=IMPL.cpu_max_flops,
    make_launch=functools.partial(make_launch, fast_accum=True),
    tolerance_rel_fro={"fp8": FASTACC_FP8_TOLERANCE},
)
