"""Shape presets shared by the quantized GEMM families (shapes ``MxNxK``, X[M, K] @ W[K, N]).

The Llama-3 projections come from ``matmul.family.LLAMA3`` ((model, layer) -> (K, N)). Every
preset sweeps M (``NAME@M`` sets it): ``decode`` is M = 1, 2, 4, 8, 16 tokens (memory-bound for
W4A16), ``prefill`` M = 512 .. 8192 (compute-bound). Every preset K is a multiple of 128, so each
preset suits every group size.
"""

from __future__ import annotations

from wattbench.kernels.family import Preset
from wattbench.kernels.matmul.family import LLAMA3

DECODE_TOKENS = (1, 2, 4, 8, 16)
PREFILL_TOKENS = (512, 1024, 2048, 4096, 8192)


def _models() -> list[str]:
    return list(dict.fromkeys(model for model, _ in LLAMA3))


def _kn(model: str | None = None) -> list[tuple[str, int, int]]:
    return [(layer, k, n) for (m, layer), (k, n) in LLAMA3.items() if model in (None, m)]


def presets() -> tuple[Preset, ...]:
    """decode / prefill (both models), per model and per layer, square and targets, small."""
    tokens = DECODE_TOKENS + PREFILL_TOKENS
    out = []
    for name, ms in (("decode", DECODE_TOKENS), ("prefill", PREFILL_TOKENS)):
        out.append(
            Preset(
                name,
                f"every Llama-3 8B and 70B projection at M = {', '.join(map(str, ms))} tokens",
                tuple((m, n, k) for _, k, n in _kn() for m in ms),
                sweep_dim=0,
            )
        )
    for model in _models():
        for layer, k, n in _kn(model):
            out.append(
                Preset(
                    f"{model}-{layer}",
                    f"{model} {layer}: X[M, {k}] @ W[{k}, {n}], M = {', '.join(map(str, tokens))}",
                    tuple((m, n, k) for m in tokens),
                    sweep_dim=0,
                )
            )
        out.append(
            Preset(
                model,
                f"all {model} projections at every decode and prefill M",
                tuple((m, n, k) for _, k, n in _kn(model) for m in tokens),
                sweep_dim=0,
            )
        )
    out += [
        Preset(
            "square",
            "MxMxM, M = 1024 .. 8192 (powers of two)",
            tuple((s, s, s) for s in (1024, 2048, 4096, 8192)),
        ),
        Preset(
            "targets",
            "the performance targets: W4A16 at 1x8192x8192, W8A8 at 8192^3",
            ((1, 8192, 8192), (8192, 8192, 8192)),
            sweep_dim=0,
        ),
        Preset(
            "small",
            "CPU-sized shapes (Triton's interpreter): a GEMV and a tiled problem, odd M and N",
            ((3, 72, 256), (67, 40, 128)),
        ),
    ]
    return tuple(out)
