"""What the Triton kernel modules share: the autotune config of a tiled GEMM."""

from __future__ import annotations

import triton


def gemm_config(bm: int, bn: int, bk: int, group_m: int, warps: int, stages: int) -> triton.Config:
    """A config of a tiled GEMM kernel: BLOCK_M x BLOCK_N output tiles, BLOCK_K deep steps,
    GROUP_M tile rows per group of the grouped order, ``warps`` warps, ``stages`` stages."""
    return triton.Config(
        {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group_m},
        num_warps=warps,
        num_stages=stages,
    )
