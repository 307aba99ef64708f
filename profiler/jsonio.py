"""Writing files, JSON documents above all, so that a reader never sees half of one: the one
implementation every writer of wattbench uses (run records, journals, simulator state, thermal
models, operating-point documents, exported files, the fleet plan).

:func:`write_text_atomic` writes a temporary file beside the target and renames it over the
target (``os.replace``): at any instant the path holds the old contents or the new. With
``durable`` the data and the folder entry are also flushed to disk (``fsync`` of the file, then
of the folder), for files that must survive a power loss (journals, run records).
:func:`write_json_atomic` does the same for a JSON document.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or removal in ``folder`` durable (POSIX); a no-op where folders cannot be
    opened or synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(
    path: str | os.PathLike[str], text: str, *, durable: bool = False, mode: int = 0o644
) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically, with permissions ``mode``; the folder is
    created if needed. On failure the target is unchanged and no temporary file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json_atomic(
    path: str | os.PathLike[str],
    doc: Any,
    *,
    durable: bool = False,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
    mode: int = 0o644,
) -> None:
    """Write ``doc`` as JSON (``indent``, ``default`` as for ``json.dumps``; a final newline) by
    :func:`write_text_atomic`."""
    text = json.dumps(doc, indent=indent, default=default) + "\n"
    write_text_atomic(path, text, durable=durable, mode=mode)
