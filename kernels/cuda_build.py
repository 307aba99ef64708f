"""Building the hand-written CUDA sources, shared by every family's CuPy implementations.

Build side (no GPU needed): nvcc compiles a source to a cubin with ``-Xptxas -v``, and
:func:`parse_ptxas_report` turns ptxas' resource report into one :class:`PtxasEntry` per kernel
entry point (registers, spills, stack, static shared memory), which the tests check. Run side:
:func:`import_cupy` imports CuPy or says how to install it; each family loads its sources as
``cupy.RawModule`` objects through NVRTC.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wattbench.kernels.errors import UsageError, WattbenchError

GPU_STACK = 'install the GPU stack: pip install "wattbench[gpu]"'


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


def import_cupy(what: str) -> Any:
    """The ``cupy`` module; UsageError naming ``what`` needs it when it is not installed."""
    try:
        import cupy
    except ImportError:
        raise UsageError(f"{what} needs cupy, which is not installed", GPU_STACK) from None
    return cupy
