"""The ``wattbench`` fixture: check, time and measure one problem, and record it.

``wattbench(problem)`` (or ``wattbench("matmul", "triton", "8192x8192x8192", "bf16")``), once
per test:

* **real GPU**: skip with the reason if the implementation cannot run here (a missing module,
  the GPU's compute capability, a shape it refuses); check it once against the float64
  reference (a failure fails the test with the error figure); time it with CUDA events (warm-up,
  then rounds of back-to-back launches; pytest-benchmark's stats hold one round's mean per
  launch) under the L2 policy of the energy loop, ``"rotate"`` (``wattbench.kernels.l2``: each
  launch runs the next of several input sets that together hold twice the L2; ``extra_info["l2"]``
  records the plan); then measure time and energy at the GPU's current state, or run the
  requested sweep, through ``sweep_problem`` (observe-only / actuated paths, safety guard, run
  record), whose launch comes from ``catalog.gpu_launch`` with the same default policy.
* **simulated GPU**: no kernel runs, so there is nothing to time on a device: the stats hold the
  per-iteration times of the measured trials (the model's virtual clock). Time and energy are
  the model's for the problem's Work, the same for every implementation of a problem. The
  implementation is checked on the CPU at the problem's own shape when it has a CPU path that
  takes the shape (``Impl.cpu_max_flops``); otherwise the correctness entry says it was not
  checked, and why. Implementations are skipped when the simulated GPU's compute capability is
  below what they need for the dtype, or they refuse the shape, as on a real GPU.

With ``--benchmark-disable`` only the correctness check runs (no measurement, no run record).
"""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass, field
from typing import Any

import pytest

from wattbench.kernels import catalog
from wattbench.kernels.costs import Problem, make_problem, work_of
from wattbench.kernels.family import Family, Impl, ImplUnavailable, compute_capability_text
from wattbench.kernels.verify import check_one
from wattbench.profiler.errors import UsageError, WattbenchError
from wattbench.profiler.pytest_plugin import bench_json
from wattbench.profiler.pytest_plugin.correctness import Verdict, cpu_check_reason, not_checked
from wattbench.profiler.pytest_plugin.state import DeviceOpenError, PluginState

#: CUDA-event timing of the launches that go into pytest-benchmark's stats
TIMING_WARMUP = 10
TIMING_REPS = 50

SIM_NOTE = (
    "SIMULATED GPU: no kernel was executed; time and energy are model outputs for the problem's "
    "Work, the same for every implementation"
)


@dataclass
class CaseResult:
    """What one case found: correctness, the stats' per-launch times (s), the sweep outcome
    (None with --benchmark-disable) and the ``extra_info`` written to pytest-benchmark."""

    problem: Problem
    correctness: Verdict
    times_s: list[float] = field(default_factory=list)
    outcome: Any = None  # SweepOutcome
    extra_info: dict[str, Any] = field(default_factory=dict)

    @property
    def run_record(self):
        return self.outcome.record.path if self.outcome is not None else None


