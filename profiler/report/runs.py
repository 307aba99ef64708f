"""Run records named on a command line: load them, group them by problem, and keep one run per
problem and GPU.

Rules (the same for ``compare``, ``plot`` and ``export``):

* A file named explicitly must be a readable ``wattbench.run/1`` record, else one error naming it.
  A folder is searched recursively; its ``*.json`` files that are not run records (other
  wattbench documents, pytest-benchmark output, anything else) are skipped and counted in a
  note; a damaged run record or one of another schema version is an error naming it, as for a
  named file (versions are never mixed).
* A *problem* is (family, impl, dtype, shape); runs of different problems are never mixed.
* A *GPU* is (name, UUID, simulated). When several runs of one problem on one GPU are given, the
  newest complete one (latest ``created_utc``) is used and the others are listed in a note;
  runs that are not complete are left out (``sweep --resume`` finishes them).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wattbench.profiler.errors import UsageError
from wattbench.profiler.store import RecordError, RunRecord, default_results_dir
from wattbench.profiler.store.schema import SCHEMA_NAME, parse_schema_id

REMEDY = "leave that file out, or regenerate it with `wattbench sweep`"


def expand(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for each path; a folder gives every ``*.json`` below it (sorted;
    hidden files and folders left out)."""
    out: list[tuple[Path, bool]] = []
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(
                p
                for p in given.rglob("*.json")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(given).parts)
            )
            out.extend((p, False) for p in files)
        elif given.exists():
            out.append((given, True))
        else:
            raise UsageError(f"no such file or folder: {given}", "check the path")
    return out


def default_runs() -> list[Path]:
    """The default folder of run records, as a one-path list; a usage error if it is missing."""
    folder = default_results_dir()
    if not folder.is_dir():
        raise UsageError(
            f"no run records yet in {folder} (the default folder)",
            "run `wattbench sweep` first, or name run files or folders",
        )
    return [folder]


def _is_run_record(path: Path) -> bool:
    """Whether a file found in a folder claims to be a run record (of any version): a damaged
    one still does, by its schema string."""
    try:
        raw = path.read_bytes()
    except OSError:
        return True  # unreadable: RunRecord.load names the problem
    try:
        doc = json.loads(raw)
    except ValueError:
        return f'"{SCHEMA_NAME}/'.encode() in raw
    parsed = parse_schema_id(doc.get("schema")) if isinstance(doc, dict) else None
    return parsed is not None and parsed[0] == SCHEMA_NAME


def load_runs(
    paths: Iterable[str | os.PathLike[str]], notes: list[str] | None = None
) -> list[RunRecord]:
    """Load every run record in ``paths`` (files, or folders searched recursively). Files in a
    folder that are not run records (other JSON: pytest-benchmark output, operating points) are
    skipped and counted in ``notes``; a damaged run record is an error naming it."""
    paths = list(paths)
    records: list[RunRecord] = []
    skipped: list[Path] = []
    for path, named in expand(paths):
        if not named and not _is_run_record(path):
            skipped.append(path)
            continue
        try:
            records.append(RunRecord.load(path))
        except RecordError as exc:
            raise UsageError(exc.message, REMEDY) from None
    if skipped and notes is not None:
        shown = ", ".join(map(str, skipped[:3])) + (" ..." if len(skipped) > 3 else "")
        notes.append(f"skipped {len(skipped)} JSON file(s) that are not run records: {shown}")
    if not records:
        raise UsageError(
            "no run records found in " + ", ".join(map(str, paths)),
            "name run files (wattbench.run/1 JSON) or folders holding them",
        )
    return records


def check_rank_by(name: str | None, records: Sequence[RunRecord]) -> None:
    """A usage error unless ``name`` (``--rank-by``) is None or an objective some run chose by."""
    if name is None:
        return
    present = sorted({o for r in records for o in r.choice_names})
    if name not in present:
        raise UsageError(
            f"--rank-by {name}: no run chose a point by that objective",
            "use one of " + ", ".join(present) if present else "the runs chose no point",
        )


@dataclass(frozen=True, order=True)
class ProblemKey:
    family: str
    impl: str
    dtype: str
    shape: str

    @property
    def label(self) -> str:
        """``matmul-vendor-bf16-8192x8192x8192``: the workload name ``apply`` and export use."""
        return f"{self.family}-{self.impl}-{self.dtype}-{self.shape}"

    @classmethod
    def of(cls, record: RunRecord) -> ProblemKey:
        p = record.problem
        return cls(p.family, p.impl, p.dtype, p.shape_text)


@dataclass(frozen=True, order=True)
class GpuKey:
    name: str
    uuid: str
    simulated: bool

    @classmethod
    def of(cls, record: RunRecord) -> GpuKey:
        d = record.device
        return cls(d.name, d.uuid, record.simulated)


@dataclass
class ProblemRuns:
    """The runs of one problem, one per GPU (in GPU order), and what was left out."""

    problem: ProblemKey
    runs: list[RunRecord]
    notes: list[str] = field(default_factory=list)

    @property
    def simulated(self) -> str:
        """``"simulated"``, ``"real"`` or ``"simulated and real"``: what the figures are."""
        kinds = {r.simulated for r in self.runs}
        if kinds == {True}:
            return "simulated"
        return "real" if kinds == {False} else "simulated and real"


def _created(record: RunRecord) -> dt.datetime:
    text = record.created_utc
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def newest_complete(records: Sequence[RunRecord]) -> tuple[RunRecord | None, list[str]]:
    """The newest complete record of ``records`` (one problem on one GPU), and notes. A fleet
    verify record (a few candidate points) stands in only where no complete sweep exists."""
    complete = [r for r in records if r.status == "complete"]
    sweeps = [r for r in complete if r.purpose != "verify"]
    complete = sweeps or complete
    notes = [
        f"left out {r.path}: status {r.status!r} (finish it with `wattbench sweep --resume`)"
        for r in records
        if r.status != "complete"
    ]
    if not complete:
        return None, notes
    complete.sort(key=lambda r: (_created(r), str(r.path)))
    chosen = complete[-1]
    if len(complete) > 1:
        others = ", ".join(str(r.path) for r in complete[:-1])
        notes.append(f"using {chosen.path}, the newest complete run; older runs left out: {others}")
    return chosen, notes


def group_runs(records: Iterable[RunRecord]) -> list[ProblemRuns]:
    """Records grouped by problem (sorted), one run per GPU (see module). A group whose runs
    were all left out has no runs, and notes saying why."""
    by_problem: dict[ProblemKey, dict[GpuKey, list[RunRecord]]] = {}
    for r in records:
        by_problem.setdefault(ProblemKey.of(r), {}).setdefault(GpuKey.of(r), []).append(r)
    groups: list[ProblemRuns] = []
    for problem in sorted(by_problem):
        group = ProblemRuns(problem, [])
        for gpu in sorted(by_problem[problem]):
            chosen, notes = newest_complete(by_problem[problem][gpu])
            group.notes.extend(notes)
            if chosen is not None:
                group.runs.append(chosen)
        if not group.runs:
            group.notes.append(f"{problem.label}: no complete run to show")
        groups.append(group)
    return groups
