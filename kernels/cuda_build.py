"""Building the hand-written CUDA sources (``kernels/*/*.cu``), for every family alike.

Every source includes ``ptx.cuh`` (the PTX primitives, package data beside this module), so every
compile gets :func:`compile_options`: ``-std=c++17``, ``-I`` the folder of ``ptx.cuh``, the
caller's ``-D`` defines and the header's content hash (``-DWB_PTX_CUH_SHA256=...``: CuPy's
on-disk cache keys on the source text and the options, not on included files, so an edited header
must change the options).

Build side (no GPU needed): :func:`compile_report` compiles a source to a cubin with nvcc and
``-Xptxas -v``, and :func:`parse_ptxas_report` turns ptxas' resource report into one
:class:`PtxasEntry` per kernel entry point (registers, spills, stack, static shared memory), which
the tests check; :mod:`wattbench.kernels.nvrtc` does the same through NVRTC, the compiler CuPy
runs. Run side: :func:`load_module` compiles a source with CuPy (``cupy.RawModule``, NVRTC) once
per process and options; :func:`import_cupy` imports CuPy or says how to install it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from wattbench.kernels.errors import UsageError, WattbenchError

GPU_STACK = 'install the GPU stack: pip install "wattbench[gpu]"'
#: the header of PTX primitives every source includes, beside this module
HEADER_NAME = "ptx.cuh"
#: the C++ standard of every compile (CuPy's default too)
BASE_OPTIONS: tuple[str, ...] = ("-std=c++17",)
#: dynamic shared memory a kernel may use without opting in, bytes
DEFAULT_SMEM_BYTES = 48 * 1024


@dataclass(frozen=True)
class PtxasEntry:
    """ptxas' resource report for one kernel entry point (bytes, except registers)."""

    name: str
    arch: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack_frame: int
    shared_bytes: int  # static shared memory; dynamic shared memory is not in the report

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
_PROPS_RE = re.compile(r"Function properties for (\S+)")
_FRAME_RE = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
_USED_RE = re.compile(r"Used (\d+) registers")
_SMEM_RE = re.compile(r"(\d+)(?:\+(\d+))? bytes smem")


def parse_ptxas_report(text: str) -> list[PtxasEntry]:
    """The entry points of a ``ptxas -v`` report, in report order.

    An entry's block is ``Compiling entry function 'NAME' for 'ARCH'``, then ``Function properties
    for NAME`` with its stack frame / spill line, then ``Used N registers[, S bytes smem]``.
    Property lines of non-entry functions are skipped; an entry whose block lacks a line is an
    error (a report format this parser does not know must not pass as spill-free).
    """
    entries: list[PtxasEntry] = []
    current: dict[str, Any] | None = None
    props_for: str | None = None

    def finish() -> None:
        if current is None:
            return
        missing = [key for key in ("frame", "registers") if key not in current]
        if missing:
            raise ValueError(f"ptxas report for {current['name']} has no {' or '.join(missing)}")
        stack, stores, loads = current["frame"]
        entries.append(
            PtxasEntry(
                name=current["name"],
                arch=current["arch"],
                registers=current["registers"],
                spill_stores=stores,
                spill_loads=loads,
                stack_frame=stack,
                shared_bytes=current.get("smem", 0),
            )
        )

    for line in text.splitlines():
        if m := _ENTRY_RE.search(line):
            finish()
            current = {"name": m.group(1), "arch": m.group(2)}
            props_for = None
        elif m := _PROPS_RE.search(line):
            props_for = m.group(1)
        elif m := _FRAME_RE.search(line):
            if current is not None and props_for == current["name"]:
                current["frame"] = tuple(int(g) for g in m.groups())
            props_for = None
        elif (m := _USED_RE.search(line)) and current is not None:
            current["registers"] = int(m.group(1))
            if s := _SMEM_RE.search(line):
                current["smem"] = int(s.group(1)) + int(s.group(2) or 0)
    finish()
    return entries


def include_dir() -> Path:
    """The folder of ``ptx.cuh``: the include path of every compile."""
    return Path(__file__).resolve().parent


@cache
def header_digest() -> str:
    """The first 16 hex digits of the SHA-256 of ``ptx.cuh`` as installed."""
    return hashlib.sha256((include_dir() / HEADER_NAME).read_bytes()).hexdigest()[:16]


def compile_options(defines: Sequence[str] = ()) -> tuple[str, ...]:
    """The options of every compile of a source, nvcc and NVRTC alike: the C++ standard, the
    header's folder, ``defines`` (``-DNAME=VALUE``) and the header's digest."""
    digest = f"-DWB_PTX_CUH_SHA256={header_digest()}"
    return (*BASE_OPTIONS, f"-I{include_dir()}", *defines, digest)


