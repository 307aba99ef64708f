"""What the profiler calls to execute a problem: a launch callable with inputs allocated once,
plus the problem's Work. One runner per backend: simulated (virtual clock) and real GPU."""

from wattbench.profiler.runners.base import Runner
from wattbench.profiler.runners.gpu import GpuRunner
from wattbench.profiler.runners.simulated import SimulatedRunner

__all__ = ["GpuRunner", "Runner", "SimulatedRunner"]
