"""The hand-written CUDA quantized GEMMs (kernels/qgemm/w8a8.cu, w4a16.cu) and their CuPy launchers.

Without a GPU the kernels run in a host emulator (tests/kernels/qgemm_emulator.cpp): the .cu files
are compiled unchanged by g++, their PTX primitives (ptx.cuh) taken from ptx_emulator.h, written
from the PTX ISA's definitions (fibers per CUDA thread, warp-collective ldmatrix and
mma.sync, queued cp.async, poisoned shared memory, bounds-checked global loads). The launchers
run for real (validation, entry choice, launch geometry, workspace, argument order) against a
stand-in for the few CuPy calls they make, whose kernels call the emulator: the one thing
replaced is what cannot exist here -- CuPy, NVRTC and a CUDA device (``_on_current_cuda_device``
is a no-op for CPU tensors). Outputs are poisoned first and fenced by canaries; errors are
relative Frobenius norms against float64 on the dequantized operands:

* W8A8 int8: int32 sums exact, fp32 scaling, one rounding of C: fp16 2**-10, bf16 2**-7.
* W4A16 GEMV: (q - z) exact in fp32, fp32 sums, one rounding of C: the same bounds.
* W4A16 GEMM: the weight rounded to the activation dtype, then C: the same bounds (measured
  errors are about a quarter of them).

Compilation (nvcc and NVRTC) for sm_80 / sm_90 without spills is checked in
test_cuda_sources.py; on a GPU
(``gpu`` marker) the same launchers run through the real CuPy.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from tests.kernels.emulators import build_emulator
from wattbench.kernels import cuda_build
from wattbench.kernels.qgemm import cupy_qgemm as cq
from wattbench.kernels.qgemm import w4a16, w8a8
from wattbench.kernels.verify import rel_fro_error
from wattbench.profiler.errors import ShapeError, UnknownKernelError, UsageError

SOURCES = Path(cq.__file__).parent
TOL = {torch.float16: 2**-10, torch.bfloat16: 2**-7}
EMU_CODES = {0: "ok", 1: "deadlock", 2: "divergent", 3: "bad launch", 4: "out-of-bounds read"}
CANARY = 4096  # bytes of guard on each side of an output


@pytest.fixture(scope="module")
def emulator(tmp_path_factory) -> ctypes.CDLL:
    lib = tmp_path_factory.mktemp("qgemm_emu") / "libqgemm_emu.so"
    sources = {f"WB_{Path(n).stem.upper()}_SOURCE": SOURCES / n for n in cq.ENTRY_POINTS}
    dll = build_emulator("qgemm_emulator.cpp", lib, sources, opt="-O2")
    return dll


class EmulatedKernel:
    """What ``RawModule.get_function`` returns: a call runs the grid in the emulator."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.lib, self.name = lib, name
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.launches: list[tuple] = []
        self.readable: list[torch.Tensor] | None = None  # default: every tensor argument

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        self.launches.append((grid, block, shared_mem))
        assert shared_mem <= self.max_dynamic_shared_size_bytes, "no opt-in for this much smem"
        self.lib.emu_clear_buffers()
        for t in self.readable if self.readable is not None else args:
            if isinstance(t, torch.Tensor):
                self.lib.emu_add_buffer(t.data_ptr(), t.numel() * t.element_size())
        conv = [
            ctypes.c_void_p(a.data_ptr()) if isinstance(a, torch.Tensor) else ctypes.c_int(int(a))
            for a in args
        ]
        if self.name.startswith("wb_w8a8"):
            run = self.lib.emu_w8a8
        else:
            run = self.lib.emu_w4a16_gemv if "gemv" in self.name else self.lib.emu_w4a16_gemm
        fn = ctypes.cast(getattr(self.lib, self.name), ctypes.c_void_p)
        gy = grid[1] if len(grid) > 1 else 1
        self.rc = run(fn, ctypes.c_uint(grid[0]), ctypes.c_uint(gy), ctypes.c_int(block[0]), *conv)
        assert self.rc == 0, f"{self.name}: {EMU_CODES.get(self.rc, self.rc)}"


