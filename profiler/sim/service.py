"""The simulator service: one simulated node, on the wall clock, shared by every process.

A process that runs work and another that polls power must see the same GPU at the same time, so
one process owns the node (the single writer of its state) and every other process talks to it
through a Unix socket: :mod:`wattbench.profiler.sim.client` starts it on demand, and it stops by
itself when no client has been connected and no load has run for ``idle_stop_s``.

Protocol: one JSON object per line each way. A request has ``op`` (``hello``, ``gpu``,
``submit``, ``cancel``, ``truth``, ``status``, ``stop``) and its arguments; the answer is
``{"ok": value}`` or ``{"error": message, "remedy": what to do}``. Every request first brings the
node to the wall clock's present (:class:`~wattbench.profiler.sim.realtime.PacedNode`).

Files, in ``<state folder>/shared/``: ``<node>-<i>.json`` the units' state (settings, counter,
temperature; saved every 0.5 s of wall time and at exit, so a crashed service loses at most
that), ``<node>.sock`` the socket, ``<node>.log`` the service's own output, ``<node>.pid``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any

from wattbench.profiler.errors import SimServiceError as ServiceError
from wattbench.profiler.errors import WattbenchError
from wattbench.profiler.sim import physics
from wattbench.profiler.sim.env import IDLE_STOP_S
from wattbench.profiler.sim.gpu import SimulatedGpu
from wattbench.profiler.sim.node import NodeName, node_name, shared_folder
from wattbench.profiler.sim.realtime import Load, PacedNode

PROTOCOL = 1

#: SimulatedGpu methods a client may call: (name, whether the call changes the GPU)
GPU_METHODS = {
    "power_limit_mw": False,
    "sm_locked_mhz": False,
    "mem_locked_mhz": False,
    "persistence_enabled": False,
    "processes": False,
    "power_usage_mw": False,
    "energy_counter_mj": False,
    "sm_clock_mhz": False,
    "mem_clock_mhz": False,
    "temperature_c": False,
    "clock_event_reasons": False,
    "utilization_pct": False,
    "performance_state": False,
    "instant_power_w": False,
    "average_power_w": False,
    "now": False,
    "save": True,
    "update_settings": True,
    "count_setter_call": True,
}
_TUPLE_SETTINGS = ("sm_locked_mhz", "mem_locked_mhz")


def workload_from_json(d: dict[str, Any]) -> physics.Workload:
    try:
        w = physics.Workload(
            flops=float(d["flops"]),
            bytes=float(d["bytes"]),
            dtype=str(d["dtype"]),
            data_activity=float(d.get("data_activity", 1.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceError(f"bad workload {d!r} ({exc})", "send flops, bytes and dtype") from None
    if not (w.flops >= 0 and w.bytes >= 0 and w.flops + w.bytes > 0):
        raise ServiceError(f"bad workload {d!r}", "flops and bytes must be >= 0, not both 0")
    return w


class Service:
    """The node, its pacer thread, and what the request handlers call."""

    def __init__(self, name: NodeName, *, idle_stop_s: float = IDLE_STOP_S) -> None:
        self.name = name
        folder = shared_folder()
        self.gpus = [
            SimulatedGpu(name.spec, i, state_folder=folder, privilege="root")
            for i in range(name.units)
        ]
        self._catch_up_downtime(folder)
        self.node = PacedNode(self.gpus)
        #: the energy counter as last saved, per unit: a value a client has seen is saved
        #: before it is answered, so a killed service never makes the counter go back
        self._saved_mj = [g.energy_counter_mj() for g in self.gpus]
        self.idle_stop_s = idle_stop_s
        self.clients = 0
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self.started_wall_s = time.time()
        self._loads: dict[int, Load] = {}

    # --- lifetime ------------------------------------------------------------------------------

    def _catch_up_downtime(self, folder: Path) -> None:
        """While no service ran, the cards sat idle: let them cool for that long (from each state
        file's last write; at most twenty times the slowest thermal time constant, after which
        nothing changes)."""
        slowest = max(p.time_constant_s for p in self.name.spec.thermal.poles)
        for g in self.gpus:
            try:
                saved = g.state_path.stat().st_mtime
            except OSError:
                continue
            gap = min(max(0.0, time.time() - saved), 20 * slowest)
            if gap > 0:
                g.idle(gap)

    def save(self) -> None:
        with self.node.lock:
            self.node.catch_up()
            for i, g in enumerate(self.gpus):
                g.save()
                self._saved_mj[i] = g.energy_counter_mj()

    def pace(self) -> None:
        """The pacer: keep the node on the wall clock; stop when idle for ``idle_stop_s``."""
        while not self._stop.is_set():
            with self.node.lock:
                self.node.catch_up()
                busy = self.clients > 0 or self.node.active_loads() > 0
                if busy:
                    self._last_activity = time.monotonic()
                elif time.monotonic() - self._last_activity > self.idle_stop_s:
                    self._stop.set()
                    break
                wake = self.node.next_wake_s()
            self._stop.wait(wake)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- requests ------------------------------------------------------------------------------

    def handle(self, req: dict[str, Any], owner: object) -> Any:
        op = req.get("op")
        with self.node.lock:
            self.node.catch_up()
            self._last_activity = time.monotonic()
            if op == "hello":
                return self.hello()
            if op == "gpu":
                return self._gpu_call(req)
            if op == "truth":
                return self.truth(self._index(req))
            if op == "status":
                return self.status()
            if op == "cancel":
                load = self._loads.get(int(req.get("id", -1)))
                if load is not None:
                    self.node.cancel(load)
                return load.summary() if load else None
            if op == "stop":
                self.stop()
                return True
        if op == "submit":
            return self._submit(req, owner)
        raise ServiceError(f"unknown request {op!r}", "update the client and the service together")

    def hello(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "node": self.name.text,
            "spec_source": self.name.spec.source,
            "pid": os.getpid(),
            "gpus": [
                {"index": g.index, "uuid": g.uuid, "serial": g.serial, "pci_bus_id": g.pci_bus_id}
                for g in self.gpus
            ],
        }

    def status(self) -> dict[str, Any]:
        return {
            "node": self.name.text,
            "pid": os.getpid(),
            "clients": self.clients,
            "loads": self.node.active_loads(),
            "uptime_s": time.time() - self.started_wall_s,
            "idle_stop_s": self.idle_stop_s,
        }

    def truth(self, i: int) -> dict[str, float]:
        """The model's exact figures for unit ``i`` now (no sensor in the way)."""
        g = self.gpus[i]
        return {
            "time_s": g.now_s,
            "energy_j": g.energy_j,
            "temp_c": g.temp_c,
            "power_limit_w": g.power_limit_mw() / 1000.0,
        }

    def _index(self, req: dict[str, Any]) -> int:
        i = req.get("gpu")
        if not isinstance(i, int) or not 0 <= i < len(self.gpus):
            raise ServiceError(
                f"no unit {i!r} in node {self.name.text}", f"units are 0 to {len(self.gpus) - 1}"
            )
        return i

    def _gpu_call(self, req: dict[str, Any]) -> Any:
        g = self.gpus[self._index(req)]
        method = req.get("method")
        if method not in GPU_METHODS:
            raise ServiceError(f"unknown GPU method {method!r}", "see service.GPU_METHODS")
        if method == "now":
            return g.now_s
        kwargs = dict(req.get("kwargs") or {})
        for k in _TUPLE_SETTINGS:
            if kwargs.get(k) is not None:
                kwargs[k] = tuple(kwargs[k])
        value = getattr(g, method)(*(req.get("args") or ()), **kwargs)
        if method == "energy_counter_mj" and value > self._saved_mj[g.index]:
            g.save()
            self._saved_mj[g.index] = value
        return value

    def _submit(self, req: dict[str, Any], owner: object) -> Any:
        i = self._index(req)
        try:
            iterations = req.get("iterations")
            load = Load(
                workload_from_json(req.get("work") or {}),
                iterations=None if iterations is None else float(iterations),
                seconds=float(req.get("seconds") or math.inf),
                duty=float(req.get("duty", 1.0)),
                period_s=float(req.get("period_s", 0.1)),
                owner=owner,
            )
        except ValueError as exc:
            raise ServiceError(f"bad load: {exc}", "check the load's arguments") from None
        with self.node.lock:
            self.node.submit(i, load)
            self._loads[load.id] = load
        if not req.get("wait"):
            return {"id": load.id}
        while not load.finished.wait(0.5):
            if self.stopping:
                raise ServiceError("the simulator service stopped", "run the command again")
        with self.node.lock:
            self._loads.pop(load.id, None)
            return load.summary()


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        service = self.server.service
        with service.node.lock:
            service.clients += 1
        try:
            for line in self.rfile:
                try:
                    reply = {"ok": service.handle(json.loads(line), owner=self)}
                except WattbenchError as exc:
                    reply = {"error": exc.message, "remedy": exc.remedy}
                except (ValueError, TypeError, KeyError) as exc:
                    reply = {"error": f"bad request ({exc})", "remedy": "send one JSON object"}
                self.wfile.write((json.dumps(reply) + "\n").encode())
                self.wfile.flush()
        except (ConnectionError, OSError):
            pass  # a client that went away mid-answer
        finally:
            with service.node.lock:
                service.clients -= 1
                service.node.cancel_owned_by(self)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, service: Service) -> None:
        self.service = service
        super().__init__(path, _Handler)


