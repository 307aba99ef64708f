"""The actuation journal: a GPU's original settings, on disk before wattbench changes anything.

One JSON file per GPU (named by its UUID) holds

* ``original`` -- the settings found before wattbench's first change: what ``wattbench reset``
  puts back;
* ``target`` -- the settings a ``wattbench apply`` left in force on purpose (``null`` if none;
  only the keys it set, ``null`` values meaning unlocked / default limit): what a sweep puts
  back when it ends, so that a scheduler's setting survives a sweep;
* ``session`` -- the process changing the GPU now (``null`` between sessions). A session holds an
  exclusive ``flock`` on ``<uuid>.lock`` for its whole life; the kernel drops it when the process
  dies, however it dies. A journal with a session whose lock nobody holds was left by a crash.

NVML cannot read clock locks back, so an original clock state is recorded as "unlocked" unless
an earlier ``wattbench apply`` (whose journal is still present) locked it. Writes are atomic
(temporary file, ``fsync``, rename, ``fsync`` of the folder), so a journal survives power loss.

Location: ``$WATTBENCH_JOURNAL_DIR`` if set; for a simulated GPU, ``journal/`` beside its state
file; else ``$XDG_STATE_HOME/wattbench/journal`` (default ``~/.local/state/wattbench/journal``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wattbench.profiler.errors import DeviceError
from wattbench.profiler.jsonio import fsync_dir, write_json_atomic
from wattbench.profiler.paths import state_home

JOURNAL_SCHEMA = "wattbench.journal/1"
#: GpuSettings field -> knob name
_KNOB_OF = {"sm_mhz": "sm", "mem_mhz": "mem", "power_limit_w": "power"}
JOURNAL_DIR_ENV = "WATTBENCH_JOURNAL_DIR"


class JournalError(DeviceError):
    """A journal file that cannot be read, parsed, or written (runtime error, exit 1)."""


@dataclass(frozen=True)
class GpuSettings:
    """What wattbench changes. ``None``: unlocked clock / the driver's default power limit."""

    sm_mhz: int | None = None
    mem_mhz: int | None = None
    power_limit_w: float | None = None

    def replaced(self, other: GpuSettings, knobs: Iterable[str]) -> GpuSettings:
        """These settings with the ``knobs`` ("sm", "mem", "power") taken from ``other``."""
        knobs = set(knobs)
        return GpuSettings(
            other.sm_mhz if "sm" in knobs else self.sm_mhz,
            other.mem_mhz if "mem" in knobs else self.mem_mhz,
            other.power_limit_w if "power" in knobs else self.power_limit_w,
        )

    def __str__(self) -> str:
        sm = f"SM locked at {self.sm_mhz} MHz" if self.sm_mhz is not None else "SM clock unlocked"
        mem = (
            f"memory locked at {self.mem_mhz} MHz"
            if self.mem_mhz is not None
            else "memory clock unlocked"
        )
        pl = (
            f"power limit {self.power_limit_w:g} W"
            if self.power_limit_w is not None
            else "default power limit"
        )
        return f"{pl}, {sm}, {mem}"

    @classmethod
    def from_json(cls, d: Any) -> GpuSettings:
        if not isinstance(d, dict):
            raise ValueError("settings must be an object")
        sm, mem, pl = d.get("sm_mhz"), d.get("mem_mhz"), d.get("power_limit_w")
        for name, v in (("sm_mhz", sm), ("mem_mhz", mem)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"{name} must be a positive integer or null")
        if pl is not None and (not isinstance(pl, (int, float)) or isinstance(pl, bool) or pl <= 0):
            raise ValueError("power_limit_w must be a positive number or null")
        return cls(sm, mem, float(pl) if pl is not None else None)


@dataclass
class Session:
    """The process that holds (or held) the GPU's session lock."""

    pid: int
    host: str
    command: str
    started_at: str

    @classmethod
    def current(cls, command: str) -> Session:
        return cls(os.getpid(), os.uname().nodename, command, _now())

    def __str__(self) -> str:
        when = f"pid {self.pid} on {self.host}, started {self.started_at}"
        return f"`wattbench {self.command}` ({when})"


