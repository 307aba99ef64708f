"""Write a points document, rendered for a scheduler, into a folder.

``env``: ``<point>.env`` per entry. ``slurm``: ``<point>.gpu-freq`` (the ``--gpu-freq`` value,
when a clock is locked) and ``<point>.prolog.sh`` / ``<point>.epilog.sh`` (when the power limit
is set) per entry. ``k8s``: ``configmap.yaml`` and ``node-labels-<gpu>.yaml`` per GPU model.
Every format also writes ``index.json`` (``wattbench.export-index/1``): which file holds which
GPU, workload and objective. ``<point>`` is ``safe_name(gpu.workload.objective)``: only
``[A-Za-z0-9._-]``, so no name read from a result file can leave the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wattbench.profiler.errors import UsageError
from wattbench.profiler.export import envfile, kubernetes, slurm
from wattbench.profiler.jsonio import write_text_atomic
from wattbench.profiler.names import safe_name
from wattbench.profiler.store.points import PointEntry, PointsDocument

INDEX_SCHEMA = "wattbench.export-index/1"


def point_name(entry: PointEntry) -> str:
    gpu = entry.gpu_uuid or entry.gpu_name
    return safe_name(f"{gpu}.{entry.workload}.{entry.objective}", 120)


def _write(folder: Path, name: str, text: str, executable: bool = False) -> str:
    write_text_atomic(folder / name, text, mode=0o755 if executable else 0o644)
    return name


def _base(entry: PointEntry) -> dict:
    return {
        "gpu_name": entry.gpu_name,
        "gpu_uuid": entry.gpu_uuid,
        "workload": entry.workload,
        "workload_class": entry.workload_class,
        "objective": entry.objective,
        "simulated": entry.simulated,
    }


def _env(doc: PointsDocument, folder: Path) -> tuple[list[str], list[dict]]:
    written, index = [], []
    for entry in doc.points:
        name = _write(
            folder,
            f"{point_name(entry)}.env",
            envfile.env_file(entry, doc.gpu_info(entry.gpu_name)),
        )
        written.append(name)
        index.append({**_base(entry), "env": name})
    return written, index


def _slurm(doc: PointsDocument, folder: Path) -> tuple[list[str], list[dict]]:
    written: list[str] = []
    index: list[dict] = []
    for entry in doc.points:
        info, stem = doc.gpu_info(entry.gpu_name), point_name(entry)
        row = {**_base(entry), "gpu_freq": slurm.gpu_freq(entry, info)}
        row["gpu_freq_file"] = row["prolog"] = row["epilog"] = None
        if row["gpu_freq"] is not None:
            row["gpu_freq_file"] = _write(folder, f"{stem}.gpu-freq", row["gpu_freq"] + "\n")
        if entry.power_limit_w is not None:
            row["prolog"] = _write(folder, f"{stem}.prolog.sh", slurm.prolog(entry, info), True)
            row["epilog"] = _write(folder, f"{stem}.epilog.sh", slurm.epilog(entry, info), True)
        written.extend(row[k] for k in ("gpu_freq_file", "prolog", "epilog") if row[k])
        index.append(row)
    return written, index


def _k8s(doc: PointsDocument, folder: Path) -> tuple[list[str], list[dict]]:
    written = [_write(folder, "configmap.yaml", kubernetes.configmap(doc))]
    index = []
    for gpu in sorted({p.gpu_name for p in doc.points}):
        name = _write(
            folder, f"node-labels-{safe_name(gpu)}.yaml", kubernetes.node_labels(doc, gpu)
        )
        written.append(name)
        labels = {
            kubernetes.point_label_key(p): kubernetes.point_value(p)
            for p in doc.points
            if p.gpu_name == gpu and p.gpu_uuid is None
        }
        index.append({"gpu_name": gpu, "node_labels": name, "point_labels": labels})
    return written, index


#: format name -> renderer (doc, folder) -> (file names written, index.json rows)
_RENDERERS = {"env": _env, "slurm": _slurm, "k8s": _k8s}
#: the formats `wattbench export --format` takes besides "points"
FORMATS = tuple(_RENDERERS)


def render(doc: PointsDocument, fmt: str, folder: str | os.PathLike[str]) -> list[str]:
    """Write ``doc`` as ``fmt`` (one of :data:`FORMATS`) into ``folder`` (created); returns
    the file names written, ``index.json`` last."""
    if fmt not in _RENDERERS:
        raise UsageError(
            f"unknown export format {fmt!r}", f"use one of: points, {', '.join(FORMATS)}"
        )
    if not doc.points:
        raise UsageError("no operating points to export", "check --gpu / --workload / --objective")
    names = [point_name(p) for p in doc.points]
    if len(set(names)) != len(names):
        raise UsageError(
            "the document has two entries for the same GPU, workload and objective",
            "export them into separate documents",
        )
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written, index = _RENDERERS[fmt](doc, folder)
        body = {"schema": INDEX_SCHEMA, "format": fmt, "files": index}
        written.append(_write(folder, "index.json", json.dumps(body, indent=2) + "\n"))
    except OSError as exc:
        raise UsageError(
            f"cannot write into {folder}: {exc.strerror or exc}",
            "pass -o a folder you can write to",
        ) from None
    except UnicodeEncodeError:
        raise UsageError(
            "the points document holds text that is not valid Unicode (a lone surrogate)",
            "fix the GPU, workload or objective names in it",
        ) from None
    return written
