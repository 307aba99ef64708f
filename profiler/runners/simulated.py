"""Runs a problem's Work on a simulated GPU's virtual clock. No kernel is executed.

Fault injection, for tests of what happens when a launch fails mid-run: with
``WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S=<s>`` a launch raises :class:`SimulatedLaunchFault` once
``s`` seconds of virtual time have passed since the runner was created (``<s>@<uuid prefix>``:
only on that GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wattbench.kernels.work import Work
from wattbench.profiler.errors import LaunchError
from wattbench.profiler.sim import env as sim_env
from wattbench.profiler.sim.gpu import SimulatedGpu
from wattbench.profiler.sim.physics import Workload

FAULT_ENV = sim_env.FAULT_ENV


class SimulatedLaunchFault(LaunchError):
    """A launch failure injected on purpose (``WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S``)."""


@dataclass
class RunLog:
    """Ground truth of one ``run`` call, from the simulator (for tests and diagnostics)."""

    start_s: float
    end_s: float
    iterations: int
    energy_j: float


class SimulatedRunner:
    """Feeds ``work`` to ``gpu``; ``compute_efficiency`` / ``memory_efficiency`` override the
    spec's for this kernel (fractions of peak it reaches); ``data_activity`` is the inputs'
    switching activity relative to random data (1 random, 0 all zeros: see ``sim/physics.py``)."""

    simulated = True

    def __init__(
        self,
        gpu: SimulatedGpu,
        work: Work,
        *,
        compute_efficiency: float | None = None,
        memory_efficiency: float | None = None,
        keep_log: bool = False,
        data_activity: float = 1.0,
    ) -> None:
        self.gpu = gpu
        self.work = work
        self._workload = Workload(
            work.flops,
            work.bytes,
            work.dtype,
            compute_efficiency,
            memory_efficiency,
            data_activity=data_activity,
        )
        gpu.spec.peak_tflops(work.dtype)  # unknown dtype: fail now with the spec's message
        self.keep_log = keep_log
        self.log: list[RunLog] = []
        fault = sim_env.launch_fault_after_s(gpu.uuid)
        self._fault_at_s = gpu.now_s + fault if fault is not None else None

    def _check_fault(self) -> None:
        start = self.gpu.now_s
        if self._fault_at_s is not None and start >= self._fault_at_s:
            raise SimulatedLaunchFault(
                f"kernel launch failed: simulated failure injected by {FAULT_ENV} at "
                f"t = {start:.3f} s",
                f"unset {FAULT_ENV}",
            )

    def run(self, iterations: int) -> None:
        self._check_fault()
        start = self.gpu.now_s
        result = self.gpu.run(self._workload, iterations)
        if self.keep_log:
            self.log.append(RunLog(start, self.gpu.now_s, iterations, result.energy_j))

    def run_window(self, iterations: int, poll: Callable[[], None], poll_s: float) -> float:
        """``iterations`` back to back, stepped in parts of about ``poll_s`` of virtual time
        (a part may end inside a launch) with ``poll()`` after each: the host looking in while
        the GPU works. Returns the virtual seconds the iterations took."""
        if iterations < 1:
            raise ValueError("iterations must be >= 1")
        if not poll_s > 0:
            raise ValueError("poll_s must be > 0")
        self._check_fault()
        start, energy0 = self.gpu.now_s, self.gpu.energy_j
        left = float(iterations)
        step = min(left, 1e-3)  # the first part measures the pace
        while left > 1e-9:
            part = min(left, step)
            result = self.gpu.run(self._workload, part)
            left -= part
            if left > 1e-9:
                poll()
                per_iter = result.elapsed_s / part
                step = max(poll_s / per_iter, 1e-6) if per_iter > 0 else left
        if self.keep_log:
            self.log.append(RunLog(start, self.gpu.now_s, iterations, self.gpu.energy_j - energy0))
        return self.gpu.now_s - start

    def truth_energy_per_iteration_j(self, start_s: float, end_s: float) -> float:
        """Exact modelled energy per iteration of the runs inside [start_s, end_s]."""
        runs = [r for r in self.log if r.start_s >= start_s - 1e-12 and r.end_s <= end_s + 1e-12]
        iters = sum(r.iterations for r in runs)
        if not iters:
            raise ValueError("no logged runs in that window (keep_log=True?)")
        return sum(r.energy_j for r in runs) / iters

    def describe(self) -> dict:
        return {
            "runner": "simulated",
            "executes_kernels": False,
            "note": "kernels are not executed on a simulated GPU; "
            "time and energy are model outputs",
            "data_activity": self._workload.data_activity,  # 1 random inputs, 0 all zeros
        }
