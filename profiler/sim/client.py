"""Talking to the shared simulator service (:mod:`wattbench.profiler.sim.service`).

:func:`connect` finds the node's service through its socket and starts it when none answers (one
starter at a time, under a lock). :class:`RemoteGpu` stands for one unit with the interface the
simulated NVML library uses, so :func:`shared_library` is the same library over the shared node.
:func:`load` and :func:`run` put work on a unit, from Python; each uses a connection of its own,
so a process that waits for its work still answers NVML calls from its other threads.

A connection belongs to one process: after a fork the child opens its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattbench.profiler.errors import SimServiceError
from wattbench.profiler.sim import env as sim_env
from wattbench.profiler.sim.env import NVML_ENV
from wattbench.profiler.sim.node import NodeName, from_env, shared_folder, socket_path
from wattbench.profiler.sim.spec import GpuSpec

#: seconds to wait for a service that was just started to answer
START_TIMEOUT_S = 20.0


class Connection:
    """One socket to the service; requests are answered in order. Thread-safe."""

    def __init__(self, name: NodeName, sock: socket.socket) -> None:
        self.name = name
        self._sock = sock
        self._file = sock.makefile("rwb")
        self._lock = threading.Lock()
        self.pid = os.getpid()

    def request(self, op: str, **args: Any) -> Any:
        line = (json.dumps({"op": op, **args}) + "\n").encode()
        with self._lock:
            try:
                self._file.write(line)
                self._file.flush()
                answer = self._file.readline()
            except OSError as exc:
                raise _gone(self.name, exc) from None
        if not answer:
            raise _gone(self.name, None)
        reply = json.loads(answer)
        if "error" in reply:
            raise SimServiceError(reply["error"], reply.get("remedy", ""))
        return reply["ok"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()


class ServiceGone(SimServiceError):
    """The connection to the service broke (it stopped, or was killed)."""


def _gone(name: NodeName, exc: OSError | None) -> ServiceGone:
    why = f" ({exc.strerror or exc})" if exc else ""
    return ServiceGone(
        f"the simulator service of {name.text} went away{why}",
        f"run the command again (it starts a new one); its log: {log_path(name)}",
    )


def log_path(name: NodeName) -> Path:
    return shared_folder() / f"{name.text}.log"


def _try_connect(path: Path) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        return None
    return s


def running(name: NodeName) -> Connection | None:
    """A connection to the service of ``name`` if one runs; None otherwise (none is started)."""
    sock = _try_connect(socket_path(name))
    return Connection(name, sock) if sock is not None else None


def connect(name: NodeName | None = None) -> Connection:
    """A connection to the service of ``name`` (default: the node ``WATTBENCH_SIM_NVML``
    names), started on demand."""
    name = name or _env_node()
    conn = running(name)
    return conn if conn is not None else Connection(name, _start(name, socket_path(name)))


def _env_node() -> NodeName:
    name = from_env()
    if name is None:
        raise SimServiceError(
            f"{NVML_ENV} is not set: no shared simulated node is selected",
            f"set {NVML_ENV}=h100-sxm (or 8xh100-sxm, or a spec path), or pass the node",
        )
    return name


def _start(name: NodeName, path: Path) -> socket.socket:
    folder = shared_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = open(folder / f"{name.text}.start.lock", "a")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SimServiceError(
            f"cannot use {folder} for the simulator service ({exc.strerror or exc})",
            "make it writable, or set WATTBENCH_SIM_STATE_DIR to a folder that is",
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _try_connect(path)  # another process may have started it meanwhile
        if sock is not None:
            return sock
        env = dict(os.environ)
        env.pop(NVML_ENV, None)  # the service itself never goes through the NVML hook
        cmd = [sys.executable, "-m", "wattbench.profiler.sim.service", _node_arg(name)]
        cmd += ["--socket", str(path), "--idle-stop-s", str(sim_env.service_idle_stop_s())]
        with open(log_path(name), "ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            sock = _try_connect(path)
            if sock is not None:
                return sock
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        tail = _log_tail(name)
        with contextlib.suppress(OSError):
            proc.kill()
        raise SimServiceError(
            f"the simulator service of {name.text} did not start" + (f": {tail}" if tail else ""),
            f"see {log_path(name)}",
        )


def _node_arg(name: NodeName) -> str:
    source = name.spec.source
    key = source[len("builtin:") :] if source.startswith("builtin:") else source
    return f"{name.units}x{key}"


def _log_tail(name: NodeName) -> str:
    try:
        lines = log_path(name).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


# --- the GPUs, as the simulated NVML library sees them -------------------------------------------


class RemoteGpu:
    """One unit of the shared node: what :class:`SimulatedNvmlLibrary` asks of a GPU, answered
    by the service. Identity is fixed at connection; the caller's privilege is this process's
    (``WATTBENCH_SIM_PRIVILEGE``), as a driver judges the caller."""

    def __init__(self, client: SharedNode, info: dict[str, Any]) -> None:
        self._client = client
        self.spec: GpuSpec = client.name.spec
        self.index: int = info["index"]
        self.uuid: str = info["uuid"]
        self.serial: str = info["serial"]
        self.pci_bus_id: str = info["pci_bus_id"]
        self.privilege = sim_env.privilege()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._client.request("gpu", gpu=self.index, method=method, args=args, kwargs=kwargs)

    @property
    def now_s(self) -> float:
        return self._call("now")

    def power_limit_mw(self) -> int:
        return self._call("power_limit_mw")

    def sm_locked_mhz(self) -> tuple[int, int] | None:
        v = self._call("sm_locked_mhz")
        return tuple(v) if v else None

    def mem_locked_mhz(self) -> tuple[int, int] | None:
        v = self._call("mem_locked_mhz")
        return tuple(v) if v else None

    def persistence_enabled(self) -> bool:
        return self._call("persistence_enabled")

    def processes(self) -> list[dict[str, int]]:
        return self._call("processes")

    def power_usage_mw(self) -> int:
        return self._call("power_usage_mw")

    def energy_counter_mj(self) -> int:
        return self._call("energy_counter_mj")

    def sm_clock_mhz(self) -> int:
        return self._call("sm_clock_mhz")

    def mem_clock_mhz(self) -> int:
        return self._call("mem_clock_mhz")

    def temperature_c(self) -> int:
        return self._call("temperature_c")

    def clock_event_reasons(self) -> int:
        return self._call("clock_event_reasons")

    def utilization_pct(self) -> tuple[int, int]:
        return tuple(self._call("utilization_pct"))

    def performance_state(self) -> int:
        return self._call("performance_state")

    def instant_power_w(self, noisy: bool = True) -> float:
        return self._call("instant_power_w", noisy)

    def average_power_w(self, noisy: bool = True) -> float:
        return self._call("average_power_w", noisy)

    def save(self) -> None:
        self._call("save")

    def update_settings(self, **changes: Any) -> None:
        self._call("update_settings", **changes)

    def count_setter_call(self, setter: str) -> None:
        self._call("count_setter_call", setter)


class SharedNode:
    """The shared node as one process sees it: its units, through a connection that is reopened
    after a fork (a child must not share its parent's socket)."""

    def __init__(self, name: NodeName | None = None) -> None:
        self.name = name or _env_node()
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        hello = self.request("hello")
        self.service_pid: int = hello["pid"]
        self.gpus = [RemoteGpu(self, info) for info in hello["gpus"]]

    def request(self, op: str, **args: Any) -> Any:
        """Ask the service; when it went away (stopped, killed), start it again once and ask
        again: its state was saved, so the node goes on where it was."""
        for attempt in (0, 1):
            with self._lock:
                conn = self._conn
                if conn is None or conn.pid != os.getpid() or attempt:
                    conn = self._conn = connect(self.name)
            try:
                return conn.request(op, **args)
            except ServiceGone:
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def truth(self, gpu: int = 0) -> Truth:
        return Truth(**self.request("truth", gpu=gpu))


def shared_library(name: NodeName | None = None):
    """The simulated NVML library over the shared node (what the NVML hook installs)."""
    from wattbench.profiler.sim.nvml_lib import SimulatedNvmlLibrary

    node = SharedNode(name)
    return SimulatedNvmlLibrary(node.gpus)  # type: ignore[arg-type]


# --- work on the shared node, from Python --------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """The model's exact figures for one unit at one instant (no sensor in the way)."""

    time_s: float
    energy_j: float
    temp_c: float
    power_limit_w: float


@dataclass(frozen=True)
class LoadResult:
    id: int
    iterations: float
    busy_s: float
    energy_j: float
    cancelled: bool


def workload_json(family: str, shape: str, dtype: str, impl: str, inputs: str) -> dict:
    """What the service needs to run a problem (usage errors name the valid choices)."""
    from wattbench.kernels.costs import make_problem, work_of
    from wattbench.profiler.sim.physics import input_activity

    work = work_of(make_problem(family, shape, dtype, impl))
    return {
        "flops": work.flops,
        "bytes": work.bytes,
        "dtype": work.dtype,
        "data_activity": input_activity(inputs),
    }


def run(
    kernel: str,
    shape: str,
    dtype: str,
    iterations: float,
    *,
    gpu: int = 0,
    impl: str = "vendor",
    inputs: str = "random",
    node: NodeName | None = None,
) -> LoadResult:
    """Run ``iterations`` of a problem on unit ``gpu`` and return when they are done, in wall
    time as long as the simulated GPU takes (a training step, as Zeus's optimiser sees it)."""
    work = workload_json(kernel, shape, dtype, impl, inputs)
    return run_load(work, gpu=gpu, iterations=iterations, node=node)


def run_load(
    work: dict[str, Any], *, gpu: int = 0, node: NodeName | None = None, **load: Any
) -> LoadResult:
    """Put ``work`` (:func:`workload_json`) on unit ``gpu`` and wait until the load is done:
    ``iterations``, or ``seconds`` of wall time at ``duty`` over ``period_s`` (see
    :class:`~wattbench.profiler.sim.realtime.Load`). On its own connection: the load ends if
    this process does."""
    conn = connect(node)
    try:
        return LoadResult(**conn.request("submit", gpu=gpu, work=work, wait=True, **load))
    finally:
        conn.close()


@contextlib.contextmanager
def load(
    kernel: str,
    shape: str,
    dtype: str,
    *,
    gpu: int = 0,
    duty: float = 1.0,
    period_s: float = 0.1,
    impl: str = "vendor",
    inputs: str = "random",
    node: NodeName | None = None,
) -> Iterator[int]:
    """Keep unit ``gpu`` busy with a problem (at ``duty`` of every ``period_s``) for as long as
    the block runs; yields the load's id. The load ends with the block, or with this process."""
    work = workload_json(kernel, shape, dtype, impl, inputs)
    conn = connect(node)
    try:
        r = conn.request("submit", gpu=gpu, work=work, duty=duty, period_s=period_s)
        yield r["id"]
        conn.request("cancel", id=r["id"])
    finally:
        conn.close()
