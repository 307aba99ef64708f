"""The actuation guard in-process: journal contents, which knobs are put back, the device-level
invariant (no setter without a journal), nesting under an applied target, signal handlers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from wattbench.profiler.device import open_device
from wattbench.profiler.errors import ActuationForbiddenError, GpuBusyError
from wattbench.profiler.safety import (
    ActuationGuard,
    GpuSettings,
    Journal,
    JournalError,
    JournalFile,
    release_all,
)
from wattbench.profiler.safety.guard import active_guard, journal_file_for


@pytest.fixture
def dev():
    return open_device("sim:h100-sxm")


def settings_of(dev):
    sim = dev.simulated
    return sim.sm_locked_mhz(), sim.mem_locked_mhz(), sim.power_limit_mw()


def test_without_the_safety_layer_a_setter_refuses_before_nvml_is_touched(tmp_path):
    """The device layer imports nothing above it: the safety layer registers the session opener
    on import, and until then every setter refuses (a fresh process: pytest loads safety)."""
    child = (
        "import sys\n"
        "from wattbench.profiler.device import open_device\n"
        "from wattbench.profiler.errors import ActuationForbiddenError\n"
        "dev = open_device('sim:h100-sxm')\n"
        "assert 'wattbench.profiler.safety.guard' not in sys.modules\n"
        "try:\n"
        "    dev.set_power_limit_w(400)\n"
        "except ActuationForbiddenError as exc:\n"
        "    print(exc)\n"
        "assert dev.simulated.power_limit_mw() == 700_000\n"
        "import wattbench.profiler.safety\n"
        "dev.set_power_limit_w(400)\n"
        "assert dev.simulated.power_limit_mw() == 400_000\n"
    )
    env = {**os.environ, "WATTBENCH_SIM_STATE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "no actuation session can journal its settings first" in out.stdout


def test_a_setter_without_a_session_journals_first_and_release_restores(dev):
    file = journal_file_for(dev)
    assert not file.path.exists()
    dev.set_power_limit_w(400)
    doc = json.loads(file.path.read_text())
    assert doc["original"] == {"sm_mhz": None, "mem_mhz": None, "power_limit_w": 700.0}
    assert doc["session"]["command"] == "library session"
    assert settings_of(dev)[2] == 400_000
    release_all()
    assert settings_of(dev)[2] == 700_000
    assert not file.path.exists()
    assert active_guard(dev) is None


def test_only_changed_knobs_are_put_back(dev):
    sim = dev.simulated
    with ActuationGuard(dev, "test"):
        dev.lock_sm_clocks(1500)
        before = dict(sim.state.setter_calls)
    after = sim.state.setter_calls
    assert after.get("nvmlDeviceResetGpuLockedClocks", 0) == 1 + before.get(
        "nvmlDeviceResetGpuLockedClocks", 0
    )
    # neither the power limit nor the memory clock was touched, so neither is "restored"
    assert after.get("nvmlDeviceSetPowerManagementLimit", 0) == 0
    assert after.get("nvmlDeviceResetMemoryLockedClocks", 0) == 0
    assert settings_of(dev)[0] is None


def test_exception_in_the_block_restores_and_propagates(dev):
    with pytest.raises(ZeroDivisionError), ActuationGuard(dev, "test"):
        dev.set_power_limit_w(300)
        dev.lock_sm_clocks(1200)
        1 / 0  # noqa: B018
    assert settings_of(dev) == (None, None, 700_000)
    assert not journal_file_for(dev).path.exists()


def test_observe_only_device_refuses_setters_and_writes_no_journal():
    dev = open_device("sim:h100-sxm", observe_only=True)
    with pytest.raises(ActuationForbiddenError, match="observe-only"):
        dev.lock_sm_clocks(1500)
    assert not journal_file_for(dev).path.exists()
    assert dev.simulated.state.setter_calls == {}


def test_second_session_in_one_process_is_refused(dev):
    with ActuationGuard(dev, "a"), pytest.raises(GpuBusyError, match="already has an open"):
        ActuationGuard(dev, "b").open()


def test_sessions_restore_to_an_applied_target(dev):
    with ActuationGuard(dev, "apply") as g:
        dev.set_power_limit_w(450)
        g.commit(GpuSettings(power_limit_w=450), {"power"})
    j = JournalFile(journal_file_for(dev).directory, dev.identity.uuid).read()
    assert j is not None and j.target_knobs == {"power"} and j.session is None
    with ActuationGuard(dev, "sweep"):
        dev.set_power_limit_w(250)
        dev.lock_sm_clocks(1200)
    # the applied limit comes back; the clock goes back to the original (unlocked)
    assert settings_of(dev) == (None, None, 450_000)
    assert journal_file_for(dev).path.exists()  # the apply is still journaled for reset


def test_signal_handlers_are_installed_only_during_a_session(dev):
    default = signal.getsignal(signal.SIGTERM)
    with ActuationGuard(dev, "test"):
        assert signal.getsignal(signal.SIGTERM) is not default
    assert signal.getsignal(signal.SIGTERM) is default


def test_journal_round_trip_and_corruption(tmp_path):
    f = JournalFile(tmp_path, "GPU-x")
    j = Journal("GPU-x", "GPU", "sim:x", GpuSettings(power_limit_w=300.0))
    j.target, j.target_knobs = GpuSettings(sm_mhz=1500), frozenset({"sm"})
    f.write(j)
    back = f.read()
    assert back is not None
    assert back.original == GpuSettings(power_limit_w=300.0)
    assert back.restore_to == GpuSettings(sm_mhz=1500, power_limit_w=300.0)
    doc = json.loads(f.path.read_text())
    assert doc["target"] == {"sm_mhz": 1500}  # only the knobs the apply set
    f.path.write_text(json.dumps({**doc, "schema": "wattbench.journal/9"}))
    with pytest.raises(JournalError, match=r"unreadable.*journal/9.*--ignore-journal"):
        f.read()
    f.path.write_text(json.dumps({**doc, "original": {"sm_mhz": -5}}))
    with pytest.raises(JournalError, match="sm_mhz"):
        f.read()


def test_journal_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    f = JournalFile(blocker / "journal", "GPU-x")
    with pytest.raises(JournalError, match="WATTBENCH_JOURNAL_DIR"):
        f.write(Journal("GPU-x", "GPU", "sim:x", GpuSettings()))
