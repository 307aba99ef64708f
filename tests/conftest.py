"""Shared fixtures: every test runs against its own simulated-GPU state, with a clean environment.

* ``_isolated_sim_env`` (autouse): points ``WATTBENCH_SIM_STATE_DIR`` and the default run-record
  folder ``WATTBENCH_RESULTS_DIR`` at per-test folders, unsets
  the switches that change what a simulated device allows (``WATTBENCH_NO_ACTUATE``,
  ``WATTBENCH_SIM_PRIVILEGE``) and ``CUDA_VISIBLE_DEVICES``, makes every simulated unit the
  nominal chip (``WATTBENCH_SIM_UNIT_VARIATION=0``; the unit tests turn the spread back on), and
  afterwards drops the device layer's per-process NVML backends so no simulated GPU outlives its
  test.
* ``make_sim``: the real pynvml module (nvidia-ml-py) over a simulated GPU: ``(gpu, nv, handle)``.
* ``sim_nvml``: ``make_sim()`` for the built-in H100 SXM with noise on and a power trace.
* ``spec_variant``: a copy of a built-in spec file with some fields changed or removed.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from wattbench.profiler.device import nvml as device_nvml
from wattbench.profiler.sim import gpu, nvml_lib, spec

#: Environment variables that must not leak from the caller's shell into a test.
CLEARED_ENV = ("WATTBENCH_NO_ACTUATE", "WATTBENCH_SIM_PRIVILEGE", "CUDA_VISIBLE_DEVICES")


@pytest.fixture(autouse=True)
def _isolated_sim_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WATTBENCH_SIM_STATE_DIR", str(tmp_path / "sim-state"))
    monkeypatch.setenv("WATTBENCH_RESULTS_DIR", str(tmp_path / "runs"))
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WATTBENCH_SIM_UNIT_VARIATION", "0")
    yield
    device_nvml.shutdown_all()


SimNvml = tuple[gpu.SimulatedGpu, Any, Any]  # (simulated GPU, private pynvml module, handle)


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimNvml]]:
    """``make_sim(spec_or_key="h100-sxm", **SimulatedGpu_kwargs) -> (g, nv, h)``.

    ``nv`` is a private copy of the real pynvml module with the simulated library beneath it,
    already initialised; ``h`` is the handle of device 0. Shut down at teardown (which persists
    the simulated GPU's state, as nvmlShutdown does).
    """
    opened: list[Any] = []

    def make(spec_or_key: str | spec.GpuSpec = "h100-sxm", **kwargs: Any) -> SimNvml:
        s = spec.load_builtin(spec_or_key) if isinstance(spec_or_key, str) else spec_or_key
        g = gpu.SimulatedGpu(s, **kwargs)
        nv = nvml_lib.load_pynvml(nvml_lib.SimulatedNvmlLibrary([g]))
        nv.nvmlInit()
        opened.append(nv)
        return g, nv, nv.nvmlDeviceGetHandleByIndex(0)

    yield make
    for nv in opened:
        with contextlib.suppress(nv.NVMLError_Uninitialized):  # the test shut it down itself
            nv.nvmlShutdown()


@pytest.fixture
def sim_nvml(make_sim: Callable[..., SimNvml]) -> SimNvml:
    """(g, nv, h): the simulated H100 SXM with sensor noise on and ``g.trace`` recorded."""
    return make_sim("h100-sxm", noise=True, record_trace=True)


def edit_toml(text: str, changes: dict[str, Any]) -> str:
    """Set (or, with value ``None``, remove) ``section.key`` fields in TOML ``text``.

    Works on the flat layout of the spec files: ``[section]`` headers and ``key = value`` lines.
    """
    lines = text.splitlines()
    for dotted, value in changes.items():
        section, key = dotted.rsplit(".", 1)
        # ValueError: no such section in the file (a header may carry a comment)
        header = [ln.split("#")[0].strip() for ln in lines].index(f"[{section}]")
        end = next(
            (i for i in range(header + 1, len(lines)) if lines[i].startswith("[")), len(lines)
        )
        hits = [
            i for i in range(header + 1, end) if re.match(rf"\s*{re.escape(key)}\s*=", lines[i])
        ]
        if value is None:
            assert hits, f"{dotted} is not in the spec text"
            del lines[hits[0]]
            continue
        literal = ("true" if value else "false") if isinstance(value, bool) else json.dumps(value)
        new = f"{key} = {literal}"
        if hits:
            lines[hits[0]] = new
        else:
            lines.insert(header + 1, new)
    return "\n".join(lines) + "\n"


@pytest.fixture
def spec_variant(tmp_path: Path) -> Callable[..., Path]:
    """``spec_variant(changes, base="h100-sxm") -> path`` of a modified copy of a built-in spec."""
    count = 0

    def write(changes: dict[str, Any], base: str = "h100-sxm") -> Path:
        nonlocal count
        count += 1
        text = (resources.files("wattbench.profiler.sim.specs") / f"{base}.toml").read_text()
        path = tmp_path / f"{base}-variant{count}.toml"
        path.write_text(edit_toml(text, changes), encoding="utf-8")
        return path

    return write
