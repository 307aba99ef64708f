"""Naming the shared simulated node: ``WATTBENCH_SIM_NVML`` and where its service lives.

A node is ``[<N>x]<key or spec path>``, with or without a ``sim:`` prefix: ``h100-sxm``,
``8xh100-sxm``, ``sim:4xpath/to/spec.toml``. Its units are the same cards as the ones
``sim:<N>x<key>`` names (same UUIDs and serials), but the shared node is another machine: its
settings, counters and temperature are its own, in ``<state folder>/shared/``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from wattbench.profiler.errors import EnvironmentVariableError, UnknownDeviceError
from wattbench.profiler.sim import env as sim_env
from wattbench.profiler.sim import spec as sim_spec
from wattbench.profiler.sim.env import NVML_ENV
from wattbench.profiler.sim.state import state_dir

#: most units a shared node may hold (as for sim:<N>x<key>)
MAX_UNITS = 64
_NODE = re.compile(r"^(?:(\d+)x)?(.+)$")
#: a Unix socket's path must fit in sockaddr_un (108 bytes, with the final NUL)
_SOCKET_PATH_MAX = 100


@dataclass(frozen=True)
class NodeName:
    spec: sim_spec.GpuSpec
    units: int
    #: the emulated host (``WATTBENCH_SIM_HOST``): its node is another machine with other cards
    host: str | None = field(default_factory=sim_env.sim_host)

    @property
    def text(self) -> str:
        """File-name form: ``8xh100-sxm`` (spec files get a digest of their path; an emulated
        host's name in front)."""
        name = f"{self.units}x{self.spec.key}"
        if self.host:
            name = f"{self.host}-{name}"
        if not self.spec.source.startswith("builtin:"):
            name += "-" + hashlib.sha1(self.spec.source.encode()).hexdigest()[:8]
        return name


def node_name(text: str) -> NodeName:
    """Parse a node (usage error naming the choices when it is not one)."""
    raw = text.strip()
    raw = raw[4:] if raw.startswith("sim:") else raw
    choices = ", ".join(sim_spec.builtin_keys())
    m = _NODE.match(raw)
    if not m or ":" in m.group(2):
        raise UnknownDeviceError(
            f"bad simulated node {text!r}",
            f"use <key>, <N>x<key> or a spec file path; keys: {choices}",
        )
    units = int(m.group(1)) if m.group(1) else 1
    if not 1 <= units <= MAX_UNITS:
        raise UnknownDeviceError(
            f"a simulated node holds 1 to {MAX_UNITS} units, not {units}", "use e.g. 8xh100-sxm"
        )
    return NodeName(load_spec(os.path.expanduser(m.group(2))), units)


def load_spec(name: str) -> sim_spec.GpuSpec:
    """A built-in key, or a spec file when ``name`` ends in ``.toml`` or holds a ``/`` (for
    ``sim:`` device selections and the shared node alike)."""
    if name.endswith(".toml") or "/" in name or os.sep in name:
        path = Path(name)
        if not path.is_file():
            choices = ", ".join(f"sim:{k}" for k in sim_spec.builtin_keys())
            raise UnknownDeviceError(
                f"simulated-GPU spec file {name!r} not found",
                f"check the path, or use a built-in: {choices}",
            )
        return sim_spec.load_file(path)
    return sim_spec.load_builtin(name)


def from_env() -> NodeName | None:
    """The node ``WATTBENCH_SIM_NVML`` names, or None when it is unset or empty."""
    value = (os.environ.get(NVML_ENV) or "").strip()
    if not value:
        return None
    try:
        return node_name(value)
    except UnknownDeviceError as exc:
        raise EnvironmentVariableError(
            f"{NVML_ENV}={value!r}: {exc.message}", f"{exc.remedy}; or unset {NVML_ENV}"
        ) from None


def shared_folder() -> Path:
    return state_dir() / "shared"


def socket_path(name: NodeName) -> Path:
    """The service's socket: in the shared folder, or under the temporary folder (named by a
    digest of the shared folder) when that path is too long for a Unix socket."""
    path = shared_folder() / f"{name.text}.sock"
    if len(os.fsencode(path)) <= _SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha1(os.fsencode(path)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"wattbench-{os.getuid()}" / f"{digest}.sock"
