"""The hand-written CUDA GEMM (kernels/matmul/gemm.cu) and its CuPy launchers.

Without a GPU: every .cu is compiled with nvcc for sm_80 and sm_90 and with NVRTC, CuPy's
compiler (libnvrtc from the nvidia-cuda-nvrtc wheel of the dev extra), with the options CuPy uses
(``wattbench.kernels.nvrtc``: the include path of ``ptx.cuh`` among them), and ptxas' resource
report must show no spills and at most 255 registers per thread for every entry point; the report
parser is checked on captured reports;
``make_launch`` / ``make_cublas_launch`` run end to end against a stand-in for the few CuPy calls
they make (numpy arrays at host addresses), which checks validation, the choice of entry point and
the launch geometry; without CuPy they raise a UsageError naming the install command.

On a GPU (``gpu`` marker): results against a float64 reference. Inputs are fresh seeded
``torch.randn`` values and the output is poisoned with NaN before the run, so an unwritten tile
fails. The error is the relative Frobenius norm ``||C - ref|| / ||ref||`` with ``ref`` computed in
float64 from the very inputs the kernel saw, so only the kernel's own rounding remains:

* fp32 accumulation of K products: about sqrt(K) * 2**-24 (4e-6 at K = 4096), at worst
  K * 2**-24 (2.4e-4);
* rounding C to its dtype: at most the unit roundoff u per element (bf16 u = 2**-8 = 3.9e-3,
  fp16 u = 2**-11 = 4.9e-4), about u / sqrt(3) in the Frobenius norm.

Tolerances: bf16 1e-2 (2.6 u), fp16 2e-3 (4 u): above rounding with margin, far below the O(1)
error of a wrong fragment, tile or edge. cupy.matmul in fp32 (CuPy computes true fp32 unless
CUPY_TF32=1): 1e-4.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import platform
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wattbench.kernels import cuda_build, nvrtc
from wattbench.kernels.attention import cupy_attention as ca
from wattbench.kernels.matmul import cupy_matmul as cm
from wattbench.kernels.qgemm import cupy_qgemm as cq
from wattbench.profiler.errors import ShapeError, UnknownKernelError, UsageError, WattbenchError

ARCHS = ("sm_80", "sm_90")
MAX_REGISTERS = 255
BF16_TOL = 1e-2
FP16_TOL = 2e-3
FP32_TOL = 1e-4
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH (CUDA toolkit absent)")
#: where the dev extra installs nvidia-cuda-nvrtc: there a missing libnvrtc fails, never skips
NVRTC_WHEEL_PLATFORM = platform.system() == "Linux" and platform.machine() == "x86_64"


def _require_nvrtc() -> None:
    if nvrtc.find_library() is not None:
        return
    reason = "libnvrtc not found (comes with the CUDA toolkit or nvidia-cuda-nvrtc)"
    if NVRTC_WHEEL_PLATFORM:
        pytest.fail(f"{reason}: pip install -e .[dev] installs it on this platform")
    pytest.skip(reason)


@dataclass(frozen=True)
class Build:
    """One source of a family compiled for one architecture, and the entry points it must have."""

    package: str
    source: str
    arch: str
    entries: tuple[str, ...]
    defines: tuple[str, ...] = ()
    lowest: int = 80  # the oldest architecture the source builds for

    def __str__(self) -> str:
        return f"{self.source}-{self.arch}"


#: every .cu of every family, for each architecture it is checked on (w8a8 on sm_75: the dp4a
#: entries for GPUs without int8 mma.sync; there the mma ones hold a trap)
BUILDS = [
    *(Build("wattbench.kernels.matmul", cm.SOURCE_NAME, arch, cm.ENTRY_POINTS,
            cm.DEFAULT_TILES.defines()) for arch in ARCHS),
    *(Build("wattbench.kernels.attention", src, arch, ca.ENTRY_POINTS[src])
      for src in ca.SOURCES for arch in ARCHS),
    *(Build("wattbench.kernels.qgemm", src, arch, cq.ENTRY_POINTS[src], (), cq.MIN_ARCH[src])
      for src in cq.ENTRY_POINTS for arch in (*ARCHS, "sm_75")
      if int(arch[3:]) >= cq.MIN_ARCH[src]),
]  # fmt: skip


def _assert_clean(entries: list[cuda_build.PtxasEntry], arch: str, names: tuple[str, ...]) -> None:
    """Every entry point, for ``arch``, with no spill, no local memory and at most 255 registers;
    flash_fwd's D = 64 entries (__launch_bounds__(256, 2): two blocks per SM) at most 128; the
    W4A16 GEMV's static shared memory within the 48 KiB default."""
    assert sorted(e.name for e in entries) == sorted(names)
    for e in entries:
        assert e.arch == arch
        assert e.spill_stores == 0 and e.spill_loads == 0, e
        assert e.stack_frame == 0, e  # no local memory at all
        assert 0 < e.registers <= MAX_REGISTERS, e
        if e.name.startswith("wb_flash_fwd") and "_d64_" in e.name:
            assert e.registers <= 128, e
        if "gemv" in e.name:
            assert e.shared_bytes <= 48 * 1024, e


