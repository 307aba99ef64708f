"""A simulated node whose time follows the wall clock, with the loads that run on it.

:class:`PacedNode` owns the :class:`SimulatedGpu` units of one node. :meth:`PacedNode.catch_up`
advances every unit's virtual time to ``virtual start + (wall now - wall start)``, running the
unit's loads on the way: each unit runs its loads one after another (first come, first served,
as a GPU time-slices the contexts of several processes), and idles when it has none. Every read
first catches up, so a reader sees the GPU as it is at that wall instant.

Loads (:class:`Load`): a number of iterations (a training step: its duration follows the clock
the governor gives) or a stretch of wall time at a duty cycle (busy for ``duty x period_s`` of
every ``period_s``). Invariant: a unit's virtual time never runs ahead of the wall clock, and
every second of it is accounted to a load or to idling.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wattbench.profiler.sim.gpu import SimulatedGpu
from wattbench.profiler.sim.physics import Workload

#: longest wall-clock pause of the pacer between catch-ups, s (a reader always catches up first)
PACE_S = 0.005


@dataclass(eq=False)
class Load:
    """Work queued on one unit. ``iterations``: run that many, then done; else run for
    ``seconds`` of wall time (``math.inf``: until cancelled) at ``duty`` over ``period_s``."""

    work: Workload
    iterations: float | None = None
    seconds: float = math.inf
    duty: float = 1.0
    period_s: float = 0.1
    owner: object = None
    id: int = field(default_factory=itertools.count(1).__next__)
    #: virtual time the load started (set when it reaches the head of the queue)
    start_s: float | None = None
    done_iterations: float = 0.0
    busy_s: float = 0.0
    energy_j: float = 0.0
    finished: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False

    def __post_init__(self) -> None:
        if self.iterations is not None and not self.iterations > 0:
            raise ValueError("iterations must be > 0")
        if not self.seconds > 0:
            raise ValueError("seconds must be > 0")
        if not 0 < self.duty <= 1:
            raise ValueError("duty must be in (0, 1]")
        if not self.period_s > 0:
            raise ValueError("period_s must be > 0")

    def summary(self) -> dict:
        return {
            "id": self.id,
            "iterations": self.done_iterations,
            "busy_s": self.busy_s,
            "energy_j": self.energy_j,
            "cancelled": self.cancelled,
        }


class PacedNode:
    """The units of one node on the wall clock. Thread-safe: every method takes the node lock."""

    def __init__(self, gpus: list[SimulatedGpu], *, clock: Callable[[], float] = time.monotonic):
        self.gpus = gpus
        self._clock = clock
        self._lock = threading.RLock()
        self._wall0 = clock()
        self._virtual0 = [g.now_s for g in gpus]
        self._queues: list[deque[Load]] = [deque() for _ in gpus]

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def target_s(self, index: int) -> float:
        """Virtual time unit ``index`` must have reached now."""
        return self._virtual0[index] + (self._clock() - self._wall0)

    def submit(self, index: int, load: Load) -> Load:
        with self._lock:
            self.catch_up()
            self._queues[index].append(load)
            return load

    def cancel(self, load: Load) -> None:
        with self._lock:
            self.catch_up()
            for q in self._queues:
                if load in q:
                    q.remove(load)
            load.cancelled = True
            load.finished.set()

    def cancel_owned_by(self, owner: object) -> None:
        with self._lock:
            for q in self._queues:
                for load in [x for x in q if x.owner is owner]:
                    self.cancel(load)

    def active_loads(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues)

    def catch_up(self) -> None:
        """Advance every unit to the wall clock's present."""
        with self._lock:
            for i in range(len(self.gpus)):
                self._advance(i, self.target_s(i))

    def next_wake_s(self) -> float:
        """Wall seconds until the pacer should next catch up: ``PACE_S``, or less when a load of
        iterations will finish sooner (its caller is waiting)."""
        with self._lock:
            wake = PACE_S
            for g, q in zip(self.gpus, self._queues, strict=True):
                if q and q[0].iterations is not None:
                    left = q[0].iterations - q[0].done_iterations
                    wake = min(wake, left * g.iteration_time_s(q[0].work))
            return max(wake, 0.0)

    def _advance(self, index: int, target: float) -> None:
        g, q = self.gpus[index], self._queues[index]
        while target - g.now_s > 1e-9:
            if not q:
                g.idle(target - g.now_s)
                return
            load = q[0]
            if load.start_s is None:
                load.start_s = g.now_s
            end = load.start_s + load.seconds
            if g.now_s >= end - 1e-12:
                self._finish(q)
                continue
            span = min(target, end) - g.now_s
            if load.duty < 1:
                # position in the current period, counted so that rounding never leaves a
                # sliver of a period (a step too small to advance the clock)
                since = g.now_s - load.start_s
                k = math.floor(since / load.period_s + 1e-9)
                phase = max(0.0, since - k * load.period_s)
                on = load.duty * load.period_s
                if phase >= on - 1e-9:  # the off part of the period
                    g.idle(max(min(span, load.period_s - phase), 1e-9))
                    continue
                span = min(span, on - phase)
            left = math.inf if load.iterations is None else load.iterations - load.done_iterations
            r = g.run_for(load.work, span, max_iterations=left)
            load.done_iterations += r.iterations
            load.busy_s += r.elapsed_s
            load.energy_j += r.energy_j
            if load.iterations is not None and load.iterations - load.done_iterations <= 1e-9:
                self._finish(q)

    @staticmethod
    def _finish(q: deque[Load]) -> None:
        load = q.popleft()
        load.finished.set()
