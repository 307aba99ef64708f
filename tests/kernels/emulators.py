"""Building a host emulator of the CUDA kernels (``tests/kernels/*_emulator.cpp``) with the system
C++ compiler, for the tests that run the kernels without a GPU.

An emulator includes ``ptx_emulator.h`` (this folder) and then the kernel sources named by its
``WB_*_SOURCE`` macros; the sources include ``ptx.cuh``, found through the same include path as
every other build of them (``wattbench.kernels.cuda_build.include_dir``).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from wattbench.kernels import cuda_build

HERE = Path(__file__).resolve().parent
CXX = shutil.which("g++") or shutil.which("c++")


def build_emulator(
    emulator: str,
    out: Path,
    sources: Mapping[str, Path],
    *,
    defines: Sequence[str] = (),
    opt: str = "-O1",
) -> ctypes.CDLL:
    """Compile ``emulator`` (a .cpp of this folder) into the shared library ``out``, each macro of
    ``sources`` naming a kernel source's path, and load it (skip without a C++ compiler)."""
    if CXX is None:
        pytest.skip("no C++ compiler (g++) to build the kernel emulator")
    cmd = [CXX, "-std=c++17", opt, "-shared", "-fPIC", "-o", str(out), f"-I{HERE}",
           f"-I{cuda_build.include_dir()}", *(f'-D{m}="{p}"' for m, p in sources.items()),
           *defines, str(HERE / emulator)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lib = ctypes.CDLL(str(out))
    lib.emu_add_buffer.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib
