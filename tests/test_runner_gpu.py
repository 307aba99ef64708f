"""The real-GPU runner's asynchronous window, over a stand-in for ``torch.cuda``.

MOCK: CUDA cannot exist on this machine, so ``torch.cuda``'s events and synchronisation are
replaced by a small model of a GPU stream (``FakeStream``): launches queue behind each other,
each taking ``t_iter_s`` of real time, and an event completes when the work queued before it
has. The runner's own logic -- queueing ahead, polling only while the GPU is busy, one
synchronisation at the end, CUDA-graph capture and its fallback -- runs unchanged.
"""

from __future__ import annotations

import sys
import time
import types

import pytest

from wattbench.kernels.work import Work
from wattbench.profiler.errors import LaunchError
from wattbench.profiler.runners.gpu import GpuRunner


class FakeStream:
    def __init__(self, t_iter_s: float) -> None:
        self.t_iter_s = t_iter_s
        self.busy_until = 0.0
        self.launches = 0
        self.syncs = 0

    def launch(self) -> None:
        now = time.perf_counter()
        self.busy_until = max(now, self.busy_until) + self.t_iter_s
        self.launches += 1

    def synchronize(self) -> None:
        self.syncs += 1
        while time.perf_counter() < self.busy_until:
            time.sleep(1e-4)


def fake_torch(stream: FakeStream, *, capture_fails: bool = False) -> types.ModuleType:
    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            self.at: float | None = None

        def record(self) -> None:
            self.at = max(time.perf_counter(), stream.busy_until)

        def query(self) -> bool:
            return self.at is not None and time.perf_counter() >= self.at

        def synchronize(self) -> None:
            while not self.query():
                time.sleep(1e-4)

        def elapsed_time(self, end: Event) -> float:
            return (end.at - self.at) * 1e3

    class Graph:
        def __init__(self) -> None:
            self.n = 0

        def replay(self) -> None:
            for _ in range(self.n):
                stream.launch()

    captured: list[Graph] = []

    class GraphContext:
        def __init__(self, g: Graph) -> None:
            self.g = g

        def __enter__(self) -> Graph:
            if capture_fails:
                raise RuntimeError("operation not permitted when stream is capturing")
            self.before = stream.launches
            return self.g

        def __exit__(self, *exc: object) -> None:
            # launches made while capturing were recorded, not run: take them off the stream
            self.g.n = stream.launches - self.before
            stream.launches = self.before
            stream.busy_until = time.perf_counter()
            captured.append(self.g)

    class StreamCtx:
        def __init__(self, s: object) -> None:
            pass

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            return None

    class CudaStream:
        def wait_stream(self, other: object) -> None:
            pass

    cuda = types.SimpleNamespace(
        Event=Event,
        CUDAGraph=Graph,
        graph=GraphContext,
        stream=StreamCtx,
        Stream=CudaStream,
        current_stream=CudaStream,
        synchronize=stream.synchronize,
    )
    mod = types.ModuleType("torch")
    mod.cuda = cuda  # type: ignore[attr-defined]
    mod.captured = captured  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def gpu(monkeypatch):
    def make(t_iter_s: float = 1e-3, **kw):
        stream = FakeStream(t_iter_s)
        torch = fake_torch(stream, **kw)
        monkeypatch.setitem(sys.modules, "torch", torch)
        return stream, torch

    return make


WORK = Work(1e12, 1e9, "bf16")


def test_a_window_queues_ahead_polls_only_while_busy_and_syncs_once(gpu):
    stream, _ = gpu(t_iter_s=1e-3)
    runner = GpuRunner(stream.launch, WORK, synchronize=stream.synchronize)
    runner.run(5)  # calibration: synchronised
    syncs = stream.syncs
    polls: list[tuple[float, float]] = []
    start = time.perf_counter()
    gpu_s = runner.run_window(
        60, lambda: polls.append((time.perf_counter(), stream.busy_until)), 2e-3
    )
    assert stream.launches == 65 and stream.syncs == syncs  # no host synchronisation inside
    assert gpu_s == pytest.approx(0.060, rel=0.1)  # the GPU's own time, from the events
    assert 10 <= len(polls) <= 40  # about every 2 ms over ~60 ms
    assert all(t < busy for t, busy in polls)  # every poll while work was still queued
    assert time.perf_counter() - start < 0.5


def test_a_graph_of_at_least_a_millisecond_is_captured_after_the_first_runs(gpu):
    """The first run compiles and autotunes (here: 50 ms for one launch); the graph is sized
    from a later synchronised run of at least 2 ms, so it holds >= 1 ms of kernel time."""
    stream, _ = gpu(t_iter_s=1e-4)
    compiled = []

    def launch() -> None:
        if not compiled:
            compiled.append(True)
            time.sleep(0.05)
        stream.launch()

    runner = GpuRunner(launch, WORK, synchronize=stream.synchronize)
    runner.run(1)
    runner.run(4)  # too short to size a graph from
    assert runner.describe()["cuda_graph_state"] == "not tried yet"
    runner.run(30)
    assert runner.describe()["cuda_graph_state"].startswith("captured")
    # sized from the measured launch time: 10 x 0.1 ms on an idle machine; a loaded machine
    # stretches the stand-in stream's launches, so the graph may hold fewer (never more), but
    # it always spans >= 1 ms of the time that was measured
    n = runner.describe()["graph_launches"]
    assert 5 <= n <= 10
    before = stream.launches
    gpu_s = runner.run_window(95, lambda: None, 1e-3)
    assert stream.launches - before == 95  # whole replays of n, then the rest one by one
    assert gpu_s == pytest.approx(95e-4, rel=0.2)


def test_capture_failure_falls_back_to_launching_one_by_one_and_says_why(gpu):
    stream, _ = gpu(t_iter_s=1e-4, capture_fails=True)
    runner = GpuRunner(stream.launch, WORK, synchronize=stream.synchronize)
    runner.run(1)
    runner.run(30)
    described = runner.describe()
    assert described["cuda_graph_state"].startswith(
        "capture failed, launching one by one: RuntimeError"
    )
    assert described["graph_launches"] is None
    before = stream.launches
    runner.run(7)  # no second attempt: every launch one by one
    assert stream.launches - before == 7 and runner.describe() == described


def test_the_description_names_the_kernel_variant_the_launch_chose(gpu):
    stream, _ = gpu(t_iter_s=1e-4)

    def launch() -> None:
        stream.launch()

    launch.choice = {"variant": "split-k", "splits": 4}  # as kernels' launches carry it
    runner = GpuRunner(launch, WORK, synchronize=stream.synchronize)
    assert runner.describe()["kernel"] == {"variant": "split-k", "splits": 4}
    plain = GpuRunner(stream.launch, WORK, synchronize=stream.synchronize)
    assert plain.describe()["kernel"] is None


def test_long_launches_keep_the_gpu_busy_through_a_window(gpu):
    """8 ms launches: at least two are always queued, so the GPU never waits for the host
    and the window's GPU time is the launches' own (an idle gap would inflate time and
    energy)."""
    stream, _ = gpu(t_iter_s=8e-3)
    runner = GpuRunner(stream.launch, WORK, synchronize=stream.synchronize)
    runner.run(1)
    gpu_s = runner.run_window(12, lambda: time.sleep(4e-4), 1e-3)
    assert gpu_s == pytest.approx(12 * 8e-3, rel=0.01)


def test_a_launch_failure_inside_a_window_is_one_launch_error(gpu):
    stream, _ = gpu()

    def broken() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")

    runner = GpuRunner(broken, WORK, synchronize=stream.synchronize)
    runner._iter_s = 1e-3
    with pytest.raises(LaunchError, match="illegal memory access"):
        runner.run_window(10, lambda: None, 1e-3)
