"""The one provenance builder (``profiler/store/provenance.py``) that ``wattbench validate`` and
the kernel benchmark both write: on a simulated GPU (nothing mocked) and with no device."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from wattbench.kernels.env import Environment
from wattbench.profiler.device import open_device
from wattbench.profiler.store.provenance import git_commit, provenance

ENV = Environment("NVIDIA X", (9, 0), {"torch": "2.11", "triton": "3.6", "cupy": None})


def test_provenance_of_a_simulated_gpu_and_a_kernel_stack():
    dev = open_device("sim:h100-sxm", observe_only=True)
    doc = provenance(["wattbench", "validate", "--out", "a b"], device=dev, env=ENV)
    json.dumps(doc)  # a JSON document as it stands
    assert doc["command"] == "wattbench validate --out 'a b'"
    assert shlex.split(doc["command"])[-1] == "a b"
    assert doc["date_utc"].endswith("+00:00") and doc["host"] and doc["python"]
    assert doc["versions"]["wattbench"] and doc["versions"]["cupy"] is None  # the stack's
    assert doc["versions"]["driver"] == dev.identity.driver_version
    assert doc["gpu"] == "NVIDIA X" and doc["compute_capability"] == "9.0"
    assert doc["stack"]["modules"]["triton"] == "3.6"
    assert doc["simulated"] is True and "spec" not in doc["device"]
    assert doc["device"]["uuid"] == dev.identity.uuid
    assert doc["in_force"]["power_limit_w"] == dev.power_limit_w()
    assert set(doc["in_force"]) == {"sm_mhz", "mem_mhz", "power_limit_w", "temperature_c"}
    assert set(doc["environment"]) >= {"CUDA_VISIBLE_DEVICES", "TRITON_INTERPRET"}


def test_provenance_without_a_device_says_why_and_the_commit_is_the_checkout():
    doc = provenance(["python", "bench"], device_error="NVML not found")
    assert doc["device"] == {"error": "NVML not found"}
    assert "in_force" not in doc and "stack" not in doc and doc["versions"]["driver"] is None
    here = Path(__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                          text=True)  # fmt: skip
    if head.returncode == 0:  # a git checkout: the package's commit is the checkout's
        assert doc["commit"] == head.stdout.strip()
    assert git_commit(Path("/")) is None  # no repository there


def test_dirty_says_whether_uncommitted_changes_to_tracked_files_ran(tmp_path):
    """A real repository in a scratch folder: clean after the commit, dirty after an edit to a
    tracked file, clean again for a new untracked file alone."""
    from wattbench.profiler.store.provenance import git_dirty

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert git_dirty(tmp_path) is False
    (tmp_path / "b.py").write_text("new\n")  # untracked: not code that ran from the checkout
    assert git_dirty(tmp_path) is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_dirty(tmp_path) is True
    assert git_dirty(Path("/")) is None