@pytest.fixture
def cupy_stand_in(emulator, monkeypatch):
    """A module named cupy with RawModule / asarray / cuda.Device, and no device check."""
    modules: list = []

    class RawModule:
        def __init__(self, code: str, options: tuple, backend: str) -> None:
            assert backend == "nvrtc" and options == cuda_build.compile_options()
            assert "extern" in code
            self.kernels: dict[str, EmulatedKernel] = {}
            modules.append(self)

        def get_function(self, name: str) -> EmulatedKernel:
            return self.kernels.setdefault(name, EmulatedKernel(emulator, name))

    device = types.SimpleNamespace(
        id=0,
        compute_capability="90",
        attributes={"MultiProcessorCount": 4, "MaxSharedMemoryPerBlockOptin": 227 * 1024},
    )
    cp = types.ModuleType("cupy")
    cp.RawModule = RawModule
    cp.asarray = lambda t: t  # the kernels take raw pointers: a tensor stands for its memory
    cp.cuda = types.SimpleNamespace(Device=lambda: device)
    cp.device, cp.modules = device, modules
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(cq, "_on_current_cuda_device", lambda cp, tensors: None)
    cuda_build.clear_module_cache()
    yield cp
    cuda_build.clear_module_cache()


def _fenced(inputs) -> torch.Tensor:
    """Move ``inputs.out`` into the middle of a canary-filled buffer; returns the buffer."""
    out = inputs.out
    pad = CANARY // out.element_size()
    buf = torch.empty(out.numel() + 2 * pad, dtype=out.dtype)
    buf.view(torch.int16).fill_(0x5A5A)
    inputs.out = buf[pad : pad + out.numel()].view(out.shape)
    return buf


def _run(launch, inputs, ref, buf) -> float:
    inputs.poison()
    launch()
    pad = CANARY // inputs.out.element_size()
    guard = torch.cat([buf[:pad], buf[-pad:]]).view(torch.int16)
    assert (guard == 0x5A5A).all(), "the kernel wrote outside its output"
    assert not inputs.out.isnan().any(), "the kernel left unwritten (NaN) elements"
    return rel_fro_error(inputs.out, ref)


def _w8a8(shape, dtype, seed=0):
    inputs = w8a8.make_inputs(shape, dtype, seed, "cpu")
    buf = _fenced(inputs)
    launch = cq.make_w8a8_launch(
        inputs["a"], inputs["b"].t(), inputs.out, inputs["scale_a"], inputs["scale_b"]
    )
    return inputs, launch, w8a8.reference(inputs, "cpu"), buf


def _w4a16(shape, dtype, seed=0, **kw):
    inputs = w4a16.make_inputs(shape, dtype, seed, "cpu")
    buf = _fenced(inputs)
    args = (inputs["x"], inputs["qweight"], inputs["scales"], inputs["zeros"], inputs.out)
    launch = cq.make_w4a16_launch(*args, int(dtype.split("-g")[1]), **kw)
    return inputs, launch, w4a16.reference(inputs, "cpu"), buf


