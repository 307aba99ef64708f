"""Steps of an acceptance run, their budget, and the journal that makes a run resumable.

A :class:`Step` has a stable ``key``, an estimated wall time on a GPU (``est_s``) and a
``priority`` (lower runs first). :func:`run_steps` runs them in priority order and, before each,
checks the time left against the budget: a step whose estimate does not fit is *skipped* with the
reason, so the most valuable steps get the scarce GPU time and a deadline never cuts a step in
half. Every outcome is appended to ``steps.jsonl`` and flushed to disk as it ends (a run killed
by its time limit keeps everything finished); ``resume`` keeps the outcomes already there whose
status is final (not ``skipped`` / ``error``) and runs only the rest.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "wattbench.validate-step/1"
#: statuses a step ends with; ``skipped`` and ``error`` are run again by ``--resume``
STATUSES = ("pass", "fail", "info", "unavailable", "skipped", "error")
FINAL = ("pass", "fail", "info", "unavailable")


@dataclass(frozen=True)
class Step:
    """One step: ``run(ctx)`` returns its result (a JSON-able dict with ``status``, one of
    :data:`STATUSES`, and a one-line ``summary``). ``gpu_adds`` says what the step measures on a
    real GPU that a dry run cannot (listed by ``--dry-run``)."""

    key: str
    title: str
    est_s: float
    priority: int
    run: Callable[[Any], dict[str, Any]] = field(repr=False)
    gpu_adds: str = ""


@dataclass
class Budget:
    """``total_s`` of wall time from construction; :meth:`left_s` what remains."""

    total_s: float
    started: float = field(default_factory=time.monotonic)

    def left_s(self) -> float:
        return self.total_s - (time.monotonic() - self.started)


class Journal:
    """``steps.jsonl`` in ``folder``: one line per finished step, written and fsynced at once."""

    def __init__(self, folder: Path, *, resume: bool) -> None:
        self.folder = folder
        self.path = folder / "steps.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        self.kept: dict[str, dict[str, Any]] = {}
        if resume and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill: that step runs again
                if isinstance(doc, dict) and doc.get("status") in FINAL:
                    self.kept[doc["key"]] = doc
        elif self.path.exists():
            self.path.unlink()

    def write(self, doc: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(doc, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def run_steps(
    steps: Iterable[Step],
    ctx: Any,
    journal: Journal,
    budget: Budget,
    *,
    echo: Callable[[dict[str, Any]], None] | None = None,
    skip: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run ``steps`` by priority within ``budget``, journalling each outcome; the outcomes (kept
    ones included), in the order they were decided. A step whose key starts with one of
    ``skip`` is not run (status ``skipped``)."""
    out = []
    for step in sorted(steps, key=lambda s: (s.priority, s.key)):
        doc: dict[str, Any]
        if step.key in journal.kept:
            doc = {**journal.kept[step.key], "resumed": True}
            out.append(doc)
            if echo is not None:
                echo(doc)
            continue
        left = budget.left_s()
        if any(step.key.startswith(prefix) for prefix in skip):
            doc = {"status": "skipped", "summary": "left out by --skip"}
        elif left < step.est_s:
            doc = {
                "status": "skipped",
                "summary": f"not started: {left:.0f} s left of the budget, it needs ~"
                f"{step.est_s:.0f} s (run with --resume and more --budget-s)",
            }
        else:
            t0 = time.monotonic()
            try:
                doc = dict(step.run(ctx))
            except Exception as exc:  # a step's failure is its outcome; the next one runs
                last = traceback.extract_tb(exc.__traceback__)[-1]
                where = f"{Path(last.filename).name}:{last.lineno}"
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                doc = {"status": "error", "summary": f"{type(exc).__name__}: {first} ({where})"}
            doc["wall_s"] = round(time.monotonic() - t0, 3)
        if doc.get("status") not in STATUSES:
            doc = {**doc, "status": "error", "summary": f"bad status {doc.get('status')!r}"}
        doc = {"schema": SCHEMA, "key": step.key, "title": step.title, **doc}
        journal.write(doc)
        out.append(doc)
        if echo is not None:
            echo(doc)
    return out
