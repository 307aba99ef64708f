"""The Triton attention implementations: prefill (``triton_prefill``) and decode
(``triton_decode``), fp32 softmax and accumulation.

Without a CUDA device they run in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before
the kernel modules are imported (``wattbench check`` sets it), at small shapes only; bf16 is not
offered there (Triton 3.9's interpreter computes bf16 ``tl.dot`` wrongly).
"""

from __future__ import annotations

from wattbench.kernels.attention.problem import head_dim_reason
from wattbench.kernels.family import Impl, Inputs, Launch, Shape


def _limits(shape: Shape, dtype: str, on_cuda: bool) -> str | None:
    return head_dim_reason(shape[4])


def prefill(*, causal: bool) -> Impl:
    """The Triton FlashAttention-2 forward, causal or not."""

    def make_launch(inputs: Inputs) -> Launch:
        from wattbench.kernels.attention import triton_prefill

        return triton_prefill.make_launch(
            inputs["q"], inputs["k"], inputs["v"], inputs.out, causal=causal
        )

    return Impl(
        name="triton",
        description="Triton FlashAttention-2 forward (kernels/attention/triton_prefill.py), "
        "autotuned",
        min_compute_capability={"fp16": (8, 0), "bf16": (8, 0)},
        requires=("torch", "triton"),
        cpu_path="triton-interpreter",
        cpu_dtypes=("fp16",),
        cpu_max_flops=2.0**25,  # the interpreter takes ~0.5 s for 1x4x2x67x64 (4.6e6 FLOP)
        make_launch=make_launch,
        limits=_limits,
    )


def decode() -> Impl:
    """The Triton split-KV decode, one launch (the last split program of each KV head merges)."""

    def make_launch(inputs: Inputs) -> Launch:
        from wattbench.kernels.attention import triton_decode

        return triton_decode.make_launch(inputs["q"], inputs["k"], inputs["v"], inputs.out)

    return Impl(
        name="triton",
        description="Triton split-KV decode, one launch: the last split to finish merges "
        "(kernels/attention/triton_decode.py), autotuned",
        min_compute_capability={"fp16": (8, 0), "bf16": (8, 0)},
        requires=("torch", "triton"),
        cpu_path="triton-interpreter",
        cpu_dtypes=("fp16",),
        cpu_max_flops=2.0**22,  # decode does few FLOPs per byte: ~0.1 s for 1x4x2x131x64
        make_launch=make_launch,
        limits=_limits,
    )
