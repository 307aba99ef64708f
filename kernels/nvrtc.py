"""NVRTC, the compiler CuPy's ``RawModule`` runs, called through its C library: no GPU, no CuPy.

:func:`compile_report` compiles a source of a family exactly as
:func:`wattbench.kernels.cuda_build.load_module` has CuPy compile it on a GPU of ``arch`` and
returns ptxas' per-entry report (registers, spills, shared memory). The options are
:func:`~wattbench.kernels.cuda_build.compile_options` plus what CuPy adds on a CUDA GPU
(:func:`cupy_options`, as CuPy's ``cupy/cuda/compiler.py`` adds them); CuPy's own include folders
(CCCL, its headers, the CUDA runtime's) are left out: the sources include nothing but
``ptx.cuh``.

The library is ``libnvrtc.so.13`` (or ``.12``) on the loader's path, else the one NVIDIA's
``nvidia-cuda-nvrtc`` wheel installs (``nvidia/cu13/lib``, ``nvidia/cuda_nvrtc/lib`` for 12).
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from wattbench.kernels.cuda_build import (
    PtxasEntry,
    compile_options,
    normalize_arch,
    parse_ptxas_report,
    source_text,
)
from wattbench.kernels.errors import UsageError, WattbenchError

_SONAMES = ("libnvrtc.so.13", "libnvrtc.so.12")


def cupy_options(options: Sequence[str], arch: str) -> tuple[str, ...]:
    """The options CuPy hands NVRTC for a ``RawModule(options=options)`` on a GPU of ``arch``
    (``sm_XX``): its flush-to-zero default, a cubin for the device's architecture (``-arch=sm_XX``,
    CuPy's default without ``CUPY_COMPILE_WITH_PTX``) and ``--device-as-default-execution-space``.
    """
    return (*options, "-ftz=true", f"-arch={arch}", "--device-as-default-execution-space")


def _candidates() -> list[str]:
    names = list(_SONAMES)
    spec = importlib.util.find_spec("nvidia")  # the namespace of NVIDIA's wheels
    roots = (spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        names += sorted(str(p) for p in Path(root).glob("*/lib/libnvrtc.so.1[23]"))
    return names


@cache
def find_library() -> str | None:
    """The first libnvrtc that loads (a soname or a path), or None."""
    for name in _candidates():
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


def version() -> tuple[int, int]:
    """NVRTC's (major, minor) version."""
    lib = _library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def _library() -> ctypes.CDLL:
    name = find_library()
    if name is None:
        raise UsageError(
            "libnvrtc is not found (neither on the loader's path nor from the nvidia-cuda-nvrtc "
            "wheel)",
            'pip install "wattbench[dev]" (it brings nvidia-cuda-nvrtc) or the CUDA toolkit',
        )
    return ctypes.CDLL(name)


def compile_log(code: str, name: str, options: Sequence[str]) -> tuple[int, str]:
    """(nvrtcResult, program log) of compiling ``code`` (file name ``name``) with ``options``."""
    lib = _library()
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), name.encode(), 0, None, None)
    if rc != 0:
        raise WattbenchError(f"nvrtcCreateProgram failed ({rc})", "check the NVRTC install")
    try:
        opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        rc = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value + 1)
        lib.nvrtcGetProgramLog(prog, log)
        return rc, log.value.decode(errors="replace")
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_report(
    package: str,
    name: str,
    arch: str | int,
    *,
    defines: Sequence[str] = (),
    lowest: int = 80,
) -> list[PtxasEntry]:
    """Compile source ``name`` of ``package`` with NVRTC as CuPy would on a GPU of ``arch`` (at
    least ``sm_<lowest>``), with ptxas' report (``--ptxas-options=-v``); one entry per entry
    point. A failed compile is one WattbenchError with the end of NVRTC's log."""
    arch = normalize_arch(arch, lowest=lowest, what=name)
    options = (*cupy_options(compile_options(defines), arch), "--ptxas-options=-v")
    rc, log = compile_log(source_text(package, name), name, options)
    if rc != 0:
        tail = "\n".join(log.strip().splitlines()[-20:])
        raise WattbenchError(f"NVRTC failed to compile {name} for {arch}:\n{tail}", "fix it")
    return parse_ptxas_report(log)
