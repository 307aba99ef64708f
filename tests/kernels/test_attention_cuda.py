"""The hand-written CUDA attention kernels (flash_fwd.cu, flash_decode.cu) and their CuPy side.

Without a GPU the kernels run in a host emulation (``attention_emulator.cpp``, built here with
the system C++ compiler): the .cu sources compile unchanged, their PTX primitives (ptx.cuh) taken
from ``ptx_emulator.h``, written from the PTX ISA (fibers for threads, warp-collective mma.sync /
ldmatrix / shuffles, cp.async copies that land only at wait_group, shared memory poisoned with
NaN). The calls go through the real host path -- ``prefill_calls`` / ``decode_calls`` (entry
point, grid, block, shared memory, argument order) and ``build_launch`` -- with a stand-in for
the few CuPy calls it makes (RawModule, get_function, asarray), whose kernels run the emulator.
Results are compared with the float64 reference at the family tolerances, lse included; the
output is poisoned (NaN) first. nvcc / NVRTC compile checks live in test_cuda_sources.py.

On a GPU (``gpu`` marker): real CuPy, bf16 and fp16, model shapes.
"""

from __future__ import annotations

import ctypes
import math
import re
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from tests.kernels.emulators import build_emulator
from wattbench.kernels import cuda_build
from wattbench.kernels.attention import cupy_attention as ca
from wattbench.kernels.attention.reference import attention_float64
from wattbench.profiler.errors import ShapeError, UsageError

TOL = {"fp16": 2e-3, "bf16": 1e-2}
LSE_ATOL = 1e-3
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def test_sources_include_only_ptx_cuh_and_declare_every_entry_point():
    for name in ca.SOURCES:
        text = ca.source(name)
        assert re.findall(r"#include.*", text) == ['#include "ptx.cuh"'], name
        declared = re.findall(r"^WB_\w+\((wb_\w+),", text, flags=re.M)
        assert sorted(declared) == sorted(ca.ENTRY_POINTS[name]), name
    fwd = ca.source(ca.PREFILL_SOURCE)
    for const, value in (("BM", ca.PREFILL_BM), ("BN", ca.PREFILL_BN)):
        assert re.search(rf"constexpr int {const} = {value};", fwd)
    assert re.search(r"constexpr int WARPS = 8;", fwd) and ca.PREFILL_THREADS == 256
    assert ca.prefill_smem_bytes(64) == 55296 and ca.prefill_smem_bytes(128) == 104448
    assert "constexpr int WARPS = 4;" in ca.source(ca.DECODE_SOURCE) and ca.DECODE_THREADS == 128


def test_group_tiles():
    assert [ca.group_tile(g) for g in (1, 2, 3, 4, 5, 8, 9, 64)] == [1, 2, 4, 4, 8, 8, 8, 8]


# --- the emulator and a stand-in for CuPy --------------------------------------------------------


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("emu") / "attention_emulator.so"
    src = Path(ca.__file__).parent
    sources = {"WB_FLASH_FWD_SOURCE": src / ca.PREFILL_SOURCE,
               "WB_FLASH_DECODE_SOURCE": src / ca.DECODE_SOURCE}  # fmt: skip
    return build_emulator("attention_emulator.cpp", out, sources)