def serve(name: NodeName, socket_path: Path, *, idle_stop_s: float = IDLE_STOP_S) -> int:
    """Run the service in this process until idle for ``idle_stop_s``, ``stop`` or a signal."""
    service = Service(name, idle_stop_s=idle_stop_s)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()  # the caller holds the start lock: an old socket is stale
    old_umask = os.umask(0o077)  # only this user may connect
    try:
        server = _Server(str(socket_path), service)
    finally:
        os.umask(old_umask)
    pid_path = shared_folder() / f"{name.text}.pid"  # beside the state, wherever the socket is
    pid_path.write_text(f"{os.getpid()}\n")

    def on_signal(signum, frame) -> None:
        service.stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    try:
        service.pace()
    finally:
        server.shutdown()
        server.server_close()
        service.save()
        for p in (socket_path, pid_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wattbench.profiler.sim.service")
    p.add_argument("node", help="a simulated node: h100-sxm, 8xh100-sxm or path/to/spec.toml")
    p.add_argument("--socket", required=True, help="the Unix socket to listen on")
    p.add_argument("--idle-stop-s", type=float, default=IDLE_STOP_S)
    args = p.parse_args(argv)
    try:
        return serve(node_name(args.node), Path(args.socket), idle_stop_s=args.idle_stop_s)
    except WattbenchError as exc:
        print(f"wattbench sim service: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