class WattbenchFixture:
    def __init__(self, state: PluginState, benchmark: Any) -> None:
        self.state = state
        self.benchmark = benchmark
        self.used = False

    def __call__(
        self,
        problem: Problem | str,
        impl: str | None = None,
        shape: str | tuple[int, ...] | None = None,
        dtype: str | None = None,
    ) -> CaseResult:
        if self.used:
            raise RuntimeError("the wattbench fixture measures one problem per test")
        self.used = True
        bench_json.claim(self.benchmark)
        try:
            return self._case(_as_problem(problem, impl, shape, dtype))
        except BaseException:
            self.benchmark.has_error = True  # as pytest-benchmark does: kept out of its JSON
            raise

    def _case(self, problem: Problem) -> CaseResult:
        try:
            device = self.state.open()
        except DeviceOpenError as exc:
            usage = isinstance(exc.error, UsageError)
            code = pytest.ExitCode.USAGE_ERROR if usage else pytest.ExitCode.TESTS_FAILED
            pytest.exit(f"wattbench: error: {exc.error}", returncode=code)
        fam = catalog.family(problem.family)
        chosen = fam.impl(problem.impl)
        if self.benchmark.group is None:
            self.benchmark.group = f"{problem.family}-{problem.dtype}-{problem.shape_text}"
        if device.simulated is not None:
            return self._simulated(device, problem, fam, chosen)
        return self._real(device, problem, fam, chosen)

    # --- the two paths ---------------------------------------------------------------------------

    def _simulated(self, device, problem: Problem, fam: Family, impl: Impl) -> CaseResult:
        reason = _sim_unavailable(impl, problem, device.identity)
        if reason:
            pytest.skip(f"{problem.label}: {reason}")
        verdict = _cpu_correctness(problem, fam, impl)
        _fail_if_wrong(verdict, problem)
        result = CaseResult(problem, verdict)
        if self.benchmark.disabled:
            return result
        notes = [SIM_NOTE]
        outcome = self._measure(device, problem, notes)
        m = _point_of_times(outcome)
        rounds = [s["time_s"] for s in m.samples] or [m.time_s]
        iterations = max(1, round(m.iterations))
        bench_json.add_device_times(self.benchmark, rounds, iterations)
        result.times_s, result.outcome = rounds, outcome
        self.state.simulated_cases += 1
        return self._finish(result, "simulated GPU model (virtual clock)", notes)

    def _real(self, device, problem: Problem, fam: Family, impl: Impl) -> CaseResult:
        import torch

        from wattbench.kernels.l2 import DEFAULT_POLICY, rotating_launch
        from wattbench.kernels.timing import TimingSettings, time_launches
        from wattbench.profiler.device import visible_real_indices

        cuda_index = visible_real_indices().index(device.index)
        _skip_if_unavailable_on_gpu(problem, fam, impl, device.identity)
        torch.cuda.set_device(cuda_index)
        try:
            checked = check_one(fam, impl, problem.shape, problem.dtype, f"cuda:{cuda_index}")
        except ImplUnavailable as exc:
            pytest.skip(f"{problem.label}: {exc}")
        verdict = Verdict.of(checked)
        _fail_if_wrong(verdict, problem)
        result = CaseResult(problem, verdict)
        if self.benchmark.disabled:
            return result
        timing = TimingSettings(warmup=TIMING_WARMUP, reps=TIMING_REPS, l2=DEFAULT_POLICY)
        launch = rotating_launch(
            fam,
            impl,
            problem.shape,
            problem.dtype,
            device=f"cuda:{cuda_index}",
            policy=timing.l2,
            first=checked.kept(),
        )
        timed = time_launches(launch, timing)
        times_s = [t * 1e-3 for t in timed.per_launch_ms]
        l2 = launch.plan
        del checked, launch  # free the inputs before the sweep allocates its own
        gc.collect()
        torch.cuda.empty_cache()
        notes: list[str] = []
        result.outcome = self._measure(device, problem, notes)
        bench_json.add_device_times(self.benchmark, times_s, timed.batch)
        result.times_s = times_s
        source = (
            f"CUDA events: {TIMING_WARMUP} warm-up launches, then {TIMING_REPS} rounds of "
            f"{timed.batch} back-to-back launches; L2 {l2.text()}"
        )
        return self._finish(result, source, notes, {"l2": l2.to_json()})

    # --- shared -----------------------------------------------------------------------------------

    def _measure(self, device, problem: Problem, notes: list[str]):
        from wattbench.profiler.measure import MeasureSettings
        from wattbench.profiler.sweep import session

        opts = self.state.options
        sweep = opts.sweep or {}
        request = session.SweepRequest(
            sm=sweep.get("sm"),
            mem=sweep.get("mem"),
            power=sweep.get("power"),
            objectives=opts.objectives or session.SweepRequest().objectives,
            strategy=session.DEFAULT_STRATEGY,
            settings=MeasureSettings(method=opts.measurement or MeasureSettings().method),
            # other processes were looked for once, when the GPU was opened: from now on this
            # process's own CUDA context is on the GPU (and its PID need not match in a container)
            allow_shared=True,
        )
        try:
            outcome = session.sweep_problem(
                device, problem, request, out_dir=opts.out_dir, notify=_collect(notes)
            )
        except WattbenchError as exc:
            pytest.fail(f"{problem.label}: {exc}", pytrace=False)
        self.state.run_records.append(outcome.record.path)
        return outcome

    def _finish(
        self,
        result: CaseResult,
        time_source: str,
        notes: list[str],
        timing_info: dict[str, Any] | None = None,
    ) -> CaseResult:
        outcome = result.outcome
        opts = self.state.options
        if opts.sweep is None:
            mode = "current-state"
        elif outcome.observe_only:
            mode = "observe-only"
        else:
            mode = "sweep"
        info: dict[str, Any] = {
            "schema": bench_json.SCHEMA,
            "simulated": outcome.simulated,
            "time_source": time_source,
            "problem": {**result.problem.to_json(), "label": result.problem.label},
            "work": work_of(result.problem).to_json(),
            "correctness": result.correctness.to_json(),
            "mode": mode,
            **bench_json.measurement_info(_point_of_times(outcome)),
            "optimum": bench_json.optimum_info(outcome.result.choices),
            "run_record": str(outcome.record.path),
            "notes": notes,
            **(timing_info or {}),
        }
        self.benchmark.extra_info.update(info)
        result.extra_info = info
        return result


