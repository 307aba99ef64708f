"""The NVML switch: with ``WATTBENCH_SIM_NVML`` set, ``import pynvml`` talks to the shared node.

The wattbench package installs ``wattbench-sim-nvml.pth`` into site-packages; Python runs its
one line at start-up in every process of the environment (children and multiprocessing's spawned
workers included). The line does nothing unless ``WATTBENCH_SIM_NVML`` is set; then it calls
:func:`activate`, which puts a finder in front of the import system: when ``pynvml`` is imported,
its ``nvmlLib`` (the loaded driver library) is set to a stand-in that connects to the node's
simulator service on first use. pynvml then never loads ``libnvidia-ml.so.1``.

Nothing else changes: wattbench's own device layer uses private copies of pynvml, so real GPUs
are never hidden from it. Unset the variable and the next process sees the real driver again.
A variable that names no node, or a service that cannot start, is one line on stderr and an NVML
that answers LIBRARY_NOT_FOUND (the tool sees no GPU: never the real ones by mistake).

Kept light: nothing heavy is imported until pynvml is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
from types import ModuleType
from typing import Any

PTH_NAME = "wattbench-sim-nvml.pth"
#: the .pth file's one line (kept short: Python runs it in every process)
PTH_LINE = (
    "import os; os.environ.get('WATTBENCH_SIM_NVML') and "
    "__import__('wattbench.profiler.sim.hook', fromlist=['activate']).activate()\n"
)
ERROR_LIBRARY_NOT_FOUND = 12


def activate() -> None:
    """Route ``pynvml`` to the shared node (from the .pth line; safe to call twice)."""
    try:
        module = sys.modules.get("pynvml")
        if module is not None:
            install(module)
        elif not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())
    except Exception as exc:  # start-up must never fail because of the switch
        _say(f"cannot install the NVML switch ({exc})")


def install(module: ModuleType) -> None:
    """Put the shared node beneath an imported pynvml module."""
    module.nvmlLib = _LazyLibrary()  # type: ignore[attr-defined]
    cache = getattr(module, "_nvmlGetFunctionPointer_cache", None)
    if isinstance(cache, dict):
        cache.clear()


def _say(text: str) -> None:
    # imported here: the build step runs this file before wattbench is installed
    from wattbench.profiler.sim.env import NVML_ENV

    named = f"{NVML_ENV}={os.environ.get(NVML_ENV, '')!r}"
    sys.stderr.write(f"wattbench: {text if text.startswith(named) else f'{named}: {text}'}\n")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "pynvml":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        install(module)


class _LazyLibrary:
    """Stands where ``CDLL("libnvidia-ml.so.1")`` would; becomes the simulated library over the
    shared node on first use (the service starts then, not at import)."""

    def __init__(self) -> None:
        self._lib: Any = None
        self._lock = threading.Lock()

    def _resolve(self) -> Any:
        with self._lock:
            if self._lib is None:
                self._lib = _open()
            return self._lib

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._resolve(), name)


def _open() -> Any:
    try:
        from wattbench.profiler.errors import WattbenchError
        from wattbench.profiler.sim.client import shared_library
    except Exception as exc:  # pragma: no cover - a broken installation
        _say(f"wattbench cannot be imported ({exc}); NVML sees no GPU")
        return _NoLibrary()
    try:
        return shared_library()
    except WattbenchError as exc:
        _say(f"{exc}; NVML sees no GPU")
        return _NoLibrary()


class _NoLibrary:
    """Every NVML function answers NVML_ERROR_LIBRARY_NOT_FOUND."""

    def __getattr__(self, name: str) -> Any:
        if name == "nvmlErrorString":
            return _error_string
        if not name.startswith("nvml"):
            raise AttributeError(name)
        return _not_found


def _not_found(*args: Any) -> int:
    return ERROR_LIBRARY_NOT_FOUND


def _error_string(*args: Any) -> bytes:
    return b"NVML Shared Library Not Found (the wattbench NVML switch could not open its node)"
