"""Kernel time on a CUDA device with CUDA events: warm-up, then the median of timed repetitions.

A repetition replays a CUDA graph of a batch of back-to-back launches (sized so that a batch
lasts about ``batch_ms``), so the CPU's launch gaps (15-30 us for a Triton launch) stay out of
the time even for kernels shorter than that; the time per launch is the batch's time over its
size. :func:`time_graphs_interleaved` times several launches alternately (the acceptance run's
targets against their references).

L2 is handled by the launch, not here: a launch built under the L2 policy ``"rotate"``
(:mod:`wattbench.kernels.l2`, the default of :func:`wattbench.kernels.catalog.gpu_launch` and
of :class:`TimingSettings`) runs the next of its input sets on each call (a graph captures
whole rounds of them), so back-to-back launches read their operands from device memory exactly
as in the energy loop; under ``"warm"`` every launch reuses the same inputs. Nothing is flushed
between launches (a flush that writes leaves dirty lines for the timed kernel to write back).
Only torch's current stream is timed; launches on the legacy default stream (CuPy's) are
ordered with it (a graph captures the current stream only: a launch on another stream fails to
capture and is timed one by one). Changes no setting. Needs CUDA.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from wattbench.kernels.family import Launch
from wattbench.kernels.l2 import DEFAULT_POLICY, L2Plan, check_policy, plan_of, whole_rounds


@dataclass(frozen=True)
class TimingSettings:
    """``warmup``: launches before calibration and timing; ``reps``: timed repetitions (the
    median is reported); ``l2``: the L2 policy the timed launches are built with
    (:data:`wattbench.kernels.l2.POLICIES`; a launch that carries another is refused);
    ``batch_ms``: target duration of a timed batch (ms); ``max_batch``: launches per batch at
    most."""

    warmup: int = 3
    reps: int = 10
    l2: str = DEFAULT_POLICY
    batch_ms: float = 1.0
    max_batch: int = 1000

    def __post_init__(self) -> None:
        check_policy(self.l2)


@dataclass(frozen=True)
class Timings:
    """What :func:`time_launches` measured: ``per_launch_ms`` (one value per repetition, the
    batch's time over ``batch``), ``batch`` (launches per repetition, >= 1) and ``l2`` (the
    launch's L2 plan; None for a launch that carries none)."""

    per_launch_ms: list[float]
    batch: int
    l2: L2Plan | None
    graph: bool = False  # the batch was replayed as a CUDA graph


def time_launches(launch: Launch, settings: TimingSettings | None = None) -> Timings:
    """Time ``launch`` (needs CUDA): warm-up, one launch to size the batch, then ``reps``
    replays of a CUDA graph of one batch (whole rounds of the launch's input sets), so the
    CPU's launch gaps are out of the timing; where capture fails, ``reps`` batches launched one
    by one (``Timings.graph`` False). Raises ValueError when ``launch`` was built under another
    L2 policy than ``settings.l2``."""
    import torch

    s = settings or TimingSettings()
    plan = plan_of(launch)
    if plan is not None and plan.policy != s.l2:
        raise ValueError(f"a launch built for L2 policy {plan.policy!r} timed as {s.l2!r}")
    for _ in range(max(1, s.warmup)):
        launch()
    torch.cuda.synchronize()

    def event() -> torch.cuda.Event:
        return torch.cuda.Event(enable_timing=True)

    start, end = event(), event()
    start.record()
    launch()
    end.record()
    torch.cuda.synchronize()
    one_ms = max(start.elapsed_time(end), 1e-3)
    sets = int(getattr(launch, "sets", 1) or 1)
    batch = whole_rounds(int(min(s.max_batch, max(1, s.batch_ms / one_ms))), sets)
    try:
        graph = capture_graph(launch, batch)
    except Exception:  # capture is an optimisation: time the launches one by one
        graph = None
    pairs = [(event(), event()) for _ in range(s.reps)]
    for start, end in pairs:
        start.record()
        if graph is not None:
            graph.replay()
        else:
            for _ in range(batch):
                launch()
        end.record()
    torch.cuda.synchronize()
    times = [start.elapsed_time(end) / batch for start, end in pairs]
    return Timings(times, batch, plan, graph=graph is not None)


def time_launch_ms(launch: Launch, settings: TimingSettings | None = None) -> list[float]:
    """Per-launch times in ms of each repetition (one value per rep); see
    :func:`time_launches`."""
    return time_launches(launch, settings).per_launch_ms


def median_ms(times_ms: list[float]) -> float:
    return statistics.median(times_ms)


# --- CUDA graphs: launch overhead out of the timing --------------------------------------------

#: a graph replay should last at least this long (s), so that its one launch gap is negligible
GRAPH_MIN_S = 1e-3
#: and hold at most this many launches (capture time and memory grow with it)
GRAPH_MAX_LAUNCHES = 1024


def capture_graph(launch: Launch, launches: int) -> Any:
    """A CUDA graph of ``launches`` back-to-back calls of ``launch`` (warmed up outside the
    graph on a side stream, as torch requires). A launch rotating through input sets is
    captured as it is called, so the graph walks the sets in order (capture whole rounds)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            launch()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(launches):
            launch()
    torch.cuda.synchronize()
    return graph


def graph_size(one_launch_s: float, sets: int = 1) -> int:
    """Launches per graph: at least :data:`GRAPH_MIN_S` of GPU time, whole rounds of ``sets``
    input sets, at most :data:`GRAPH_MAX_LAUNCHES` (rounded down to whole rounds, at least one
    round)."""
    n = max(1, min(GRAPH_MAX_LAUNCHES, math.ceil(GRAPH_MIN_S / max(one_launch_s, 1e-7))))
    sets = max(1, sets)
    n = whole_rounds(n, sets)
    if n > GRAPH_MAX_LAUNCHES:
        n = max(sets, GRAPH_MAX_LAUNCHES // sets * sets)
    return n


@dataclass(frozen=True)
class GraphTimings:
    """Per-launch times (ms) of each replay, per launch name, and the launches per graph."""

    per_launch_ms: dict[str, list[float]]
    launches: dict[str, int]

    def median_ms(self, name: str) -> float:
        return statistics.median(self.per_launch_ms[name])


def time_graphs_interleaved(launches: dict[str, Launch], reps: int = 15) -> GraphTimings:
    """Time each of ``launches`` (name -> launch; needs CUDA) as CUDA graph replays, the
    launches interleaved rep by rep (A B C A B C ...), so that clock, temperature and power
    drift reach all of them alike. Each graph lasts at least :data:`GRAPH_MIN_S`."""
    import torch

    graphs, sizes = {}, {}
    for name, launch in launches.items():
        for _ in range(3):
            launch()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        launch()
        end.record()
        end.synchronize()
        sizes[name] = graph_size(start.elapsed_time(end) / 1e3, int(getattr(launch, "sets", 1)))
        graphs[name] = capture_graph(launch, sizes[name])
    times: dict[str, list[float]] = {name: [] for name in launches}
    for _ in range(reps):
        for name, graph in graphs.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) / sizes[name])
    return GraphTimings(times, sizes)
