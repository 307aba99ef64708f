"""Provenance: who measured what, where and with what -- one document for every result file.

:func:`provenance` builds it for ``wattbench validate`` (``provenance.json``) and the kernel
benchmark ``suites/bench/kernels.py`` (its JSON and Markdown): the date (UTC), the command, the
git commit of the code that ran (None outside a checkout), host and platform, the versions of
everything that shapes a measurement (:func:`~wattbench.profiler.store.record.collect_versions`,
with the kernel stack's own versions when ``env`` is given), and, when the caller has them, the
kernel environment (``stack``: torch's CUDA device and capability, ``cuda_runtime_torch``) and
the NVML device (``device``: identity, driver, CUDA driver; ``in_force``: clocks, power limit and
temperature as read, None where a reading fails). Reading only: nothing here changes a GPU setting.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
import shlex
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattbench.profiler.errors import WattbenchError
from wattbench.profiler.store.record import collect_versions, device_json

if TYPE_CHECKING:
    from wattbench.kernels.env import Environment
    from wattbench.profiler.device.device import Device

#: environment variables that change what a run does, recorded as found (None: unset)
RECORDED_ENV = ("WATTBENCH_NO_ACTUATE", "TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES")


def git_commit(folder: Path | None = None) -> str | None:
    """The commit checked out at ``folder`` (default: this package's), None outside a git
    checkout or without git."""
    here = folder or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty(folder: Path | None = None) -> bool | None:
    """Whether the checkout at ``folder`` (default: this package's) has changes to tracked
    files that are not committed (the results then come from code that ``commit`` is not); None
    outside a git checkout or without git."""
    here = folder or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def in_force(device: Device) -> dict[str, float | None]:
    """The settings in force on ``device`` as read now (None where a reading fails)."""
    out: dict[str, float | None] = {}
    for key, read in (
        ("sm_mhz", device.sm_clock_mhz),
        ("mem_mhz", device.mem_clock_mhz),
        ("power_limit_w", device.power_limit_w),
        ("temperature_c", device.temperature_c),
    ):
        try:
            out[key] = read()
        except WattbenchError:
            out[key] = None
    return out


def _torch_cuda() -> str | None:
    """The CUDA version torch was built with (None: no torch, or a CPU build)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.version.cuda


def provenance(
    command: Sequence[str],
    *,
    device: Device | None = None,
    env: Environment | None = None,
    device_error: str | None = None,
) -> dict[str, Any]:
    """The provenance document of a result. ``command``: the argv that produced it (quoted with
    ``shlex.join``); ``device``: the NVML device measured (``device_error``: why none could be
    opened); ``env``: the kernel environment (:func:`wattbench.kernels.env.probe`)."""
    identity = device.identity if device is not None else None
    versions: dict[str, str | None] = collect_versions(identity)
    doc: dict[str, Any] = {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(command),
        "commit": git_commit(),
        "dirty": git_dirty(),  # True: uncommitted changes to tracked files ran too
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "environment": {k: os.environ.get(k) for k in RECORDED_ENV},
    }
    if env is not None:
        versions.update(env.modules)  # the versions the kernel stack imported
        stack = env.to_json()
        doc.update(
            stack=stack,
            gpu=env.device_name,
            compute_capability=stack["compute_capability"],
            cuda_runtime_torch=_torch_cuda(),
        )
    if device is not None:
        doc.update(
            device={k: v for k, v in device_json(device).items() if k != "spec"},
            simulated=device.simulated is not None,
            in_force=in_force(device),
        )
    elif device_error is not None:
        doc["device"] = {"error": device_error}
    return doc