# --- helpers -------------------------------------------------------------------------------------


def _as_problem(problem, impl, shape, dtype) -> Problem:
    """A validated Problem (a bad one fails the test with the valid choices)."""
    if isinstance(problem, Problem):
        if (impl, shape, dtype) != (None, None, None):
            raise TypeError("give a Problem, or family, impl, shape and dtype -- not both")
        problem, impl, shape, dtype = problem.family, problem.impl, problem.shape, problem.dtype
    if impl is None or shape is None or dtype is None:
        raise TypeError("wattbench(family, impl, shape, dtype): all four are needed")
    text = shape if isinstance(shape, str) else "x".join(map(str, shape))
    try:
        return make_problem(problem, text, dtype, impl)
    except WattbenchError as exc:
        pytest.fail(f"bad wattbench problem: {exc}", pytrace=False)


def _cc(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def _sim_unavailable(impl: Impl, problem: Problem, identity) -> str | None:
    need = impl.min_compute_capability[problem.dtype]
    have = _cc(identity.compute_capability)
    if have < need:
        return (
            f"{problem.dtype} needs compute capability >= {compute_capability_text(need)} "
            f"(simulated {identity.name}: {compute_capability_text(have)})"
        )
    if impl.limits is not None:
        return impl.limits(problem.shape, problem.dtype, True)
    return None


def _cpu_correctness(problem: Problem, fam: Family, impl: Impl) -> Verdict:
    from wattbench.kernels.env import probe, use_triton_interpreter_without_cuda

    tolerance = fam.tolerance(problem.dtype)
    flops = fam.work(problem.shape, problem.dtype).flops
    if impl.cpu_path == "triton-interpreter" and impl.runs_on_cpu(problem.dtype):
        use_triton_interpreter_without_cuda()  # as `wattbench check` does; before kernel import
    reason = cpu_check_reason(impl, problem.shape, problem.dtype, flops, probe(impl.requires))
    if reason:
        return not_checked(
            tolerance, f"simulated GPU: no kernel runs, and no CPU check here ({reason})"
        )
    try:
        verdict = Verdict.of(check_one(fam, impl, problem.shape, problem.dtype, "cpu"))
    except ImplUnavailable as exc:
        return not_checked(tolerance, f"simulated GPU: no kernel runs; CPU path unavailable: {exc}")
    note = f"checked on the CPU ({impl.cpu_path} path); the simulated GPU runs no kernel"
    return dataclasses.replace(verdict, note=note)


def _skip_if_unavailable_on_gpu(problem: Problem, fam: Family, impl: Impl, identity) -> None:
    from wattbench.kernels.env import probe

    env = probe(impl.requires)
    missing = [m for m in impl.requires if env.modules.get(m) is None]
    if missing:
        why = "; ".join(env.module_errors.get(m, f"{m} not installed") for m in missing)
        pytest.skip(f"{problem.label}: {why}")
    if not env.cuda:
        pytest.fail(f"torch cannot use the GPU: {env.cuda_error}", pytrace=False)
    # the selected GPU's capability, not CUDA device 0's
    env = dataclasses.replace(env, compute_capability=_cc(identity.compute_capability))
    flops = fam.work(problem.shape, problem.dtype).flops
    reason = impl.why_unavailable(problem.dtype, env, problem.shape, flops)
    if reason:
        pytest.skip(f"{problem.label}: {reason}")


def _fail_if_wrong(verdict: Verdict, problem: Problem) -> None:
    if verdict.failed:
        pytest.fail(verdict.failure_text(problem.label), pytrace=False)


def _point_of_times(outcome):
    """The measurement at the GPU's own state (the baseline of a sweep, the one point else)."""
    result = outcome.result
    return result.baseline or result.measurements[0]


def _collect(notes: list[str]):
    def notify(message: str) -> None:
        import sys

        print(f"wattbench: {message}", file=sys.stderr)
        if message.startswith("warning:") or "ignoring the requested space" in message:
            notes.append(message)

    return notify
