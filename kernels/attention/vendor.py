"""The vendor baseline: ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

On a CUDA device each launch allows SDPA's FlashAttention-2 backend and, where flash cannot take
the problem, its math backend -- in that order (``torch.nn.attention.sdpa_kernel``); the
memory-efficient and cuDNN backends are excluded so the baseline is the same kernel everywhere.
Grouped-query attention goes through ``enable_gqa=True`` (torch >= 2.5; flash and math support
it natively) -- with an older torch the launch builder expands k and v to HQ heads once, outside
the timed launch. SDPA returns a new tensor, which the launch copies into the preallocated
output (one extra write of o: negligible next to prefill's compute and decode's KV cache). On the
CPU it is torch's CPU SDPA: a correctness reference point, never timed.
"""

from __future__ import annotations

import re
from typing import Any

from wattbench.kernels.family import Impl, Inputs, Launch


def sdpa_has_gqa(version: str) -> bool:
    """Whether torch ``version`` has SDPA's ``enable_gqa`` (torch >= 2.5)."""
    parts = re.findall(r"\d+", version)[:2]
    return len(parts) == 2 and (int(parts[0]), int(parts[1])) >= (2, 5)


def make_sdpa_launch(inputs: Inputs, *, causal: bool) -> Launch:
    """A launch of SDPA on ``inputs`` (q, k, v -> out); ``causal`` selects the causal mask."""
    import torch
    import torch.nn.functional as F

    q, k, v, out = inputs["q"], inputs["k"], inputs["v"], inputs.out
    kwargs: dict[str, Any] = {"is_causal": causal}
    if k.shape[1] != q.shape[1]:
        if sdpa_has_gqa(torch.__version__):
            kwargs["enable_gqa"] = True
        else:  # torch < 2.5: expand once, here
            group = q.shape[1] // k.shape[1]
            k, v = (x.repeat_interleave(group, dim=1) for x in (k, v))
    sdpa = F.scaled_dot_product_attention
    if not q.is_cuda:

        def launch_cpu() -> None:
            out.copy_(sdpa(q, k, v, **kwargs))

        return launch_cpu

    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]

    def launch() -> None:
        with sdpa_kernel(backends):
            out.copy_(sdpa(q, k, v, **kwargs))

    return launch


def impl(*, causal: bool) -> Impl:
    """The vendor Impl of one attention family (causal prefill, or prefill-full / decode)."""

    def make_launch(inputs: Inputs) -> Launch:
        return make_sdpa_launch(inputs, causal=causal)

    return Impl(
        name="vendor",
        description="torch scaled_dot_product_attention (flash backend, math otherwise); "
        "the baseline",
        min_compute_capability={"fp16": (7, 0), "bf16": (8, 0)},
        math={
            "fp16": "flash: fp32 softmax and accumulate; CPU: torch's CPU SDPA",
            "bf16": "flash: fp32 softmax and accumulate; CPU: torch's CPU SDPA",
        },
        requires=("torch",),
        cpu_path="torch",
        make_launch=make_launch,
    )
