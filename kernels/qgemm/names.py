"""W4A16 dtype names: ``<activation>-g<group>``, e.g. ``bf16-g128`` (label-safe: [a-z0-9-])."""

from __future__ import annotations

#: activation dtypes (wattbench names) and group sizes (k per scale / zero)
ACTIVATIONS = ("bf16", "fp16")
GROUPS = (32, 64, 128)
W4A16_DTYPES = tuple(f"{act}-g{g}" for act in ACTIVATIONS for g in GROUPS)
#: torch attribute name of each activation dtype
TORCH_NAMES = {"bf16": "bfloat16", "fp16": "float16"}


def act_of(dtype: str) -> str:
    """``bf16-g128`` -> ``bf16``."""
    return dtype.split("-g", 1)[0]


def group_of(dtype: str) -> int:
    """``bf16-g128`` -> 128."""
    return int(dtype.split("-g", 1)[1])