# --- build: nvcc / NVRTC and ptxas' report --------------------------------------------------------


@needs_nvcc
@pytest.mark.parametrize("build", BUILDS, ids=str)
def test_nvcc_compiles_every_entry_without_spills(build: Build, tmp_path: Path) -> None:
    entries = cuda_build.compile_report(
        build.package, build.source, build.arch, tmp_path, defines=build.defines,
        lowest=build.lowest,
    )  # fmt: skip
    _assert_clean(entries, build.arch, build.entries)
    assert (tmp_path / f"{Path(build.source).stem}_{build.arch}.cubin").stat().st_size > 0


@pytest.mark.parametrize("build", BUILDS, ids=str)
def test_nvrtc_compiles_every_entry_without_spills(build: Build) -> None:
    """What CuPy's RawModule does on a GPU of the architecture: NVRTC with the loader's options
    (the include path of ptx.cuh, the defines) and those CuPy adds."""
    _require_nvrtc()
    entries = nvrtc.compile_report(
        build.package, build.source, build.arch, defines=build.defines, lowest=build.lowest
    )
    _assert_clean(entries, build.arch, build.entries)


@needs_nvcc
def test_other_tile_config_compiles_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    small = cm.TileConfig(bm=128, bn=128, bk=32, warps_m=2, warps_n=2, stages=3)
    entries = cm.compile_report("sm_80", tmp_path / "small", tiles=small)
    _assert_clean(entries, "sm_80", cm.ENTRY_POINTS)
    with pytest.raises(WattbenchError, match="needs >= 3"):
        cm.compile_report("sm_80", tmp_path / "bad", tiles=cm.TileConfig(stages=2))


def test_nvrtc_options_are_cupys() -> None:
    """The options the NVRTC checks use: what the loader hands RawModule, then CuPy's additions
    (cupy/cuda/compiler.py: -ftz=true, -arch=sm_XX for a cubin, device as default space)."""
    opts = cuda_build.compile_options(("-DX=1",))
    assert opts[0] == "-std=c++17" and f"-I{cuda_build.include_dir()}" in opts and "-DX=1" in opts
    assert (cuda_build.include_dir() / cuda_build.HEADER_NAME).is_file()
    assert opts[-1] == f"-DWB_PTX_CUH_SHA256={cuda_build.header_digest()}"
    assert nvrtc.cupy_options(opts, "sm_90") == (
        *opts, "-ftz=true", "-arch=sm_90", "--device-as-default-execution-space"
    )  # fmt: skip


def test_nvrtc_needs_the_include_path() -> None:
    """The sources compile only with ptx.cuh's folder on the include path: the -I is what makes
    the NVRTC build work, not a header found by chance."""
    _require_nvrtc()
    options = nvrtc.cupy_options(cuda_build.BASE_OPTIONS, "sm_90")
    rc, log = nvrtc.compile_log(cm.source(), cm.SOURCE_NAME, options)
    assert rc != 0 and "ptx.cuh" in log
    assert nvrtc.version() >= (12, 0)


def test_source_includes_only_ptx_cuh_and_defaults_match_tile_config() -> None:
    text = cm.source()
    assert re.findall(r"#include.*", text) == ['#include "ptx.cuh"']
    defaults = {k: int(v) for k, v in re.findall(r"#define WB_GEMM_(\w+) (\d+)", text)}
    tiles = cm.DEFAULT_TILES
    assert defaults == {
        "BM": tiles.bm,
        "BN": tiles.bn,
        "BK": tiles.bk,
        "WARPS_M": tiles.warps_m,
        "WARPS_N": tiles.warps_n,
        "STAGES": tiles.stages,
        "GROUP_M": tiles.group_m,
    }
    for name in cm.ENTRY_POINTS:
        assert re.search(rf"WB_GEMM_ENTRY\({name},", text), name
    # 3 stages of (128 x 72 + 64 x 264) 2-byte elements
    assert tiles.smem_bytes == 156672 and tiles.threads == 256
    assert tiles.blocks(8192, 8192) == 64 * 32 and tiles.blocks(1, 1) == 1


