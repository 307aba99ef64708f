"""Persistent state of a simulated GPU: one JSON file per simulated device.

On real hardware a locked clock or a lowered power limit outlives the process that set it; the
simulated GPU keeps those settings in a state file so that the next process sees them. The file
also carries the energy counter and virtual time (so the counter stays monotonic across
processes), a count of every setter call (tests use it to prove observe-only mode changes
nothing), and the list of "other processes" using the GPU (tests plant them).

Location: ``$WATTBENCH_SIM_STATE_DIR`` if set, else ``$XDG_STATE_HOME/wattbench/sim`` (default
``~/.local/state/wattbench/sim``). Writes are atomic (temp file + rename) under an ``flock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.paths import state_home

STATE_VERSION = 1


def state_dir() -> Path:
    env = (os.environ.get("WATTBENCH_SIM_STATE_DIR") or "").strip()
    if env:  # read as profiler/sim/env.py checks it
        return Path(env).expanduser()
    return state_home() / "sim"


def _unusable(folder: Path, exc: OSError):
    """The error for a state folder that cannot be created or written."""
    from wattbench.profiler.errors import DeviceError, EnvironmentVariableError

    why = exc.strerror or str(exc)
    if os.environ.get("WATTBENCH_SIM_STATE_DIR"):
        return EnvironmentVariableError(
            f"WATTBENCH_SIM_STATE_DIR={str(folder)!r} cannot hold simulated GPU state ({why})",
            "point it at a folder you can write, or unset it",
        )
    return DeviceError(
        f"cannot write simulated GPU state in {folder} ({why})",
        "make the folder writable, or set WATTBENCH_SIM_STATE_DIR to one that is",
    )


def state_path(spec_key: str, spec_source: str, index: int = 0, host: str | None = None) -> Path:
    """State file of one simulated device; user spec files get a digest of their path, units of
    an emulated host (``WATTBENCH_SIM_HOST``) its name in front."""
    name = f"{host}-{spec_key}" if host else spec_key
    if not spec_source.startswith("builtin:"):
        name += "-" + hashlib.sha1(spec_source.encode()).hexdigest()[:8]
    return state_dir() / f"{name}-{index}.json"


@dataclass
class SimSettings:
    """What NVML setters change. ``None`` means the driver default (unlocked / default limit)."""

    power_limit_mw: int | None = None
    sm_locked_mhz: tuple[int, int] | None = None
    mem_locked_mhz: tuple[int, int] | None = None
    persistence_mode: bool | None = None


@dataclass
class SimState:
    settings: SimSettings = field(default_factory=SimSettings)
    energy_mj: int = 0  # published total-energy counter, persisted across processes
    time_s: float = 0.0  # virtual time since "driver load"
    temp_c: float | None = None
    #: rise of each thermal pole above ambient, °C (fastest first); None: derived from temp_c
    thermal_rises_c: list[float] | None = None
    setter_calls: dict[str, int] = field(default_factory=dict)
    processes: list[dict[str, int]] = field(default_factory=list)  # {"pid", "used_memory_bytes"}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["version"] = STATE_VERSION
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SimState:
        s = d.get("settings") or {}
        lock = s.get("sm_locked_mhz")
        mlock = s.get("mem_locked_mhz")
        return cls(
            settings=SimSettings(
                power_limit_mw=s.get("power_limit_mw"),
                sm_locked_mhz=tuple(lock) if lock else None,
                mem_locked_mhz=tuple(mlock) if mlock else None,
                persistence_mode=_bool_or_none(s.get("persistence_mode")),
            ),
            energy_mj=int(d.get("energy_mj", 0)),
            time_s=float(d.get("time_s", 0.0)),
            temp_c=d.get("temp_c"),
            thermal_rises_c=_floats(d.get("thermal_rises_c")),
            setter_calls=dict(d.get("setter_calls") or {}),
            processes=list(d.get("processes") or []),
        )


class StateFile:
    """Read / modify / write one state file under an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime_ns: tuple[int, int] | None = None  # (inode, mtime_ns) of the last read

    def changed_since_read(self) -> bool:
        try:
            return _stamp(os.stat(self.path)) != self._mtime_ns
        except OSError:  # missing (or its folder unusable: writing says so)
            return self._mtime_ns is not None

    def read(self) -> SimState:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
                self._mtime_ns = _stamp(os.fstat(f.fileno()))
            return SimState.from_json(data)
        except FileNotFoundError:
            self._mtime_ns = None
            return SimState()
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            # A corrupt state file is what a crashed simulator could leave; like a driver reload,
            # start from defaults rather than refuse to work.
            self._mtime_ns = None
            return SimState()

    @contextlib.contextmanager
    def locked(self) -> Iterator[SimState]:
        """Yield the current state; what the caller changes in it is written back atomically."""
        lock_path = self.path.with_suffix(".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(lock_path, "a")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _unusable(self.path.parent, exc) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self.read()
                yield state
                self._write(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, state: SimState) -> None:
        try:
            write_json_atomic(self.path, state.to_json(), indent=1)
        except OSError as exc:
            if os.access(self.path.parent, os.W_OK):
                raise  # the folder is fine: this write failed (a full disk), the state is kept
            raise _unusable(self.path.parent, exc) from None
        self._mtime_ns = _stamp(os.stat(self.path))


class MemoryState:
    """A state "file" that lives only in this process (for experiments that must not touch the
    user's simulated GPUs, e.g. calibration checks): same interface as :class:`StateFile`."""

    def __init__(self) -> None:
        self._state = SimState()

    def changed_since_read(self) -> bool:
        return False

    def read(self) -> SimState:
        return SimState.from_json(self._state.to_json())

    @contextlib.contextmanager
    def locked(self) -> Iterator[SimState]:
        state = self.read()
        yield state
        self._state = state


def _bool_or_none(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _floats(v: Any) -> list[float] | None:
    if isinstance(v, list) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
        return [float(x) for x in v]
    return None


def _stamp(st: os.stat_result) -> tuple[int, int]:
    """Identity of one version of the file: every write is a new file (atomic replace), so the
    inode changes even when the timestamp granule does not."""
    return st.st_ino, st.st_mtime_ns
