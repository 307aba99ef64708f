"""Operating-point documents: chosen settings per GPU and workload, for schedulers and ``apply``.

Schema ``wattbench.points/1`` (JSON)::

    {"schema": "wattbench.points/1", "created_at": "...", "points": [
       {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_uuid": null,
        "workload": "matmul-vendor-bf16-8192x8192x8192",
        "family": "matmul", "impl": "vendor", "dtype": "bf16", "shape": "8192x8192x8192",
        "objective": "energy", "sm_mhz": 1305, "mem_mhz": null, "power_limit_w": null,
        "expected_slowdown_rel": 0.12, "expected_energy_saving_rel": 0.21,
        "source_runs": ["results/...json"], "simulated": true}, ...]}

``sm_mhz`` / ``mem_mhz`` null: clock left unlocked; ``power_limit_w`` null: the default limit.
``gpu_uuid`` set: the entry is for that one device, and wins over entries for its model name.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wattbench.profiler.errors import UsageError

POINTS_SCHEMA = "wattbench.points/1"


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
    gpu_uuid: str | None = None
    expected_slowdown_rel: float | None = None
    expected_energy_saving_rel: float | None = None
    source_runs: tuple[str, ...] = ()
    simulated: bool = False

    def __str__(self) -> str:
        sm = f"SM {self.sm_mhz} MHz" if self.sm_mhz is not None else "SM unlocked"
        mem = f"memory {self.mem_mhz} MHz" if self.mem_mhz is not None else "memory unlocked"
        pl = f"{self.power_limit_w:g} W" if self.power_limit_w is not None else "default limit"
        sim = " [simulated]" if self.simulated else ""
        return f"{self.workload} on {self.gpu_name} ({self.objective}): {sm}, {mem}, {pl}{sim}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["source_runs"] = list(self.source_runs)
        return d


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
    kwargs["power_limit_w"] = float(pl) if pl is not None else None
    return PointEntry(**kwargs)


@dataclass
class PointsDocument:
    points: list[PointEntry] = field(default_factory=list)
    created_at: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PointsDocument:
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
        return cls(
            [_entry(d, i, path) for i, d in enumerate(entries)], str(doc.get("created_at", ""))
        )

    def to_json(self) -> dict:
        return {
            "schema": POINTS_SCHEMA,
            "created_at": self.created_at
            or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "points": [p.to_json() for p in self.points],
        }

    def write(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def lookup(
        self,
        gpu_name: str,
        workload: str,
        objective: str | None = None,
        gpu_uuid: str | None = None,
    ) -> PointEntry:
        """The entry for this GPU (its UUID first, then its model name) and workload.

        ``objective`` None: the only objective there is, else an error listing them.
        """
        for_gpu = [p for p in self.points if gpu_uuid and p.gpu_uuid == gpu_uuid] or [
            p for p in self.points if p.gpu_uuid is None and p.gpu_name == gpu_name
        ]
        if not for_gpu:
            names = sorted({p.gpu_name for p in self.points})
            raise PointsFileError(
                f"no operating points for {gpu_name}",
                f"the file has points for: {', '.join(names) or 'no GPU'}",
            )
        for_work = [p for p in for_gpu if p.workload == workload]
        if not for_work:
            loads = sorted({p.workload for p in for_gpu})
            raise PointsFileError(
                f"no workload {workload!r} for {gpu_name}",
                f"choose one of: {', '.join(loads)}",
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


def points_from_runs(records: Iterable[Any], *, per_device: bool = False) -> PointsDocument:
    """One entry per (GPU, workload, objective) from finished run records (``store.RunRecord``)."""
    out: list[PointEntry] = []
    for rec in records:
        doc = rec.doc
        dev, prob = doc["device"], doc["problem"]
        shape = "x".join(map(str, prob["shape"]))
        workload = f"{prob['family']}-{prob['impl']}-{prob['dtype']}-{shape}"
        for name, c in rec.choices().items():
            p = c.chosen.point
            out.append(
                PointEntry(
                    gpu_name=dev["name"],
                    gpu_uuid=dev["uuid"] if per_device else None,
                    workload=workload,
                    family=prob["family"],
                    impl=prob["impl"],
                    dtype=prob["dtype"],
                    shape=shape,
                    objective=name,
                    sm_mhz=p.sm_mhz,
                    mem_mhz=p.mem_mhz,
                    power_limit_w=p.power_limit_w,
                    expected_slowdown_rel=c.slowdown_rel,
                    expected_energy_saving_rel=c.saving_rel,
                    source_runs=(str(rec.path),),
                    simulated=bool(doc.get("simulated")),
                )
            )
    return PointsDocument(out)