def test_nvcc_command() -> None:
    defines = cm.DEFAULT_TILES.defines()
    cmd = cuda_build.nvcc_command(
        "sm_90", "/tmp/out.cubin", "/src/gemm.cu", defines=defines, nvcc="/opt/nvcc"
    )
    assert cmd[:3] == ["/opt/nvcc", "-cubin", "-arch=sm_90"]
    assert "-std=c++17" in cmd and "-O3" in cmd
    assert f"-I{cuda_build.include_dir()}" in cmd  # ptx.cuh
    assert cmd[cmd.index("-Xptxas") + 1] == "-v"
    assert cmd[-3:] == ["-o", "/tmp/out.cubin", "/src/gemm.cu"]
    assert set(defines) <= set(cmd)
    assert cm.normalize_arch("sm_90a") == "sm_90a" and cm.normalize_arch("80") == "sm_80"
    for bad in ("sm_75", "compute_90", "hopper"):
        with pytest.raises(UsageError):
            cm.normalize_arch(bad)


# ptxas -v as nvcc 13.0 prints it for sm_90 (two entries), NVRTC's variant of the frame line, an
# older toolkit's "S+D bytes smem", and a non-entry function whose spills are not an entry's.
SAMPLE_REPORT = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'wb_gemm_bf16_unaligned' for 'sm_90'
ptxas info    : Function properties for wb_gemm_bf16_unaligned
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 238 registers, used 1 barriers
ptxas info    : Compile time = 211.418 ms
ptxas info    : Function properties for _Z6helperPf
    16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Compiling entry function 'wb_gemm_fp16_aligned' for 'sm_90'
ptxas info    : Function properties for wb_gemm_fp16_aligned
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 236 registers, used 1 barriers, 388 bytes cmem[0]
ptxas info    : Compiling entry function 'old_style' for 'sm_80'
ptxas info    : Function properties for old_style
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 80 registers, 16384+0 bytes smem, 400 bytes cmem[0]
"""

SPILL_REPORT = """\
ptxas info    : Compiling entry function 'wb_gemm_bf16_aligned' for 'sm_80'
ptxas info    : Function properties for wb_gemm_bf16_aligned
    264 bytes stack frame, 296 bytes spill stores, 412 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 388 bytes cmem[0]
