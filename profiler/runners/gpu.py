"""Runs a real launch callable on a real GPU.

``run(n)``: ``n`` launches, then a device synchronisation (calibration, the "steady" method).

``run_window(n, poll, poll_s)``: ``n`` launches queued ahead of the GPU by a few polling periods,
with no host synchronisation among them; the host polls (NVML, through ``poll``) while the GPU
works, and the GPU's own time comes from two CUDA events, synchronised once at the end.

CUDA graphs, the one path: after the first launches (which compile and autotune), a batch of
launches lasting at least ``GRAPH_MIN_S`` of GPU time is captured once
(``kernels/timing.capture_graph``) and replayed, which removes the CPU launch gaps between
iterations. Where capture fails (CuPy's legacy-stream launches, a kernel that synchronises) the
runner launches one by one and says so in :meth:`describe` (``cuda_graph_state``), which a
sweep writes into its run record when it ends. Needs torch; nothing here runs without a CUDA
device.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from wattbench.kernels.family import launch_choice
from wattbench.kernels.timing import GRAPH_MIN_S, capture_graph, graph_size
from wattbench.kernels.work import Work
from wattbench.profiler.errors import LaunchError, UsageError, WattbenchError

#: work queued ahead of the GPU in a window: this many polling periods, and at least 5 ms;
#: never fewer than two chunks in flight (a long launch must not leave the GPU waiting)
AHEAD_POLLS = 4
AHEAD_MIN_S = 5e-3
#: a graph is captured on a synchronised run at least this long (s): the first launches'
#: compilation and autotuning are over, and the time per launch it gives is the kernel's
CAPTURE_AFTER_RUN_S = 2e-3


class GpuRunner:
    simulated = False

    def __init__(
        self,
        launch: Callable[[], Any],
        work: Work,
        *,
        synchronize: Callable[[], None] | None = None,
    ) -> None:
        self.launch = launch
        self.work = work
        self._graph: Any = None
        self._graph_launches = 0
        self._graph_note = "not tried yet"
        self._iter_s: float | None = None  # seconds per launch, from synchronised runs
        if synchronize is None:
            synchronize = _torch_synchronize()
        self.synchronize = synchronize

    # --- launching ------------------------------------------------------------------------------

    def _guarded(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; a failure (a CUDA fault, out of memory) is a :class:`LaunchError` saying
        what to do, not a framework traceback."""
        try:
            return fn()
        except WattbenchError:
            raise
        except Exception as exc:  # torch / CuPy / Triton raise their own RuntimeErrors
            first = (str(exc).splitlines() or [""])[0]
            raise LaunchError(
                f"kernel launch failed: {type(exc).__name__}: {first}",
                "a CUDA fault can leave the GPU unusable for this process; check `nvidia-smi`, "
                "then resume the run",
            ) from exc

    def _enqueue(self, iterations: int) -> None:
        """Queue ``iterations`` launches (graph replays where there is a graph); no sync."""
        if self._graph is not None:
            full, rest = divmod(iterations, self._graph_launches)
            for _ in range(full):
                self._graph.replay()
        else:
            rest = iterations
        for _ in range(rest):
            self.launch()

    def run(self, iterations: int) -> None:
        """Launch ``iterations`` times and wait for them."""

        def go() -> None:
            t0 = time.perf_counter()
            self._enqueue(iterations)
            self.synchronize()
            elapsed = time.perf_counter() - t0
            first = self._iter_s is None
            self._iter_s = elapsed / iterations
            if (
                self._graph is None
                and self._graph_note == "not tried yet"
                and not first
                and elapsed >= CAPTURE_AFTER_RUN_S
            ):
                self._try_capture()

        self._guarded(go)

    def _try_capture(self) -> None:
        """Capture a graph of at least ``GRAPH_MIN_S`` of GPU time, once (after the first
        synchronised run: compilation and autotuning are over)."""
        # a launch rotating through input sets (kernels/l2.py) is captured in whole rounds, so
        # every replay walks the same sets in the same order
        sets = int(getattr(self.launch, "sets", 1) or 1)
        n = graph_size(self._iter_s or GRAPH_MIN_S, sets)
        try:
            self._graph = capture_graph(self.launch, n)
            self._graph_launches = n
            self._graph_note = f"captured ({n} launches per replay)"
        except Exception as exc:  # capture is an optimisation: fall back, and say why
            self._graph = None
            first = (str(exc).splitlines() or [""])[0]
            self._graph_note = f"capture failed, launching one by one: {type(exc).__name__}: "
            self._graph_note += first[:200]

    def run_window(self, iterations: int, poll: Callable[[], None], poll_s: float) -> float:
        """``iterations`` launches queued ahead; ``poll()`` every ``poll_s`` while the GPU is
        busy with them; the GPU time (s) between CUDA events before the first and after the
        last. The host synchronises once, at the end."""
        import torch

        if iterations < 1:
            raise ValueError("iterations must be >= 1")
        if self._iter_s is None:
            self.run(1)
        per = max(self._iter_s or 1e-6, 1e-7)
        chunk = self._graph_launches if self._graph is not None else 1
        ahead_s = max(AHEAD_POLLS * poll_s, AHEAD_MIN_S)
        # a completion mark per chunk, but not more often than once per polling period
        mark_every = max(chunk, math.ceil(poll_s / per))

        def go() -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            marks: deque[tuple[Any, int]] = deque()  # (event after a chunk, launches so far)
            start.record()
            launched = completed = 0
            end_recorded = False
            next_poll = time.perf_counter()
            while True:
                while marks and marks[0][0].query():
                    completed = marks.popleft()[1]
                while launched < iterations and (
                    launched - completed < 2 * mark_every or (launched - completed) * per < ahead_s
                ):
                    k = min(mark_every, iterations - launched)
                    self._enqueue(k)
                    launched += k
                    mark = torch.cuda.Event()
                    mark.record()
                    marks.append((mark, launched))
                if launched >= iterations and not end_recorded:
                    end.record()
                    end_recorded = True
                if end_recorded and end.query():
                    break
                now = time.perf_counter()
                if now >= next_poll and start.query():
                    try:
                        poll()
                    except BaseException:
                        self.synchronize()  # leave no queued work behind the error
                        raise
                    next_poll = now + poll_s
                time.sleep(min(poll_s / 4, 5e-4))
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        gpu_s = self._guarded(go)
        self._iter_s = gpu_s / iterations
        return gpu_s

    def describe(self) -> dict:
        """What a run record keeps of the runner: ``cuda_graph`` the policy (always ``auto``:
        capture where it works), ``cuda_graph_state`` what happened, ``graph_launches`` the
        launches per replay (None without a graph), ``l2`` the launch's L2 policy, ``kernel``
        which kernel variant it runs (None where the implementation has one)."""
        return {
            "runner": "gpu",
            "executes_kernels": True,
            "cuda_graph": "auto",
            "cuda_graph_state": self._graph_note,
            "graph_launches": self._graph_launches or None,
            "l2": _describe_l2(self.launch),
            "kernel": launch_choice(self.launch),
        }


def _describe_l2(launch: Callable[[], Any]) -> Any:
    """What the launch says about its L2 policy (input rotation), if it says anything."""
    describe = getattr(launch, "describe_l2", None)
    return describe() if callable(describe) else None


def _torch_synchronize() -> Callable[[], None]:
    try:
        import torch
    except ImportError:
        raise UsageError(
            "a real-GPU runner needs a synchronize function, and torch is not installed",
            'install the GPU stack (pip install "wattbench[gpu]") or pass synchronize=',
        ) from None
    return torch.cuda.synchronize
