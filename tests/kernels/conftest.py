"""Kernel tests: Triton runs in its interpreter where no CUDA device is present.

``TRITON_INTERPRET`` is read when a kernel is decorated, so it is set here, before any test
module imports a kernel. Tests marked ``gpu`` need a CUDA device and are skipped, with the reason,
elsewhere; they are never the only test of a path the CPU can check.
"""

from __future__ import annotations

import os

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


CUDA = _cuda_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped, with the reason, without)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