class FakeArray:
    """What ``cupy.asarray`` returns here: the tensor's host address (kept alive)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.ptr = tensor.data_ptr()


class EmulatedKernel:
    """``module.get_function(name)``: a call runs the emulator over the whole grid."""

    SIGNATURES: ClassVar[
        dict[str, tuple[str, str]]
    ] = {  # argument kinds after (grid, block): p = pointer, i = int32, f = float32
        "wb_flash_fwd": ("emu_flash_fwd", "pppppiiif"),
        "wb_decode_split": ("emu_decode_split", "pppppiiiif"),
        "wb_decode_combine": ("emu_decode_combine", "ppppii"),
    }

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.lib, self.name = lib, name
        self.fn = ctypes.cast(getattr(lib, name), ctypes.c_void_p)
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.calls: list[tuple] = []

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        self.calls.append((grid, block, args, shared_mem))
        launcher, kinds = next(v for k, v in self.SIGNATURES.items() if self.name.startswith(k))
        assert len(args) == len(kinds), (self.name, len(args))
        assert shared_mem <= self.max_dynamic_shared_size_bytes
        converted = []
        for kind, a in zip(kinds, args, strict=True):
            want = {"p": FakeArray, "i": np.int32, "f": np.float32}[kind]
            assert isinstance(a, want), (self.name, kind, type(a))
            if kind == "p":
                converted.append(ctypes.c_void_p(a.ptr))
            else:
                converted.append(ctypes.c_int(int(a)) if kind == "i" else ctypes.c_float(float(a)))
        assert len(grid) == 3 and block[1:] == (1, 1)
        # the kernel may read only the tensors it was given (else EMU_OOB)
        self.lib.emu_clear_buffers()
        for a in args:
            if isinstance(a, FakeArray):
                self.lib.emu_add_buffer(a.ptr, a.tensor.numel() * a.tensor.element_size())
        rc = getattr(self.lib, launcher)(
            self.fn, *(ctypes.c_uint(g) for g in grid), ctypes.c_int(block[0]), *converted
        )
        assert rc == 0, (
            f"emulated {self.name} failed with code {rc} "
            "(1 deadlock, 2 divergence, 3 bad launch, 4 misaligned or out-of-bounds read)"
        )


@pytest.fixture
def fake_cupy(emulator: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    cp = types.ModuleType("cupy")
    cp.modules = []

    class RawModule:
        def __init__(self, code: str, options: tuple, backend: str) -> None:
            assert backend == "nvrtc" and options == cuda_build.compile_options()
            self.code = code
            self.kernels: dict[str, EmulatedKernel] = {}
            cp.modules.append(self)

        def get_function(self, name: str) -> EmulatedKernel:
            assert "WB_" in self.code and f"({name}," in self.code  # this source has it
            return self.kernels.setdefault(name, EmulatedKernel(emulator, name))

    cp.RawModule = RawModule
    cp.asarray = FakeArray
    device = types.SimpleNamespace(attributes={"MaxSharedMemoryPerBlockOptin": 227 * 1024})
    cp.cuda = types.SimpleNamespace(Device=lambda: device)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    cuda_build.clear_module_cache()
    yield cp
    cuda_build.clear_module_cache()


def _operands(b, hq, hkv, nq, nkv, d, dtype, seed=0, device="cpu"):
    gen = torch.Generator(device=device).manual_seed(seed)
    dt = DTYPES[dtype]
    q, k, v = (torch.randn(*s, generator=gen, device=device).to(dt)
               for s in ((b, hq, nq, d), (b, hkv, nkv, d), (b, hkv, nkv, d)))  # fmt: skip
    out = torch.full_like(q, math.nan)
    lse = torch.full((b, hq, nq), math.nan, device=device)
    return q, k, v, out, lse


def _check(out, lse, q, k, v, causal, dtype):
    assert not out.isnan().any() and not lse.isnan().any(), "unwritten (NaN) elements"
    ref, ref_lse = attention_float64(q, k, v, causal=causal, device="cpu")
    err = float((out.cpu().double() - ref).norm() / ref.norm())
    assert err < TOL[dtype]
    assert float((lse.cpu().double() - ref_lse).abs().max()) < LSE_ATOL


# B, HQ, HKV, N, D: GQA, N < one block; two query blocks (128 + 2 rows, causal order) at D = 128
EMU_PREFILL = [
    ((1, 2, 1, 67, 64), "fp16", True),
    ((1, 2, 1, 67, 64), "bf16", False),
    ((1, 2, 2, 130, 128), "bf16", True),
    ((1, 2, 2, 130, 128), "fp16", False),
]


@pytest.mark.parametrize(
    ("shape", "dtype", "causal"),
    EMU_PREFILL,
    ids=lambda x: "x".join(map(str, x)) if isinstance(x, tuple) else str(x),
)
def test_emulated_prefill(fake_cupy, shape, dtype, causal):
    b, hq, hkv, n, d = shape
    q, k, v, out, lse = _operands(b, hq, hkv, n, n, d, dtype, seed=n)
    calls = ca.prefill_calls(q, k, v, out, lse, causal=causal)
    (call,) = calls
    assert call.grid == (math.ceil(n / 128), hq, b) and call.block == (256, 1, 1)
    assert call.entry == f"wb_flash_fwd_{dtype}_d{d}_{'causal' if causal else 'full'}"
    ca.build_launch(calls)()
    (module,) = fake_cupy.modules
    assert module.code == ca.source(ca.PREFILL_SOURCE)
    kernel = module.kernels[call.entry]
    assert kernel.max_dynamic_shared_size_bytes == ca.prefill_smem_bytes(d)  # opted in
    _check(out, lse, q, k, v, causal, dtype)


# B, HQ, HKV, L, D, chunk: G = 2 over 3 splits (the last short); G = 3 (tile 4, one head
# masked); G = 16 (two head blocks of 8) at D = 64; MHA, D = 128, a cache shorter than a step
EMU_DECODE = [
    ((1, 4, 2, 300, 64), "fp16", 128),
    ((2, 3, 1, 131, 128), "bf16", None),
    ((1, 16, 1, 200, 64), "bf16", 128),
    ((1, 2, 2, 5, 128), "fp16", None),
]


@pytest.mark.parametrize(
    ("shape", "dtype", "chunk"),
    EMU_DECODE,
    ids=lambda x: "x".join(map(str, x)) if isinstance(x, tuple) else str(x),
)
def test_emulated_decode(fake_cupy, shape, dtype, chunk):
    b, hq, hkv, length, d = shape
    q, k, v, out, lse = _operands(b, hq, hkv, 1, length, d, dtype, seed=length)
    calls, scratch = ca.decode_calls(q, k, v, out, lse, sms=4, chunk=chunk)
    split, combine = calls
    group = hq // hkv
    gt = ca.group_tile(group)
    splits = math.ceil(length / chunk) if chunk else split.grid[0]
    assert split.grid == (splits, hkv * math.ceil(group / gt), b)
    assert split.entry == f"wb_decode_split_{dtype}_d{d}_g{gt}" and split.smem_bytes == 0
    assert combine.grid == (b * hq, 1, 1) and combine.block == (d, 1, 1)
    assert scratch[0].shape == (b, hq, splits, d) and scratch[1].shape == (b, hq, splits)
    ca.build_launch(calls, keep=scratch)()
    _check(out, lse, q, k, v, False, dtype)


def test_decode_equals_prefill_with_one_query(fake_cupy):
    """The decode kernels against the prefill kernel run on a sequence whose last row is the
    query (causal: it sees every key), both emulated."""
    b, hq, hkv, length, d = 1, 4, 2, 70, 64
    q, k, v, out, lse = _operands(b, hq, hkv, 1, length, d, "fp16", seed=2)
    calls, scratch = ca.decode_calls(q, k, v, out, lse, sms=4, chunk=128)
    ca.build_launch(calls, keep=scratch)()
    q_seq = torch.zeros(b, hq, length, d, dtype=torch.float16)
    q_seq[:, :, -1:] = q
    o_seq = torch.full_like(q_seq, math.nan)
    lse_seq = torch.full((b, hq, length), math.nan)
    ca.build_launch(ca.prefill_calls(q_seq, k, v, o_seq, lse_seq, causal=True))()
    torch.testing.assert_close(out, o_seq[:, :, -1:], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(lse, lse_seq[:, :, -1:], rtol=0, atol=1e-4)


def test_launch_geometry_is_computed_once(fake_cupy):
    q, k, v, out, lse = _operands(1, 2, 1, 20, 20, 64, "fp16")
    launch = ca.build_launch(ca.prefill_calls(q, k, v, out, lse, causal=True))
    (module,) = fake_cupy.modules
    (kernel,) = module.kernels.values()
    assert kernel.calls == []  # nothing runs before the closure is called
    launch()
    first = out.clone()
    out.fill_(math.nan)
    launch()
    assert torch.equal(out, first) and kernel.calls[0][2] is kernel.calls[1][2]


def test_bad_operands_are_refused(fake_cupy):
    q, k, v, out, lse = _operands(1, 2, 1, 16, 16, 64, "fp16")
    with pytest.raises(UsageError, match="lse"):
        ca.prefill_calls(q, k, v, out, None, causal=True)
    with pytest.raises(ShapeError, match="16-byte"):
        flat = torch.zeros(q.numel() + 1, dtype=q.dtype)
        ca.prefill_calls(flat[1:].view(q.shape), k, v, out, lse, causal=True)
    with pytest.raises(ShapeError, match="not contiguous"):
        ca.prefill_calls(q.transpose(1, 2).contiguous().transpose(1, 2), k, v, out, lse,
                         causal=True)  # fmt: skip
    q80, k80, v80, o80, l80 = _operands(1, 2, 1, 16, 16, 80, "fp16")
    with pytest.raises(ShapeError, match="D = 64 or 128"):
        ca.prefill_calls(q80, k80, v80, o80, l80, causal=False)
    q1, k1, v1, o1, l1 = _operands(1, 2, 1, 1, 300, 64, "fp16")
    with pytest.raises(ShapeError, match="chunk"):
        ca.decode_calls(q1, k1, v1, o1, l1, sms=4, chunk=100)
    with pytest.raises(ShapeError, match="one query token"):
        ca.decode_calls(q, k, v, out, lse, sms=4)
    with pytest.raises(UsageError, match="CUDA tensors"):
        ca.make_prefill_launch(q, k, v, out, causal=True)  # CPU tensors: no CPU path
    with pytest.raises(UsageError, match="CUDA tensors"):
        ca.make_decode_launch(q1, k1, v1, o1)


def test_without_cupy_the_launchers_name_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    cuda_build.clear_module_cache()
    q, k, v, out, _ = _operands(1, 2, 1, 16, 16, 64, "fp16")
    for make in (ca.make_prefill_launch, ca.make_decode_launch):
        with pytest.raises(UsageError) as info:
            make(q, k, v, out) if make is ca.make_decode_launch else make(q, k, v, out, causal=True)
        assert 'pip install "wattbench[gpu]"' in info.value.remedy


# --- on a GPU: real CuPy -------------------------------------------------------------------------

GPU_PREFILL = [
    (1, 32, 8, 4096, 128),
    (2, 32, 8, 1000, 64),
    (1, 64, 8, 2053, 128),
    (1, 4, 2, 67, 64),
]
GPU_DECODE = [(16, 32, 8, 8192, 128), (3, 12, 4, 1000, 128), (1, 32, 8, 32771, 64),
              (2, 64, 8, 4096, 128), (1, 8, 8, 131, 64)]  # fmt: skip


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("shape", GPU_PREFILL, ids=lambda s: "x".join(map(str, s)))
def test_gpu_prefill(shape, causal, dtype):
    pytest.importorskip("cupy", reason="the GPU stack lacks cupy")
    b, hq, hkv, n, d = shape
    q, k, v, out, lse = _operands(b, hq, hkv, n, n, d, dtype, seed=n, device="cuda")
    launch = ca.make_prefill_launch(q, k, v, out, causal=causal, lse=lse)
    launch()
    torch.cuda.synchronize()
    ref, ref_lse = attention_float64(q, k, v, causal=causal, device="cuda")
    assert float((out.double() - ref).norm() / ref.norm()) < TOL[dtype]
    assert float((lse.double() - ref_lse).abs().max()) < LSE_ATOL
    first = out.clone()
    out.fill_(math.nan)
    launch()
    torch.cuda.synchronize()
    assert torch.equal(out, first)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("shape", GPU_DECODE, ids=lambda s: "x".join(map(str, s)))
def test_gpu_decode(shape, dtype):
    pytest.importorskip("cupy", reason="the GPU stack lacks cupy")
    b, hq, hkv, length, d = shape
    q, k, v, out, lse = _operands(b, hq, hkv, 1, length, d, dtype, seed=length, device="cuda")
    ca.make_decode_launch(q, k, v, out, lse=lse)()
    torch.cuda.synchronize()
    ref, ref_lse = attention_float64(q, k, v, causal=False, device="cuda")
    assert float((out.double() - ref).norm() / ref.norm()) < TOL[dtype]
    assert float((lse.double() - ref_lse).abs().max()) < LSE_ATOL


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["prefill", "prefill-full", "decode"])
def test_gpu_check_every_impl(kernel):
    from wattbench.kernels import catalog
    from wattbench.kernels.env import probe
    from wattbench.kernels.timing import TimingSettings
    from wattbench.kernels.verify import check

    fam = catalog.family(kernel)
    shape = (2, 8, 2, 1031, 128)
    for dtype in ("bf16", "fp16"):
        rep = check(fam, shape, dtype, probe(), timing=TimingSettings(warmup=1, reps=3))
        assert not rep.failed, [r for r in rep.results if r.failed]
        assert rep.result("vendor").status == "pass" and rep.result("triton").status == "pass"
