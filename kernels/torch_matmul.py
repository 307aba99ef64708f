"""The vendor matmul on a real GPU: torch.matmul (cuBLAS), inputs allocated once.

Inputs are seeded random normal values (never zeros: data-dependent power would flatter the
kernel); the output is preallocated and written with ``out=``, so a launch allocates nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from wattbench.kernels.costs import Problem
from wattbench.profiler.errors import UnknownKernelError, UsageError

_TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "tf32": "float32"}


def vendor_matmul_launch(problem: Problem, seed: int = 0) -> Callable[[], object]:
    try:
        import torch
    except ImportError:
        raise UsageError(
            "measuring a real GPU needs torch",
            'install the GPU stack: pip install "wattbench[gpu]"',
        ) from None
    if problem.dtype not in _TORCH_DTYPES:
        raise UnknownKernelError(
            f"the vendor matmul has no {problem.dtype} path yet",
            f"use one of: {', '.join(_TORCH_DTYPES)}",
        )
    if not torch.cuda.is_available():
        raise UsageError(
            "torch sees no CUDA device", "check the driver and CUDA_VISIBLE_DEVICES, or use sim:"
        )
    torch.backends.cuda.matmul.allow_tf32 = problem.dtype == "tf32"
    dt = getattr(torch, _TORCH_DTYPES[problem.dtype])
    m, n, k = problem.shape
    gen = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn(m, k, device="cuda", dtype=dt, generator=gen)
    b = torch.randn(k, n, device="cuda", dtype=dt, generator=gen)
    c = torch.empty(m, n, device="cuda", dtype=dt)

    def launch() -> object:
        return torch.matmul(a, b, out=c)

    return launch