def source_text(package: str, name: str) -> str:
    """The CUDA source ``name`` of ``package`` (package data), as text."""
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def normalize_arch(arch: str | int, *, lowest: int = 80, what: str = "the kernels") -> str:
    """``"sm_90"``, ``"90"`` or ``90`` -> ``"sm_90"`` (a suffix such as ``a`` is kept); at least
    ``sm_<lowest>`` (UsageError otherwise)."""
    match = re.fullmatch(r"(?:sm_)?(\d{2,3})([a-z]?)", str(arch).strip())
    if match is None or int(match.group(1)) < lowest:
        raise UsageError(
            f"not a CUDA architecture {what} build for: {arch!r}",
            f"give sm_{lowest} or newer, e.g. sm_{lowest}, sm_90 or 90",
        )
    return f"sm_{match.group(1)}{match.group(2)}"


def find_nvcc(nvcc: str | None = None) -> str:
    """``nvcc`` as given, else the one on PATH (UsageError when there is none)."""
    found = nvcc or shutil.which("nvcc")
    if found is None:
        raise UsageError("nvcc is not on PATH", "install the CUDA toolkit or put its bin/ on PATH")
    return found


def ptxas_report(cmd: Sequence[str], name: str, arch: str, remedy: str) -> list[PtxasEntry]:
    """Run the nvcc command ``cmd`` (built with ``-Xptxas -v``) for source ``name`` and return
    ptxas' entries; a failed compile is one WattbenchError with the last lines of its output."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
        raise WattbenchError(
            f"nvcc failed to compile {name} for {arch} (exit {done.returncode}):\n{tail}", remedy
        )
    return parse_ptxas_report(done.stderr + "\n" + done.stdout)


def nvcc_command(
    arch: str,
    output: str | Path,
    source_path: str | Path,
    *,
    defines: Sequence[str] = (),
    nvcc: str = "nvcc",
) -> list[str]:
    """The nvcc command compiling ``source_path`` to a cubin at ``output`` for ``arch`` (as given:
    normalise it first), with ptxas' per-entry resource report on stderr (``-Xptxas -v``)."""
    return [nvcc, "-cubin", f"-arch={arch}", *compile_options(defines), "-O3", "-Xptxas", "-v",
            "-o", str(output), str(source_path)]  # fmt: skip


def compile_report(
    package: str,
    name: str,
    arch: str | int,
    workdir: str | Path,
    *,
    defines: Sequence[str] = (),
    lowest: int = 80,
    nvcc: str | None = None,
    remedy: str = "fix the CUDA source",
) -> list[PtxasEntry]:
    """Compile source ``name`` of ``package`` with nvcc for ``arch`` (at least ``sm_<lowest>``)
    into ``workdir/<stem>_<arch>.cubin``; ptxas' report, one entry per entry point."""
    nvcc = find_nvcc(nvcc)
    arch = normalize_arch(arch, lowest=lowest, what=name)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files(package).joinpath(name)) as src:
        cubin = workdir / f"{Path(name).stem}_{arch}.cubin"
        cmd = nvcc_command(arch, cubin, src, defines=defines, nvcc=nvcc)
        return ptxas_report(cmd, name, arch, remedy)


def import_cupy(what: str) -> Any:
    """The ``cupy`` module; UsageError naming ``what`` needs it when it is not installed."""
    try:
        import cupy
    except ImportError:
        raise UsageError(f"{what} needs cupy, which is not installed", GPU_STACK) from None
    return cupy


_MODULES: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def load_module(package: str, name: str, defines: Sequence[str] = (), *, what: str) -> Any:
    """Source ``name`` of ``package`` as a ``cupy.RawModule``: NVRTC with
    :func:`compile_options` (``defines`` included), compiled for the current device on first use
    and cached for the life of the process per (package, name, defines). ``what`` names the
    caller in the error raised without CuPy."""
    key = (package, name, tuple(defines))
    if key not in _MODULES:
        cp = import_cupy(what)
        _MODULES[key] = cp.RawModule(
            code=source_text(package, name), options=compile_options(defines), backend="nvrtc"
        )
    return _MODULES[key]


def opt_in_smem(kernel: Any, smem_bytes: int, *, what: str, remedy: str) -> None:
    """Let ``kernel`` (a CuPy kernel function) use ``smem_bytes`` of dynamic shared memory: above
    the 48 KiB default it must opt in, up to the current device's limit (UsageError naming
    ``what`` beyond it)."""
    if smem_bytes <= DEFAULT_SMEM_BYTES:
        return
    limit = import_cupy(what).cuda.Device().attributes.get("MaxSharedMemoryPerBlockOptin")
    if limit is not None and smem_bytes > limit:
        raise UsageError(
            f"{what} needs {smem_bytes} bytes of shared memory per block; this GPU allows {limit}",
            remedy,
        )
    kernel.max_dynamic_shared_size_bytes = smem_bytes


def known_source(name: str, sources: Sequence[str], family: str) -> str:
    """``name`` when it is one of ``sources``; UsageError naming ``family`` otherwise."""
    if name not in sources:
        raise UsageError(f"no {family} CUDA source {name!r}", f"use one of: {', '.join(sources)}")
    return name


def clear_module_cache() -> None:
    """Forget every loaded module (the next :func:`load_module` compiles anew)."""
    _MODULES.clear()
