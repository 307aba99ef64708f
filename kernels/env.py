"""What this machine can run: the CUDA device torch sees and the GPU stack's versions.

Reads only: probing imports torch, triton and cupy (when installed) and asks torch about device 0
(after ``CUDA_VISIBLE_DEVICES``); it never changes a GPU setting.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

#: the modules implementations may require, in the order they are shown
STACK = ("torch", "triton", "cupy")


@dataclass(frozen=True)
class Environment:
    """``modules`` maps each module of :data:`STACK` to its version, or None when it cannot be
    imported (``module_errors`` says why). ``compute_capability`` is (major, minor) of CUDA
    device 0, None without one."""

    device_name: str | None
    compute_capability: tuple[int, int] | None
    modules: Mapping[str, str | None]
    module_errors: Mapping[str, str] = field(default_factory=dict)
    triton_interpret: bool = False
    cuda_error: str | None = None

    @property
    def cuda(self) -> bool:
        return self.device_name is not None

    @property
    def device(self) -> str:
        """The torch device problems run on here: ``"cuda"`` or ``"cpu"``."""
        return "cuda" if self.cuda else "cpu"

    def to_json(self) -> dict:
        return {
            "cuda": self.cuda,
            "device_name": self.device_name,
            "compute_capability": (
                f"{self.compute_capability[0]}.{self.compute_capability[1]}"
                if self.compute_capability
                else None
            ),
            "cuda_error": self.cuda_error,
            "modules": dict(self.modules),
            "module_errors": dict(self.module_errors),
            "triton_interpret": self.triton_interpret,
        }


def _import_version(name: str) -> tuple[str | None, str | None]:
    """(version, None) when ``name`` imports, else (None, a one-line reason)."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None, f"{name} not installed"
    except Exception as exc:  # e.g. cupy finding no CUDA libraries: still unusable
        return None, f"{name} failed to import: {type(exc).__name__}: {exc}".splitlines()[0]
    return str(getattr(module, "__version__", "unknown")), None


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (imports torch only)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def probe(modules: tuple[str, ...] = STACK) -> Environment:
    """Probe the machine now (imports the modules of the GPU stack)."""
    versions: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for name in modules:
        versions[name], err = _import_version(name)
        if err:
            errors[name] = err
    device_name = cc = cuda_error = None
    if versions.get("torch") is not None:
        import torch

        try:
            if torch.cuda.is_available():
                device_name = torch.cuda.get_device_name(0)
                cc = tuple(torch.cuda.get_device_capability(0))
            else:
                cuda_error = "torch sees no CUDA device"
        except Exception as exc:  # a broken driver: report it, do not crash a listing
            cuda_error = f"CUDA failed: {exc}".splitlines()[0]
    else:
        cuda_error = "torch not installed"
    return Environment(
        device_name=device_name,
        compute_capability=cc,  # type: ignore[arg-type]
        modules=versions,
        module_errors=errors,
        triton_interpret=triton_interpreting(),
        cuda_error=cuda_error,
    )


def triton_interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` turns Triton's interpreter on (1 / true / yes / on), as Triton
    reads it. Kernel modules read it once, at import, like Triton itself."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def use_triton_interpreter_without_cuda() -> bool:
    """Set ``TRITON_INTERPRET=1`` when torch sees no CUDA device and it is not set yet.

    Triton reads the variable when a kernel is decorated, i.e. when a kernel module is imported,
    so call this before importing any (implementations import theirs lazily, inside their launch
    builders). Returns True when it set the variable. With a CUDA device it does nothing.
    """
    if os.environ.get("TRITON_INTERPRET") is not None or cuda_available():
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    return True
