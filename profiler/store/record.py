"""The run record: one sweep of one problem on one GPU, as schema-versioned JSON on disk.

The file is rewritten after every measured point with an atomic replace (temp file in the same
folder, fsync, ``os.replace``, fsync of the folder), so at any instant it is either the previous
complete document or the new one: a run killed mid-sweep leaves a valid record to resume from.

Invariants of a record on disk: ``schema`` is :data:`SCHEMA_ID`; it validates against
``run-record.schema.json``; point keys are unique (re-measuring a point replaces it in place);
every choice names a point in ``points``; timestamps are UTC ISO-8601. A point measured again
(the adaptive search does) keeps its place and every pass's samples, tagged ``pass`` and ``seq``
(``sweep/run.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import socket
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattbench.kernels.work import Work
from wattbench.profiler.errors import EnvironmentVariableError, UsageError
from wattbench.profiler.jsonio import write_json_atomic
from wattbench.profiler.measure.types import Measurement, OperatingPoint
from wattbench.profiler.paths import data_home
from wattbench.profiler.select.objectives import Choice
from wattbench.profiler.store.header import (
    RecordDevice,
    RecordProblem,
    RecordSettings,
    shape_text,
)
from wattbench.profiler.store.schema import (
    SCHEMA_ID,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    parse_schema_id,
    validate,
)

if TYPE_CHECKING:
    from wattbench.profiler.device.device import Device, DeviceIdentity

STATUSES = ("running", "complete", "interrupted")

#: what to do about a run record that cannot be used
REMEDY = "start a new run without --resume, or pass another --out"


class RecordError(UsageError):
    """A run record that cannot be read, written or trusted (names the file and what to do)."""


class RecordExistsError(RecordError):
    """The path of a new run record is taken (by an earlier run, or a concurrent one)."""


def now_utc() -> str:
    """The current UTC time, ISO-8601 with milliseconds (``2025-01-31T12:00:00.000+00:00``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


# --- header helpers -----------------------------------------------------------------------------


def device_json(device: Device) -> dict[str, Any]:
    """A device's identity as a dict; a simulated one adds its spec's raw TOML table as ``spec``."""
    d: dict[str, Any] = {"selection": device.selection, **dataclasses.asdict(device.identity)}
    sim = device.simulated
    if sim is not None:
        d["spec"] = sim.spec.raw
    return d


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module_version(module: str) -> str | None:
    """The installed version of ``module`` if it can be found (without importing it)."""
    return _dist_version(module) if importlib.util.find_spec(module) is not None else None


def collect_versions(identity: DeviceIdentity | None = None) -> dict[str, str | None]:
    """Versions of everything that shapes a measurement; None where absent or unknown."""
    from wattbench.profiler import __version__

    return {
        "wattbench": __version__,
        "python": platform.python_version(),
        "numpy": _dist_version("numpy"),
        "pynvml": _dist_version("nvidia-ml-py"),
        "driver": identity.driver_version if identity is not None else None,
        "cuda_driver": identity.cuda_driver_version if identity is not None else None,
        "torch": _module_version("torch"),
        "triton": _module_version("triton"),
    }


FLEET_RUN_ENV = "WATTBENCH_FLEET_RUN_ID"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def host_json() -> dict[str, Any]:
    """The machine that measures: its hostname."""
    return {"hostname": socket.gethostname()}


#: what a fleet run id may be
RUN_ID_RULE = "letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)"


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a fleet run id (:data:`RUN_ID_RULE`)."""
    return isinstance(value, str) and _RUN_ID.match(value) is not None


def fleet_run_id_from_env() -> str | None:
    """``WATTBENCH_FLEET_RUN_ID``: the fleet characterisation a run belongs to
    (:data:`RUN_ID_RULE`), or None when unset."""
    value = (os.environ.get(FLEET_RUN_ENV) or "").strip()
    if not value:
        return None
    if not is_run_id(value):
        raise EnvironmentVariableError(
            f"{FLEET_RUN_ENV}={value!r} is not a run id", f"use {RUN_ID_RULE}"
        )
    return value


def _as_dict(obj: Any, what: str) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{what} must be a mapping, a dataclass or have to_json(), got {obj!r}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.") or "x"


def default_run_path(
    out_dir: str | os.PathLike[str],
    device_key: str,
    problem: Mapping[str, Any] | Any,
    *,
    today: dt.date | None = None,
    host: str | None = None,
    uuid: str | None = None,
    when: dt.datetime | None = None,
) -> Path:
    """``<out_dir>/<date>-<device>-<family>-<impl>-<dtype>-<shape>[-<host>][-<uuid>][-<time>]
    .json``, e.g. ``2025-01-31-sim-h100-sxm-matmul-vendor-bf16-8192x8192x8192-node7-0c33802c-
    120501.json``: host, the first 8 hex digits of the GPU's UUID and the UTC time (HHMMSS) when
    given, so runs of many GPUs and hosts into one tree never compete for a name.

    ``problem`` has ``family``, ``dtype`` and ``shape`` (a sequence, mapping or text) and
    usually ``impl`` (left out of the name when absent). The date
    is UTC. An existing file is never reused: ``-2``, ``-3``, ... is appended instead.
    """
    p = _as_dict(problem, "problem")
    day = (today or (when.date() if when else dt.datetime.now(dt.timezone.utc).date())).isoformat()
    short_uuid = uuid.removeprefix("GPU-").split("-")[0][:8] if uuid else None
    parts = [day, device_key, p["family"], p.get("impl"), p["dtype"], shape_text(p["shape"])]
    parts += [host.split(".")[0] if host else None, short_uuid]
    parts += [when.strftime("%H%M%S") if when else None]
    parts = [x for x in parts if x]
    stem = "-".join(_slug(str(x)) for x in parts)
    out = Path(out_dir)
    path, n = out / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = out / f"{stem}-{n}.json"
    return path


# --- the record ---------------------------------------------------------------------------------


class RunRecord:
    """A run record bound to its file. Make one with :meth:`create`, :meth:`load` or
    :meth:`resume`; every mutating method rewrites the file atomically before returning.
    """

    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc

    # --- opening ----------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        device: Mapping[str, Any],
        versions: Mapping[str, Any],
        problem: Mapping[str, Any] | Any,
        work: Mapping[str, Any] | Any,
        settings: Mapping[str, Any],
        simulated: bool,
        idle_power_w: float | None = None,
        baseline_key: str = OperatingPoint().key,
        host: Mapping[str, Any] | None = None,
        fleet_run_id: str | None = None,
    ) -> RunRecord:
        """Start a new record at ``path`` (status ``running``, no points) and write it.

        ``device`` as from :func:`device_json`, ``versions`` from :func:`collect_versions`,
        ``problem`` with family, impl, shape and dtype, ``work`` a Work (or its JSON),
        ``settings`` with ``measurement`` (dict), ``space`` (``Space.describe()`` or None) and
        ``objectives`` (names), ``host`` (default :func:`host_json`), ``fleet_run_id`` (default
        :func:`fleet_run_id_from_env`). A header that breaks the schema is a caller bug
        (ValueError).
        Raises :class:`RecordExistsError` if ``path`` exists -- claimed with ``O_CREAT |
        O_EXCL``, so of two processes creating the same path exactly one wins -- and
        :class:`RecordError` if it cannot be written.
        """
        path = Path(path)
        stamp = now_utc()
        doc = {
            "schema": SCHEMA_ID,
            "status": "running",
            "created_utc": stamp,
            "updated_utc": stamp,
            "simulated": bool(simulated),
            "host": dict(host) if host is not None else host_json(),
            "fleet_run_id": fleet_run_id if fleet_run_id is not None else fleet_run_id_from_env(),
            "device": dict(device),
            "versions": dict(versions),
            "problem": _as_dict(problem, "problem"),
            "work": _as_dict(work, "work"),
            "settings": dict(settings),
            "idle_power_w": idle_power_w,
            "baseline_key": baseline_key,
            "points": [],
            "choices": {},
        }
        problems = validate(_round_trip(doc))
        if problems:
            raise ValueError(f"run record header breaks the schema: {'; '.join(problems[:5])}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise RecordExistsError(
                f"run record {path} already exists",
                "pass --resume to continue it, or another --out for a new run",
            ) from None
        except OSError as exc:
            raise _write_error(path, exc) from exc
        record = cls(path, doc)
        try:
            record.write()  # replaces the empty claim atomically
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return record

    @classmethod
    def create_new(
        cls,
        out_dir: str | os.PathLike[str],
        device_key: str,
        **header: Any,
    ) -> RunRecord:
        """:meth:`create` (``header``: its keyword arguments) at :func:`default_run_path`,
        taking the next free name when a concurrent run claims the same one first: sweeps
        started together into one folder each keep their own file (none overwrites another)."""
        header.setdefault("host", host_json())
        uuid = (header.get("device") or {}).get("uuid")
        when = dt.datetime.now(dt.timezone.utc)
        for _ in range(1000):
            path = default_run_path(
                out_dir, device_key, header["problem"], host=header["host"].get("hostname"),
                uuid=uuid, when=when,
            )  # fmt: skip
            try:
                return cls.create(path, **header)
            except RecordExistsError:
                continue  # claimed between the name's choice and the claim: the next one
        raise RecordError(
            f"no free run-record name in {out_dir} after 1000 tries",
            "pass another --out",
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunRecord:
        """Read and validate a record; any problem raises one :class:`RecordError`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecordError(f"no run record at {path}", f"check the path, or {REMEDY}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordError(f"cannot read run record {path}: {exc}", REMEDY) from exc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(
                f"run record {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}); the file is damaged",
                REMEDY,
            ) from None
        _check_schema_id(path, doc)
        problems = validate(doc)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise RecordError(
                f"run record {path} is invalid: {'; '.join(problems[:3])}{more}", REMEDY
            )
        record = cls(path, doc)
        record._check_points()
        return record

    @classmethod
    def resume(cls, path: str | os.PathLike[str]) -> RunRecord:
        """:meth:`load` a record to add points to (after :meth:`check_consistent`): status goes
        back to ``running``."""
        record = cls.load(path)
        record.check_consistent()
        record.doc["status"] = "running"
        record.write()
        return record

    def check_consistent(self) -> None:
        """Refuse a record that disagrees with itself (edited or damaged): its problem must give
        its recorded work, and every point's throughput must follow from that work and the
        point's time. New points appended to such a record would belong to another problem."""
        from wattbench.kernels.costs import make_problem, work_of

        pj, wj = self.problem, self.work
        bad = f"run record {self.path}"
        try:
            shape = "x".join(str(int(s)) for s in pj.shape)
            problem = make_problem(pj.family, shape, pj.dtype, pj.impl)
            work = work_of(problem)
        except (UsageError, KeyError, TypeError, ValueError) as exc:
            raise RecordError(
                f"{bad} names a problem wattbench cannot make ({exc})", REMEDY
            ) from None
        flops, nbytes = wj.flops, wj.bytes
        if not (_close(flops, work.flops) and _close(nbytes, work.bytes)):
            raise RecordError(
                f"{bad}: its problem {problem.label} does FLOPs/bytes {work.flops:g}/{work.bytes:g}"
                f" but the record says {flops:g}/{nbytes:g}; the file was edited or damaged",
                REMEDY,
            )
        for i, m in enumerate(self.points):
            if m.tflops is not None and not _close(m.tflops, work.flops / m.time_s / 1e12):
                raise RecordError(
                    f"{bad}: point {i} ({m.point}) reports {m.tflops:g} TFLOP/s, which its time "
                    f"and the problem's work do not give; the file was edited or damaged",
                    REMEDY,
                )

    def _check_points(self) -> None:
        keys = set()
        for i, d in enumerate(self.doc["points"]):
            try:
                m = Measurement.from_json(d)
            except (TypeError, KeyError, ValueError) as exc:
                raise RecordError(
                    f"run record {self.path}: point {i} is not a valid measurement ({exc})", REMEDY
                ) from None
            if m.point.key != d["point_key"] or m.point.key in keys:
                raise RecordError(
                    f"run record {self.path}: point {i} has a wrong or repeated point_key "
                    f"{d['point_key']!r}",
                    REMEDY,
                )
            keys.add(m.point.key)
        for name, c in self.doc["choices"].items():
            if c["point_key"] not in keys or (
                c["baseline_key"] is not None and c["baseline_key"] not in keys
            ):
                raise RecordError(
                    f"run record {self.path}: choice {name!r} names a point that is not in it",
                    REMEDY,
                )

    # --- reading ----------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return str(self.doc["status"])

    @property
    def purpose(self) -> str:
        """``sweep`` (a search of the space) or ``verify`` (a fleet verify pass: candidate
        points measured on one unit; records older than the key are sweeps)."""
        return self.settings.purpose

    @property
    def device(self) -> RecordDevice:
        """The GPU measured (:class:`~wattbench.profiler.store.header.RecordDevice`)."""
        return RecordDevice.from_json(self.doc["device"])

    @property
    def problem(self) -> RecordProblem:
        """The problem measured: family, impl, dtype, shape."""
        return RecordProblem.from_json(self.doc["problem"])

    @property
    def work(self) -> Work:
        """One iteration's FLOPs, minimum bytes and the dtype of its peak (the kernels' Work)."""
        try:
            return Work.from_json(self.doc["work"])
        except ValueError as exc:
            raise RecordError(
                f"run record {self.path}: its work is not valid ({exc})", REMEDY
            ) from None

    @property
    def settings(self) -> RecordSettings:
        """How the run measured: method, space, objectives, purpose, strategy, ..."""
        return RecordSettings.from_json(self.doc["settings"])

    @property
    def simulated(self) -> bool:
        """Whether every number in the record is a simulated GPU's model output."""
        return bool(self.doc["simulated"])

    @property
    def created_utc(self) -> str:
        """When the run started (UTC, ISO-8601)."""
        return str(self.doc["created_utc"])

    @property
    def baseline_key(self) -> str:
        """``OperatingPoint.key`` of the run's baseline."""
        return str(self.doc["baseline_key"])

    @property
    def gpu_time_s(self) -> float | None:
        """Seconds of the device's clock the run spent (None in records older than the key)."""
        value = self.doc.get("gpu_time_s")
        return float(value) if value is not None else None

    @property
    def point_count(self) -> int:
        """How many points are measured (without parsing them)."""
        return len(self.doc["points"])

    @property
    def choice_names(self) -> tuple[str, ...]:
        """The objectives a point was chosen by, in the record's order."""
        return tuple(self.doc["choices"])

    @property
    def idle_power_w(self) -> float | None:
        """The run's idle power (W), or None if not measured yet."""
        value = self.doc["idle_power_w"]
        return float(value) if value is not None else None

    @property
    def points(self) -> list[Measurement]:
        """Every measured point, in the order first measured (one entry per point)."""
        return [Measurement.from_json(d) for d in self.doc["points"]]

    def measured_keys(self) -> set[str]:
        """``OperatingPoint.key`` of every measured point (to skip them on resume)."""
        return {d["point_key"] for d in self.doc["points"]}

    def choices(self) -> dict[str, Choice]:
        """Objective name -> :class:`Choice`, rebuilt against this record's points."""
        by_key = {m.point.key: m for m in self.points}
        return {name: Choice.from_json(d, by_key) for name, d in self.doc["choices"].items()}

    # --- writing ----------------------------------------------------------------------------------

    def add_point(self, measurement: Measurement) -> None:
        """Append a measurement (replacing one at the same point) and rewrite the file."""
        d = _round_trip(measurement.to_json())
        points = self.doc["points"]
        for i, old in enumerate(points):
            if old["point_key"] == d["point_key"]:
                points[i] = d
                break
        else:
            points.append(d)
        self.write()

    def set_idle_power_w(self, idle_power_w: float) -> None:
        """Record the idle power (W, measured once per run) and rewrite the file."""
        self.doc["idle_power_w"] = float(idle_power_w)
        self.write()

    def set_choices(self, choices: Mapping[str, Choice] | Iterable[Choice]) -> None:
        """Record the chosen point per objective (keyed by ``Choice.objective`` for an iterable).

        Replaces earlier choices. Every chosen point must already be in the record.
        """
        items = (
            choices.items() if isinstance(choices, Mapping) else ((c.objective, c) for c in choices)
        )
        keys = self.measured_keys()
        out = {}
        for name, c in items:
            if c.chosen.point.key not in keys:
                raise ValueError(f"choice {name!r} picks {c.chosen.point.key}, not in the record")
            out[name] = _round_trip(c.to_json())
        self.doc["choices"] = out
        self.write()

    def set_runner(self, description: Mapping[str, Any], point_keys: Sequence[str] = ()) -> None:
        """Record the runner's description as a part of the run ends: ``settings.runner`` (the
        latest; a real GPU's runner knows whether it captured a CUDA graph only after its first
        runs, so the header written at the start says "not tried yet") and, appended to
        ``settings.runner_parts``, the description with the keys of the points this part
        measured (a resumed run's parts may differ). Rewrites the file."""
        described = _round_trip(dict(description))
        settings = self.doc["settings"]
        settings["runner"] = described
        parts = settings.setdefault("runner_parts", [])
        parts.append({"runner": described, "point_keys": list(point_keys)})
        self.write()

    def add_gpu_time_s(self, seconds: float) -> None:
        """Add ``seconds`` of the device's clock (virtual on a simulated GPU) spent by this run
        (idle power, calibration, warm-up, windows, settings), summed over resumed parts; the
        next :meth:`finish` or point writes it."""
        self.doc["gpu_time_s"] = float(self.doc.get("gpu_time_s", 0.0)) + max(0.0, seconds)

    def finish(self, status: str = "complete") -> None:
        """Mark the run ``complete`` or ``interrupted`` and rewrite the file."""
        if status not in ("complete", "interrupted"):
            raise ValueError(f"finish status must be 'complete' or 'interrupted', not {status!r}")
        self.doc["status"] = status
        self.write()

    def write(self) -> None:
        """Write the document atomically and durably (see module); bumps ``updated_utc``."""
        self.doc["updated_utc"] = now_utc()
        try:
            write_json_atomic(self.path, self.doc, durable=True, indent=1, default=_json_default)
        except OSError as exc:
            raise _write_error(self.path, exc) from exc

    def __repr__(self) -> str:
        n = len(self.doc["points"])
        return f"RunRecord({str(self.path)!r}, status={self.status!r}, points={n})"


def load(path: str | os.PathLike[str]) -> RunRecord:
    """Read and validate a run record (see :meth:`RunRecord.load`)."""
    return RunRecord.load(path)


# --- helpers ------------------------------------------------------------------------------------


def _check_schema_id(path: Path, doc: Any) -> None:
    parsed = parse_schema_id(doc.get("schema")) if isinstance(doc, dict) else None
    if parsed is None:
        raise RecordError(
            f'{path} is not a wattbench run record (no "schema": "{SCHEMA_ID}" key)', REMEDY
        )
    name, version = parsed
    if name != SCHEMA_NAME:
        raise RecordError(
            f"{path} is a {name!r} file, not a wattbench run record ({SCHEMA_NAME!r})", REMEDY
        )
    if version != SCHEMA_VERSION:
        newer = version is not None and version > SCHEMA_VERSION
        raise RecordError(
            f"run record {path} has schema {doc['schema']!r}; this wattbench reads {SCHEMA_ID!r}",
            ("upgrade wattbench to read it, or " if newer else "") + REMEDY,
        )


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


#: where run records go when no folder is named (``wattbench sweep``, the pytest plugin)
RESULTS_DIR_ENV = "WATTBENCH_RESULTS_DIR"


def default_results_dir() -> Path:
    """``$WATTBENCH_RESULTS_DIR``, else ``$XDG_DATA_HOME/wattbench/runs`` (default
    ``~/.local/share/wattbench/runs``): the user's runs, never a source checkout's results/."""
    env = os.environ.get(RESULTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return data_home() / "runs"


def ensure_writable_dir(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` if needed and prove it writable, before any measurement is made."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".wattbench-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RecordError(
            f"output directory {folder} is not writable: {exc.strerror or exc}",
            "pass --out a folder you can write to (or fix its permissions); nothing was measured",
        ) from None


def _write_error(path: Path, exc: OSError) -> RecordError:
    why = exc.strerror or str(exc)
    return RecordError(
        f"cannot write run record {path}: {why}",
        "pass --out a folder you can write to (or fix its permissions)",
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, dt.date | dt.time):  # TOML dates and times in a spec's raw table
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _round_trip(obj: Any) -> Any:
    """``obj`` as it will read back from the file (tuples become lists, and so on)."""
    return json.loads(json.dumps(obj, default=_json_default))
