"""The hand-written CUDA GEMM (kernels/matmul/gemm.cu) run on the CPU in a host emulation.

``gemm_emulator.cpp`` compiles the source unchanged; its PTX primitives (kernels/ptx.cuh:
cp.async, ldmatrix, mma.sync, conversions) come from ``ptx_emulator.h``, written from the PTX ISA
(copies landing only at ``cp.async.wait_group``, shared memory poisoned); the tiling macros come
from ``cupy_matmul.TileConfig.defines()``. Each entry point runs at shapes with partial edge tiles
and more k tiles than pipeline stages, on seeded random inputs with a NaN-poisoned output,
against float64: the relative Frobenius error must be within the GPU tests' tolerances (bf16
1e-2, fp16 2e-3: a few units of C's rounding, far below a wrong fragment, stage or edge).
Both the source's default tiling (BK = 64, 3 stages) and the previous one (BK = 32, 4 stages)
are run.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import torch

from tests.kernels.emulators import build_emulator
from wattbench.kernels.matmul import cupy_matmul as cm

TOL = {"fp16": 2e-3, "bf16": 1e-2}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
TILINGS = {
    "default": cm.DEFAULT_TILES,
    "bk32-4stages": cm.TileConfig(bk=32, stages=4),
}


@pytest.fixture(scope="module", params=list(TILINGS))
def emulator(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ctypes.CDLL, cm.TileConfig]:
    tiles = TILINGS[request.param]
    out = tmp_path_factory.mktemp("emu") / f"gemm_emulator_{request.param}.so"
    source = Path(cm.__file__).parent / cm.SOURCE_NAME
    lib = build_emulator(
        "gemm_emulator.cpp", out, {"WB_GEMM_SOURCE": source}, defines=tiles.defines()
    )
    lib.emu_gemm.argtypes = [ctypes.c_void_p, ctypes.c_uint, *[ctypes.c_void_p] * 3]
    lib.emu_gemm.argtypes += [ctypes.c_int] * 3
    assert lib.emu_gemm_threads() == tiles.threads
    assert lib.emu_gemm_smem_bytes() == tiles.smem_bytes
    return lib, tiles


def _run(lib: ctypes.CDLL, tiles: cm.TileConfig, name: str, a, b, c) -> None:
    m, k = a.shape
    n = b.shape[1]
    lib.emu_clear_buffers()  # the kernel may read only A and B
    for t in (a, b):
        lib.emu_add_buffer(t.data_ptr(), t.numel() * t.element_size())
    fn = ctypes.cast(getattr(lib, name), ctypes.c_void_p)
    rc = lib.emu_gemm(fn, tiles.blocks(m, n), a.data_ptr(), b.data_ptr(), c.data_ptr(), m, n, k)
    assert rc == 0, (
        f"emulated {name} failed with code {rc} "
        "(1 deadlock, 2 divergence, 3 bad launch, 4 misaligned or out-of-bounds read)"
    )


# M, N, K: partial edge tiles in every dimension and more k tiles than stages (K = 520: 9 tiles of
# 64, 17 of 32) or fewer (K = 8); the unaligned path also at K and N that are not multiples of 8
SHAPES = {"aligned": [(130, 264, 520), (16, 8, 8)], "unaligned": [(67, 45, 93), (33, 300, 200)]}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("path", list(SHAPES))
def test_gemm_matches_float64(emulator, dtype: str, path: str) -> None:
    lib, tiles = emulator
    for m, n, k in SHAPES[path]:
        assert path == "unaligned" or (k % 8 == 0 and n % 8 == 0)
        gen = torch.Generator().manual_seed(m * n + k)
        a = torch.randn(m, k, generator=gen).to(DTYPES[dtype])
        b = torch.randn(k, n, generator=gen).to(DTYPES[dtype])
        c = torch.full((m, n), float("nan"), dtype=DTYPES[dtype])
        _run(lib, tiles, f"wb_gemm_{dtype}_{path}", a, b, c)
        assert not c.isnan().any(), "unwritten output"
        ref = a.double() @ b.double()
        err = ((c.double() - ref).norm() / ref.norm()).item()
        assert err < TOL[dtype], (m, n, k, err)
        assert err > 0  # C was rounded: the comparison is live