"""


def test_parser_reads_each_entry() -> None:
    entries = cuda_build.parse_ptxas_report(SAMPLE_REPORT)
    assert [(e.name, e.arch, e.registers) for e in entries] == [
        ("wb_gemm_bf16_unaligned", "sm_90", 238),
        ("wb_gemm_fp16_aligned", "sm_90", 236),
        ("old_style", "sm_80", 80),
    ]
    assert not any(e.spills for e in entries)
    assert [e.shared_bytes for e in entries] == [0, 0, 16384]
    assert all(e.stack_frame == 0 for e in entries)


def test_parser_reports_spills() -> None:
    (entry,) = cuda_build.parse_ptxas_report(SPILL_REPORT)
    assert entry == cuda_build.PtxasEntry("wb_gemm_bf16_aligned", "sm_80", 255, 296, 412, 264, 0)
    assert entry.spills
    with pytest.raises(AssertionError):
        _assert_clean([entry], "sm_80", ("wb_gemm_bf16_aligned",))


def test_parser_refuses_an_incomplete_entry() -> None:
    truncated = "\n".join(SPILL_REPORT.splitlines()[:2])  # no frame, no register line
    with pytest.raises(ValueError, match="wb_gemm_bf16_aligned"):
        cuda_build.parse_ptxas_report(truncated)
    assert cuda_build.parse_ptxas_report("") == []


# --- without CuPy ---------------------------------------------------------------------------------


def test_module_imports_without_cupy() -> None:
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import wattbench.kernels.matmul.cupy_matmul as m\n"
        "assert m.SUPPORTED_DTYPES == ('fp16', 'bf16') and 'fp32' in m.CUBLAS_DTYPES\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_missing_cupy_is_a_usage_error() -> None:
    for make in (cm.make_launch, cm.make_cublas_launch):
        with pytest.raises(UsageError) as info:
            make(object(), object(), object())
        assert 'pip install "wattbench[gpu]"' in info.value.remedy
        assert "cupy" in info.value.message
    with pytest.raises(UsageError):
        cm.load_module()


# --- the launchers against a stand-in for CuPy ----------------------------------------------------


class _Mem:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr
        self.device_id = 0


class FakeArray(np.ndarray):
    """A host numpy array posing as ``cupy.ndarray``: ``.data.ptr`` is its host address."""

    def __new__(cls, shape: tuple[int, ...], dtype: Any = float, memptr: Any = None) -> FakeArray:
        if memptr is None:
            return np.zeros(shape, dtype).view(cls)
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        buf = (ctypes.c_char * nbytes).from_address(memptr.ptr)
        return np.frombuffer(buf, dtype=dtype).reshape(shape).view(cls)

    @property
    def data(self) -> _Mem:  # type: ignore[override]
        return _Mem(self.__array_interface__["data"][0])


class FakeTensor:
    """A foreign CUDA array: only ``__cuda_array_interface__`` (typestr "<V2" for bf16)."""

    def __init__(self, host: np.ndarray, typestr: str | None = None) -> None:
        self.host = host
        self.typestr = typestr or host.__array_interface__["typestr"]

    @property
    def __cuda_array_interface__(self) -> dict:
        strides = None if self.host.flags.c_contiguous else self.host.strides
        ptr = self.host.__array_interface__["data"][0]
        return {
            "typestr": self.typestr,
            "shape": self.host.shape,
            "strides": strides,
            "data": (ptr, False),
            "version": 2,
        }


class FakeKernel:
    __slots__ = ("calls", "max_dynamic_shared_size_bytes", "name")  # a misspelt attribute fails

    def __init__(self, name: str) -> None:
        self.name = name
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.calls: list[tuple] = []

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        self.calls.append((grid, block, args, shared_mem))


class FakeModule:
    def __init__(self, code: str, options: tuple, backend: str) -> None:
        self.code, self.options, self.backend = code, options, backend
        self.kernels: dict[str, FakeKernel] = {}

    def get_function(self, name: str) -> FakeKernel:
        return self.kernels.setdefault(name, FakeKernel(name))


def _fake_cupy(smem_limit: int) -> types.ModuleType:
    cp = types.ModuleType("cupy")
    cp.ndarray = FakeArray
    cp.uint16 = np.uint16
    cp.asarray = lambda x: (x.host if isinstance(x, FakeTensor) else np.asarray(x)).view(FakeArray)
    cp.RawModule = FakeModule
    cp.matmul = lambda a, b, out: np.matmul(a, b, out=out)
    device = types.SimpleNamespace(id=0, attributes={"MaxSharedMemoryPerBlockOptin": smem_limit})
    cp.cuda = types.SimpleNamespace(
        Device=lambda: device,
        UnownedMemory=lambda ptr, size, owner: _Mem(ptr),
        MemoryPointer=lambda mem, offset: _Mem(mem.ptr + offset),
    )
    return cp


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    cp = _fake_cupy(smem_limit=227 * 1024)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    cuda_build.clear_module_cache()
    yield cp
    cuda_build.clear_module_cache()


def _mats(m: int, n: int, k: int, dtype: Any = np.float16, misalign: bool = False) -> list:
    def mat(rows: int, cols: int) -> FakeArray:
        flat = np.ones(rows * cols + 8, dtype).view(FakeArray)
        start = (-flat.data.ptr // flat.itemsize) % 8 + (1 if misalign else 0)  # 16-B boundary
        return flat[start : start + rows * cols].reshape(rows, cols)

    return [mat(m, k), mat(k, n), mat(m, n)]


def test_launch_geometry_and_fast_entry(fake_cupy: types.ModuleType) -> None:
    a, b, out = _mats(300, 520, 64)
    launch = cm.make_launch(a, b, out)
    module = cm.load_module()
    assert module.backend == "nvrtc"
    assert module.options == cuda_build.compile_options(cm.DEFAULT_TILES.defines())
    assert module.code == cm.source() and cm.load_module() is module  # cached
    (kernel,) = module.kernels.values()
    assert kernel.name == "wb_gemm_fp16_aligned"
    assert kernel.max_dynamic_shared_size_bytes == cm.DEFAULT_TILES.smem_bytes
    assert kernel.calls == []  # nothing runs before the closure is called
    launch()
    launch()
    assert len(kernel.calls) == 2
    grid, block, args, smem = kernel.calls[0]
    assert kernel.calls[1][:2] == (grid, block) and kernel.calls[1][3] == smem
    assert kernel.calls[1][2] is args  # built once
    assert grid == (3 * 3,) and block == (256,) and smem == 156672
    assert [x.data.ptr for x in args[:3]] == [x.data.ptr for x in (a, b, out)]  # no copies
    assert all(x.dtype == np.uint16 for x in args[:3])
    assert [type(x) for x in args[3:]] == [np.int32] * 3 and list(args[3:]) == [300, 520, 64]


@pytest.mark.parametrize(
    ("mnk", "misalign"),
    [((64, 64, 77), False), ((64, 100, 64), False), ((64, 64, 64), True)],
    ids=["K%8", "N%8", "pointer"],
)
def test_unaligned_problems_take_the_guarded_entry(
    fake_cupy: types.ModuleType, mnk: tuple[int, int, int], misalign: bool
) -> None:
    cm.make_launch(*_mats(*mnk, misalign=misalign))()
    (kernel,) = cm.load_module().kernels.values()
    assert kernel.name == "wb_gemm_fp16_unaligned"


def test_bf16_through_the_array_interface(fake_cupy: types.ModuleType) -> None:
    a, b, out = (FakeTensor(x.view(np.uint16), "<V2") for x in _mats(16, 32, 48))
    cm.make_launch(a, b, out)()
    (kernel,) = cm.load_module().kernels.values()
    assert kernel.name == "wb_gemm_bf16_aligned"
    args = kernel.calls[0][2]
    assert args[0].data.ptr == a.__cuda_array_interface__["data"][0]
    assert args[0].shape == (16, 48) and args[2].shape == (16, 32)


def test_bf16_torch_tensors(fake_cupy: types.ModuleType) -> None:
    torch = pytest.importorskip("torch")
    a, b, out = (torch.ones(r, c, dtype=torch.bfloat16) for r, c in ((16, 40), (40, 24), (16, 24)))
    cm.make_launch(a, b, out)()
    (kernel,) = cm.load_module().kernels.values()
    assert kernel.name == "wb_gemm_bf16_aligned"
    assert [x.data.ptr for x in kernel.calls[0][2][:3]] == [t.data_ptr() for t in (a, b, out)]
    with pytest.raises(ShapeError, match="C-contiguous"):
        cm.make_launch(a, b.T.contiguous().T, out)


def test_smem_over_the_device_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(smem_limit=99 * 1024))
    cuda_build.clear_module_cache()
    try:
        with pytest.raises(UsageError, match="156672 bytes"):
            cm.make_launch(*_mats(8, 8, 8))
    finally:
        cuda_build.clear_module_cache()


def _bad_operands() -> dict[str, tuple[tuple, type]]:
    a, b, out = _mats(32, 48, 64)
    a32, b32, out32 = _mats(32, 48, 64, np.float32)
    sq = _mats(64, 64, 64)
    v2_t = FakeTensor(b.view(np.uint16).T, "<V2")
    return {
        "1-D": ((a[0], b, out), ShapeError),
        "inner": ((a, b[:32], out), ShapeError),
        "out-shape": ((a, b, out[:16]), ShapeError),
        "transposed": ((a, sq[1].T, _mats(32, 64, 64)[2]), ShapeError),
        "aliased-out": ((sq[0], sq[1], sq[0]), ShapeError),
        "empty": ((a[:0], b, out[:0]), ShapeError),
        "not-an-array": ((a, [[1.0]], out), ShapeError),
        "v2-strided": ((FakeTensor(a.view(np.uint16), "<V2"), v2_t, out), ShapeError),
        "mixed-dtype": ((a, b32, out), UnknownKernelError),
        "fp32": ((a32, b32, out32), UnknownKernelError),
    }


@pytest.mark.parametrize("case", list(_bad_operands()))
def test_bad_operands_are_refused(fake_cupy: types.ModuleType, case: str) -> None:
    operands, error = _bad_operands()[case]
    with pytest.raises(error) as info:
        cm.make_launch(*operands)
    assert info.value.remedy


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
def test_cublas_launch_writes_out(fake_cupy: types.ModuleType, dtype: Any) -> None:
    rng = np.random.default_rng(0)
    a, b, out = _mats(5, 7, 3, dtype)
    a[:] = rng.standard_normal(a.shape)
    b[:] = rng.standard_normal(b.shape)
    launch = cm.make_cublas_launch(a, b, out)
    launch()
    np.testing.assert_allclose(out, np.asarray(a, np.float64) @ b, rtol=2e-3, atol=2e-3)


def test_cublas_bf16_without_ml_dtypes(
    fake_cupy: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    a, b, out = (FakeTensor(x.view(np.uint16), "<V2") for x in _mats(4, 8, 8))
    with pytest.raises(UnknownKernelError, match="bf16"):
        cm.make_cublas_launch(a, b, out)
    with pytest.raises(UnknownKernelError, match="float64"):
        cm.make_cublas_launch(*_mats(4, 8, 8, np.float64))


# --- on a GPU -------------------------------------------------------------------------------------

#: (M, N, K): square, large square, odd, decode-like M = 1, small odd, K not a multiple of 8
GPU_SHAPES = [
    (1024, 1024, 1024),
    (4096, 4096, 4096),
    (1000, 1000, 1000),
    (1, 4096, 4096),
    (67, 45, 93),
    (129, 257, 77),
]


def _torch_operands(
    m: int, n: int, k: int, dtype: str, seed: int, misalign: bool = False
) -> tuple[Any, Any, Any]:
    import torch

    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    gen = torch.Generator(device="cuda").manual_seed(seed)
    skip = 1 if misalign else 0  # one element in: 2-byte aligned storage, still contiguous
    a = torch.randn(m * k + skip, generator=gen, device="cuda", dtype=dt)[skip:].view(m, k)
    b = torch.randn(k * n + skip, generator=gen, device="cuda", dtype=dt)[skip:].view(k, n)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=dt)
    return a, b, out


def _rel_err(out: Any, a: Any, b: Any) -> float:
    import torch

    torch.cuda.synchronize()
    c = out.double()
    assert not c.isnan().any(), "the kernel left unwritten (NaN) elements"
    ref = a.double() @ b.double()
    return float(torch.linalg.norm(c - ref) / torch.linalg.norm(ref))


@pytest.mark.gpu
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_gemm_matches_float64(dtype: str, shape: tuple[int, int, int]) -> None:
    pytest.importorskip("cupy", reason="the GPU stack lacks cupy")
    a, b, out = _torch_operands(*shape, dtype, seed=sum(shape))
    import torch

    launch = cm.make_launch(a, b, out)
    launch()
    assert _rel_err(out, a, b) < (BF16_TOL if dtype == "bf16" else FP16_TOL)
    first = out.clone()
    out.fill_(float("nan"))
    launch()  # the closure relaunches into the same buffers, bit for bit
    torch.cuda.synchronize()
    assert torch.equal(out, first)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_gemm_unaligned_pointers_and_cupy_arrays(dtype: str) -> None:
    cp = pytest.importorskip("cupy", reason="the GPU stack lacks cupy")
    a, b, out = _torch_operands(256, 264, 136, dtype, seed=7, misalign=True)
    assert cm.entry_point(dtype, 264, 136, [a.data_ptr()]).endswith("_unaligned")
    cm.make_launch(a, b, out)()
    assert _rel_err(out, a, b) < (BF16_TOL if dtype == "bf16" else FP16_TOL)
    if dtype == "fp16":  # CuPy arrays directly
        a2, b2, out2 = _torch_operands(512, 512, 512, dtype, seed=8)
        cm.make_launch(cp.asarray(a2), cp.asarray(b2), cp.asarray(out2))()
        assert _rel_err(out2, a2, b2) < FP16_TOL


@pytest.mark.gpu
def test_gemm_refuses_fp32_and_transposes_on_gpu() -> None:
    pytest.importorskip("cupy", reason="the GPU stack lacks cupy")
    a, b, out = _torch_operands(64, 64, 64, "fp32", seed=1)
    with pytest.raises(UnknownKernelError):
        cm.make_launch(a, b, out)
    a, b, out = _torch_operands(64, 64, 64, "bf16", seed=1)
    with pytest.raises(ShapeError):
        cm.make_launch(a, b.T, out)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1024, 1024, 1024), (67, 45, 93)], ids=["1024", "odd"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_cupy_matmul_matches_float64(dtype: str, shape: tuple[int, int, int]) -> None:
    pytest.importorskip("cupy", reason="the GPU stack lacks cupy")
    a, b, out = _torch_operands(*shape, dtype, seed=3)
    try:
        launch = cm.make_cublas_launch(a, b, out)
    except UnknownKernelError as exc:
        if dtype == "bf16":
            pytest.skip(str(exc))  # CuPy without ml_dtypes bfloat16
        raise
    launch()
    tol = {"fp32": FP32_TOL, "bf16": BF16_TOL, "fp16": FP16_TOL}[dtype]
    assert _rel_err(out, a, b) < tol
