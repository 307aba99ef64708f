"""The one atomic writer (profiler/jsonio.py): whole documents only, no temporary files left,
permissions as asked, and durable writes flushed (file and folder) before returning."""

from __future__ import annotations

import json
import os
import stat

import pytest

from wattbench.profiler import jsonio


def test_json_is_replaced_whole_with_a_final_newline_and_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "doc.json"
    jsonio.write_json_atomic(path, {"a": 1})
    jsonio.write_json_atomic(path, {"a": [1, 2]}, indent=None)
    assert path.read_text() == '{"a": [1, 2]}\n'
    assert os.listdir(path.parent) == ["doc.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_document_and_no_temporary_file(tmp_path):
    path = tmp_path / "doc.json"
    jsonio.write_json_atomic(path, {"old": True})
    with pytest.raises(TypeError):
        jsonio.write_json_atomic(path, {"new": object()})
    with pytest.raises(OSError):
        jsonio.write_text_atomic(path / "below-a-file", "x")
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["doc.json"]


def test_durable_writes_sync_the_file_and_the_folder(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    jsonio.write_text_atomic(tmp_path / "run.sh", "#!/bin/sh\n", mode=0o755)
    assert synced == []
    jsonio.write_json_atomic(tmp_path / "journal.json", {"k": 1}, durable=True)
    assert len(synced) == 2  # the file's data, then the folder's entry
    assert stat.S_IMODE((tmp_path / "run.sh").stat().st_mode) == 0o755
