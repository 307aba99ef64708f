"""Operating-point documents: chosen settings per GPU and workload, for schedulers and ``apply``.

Schema ``wattbench.points/1`` (JSON; JSON Schema ``points.schema.json`` in this package; the
format is documented in docs/points-format.md)::

    {"schema": "wattbench.points/1", "created_at": "...", "points": [
       {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_uuid": null,
        "workload": "matmul-vendor-bf16-8192x8192x8192",
        "family": "matmul", "impl": "vendor", "dtype": "bf16", "shape": "8192x8192x8192",
        "shape_class": "compute-bound", "shape_presets": ["square"],
        "arithmetic_intensity": 2730.7,
        "objective": "energy", "sm_mhz": 1305, "mem_mhz": null, "power_limit_w": null,
        "expected_slowdown_rel": 0.12, "expected_energy_saving_rel": 0.21,
        "source_runs": ["results/...json"], "simulated": true}, ...],
     "gpus": {"NVIDIA H100 80GB HBM3": {"simulated": true, "clocks_source": "spec",
              "mem_clocks_mhz": [2619], "sm_clocks_mhz_by_mem": {"2619": [1980, ...]},
              "power_limit_w_min": 200, "power_limit_w_max": 700,
              "power_limit_w_default": 700}}}

``sm_mhz`` / ``mem_mhz`` null: clock left unlocked; ``power_limit_w`` null: the default limit.
``gpu_uuid`` set: the entry is for that one device, and wins over entries for its model name.
Readers ignore keys they do not know: keys may be *added* within ``points/1`` (``shape_class``,
``shape_presets``, ``arithmetic_intensity`` and ``gpus`` were), so older documents still load
and older readers still read newer ones; renaming or re-meaning a key needs ``points/2``.

The Python API is :meth:`PointsDocument.load` and :meth:`PointsDocument.lookup`; documents are
built from run records by :func:`wattbench.profiler.export.points.points_from_runs`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattbench.profiler.errors import UsageError
from wattbench.profiler.jsonio import write_text_atomic

if TYPE_CHECKING:
    from wattbench.profiler.store.record import RunRecord

POINTS_SCHEMA = "wattbench.points/1"
POINTS_SCHEMA_FILE = "points.schema.json"
SHAPE_CLASSES = ("compute-bound", "memory-bound")


class PointsFileError(UsageError):
    """An operating-point file that is missing, corrupt, of another version, or lacks the pair."""


@dataclass(frozen=True)
class PointEntry:
    gpu_name: str
    workload: str
    objective: str
    sm_mhz: int | None
    mem_mhz: int | None
    power_limit_w: float | None
    family: str = ""
    impl: str = ""
    dtype: str = ""
    shape: str = ""
    #: "compute-bound" or "memory-bound" on this GPU ("" in documents written before it existed)
    shape_class: str = ""
    #: the family's presets that name this shape (``square``, ``llama3-8b-qkv@7``)
    shape_presets: tuple[str, ...] = ()
    arithmetic_intensity: float | None = None  # FLOP/B
    gpu_uuid: str | None = None
    expected_slowdown_rel: float | None = None
    expected_energy_saving_rel: float | None = None
    source_runs: tuple[str, ...] = ()
    simulated: bool = False

    @property
    def workload_class(self) -> str | None:
        """``family-impl-dtype-shape_class`` (e.g. ``matmul-vendor-bf16-memory-bound``)."""
        if not (self.shape_class and self.family and self.impl and self.dtype):
            return None
        return f"{self.family}-{self.impl}-{self.dtype}-{self.shape_class}"

    def __str__(self) -> str:
        sm = f"SM {self.sm_mhz} MHz" if self.sm_mhz is not None else "SM unlocked"
        mem = f"memory {self.mem_mhz} MHz" if self.mem_mhz is not None else "memory unlocked"
        pl = f"{self.power_limit_w:g} W" if self.power_limit_w is not None else "default limit"
        sim = " [simulated]" if self.simulated else ""
        return f"{self.workload} on {self.gpu_name} ({self.objective}): {sm}, {mem}, {pl}{sim}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["source_runs"] = list(self.source_runs)
        d["shape_presets"] = list(self.shape_presets)
        return d


@dataclass(frozen=True)
class GpuInfo:
    """What the source runs say about a GPU model's settable ranges (for snapping and scripts).

    ``sm_clocks_mhz_by_mem``: memory clock (MHz) -> supported SM clocks, highest first;
    ``clocks_source`` ``"spec"`` (a simulated GPU's full table) or ``"swept"`` (a real GPU: only
    the clocks its runs measured, each known to be supported). Unknown fields are None / empty.
    """

    simulated: bool = False
    clocks_source: str = ""
    mem_clocks_mhz: tuple[int, ...] = ()
    sm_clocks_mhz_by_mem: dict[int, tuple[int, ...]] = field(default_factory=dict)
    power_limit_w_min: float | None = None
    power_limit_w_max: float | None = None
    power_limit_w_default: float | None = None

    def sm_clocks_mhz(self, mem_mhz: int | None = None) -> tuple[int, ...]:
        """Supported SM clocks at ``mem_mhz`` (None: the highest memory clock), highest first."""
        if mem_mhz is not None and mem_mhz in self.sm_clocks_mhz_by_mem:
            return self.sm_clocks_mhz_by_mem[mem_mhz]
        if self.mem_clocks_mhz and self.mem_clocks_mhz[0] in self.sm_clocks_mhz_by_mem:
            return self.sm_clocks_mhz_by_mem[self.mem_clocks_mhz[0]]
        return tuple(
            sorted({c for v in self.sm_clocks_mhz_by_mem.values() for c in v}, reverse=True)
        )

    def merged(self, other: GpuInfo) -> GpuInfo:
        """Both runs' knowledge: union of clocks, first known power figures."""
        by_mem = {m: set(v) for m, v in self.sm_clocks_mhz_by_mem.items()}
        for m, v in other.sm_clocks_mhz_by_mem.items():
            by_mem.setdefault(m, set()).update(v)
        return GpuInfo(
            simulated=self.simulated,
            clocks_source="spec"
            if "spec" in (self.clocks_source, other.clocks_source)
            else "swept",
            mem_clocks_mhz=tuple(
                sorted({*self.mem_clocks_mhz, *other.mem_clocks_mhz}, reverse=True)
            ),
            sm_clocks_mhz_by_mem={m: tuple(sorted(v, reverse=True)) for m, v in by_mem.items()},
            power_limit_w_min=_first(self.power_limit_w_min, other.power_limit_w_min),
            power_limit_w_max=_first(self.power_limit_w_max, other.power_limit_w_max),
            power_limit_w_default=_first(self.power_limit_w_default, other.power_limit_w_default),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "simulated": self.simulated,
            "clocks_source": self.clocks_source,
            "mem_clocks_mhz": list(self.mem_clocks_mhz),
            "sm_clocks_mhz_by_mem": {str(m): list(v) for m, v in self.sm_clocks_mhz_by_mem.items()},
            "power_limit_w_min": self.power_limit_w_min,
            "power_limit_w_max": self.power_limit_w_max,
            "power_limit_w_default": self.power_limit_w_default,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GpuInfo:
        return cls(
            simulated=bool(d.get("simulated", False)),
            clocks_source=str(d.get("clocks_source", "")),
            mem_clocks_mhz=tuple(int(m) for m in d.get("mem_clocks_mhz") or ()),
            sm_clocks_mhz_by_mem={
                int(m): tuple(int(c) for c in v)
                for m, v in (d.get("sm_clocks_mhz_by_mem") or {}).items()
            },
            power_limit_w_min=_float_or_none(d.get("power_limit_w_min")),
            power_limit_w_max=_float_or_none(d.get("power_limit_w_max")),
            power_limit_w_default=_float_or_none(d.get("power_limit_w_default")),
        )


#: an indented JSON list of integers (JSON strings never hold a raw newline, so this is safe)
_INT_LIST = re.compile(r"\[\n\s+(-?\d+(?:,\n\s+-?\d+)*)\n\s*\]")


def _one_line(m: re.Match) -> str:
    return "[" + ", ".join(re.findall(r"-?\d+", m.group(1))) + "]"


def _first(a: Any, b: Any) -> Any:
    return a if a is not None else b


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


# --- the schema ---------------------------------------------------------------------------------


@functools.cache
def json_schema() -> dict[str, Any]:
    """The ``wattbench.points/1`` JSON Schema (draft 2020-12) shipped in this package."""
    files = resources.files("wattbench.profiler.store")
    return json.loads(files.joinpath(POINTS_SCHEMA_FILE).read_text("utf-8"))


def validate(doc: Any, *, use_jsonschema: bool | None = None) -> list[str]:
    """Problems of ``doc`` against ``points.schema.json`` as ``"path: message"``; [] if valid.

    ``use_jsonschema``: None uses the ``jsonschema`` package when importable, else the built-in
    checker of ``store.schema`` (the schema file keeps to the keywords it knows); True / False
    force one.
    """
    from wattbench.profiler.store.schema import validate_against

    return validate_against(json_schema(), doc, use_jsonschema=use_jsonschema)


# --- reading ------------------------------------------------------------------------------------

_INT_OR_NULL = ("sm_mhz", "mem_mhz")
_REQUIRED_STR = ("gpu_name", "workload", "objective")


def _entry(d: Any, i: int, path: Path) -> PointEntry:
    def bad(why: str) -> PointsFileError:
        return PointsFileError(
            f"operating-point file {path}: entry {i} {why}",
            "regenerate it with wattbench, or fix that entry",
        )

    if not isinstance(d, dict):
        raise bad("is not an object")
    for k in _REQUIRED_STR:
        if not isinstance(d.get(k), str) or not d[k]:
            raise bad(f"has no {k}")
    for k in _INT_OR_NULL:
        v = d.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise bad(f"has {k} = {v!r} (a positive integer or null)")
    pl = d.get("power_limit_w")
    if pl is not None and (
        isinstance(pl, bool) or not isinstance(pl, (int, float)) or not math.isfinite(pl) or pl <= 0
    ):
        raise bad(f"has power_limit_w = {pl!r} (a positive number or null)")
    known = set(PointEntry.__dataclass_fields__)
    kwargs = {k: v for k, v in d.items() if k in known}
    kwargs["source_runs"] = tuple(str(r) for r in d.get("source_runs") or ())
    kwargs["shape_presets"] = tuple(str(r) for r in d.get("shape_presets") or ())
    kwargs["power_limit_w"] = float(pl) if pl is not None else None
    return PointEntry(**kwargs)


@dataclass
class PointsDocument:
    points: list[PointEntry] = field(default_factory=list)
    created_at: str = ""
    #: GPU name -> what the source runs say about its clocks and power limits
    gpus: dict[str, GpuInfo] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PointsDocument:
        """Read and check a points document; every problem is one :class:`PointsFileError`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PointsFileError(f"no operating-point file at {path}", "check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PointsFileError(f"cannot read operating-point file {path}: {exc}", "") from exc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PointsFileError(
                f"operating-point file {path} is not valid JSON (line {exc.lineno}: {exc.msg})",
                "the file is damaged; regenerate it with wattbench",
            ) from None
        return cls.from_json(doc, path)

    @classmethod
    def from_json(cls, doc: Any, path: str | os.PathLike[str] = "<document>") -> PointsDocument:
        path = Path(path)
        if not isinstance(doc, dict):
            raise PointsFileError(f"operating-point file {path} is not a JSON object", "")
        schema = doc.get("schema")
        if schema != POINTS_SCHEMA:
            raise PointsFileError(
                f"operating-point file {path} has schema {schema!r}; this wattbench reads "
                f"{POINTS_SCHEMA!r}",
                "regenerate it with this version of wattbench",
            )
        entries = doc.get("points")
        if not isinstance(entries, list):
            raise PointsFileError(f"operating-point file {path} has no 'points' list", "")
        points = [_entry(d, i, path) for i, d in enumerate(entries)]
        problems = validate(doc)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise PointsFileError(
                f"operating-point file {path} is invalid: {'; '.join(problems[:3])}{more}",
                "regenerate it with wattbench, or fix those fields",
            )
        gpus = {str(k): GpuInfo.from_json(v) for k, v in (doc.get("gpus") or {}).items()}
        return cls(points, str(doc.get("created_at", "")), gpus)

    def to_json(self) -> dict:
        return {
            "schema": POINTS_SCHEMA,
            "created_at": self.created_at
            or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "points": [p.to_json() for p in self.points],
            "gpus": {name: info.to_json() for name, info in sorted(self.gpus.items())},
        }

    def text(self) -> str:
        """The document as indented JSON, lists of integers (clock tables) on one line."""
        return _INT_LIST.sub(_one_line, json.dumps(self.to_json(), indent=2)) + "\n"

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`text` atomically."""
        write_text_atomic(path, self.text())

    def gpu_info(self, gpu_name: str) -> GpuInfo:
        """What the document knows about ``gpu_name`` (an empty GpuInfo when nothing)."""
        return self.gpus.get(gpu_name, GpuInfo())

    def lookup(
        self,
        gpu_name: str,
        workload: str,
        objective: str | None = None,
        gpu_uuid: str | None = None,
    ) -> PointEntry:
        """The entry for this GPU (its UUID first, then its model name) and workload.

        ``workload`` is an exact workload name (``matmul-vendor-bf16-8192x8192x8192``) or, when
        no entry has that name, a workload class (``matmul-vendor-bf16-memory-bound``) that
        covers exactly one workload on this GPU. ``objective`` None: the only objective there
        is, else an error listing them. Every miss is a :class:`PointsFileError` saying what
        the document has instead.
        """
        for_gpu = [p for p in self.points if gpu_uuid and p.gpu_uuid == gpu_uuid] or [
            p for p in self.points if p.gpu_uuid is None and p.gpu_name == gpu_name
        ]
        if not for_gpu:
            units = sorted(
                {p.gpu_uuid for p in self.points if p.gpu_name == gpu_name and p.gpu_uuid}
            )
            if units:
                raise PointsFileError(
                    f"no operating points for {gpu_uuid or gpu_name}: the file has points for "
                    f"{len(units)} other unit(s) of {gpu_name} and no entry for the model",
                    "export again (per-device documents now carry model points as the "
                    "fallback), or sweep this GPU and export its run too",
                )
            names = sorted({p.gpu_name for p in self.points})
            raise PointsFileError(
                f"no operating points for {gpu_name}",
                f"the file has points for: {', '.join(names) or 'no GPU'}",
            )
        for_work = [p for p in for_gpu if p.workload == workload]
        if not for_work:
            for_work = [p for p in for_gpu if p.workload_class == workload]
            covered = sorted({p.workload for p in for_work})
            if len(covered) > 1:
                raise PointsFileError(
                    f"workload class {workload!r} covers several workloads on {gpu_name}",
                    f"name one of: {', '.join(covered)}",
                )
        if not for_work:
            loads = sorted({p.workload for p in for_gpu})
            classes = sorted({p.workload_class for p in for_gpu if p.workload_class})
            raise PointsFileError(
                f"no workload {workload!r} for {gpu_name}",
                f"choose one of: {', '.join(loads)}"
                + (f" (or a class: {', '.join(classes)})" if classes else ""),
            )
        if objective is None:
            if len(for_work) == 1:
                return for_work[0]
            objs = ", ".join(p.objective for p in for_work)
            raise PointsFileError(
                f"workload {workload!r} has points for several objectives",
                f"pass --objective: {objs}",
            )
        hit = [p for p in for_work if p.objective == objective]
        if not hit:
            objs = ", ".join(p.objective for p in for_work)
            raise PointsFileError(
                f"workload {workload!r} on {gpu_name} has no {objective!r} point",
                f"choose one of: {objs}",
            )
        return hit[0]

    def select(
        self,
        gpu_name: str | None = None,
        workload: str | None = None,
        objective: str | None = None,
    ) -> list[PointEntry]:
        """Entries matching every filter given (None: any); ``workload`` may be a class."""
        return [
            p
            for p in self.points
            if (gpu_name is None or p.gpu_name == gpu_name)
            and (workload is None or workload in (p.workload, p.workload_class))
            and (objective is None or p.objective == objective)
        ]


# --- what a run record knows of its GPU (the document is built by export.points) -----------------


def gpu_info_of_run(record: RunRecord) -> GpuInfo:
    """A run record's knowledge of its GPU: a simulated spec's full tables, or a real GPU's
    swept clocks and default power limit (from the sweep's space)."""
    simulated = record.simulated
    spec = record.device.spec if simulated else None
    if spec is not None and isinstance(spec.get("clocks"), dict):
        c, pw = spec["clocks"], spec.get("power") or {}
        mems = tuple(sorted((int(m) for m in c.get("memory_mhz", ())), reverse=True))
        tops = {int(k): int(v) for k, v in (c.get("sm_mhz_max_per_memory") or {}).items()}
        lo, step = int(c["sm_mhz_min"]), int(c["sm_mhz_step"])
        by_mem = {m: tuple(range(tops.get(m, int(c["sm_mhz_max"])), lo - 1, -step)) for m in mems}
        return GpuInfo(
            simulated=True,
            clocks_source="spec",
            mem_clocks_mhz=mems,
            sm_clocks_mhz_by_mem=by_mem,
            power_limit_w_min=_float_or_none(pw.get("limit_w_min")),
            power_limit_w_max=_float_or_none(pw.get("limit_w_max")),
            power_limit_w_default=_float_or_none(pw.get("limit_w_default")),
        )
    space = record.settings.space or {}
    swept: dict[int, set[int]] = {}
    top_mem = max((m.mem_mhz_min for m in record.points), default=None)
    for m, clocks in (space.get("sm_mhz_by_mem") or {}).items():
        mem = int(m) if str(m).isdigit() else top_mem
        if mem is not None:
            swept.setdefault(int(mem), set()).update(int(c) for c in clocks)
    return GpuInfo(
        simulated=simulated,
        clocks_source="swept",
        mem_clocks_mhz=tuple(sorted(swept, reverse=True)),
        sm_clocks_mhz_by_mem={m: tuple(sorted(v, reverse=True)) for m, v in swept.items()},
        power_limit_w_default=_float_or_none(space.get("power_limit_w_default")),
    )
