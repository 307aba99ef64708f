"""Signals that land while the simulated NVML library is inside a call are never swallowed.

A child process holds an actuation session (so SIGTERM raises ``Terminated``) and polls the
simulated GPU through the device layer in a tight loop; the parent sends SIGTERM many times. Each
signal must come back as ``Terminated`` -- not be lost at the ctypes boundary, not turn into an
NVML error. Real processes, real signals, the real pynvml over the simulated library.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    signal.alarm(300)  # never outlive a test run that was killed (SIGALRM ends the process)
    from wattbench.profiler.device import open_device
    from wattbench.profiler.errors import DeviceError
    from wattbench.profiler.safety import ActuationGuard, Terminated

    device = open_device("sim:h100-sxm")
    with ActuationGuard(device, "signal-test", notify=lambda m: None):
        for _ in range(int(sys.argv[1])):
            try:
                os.write(1, b"polling\\n")  # the parent signals only after this
                while True:
                    device.read()
                    device.power_limit_w()
            except Terminated:
                os.write(1, b"terminated\\n")
            except DeviceError as exc:
                os.write(1, f"nvml-error {exc}\\n".encode())
                sys.exit(3)
    """
)


def _line(child: subprocess.Popen, timeout_s: float = 10.0) -> str:
    """The child's next output line, or "(no answer)" after ``timeout_s``: a lost signal must
    fail the test, not hang it. Read byte by byte from the pipe (no buffer that ``select``
    cannot see)."""
    assert child.stdout is not None
    fd, out = child.stdout.fileno(), b""
    deadline = time.monotonic() + timeout_s
    while not out.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        byte = os.read(fd, 1) if ready else b""
        if not byte:
            return "(no answer)" if not out else out.decode()
        out += byte
    return out.decode().strip()


@pytest.mark.parametrize("signals", [60])
def test_sigterm_inside_simulated_nvml_calls_is_never_swallowed(tmp_path, signals):
    env = {**os.environ, "WATTBENCH_SIM_STATE_DIR": str(tmp_path / "sim")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(signals)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        rng = random.Random(0)
        for i in range(signals):
            line = _line(child, 60 if i == 0 else 10)
            if line == "polling":
                time.sleep(rng.uniform(0.0, 0.02))
                child.send_signal(signal.SIGTERM)
                line = _line(child)
            if line != "terminated":
                child.kill()
                _, err = child.communicate()
                pytest.fail(f"signal {i}: {line!r}; stderr: {err.decode()}")
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
