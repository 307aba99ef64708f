"""The CUDA C attention implementations (``cupy_attention``): GPU only, sm_80+.

``cupy`` prefill: ``flash_fwd.cu``, a FlashAttention-2 forward on tensor cores (mma.sync
m16n8k16 fed by ldmatrix, fp16 / bf16, fp32 softmax and accumulation); ``cupy`` decode:
``flash_decode.cu``, split-KV on CUDA cores with 16-byte loads, then a combine kernel. Both are
compiled by NVRTC through ``cupy.RawModule`` and write the torch output tensor in place (CuPy
views it through ``__cuda_array_interface__``); CuPy launches on its current stream, the legacy
default stream, which torch's default stream shares.
"""

from __future__ import annotations

from wattbench.kernels.attention.problem import head_dim_reason
from wattbench.kernels.family import Impl, Inputs, Launch, Shape


def _limits(shape: Shape, dtype: str, on_cuda: bool) -> str | None:
    return head_dim_reason(shape[4])


def prefill(*, causal: bool) -> Impl:
    def make_launch(inputs: Inputs) -> Launch:
        from wattbench.kernels.attention import cupy_attention

        return cupy_attention.make_prefill_launch(
            inputs["q"], inputs["k"], inputs["v"], inputs.out, causal=causal
        )

    return Impl(
        name="cupy",
        description="hand-written FlashAttention-2 forward on tensor cores "
        "(kernels/attention/flash_fwd.cu) launched by CuPy",
        min_compute_capability={"fp16": (8, 0), "bf16": (8, 0)},
        requires=("torch", "cupy"),
        make_launch=make_launch,
        limits=_limits,
    )


def decode() -> Impl:
    def make_launch(inputs: Inputs) -> Launch:
        from wattbench.kernels.attention import cupy_attention

        return cupy_attention.make_decode_launch(inputs["q"], inputs["k"], inputs["v"], inputs.out)

    return Impl(
        name="cupy",
        description="hand-written split-KV decode + combine (kernels/attention/flash_decode.cu) "
        "launched by CuPy",
        min_compute_capability={"fp16": (8, 0), "bf16": (8, 0)},
        requires=("torch", "cupy"),
        make_launch=make_launch,
        limits=_limits,
    )