@dataclass
class Journal:
    gpu_uuid: str
    gpu_name: str
    selection: str
    original: GpuSettings
    target: GpuSettings | None = None
    #: the knobs ``target`` sets (a ``wattbench apply`` may set only some)
    target_knobs: frozenset[str] = frozenset()
    session: Session | None = None
    created_at: str = field(default_factory=lambda: _now())
    note: str = "NVML cannot read clock locks: clocks found unlocked unless an apply locked them"

    @property
    def restore_to(self) -> GpuSettings:
        """What a session puts back when it ends: the applied target, else the original."""
        if self.target is None:
            return self.original
        return self.original.replaced(self.target, self.target_knobs)

    def to_json(self) -> dict:
        return {
            "schema": JOURNAL_SCHEMA,
            "gpu": {"uuid": self.gpu_uuid, "name": self.gpu_name, "selection": self.selection},
            "original": asdict(self.original),
            "target": (
                {k: v for k, v in asdict(self.target).items() if _KNOB_OF[k] in self.target_knobs}
                if self.target is not None
                else None
            ),
            "session": asdict(self.session) if self.session is not None else None,
            "created_at": self.created_at,
            "updated_at": _now(),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Journal:
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        if doc.get("schema") != JOURNAL_SCHEMA:
            raise ValueError(f"schema is {doc.get('schema')!r}, expected {JOURNAL_SCHEMA!r}")
        gpu = doc.get("gpu")
        if not isinstance(gpu, dict) or not isinstance(gpu.get("uuid"), str):
            raise ValueError("gpu.uuid missing")
        sess = doc.get("session")
        if sess is not None:
            try:
                sess = Session(
                    int(sess["pid"]),
                    str(sess["host"]),
                    str(sess["command"]),
                    str(sess["started_at"]),
                )
            except (KeyError, TypeError, ValueError):
                raise ValueError("session is malformed") from None
        target = doc.get("target")
        if target is not None and not isinstance(target, dict):
            raise ValueError("target must be an object or null")
        return cls(
            gpu_uuid=gpu["uuid"],
            gpu_name=str(gpu.get("name", "")),
            selection=str(gpu.get("selection", "")),
            original=GpuSettings.from_json(doc.get("original")),
            target=GpuSettings.from_json(target) if target is not None else None,
            target_knobs=frozenset(_KNOB_OF[k] for k in (target or {}) if k in _KNOB_OF),
            session=sess,
            created_at=str(doc.get("created_at", "")),
        )


def journal_dir(simulated_state_dir: Path | None = None) -> Path:
    env = os.environ.get(JOURNAL_DIR_ENV)
    if env:
        return Path(env)
    if simulated_state_dir is not None:
        return simulated_state_dir / "journal"
    return state_home() / "journal"


class JournalFile:
    """The journal of one GPU: ``<dir>/<uuid>.json`` and its session lock ``<uuid>.lock``."""

    def __init__(self, directory: Path, gpu_uuid: str) -> None:
        self.directory = directory
        self.path = directory / f"{gpu_uuid}.json"
        self.lock_path = directory / f"{gpu_uuid}.lock"
        self._lock_fd: int | None = None

    # --- the session lock ------------------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the session lock without waiting; False if another process holds it."""
        if self._lock_fd is not None:
            return True
        self._ensure_dir()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._io_error("open the journal lock", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    # --- the journal -----------------------------------------------------------------------------

    def read(self) -> Journal | None:
        """The journal, or None if there is none. Unreadable or corrupt: :class:`JournalError`."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._io_error("read", exc) from exc
        try:
            return Journal.from_json(json.loads(text))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            raise JournalError(
                f"journal {self.path} is unreadable ({exc}); the GPU's original settings are "
                "unknown",
                "inspect the file; then `wattbench reset --device SEL --ignore-journal` puts the "
                "driver defaults back and removes it",
            ) from None

    def write(self, journal: Journal) -> None:
        """Atomically replace the journal; durable (fsync) before returning."""
        self._ensure_dir()
        try:
            write_json_atomic(self.path, journal.to_json(), durable=True)
        except OSError as exc:
            raise self._io_error("write", exc) from exc

    def remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
            fsync_dir(self.directory)
        except OSError as exc:
            raise self._io_error("remove", exc) from exc

    def _ensure_dir(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._io_error("create the journal folder for", exc) from exc

    def _io_error(self, action: str, exc: OSError) -> JournalError:
        return JournalError(
            f"cannot {action} the actuation journal {self.path}: {exc.strerror or exc}",
            f"make {self.directory} writable, or point {JOURNAL_DIR_ENV} at a writable folder",
        )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