# --- W8A8 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((130, 260, 96), "int8"), ((3, 72, 48), "int8-fp16"), ((17, 8, 16), "int8"),
     ((129, 257, 64), "int8-fp16")],
    ids=str,
)  # fmt: skip
def test_w8a8_mma_in_the_emulator(cupy_stand_in, shape, dtype):
    inputs, launch, ref, buf = _w8a8(shape, dtype, seed=shape[0])
    assert launch.entry.name == f"wb_w8a8_mma_{'fp16' if dtype == 'int8-fp16' else 'bf16'}"
    grid, block, smem = launch.geometry
    assert grid == (-(-shape[0] // 128) * -(-shape[1] // 256),) and block == (256,)
    assert smem == cq.W8A8_MMA_SMEM_BYTES == launch.entry.max_dynamic_shared_size_bytes
    err = _run(launch, inputs, ref, buf)
    assert 0 < err < TOL[inputs.out.dtype]


@pytest.mark.parametrize("dtype", ["int8", "int8-fp16"])
def test_w8a8_dp4a_below_sm80_in_the_emulator(cupy_stand_in, dtype):
    cupy_stand_in.device.compute_capability = "75"
    inputs, launch, ref, buf = _w8a8((70, 65, 80), dtype, seed=5)
    assert launch.entry.name.startswith("wb_w8a8_dp4a_")
    assert launch.geometry == ((2, 2), (256,), 0)
    assert _run(launch, inputs, ref, buf) < TOL[inputs.out.dtype]


def test_w8a8_one_scale_for_the_tensor(cupy_stand_in):
    inputs = w8a8.make_inputs((20, 24, 32), "int8-fp16", 3, "cpu")
    inputs.tensors["scale_a"] = inputs["scale_a"].amax().reshape(1)  # sa_step 0
    buf = _fenced(inputs)
    launch = cq.make_w8a8_launch(
        inputs["a"], inputs["b"].t(), inputs.out, inputs["scale_a"], inputs["scale_b"]
    )
    assert _run(launch, inputs, w8a8.reference(inputs, "cpu"), buf) < 2**-10


# --- W4A16 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "rows"), [(1, 1), (2, 2), (3, 4), (5, 8), (16, 16)], ids=lambda v: str(v)
)
@pytest.mark.parametrize("dtype", ["fp16-g32", "bf16-g64", "bf16-g128"])
def test_w4a16_gemv_in_the_emulator(cupy_stand_in, dtype, m, rows):
    inputs, launch, ref, buf = _w4a16((m, 264, 256), dtype, seed=m)
    act = "bf16" if dtype.startswith("bf16") else "fp16"
    assert launch.entry.name == f"wb_w4a16_gemv_{act}_m{rows}"
    (grid, block, smem), splits = launch.geometry, launch.geometry[0][1]
    assert grid[0] == 3 and block == (128,) and smem == 0 and splits == 2  # 8 chunks, 4 warps
    assert _run(launch, inputs, ref, buf) < TOL[inputs.out.dtype]
    assert not launch.workspace[1].any()  # every band's counter is back at 0


@pytest.mark.parametrize("split", [1, 3, 6])
def test_w4a16_gemv_split_k_is_deterministic_and_self_resetting(cupy_stand_in, split):
    inputs, launch, ref, buf = _w4a16((4, 136, 384), "fp16-g32", seed=split, split=split)
    assert launch.geometry[0] == (2, split)
    first = _run(launch, inputs, ref, buf)
    result = inputs.out.clone()
    assert first < 2**-10 and not launch.workspace[1].any()
    assert _run(launch, inputs, ref, buf) == first and torch.equal(result, inputs.out)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((17, 40, 128), "fp16-g32"), ((67, 132, 128), "bf16-g128"), ((130, 200, 256), "bf16-g64"),
     ((64, 128, 96), "fp16-g32")],
    ids=str,
)  # fmt: skip
def test_w4a16_gemm_in_the_emulator(cupy_stand_in, shape, dtype):
    inputs, launch, ref, buf = _w4a16(shape, dtype, seed=shape[0])
    assert launch.entry.name.startswith("wb_w4a16_gemm_")
    m, n, _ = shape
    assert launch.geometry == (((-(-m // 128)) * (-(-n // 128)),), (256,), 50688)
    assert launch.entry.max_dynamic_shared_size_bytes == cq.W4A16_GEMM_SMEM_BYTES
    assert _run(launch, inputs, ref, buf) < TOL[inputs.out.dtype]


def test_the_emulator_catches_an_out_of_bounds_read(cupy_stand_in):
    inputs, launch, _, _ = _w4a16((2, 16, 64), "fp16-g32")
    launch.entry.readable = [inputs["x"]]  # the weights are not readable memory now
    with pytest.raises(AssertionError, match="out-of-bounds read"):
        launch()


# --- the host side without a GPU --------------------------------------------------------------


def _constants(name: str) -> dict[str, int]:
    text = cq.source(name)
    return {k: int(v) for k, v in re.findall(r"constexpr int (\w+) = (\d+)[;,]", text)}


def test_launch_constants_match_the_sources():
    w8 = cq.source("w8a8.cu")
    assert re.search(r"constexpr int BM = 128, BN = 256, BK = 64;", w8)
    assert re.search(r"WARPS_M = 2, WARPS_N = 4, STAGES = 4", w8)
    assert cq.W8A8_MMA_TILE == (128, 256) and cq.W8A8_MMA_SMEM_BYTES == 4 * (128 + 256) * 80
    w4 = _constants("w4a16.cu")
    assert (w4["GEMV_WARPS"], w4["GEMV_BN"], w4["CHUNK_K"]) == (
        cq.W4A16_GEMV_WARPS, cq.W4A16_GEMV_BN, cq.W4A16_CHUNK_K,
    )  # fmt: skip
    assert "constexpr int BM = 128, BN = 128, BK = 32;" in cq.source("w4a16.cu")
    assert "static_assert(GEMM_SMEM_BYTES == 50688" in cq.source("w4a16.cu")
    for name, entries in cq.ENTRY_POINTS.items():
        text = cq.source(name)
        assert re.findall(r"^[ \t]*#[ \t]*include.*", text, re.M) == ['#include "ptx.cuh"'], name
        for entry in entries:
            assert re.search(rf"ENTRY\({entry},", text), entry


def test_gemv_rows_and_split():
    assert [cq.gemv_rows(m) for m in (1, 2, 3, 4, 5, 9, 16)] == [1, 2, 4, 4, 8, 16, 16]
    with pytest.raises(ShapeError):
        cq.gemv_rows(17)
    # the performance target: M = 1, 8192^2 on 132 SMs -> 64 bands x 16 splits of 16 chunks
    assert cq.gemv_split(8192, 8192, 132) == (16, 16)
    assert cq.gemv_split(128, 128, 132) == (1, 4)  # 4 chunks: one per warp at most
    assert cq.gemv_split(57344, 8192, 132) == (3, 86)  # 448 bands: 3 splits reach 8 blocks / SM


def test_validation_comes_before_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if not installed
    inputs = w8a8.make_inputs((4, 8, 40), "int8", 0, "cpu")
    args = (inputs["a"], inputs["b"].t(), inputs.out, inputs["scale_a"], inputs["scale_b"])
    with pytest.raises(ShapeError, match="K % 16 == 0"):
        cq.make_w8a8_launch(*args)
    fp8 = w8a8.make_inputs((4, 8, 32), "fp8", 0, "cpu")
    with pytest.raises(UnknownKernelError, match="float8"):
        cq.make_w8a8_launch(fp8["a"], fp8["b"].t(), fp8.out, fp8["scale_a"], fp8["scale_b"])
    q = w4a16.make_inputs((2, 18, 64), "fp16-g32", 0, "cpu")
    with pytest.raises(ShapeError, match="N % 4 == 0"):
        cq.make_w4a16_launch(q["x"], q["qweight"], q["scales"], q["zeros"], q.out, 32)
    ok = w4a16.make_inputs((2, 16, 64), "fp16-g32", 0, "cpu")
    with pytest.raises(UsageError, match="cupy") as info:
        cq.make_w4a16_launch(ok["x"], ok["qweight"], ok["scales"], ok["zeros"], ok.out, 32)
    assert 'pip install "wattbench[gpu]"' in info.value.remedy


def test_module_imports_without_cupy():
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import wattbench.kernels.qgemm.cupy_qgemm as m\n"
        "assert 'w4a16.cu' in m.ENTRY_POINTS and m.normalize_arch(90, 'w8a8.cu') == 'sm_90'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_arch_names():
    assert cq.normalize_arch("sm_75", "w8a8.cu") == "sm_75"
    assert cq.normalize_arch("90a", "w4a16.cu") == "sm_90a"
    with pytest.raises(UsageError, match="sm_80"):
        cq.normalize_arch("sm_75", "w4a16.cu")
    with pytest.raises(UsageError, match="no quantized GEMM CUDA source"):
        cq.normalize_arch("sm_90", "w2a2.cu")


# --- on a GPU: the real CuPy ----------------------------------------------------------------------


def _gpu(shape, family, dtype):
    pytest.importorskip("cupy", reason="the GPU stack lacks cupy")
    fam = {"w8a8": w8a8, "w4a16": w4a16}[family]
    inputs = fam.make_inputs(shape, dtype, 1, "cuda")
    launch = fam.FAMILY.impl("cupy").make_launch(inputs)
    inputs.poison()
    launch()
    torch.cuda.synchronize()
    assert not inputs.out.isnan().any()
    return rel_fro_error(inputs.out, fam.reference(inputs, "cuda")), inputs


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["int8", "int8-fp16"])
@pytest.mark.parametrize(
    "shape", [(1, 4096, 4096), (4096, 4096, 4096), (4097, 4095, 4096)], ids=str
)
def test_cupy_w8a8_gpu(shape, dtype):
    err, inputs = _gpu(shape, "w8a8", dtype)
    assert err < TOL[inputs.out.dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16-g128", "fp16-g32", "bf16-g64"])
@pytest.mark.parametrize(
    "shape", [(1, 8192, 8192), (3, 4096, 4096), (16, 6144, 4096), (512, 4096, 4096)], ids=str
)
def test_cupy_w4a16_gpu(shape, dtype):
    err, inputs = _gpu(shape, "w4a16", dtype)
    assert err < TOL[inputs.out.dtype]
