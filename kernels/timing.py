"""Kernel time on a CUDA device with CUDA events: warm-up, then the median of timed repetitions.

Without an L2 flush a repetition times a batch of back-to-back launches (sized so that a batch
lasts about ``batch_ms``), which hides the CPU's launch gap; the time per launch is the batch's
time over its size. With ``flush_l2`` each repetition writes a buffer larger than L2 (so the
operands come from device memory) and then times one launch. Only torch's current stream is
timed; launches on the legacy default stream (CuPy's) are ordered with it. Changes no setting.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from wattbench.kernels.family import Launch

#: bytes written to evict L2 (H100: 50 MiB L2, B200: 126 MiB)
L2_FLUSH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class TimingSettings:
    warmup: int = 3  # launches before calibration and timing
    reps: int = 10  # timed repetitions; the median is reported
    flush_l2: bool = False
    batch_ms: float = 1.0  # target duration of a timed batch (no flush)
    max_batch: int = 1000


def time_launch_ms(launch: Launch, settings: TimingSettings | None = None) -> list[float]:
    """Per-launch times in ms of each repetition (one value per rep)."""
    import torch

    s = settings or TimingSettings()
    for _ in range(max(1, s.warmup)):
        launch()
    torch.cuda.synchronize()

    def event() -> torch.cuda.Event:
        return torch.cuda.Event(enable_timing=True)

    if s.flush_l2:
        scratch = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
        pairs = [(event(), event()) for _ in range(s.reps)]
        for start, end in pairs:
            scratch.zero_()
            start.record()
            launch()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in pairs]

    start, end = event(), event()
    start.record()
    launch()
    end.record()
    torch.cuda.synchronize()
    one_ms = max(start.elapsed_time(end), 1e-3)
    batch = int(min(s.max_batch, max(1, s.batch_ms / one_ms)))
    pairs = [(event(), event()) for _ in range(s.reps)]
    for start, end in pairs:
        start.record()
        for _ in range(batch):
            launch()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / batch for start, end in pairs]


def median_ms(times_ms: list[float]) -> float:
    return statistics.median(times_ms)
