"""What a case puts into pytest-benchmark's JSON: device-measured times as its stats, and the
energy figures as ``extra_info``.

pytest-benchmark times a Python callable with a host timer, which cannot time asynchronous GPU
work. A case therefore hands it times measured on the device instead: one stats entry of
``iterations`` launches per round, as ``benchmark(...)`` makes them, so ``--benchmark-json``,
``--benchmark-compare`` and ``pytest-benchmark compare`` treat them like any benchmark. This uses
two attributes of ``BenchmarkFixture`` that pytest-benchmark 3.x to 5.x share (``_make_stats``,
``_mode``); :func:`add_device_times` fails with a clear message if they are gone.

``extra_info`` keys (units in the names; per-iteration figures): ``simulated``, ``time_source``,
``problem``, ``work``, ``correctness``, ``mode``, ``operating_point``, ``time_ms``,
``energy_j``, ``avg_power_w``, ``tflops``, ``gbs``, ``tflop_per_j``, ``flags``, ``optimum`` (per
objective: point, energy, time, savings), ``run_record``, ``notes`` and, on a real GPU, ``l2``
(the L2 plan the device times were taken under, ``wattbench.kernels.l2.L2Plan.to_json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wattbench.profiler.measure.types import Measurement
from wattbench.profiler.select.objectives import Choice

SCHEMA = "wattbench.pytest/1"
MODE_USED = "wattbench(...)"


class BenchmarkApiError(RuntimeError):
    """The installed pytest-benchmark lacks what device times are fed through."""


def claim(benchmark: Any) -> None:
    """Mark pytest-benchmark's fixture as used by wattbench (once per test, like
    ``benchmark(...)``; it raises if the test used it already)."""
    if not hasattr(benchmark, "_make_stats") or not hasattr(benchmark, "_mode"):
        import pytest_benchmark

        raise BenchmarkApiError(
            "this pytest-benchmark "
            f"({getattr(pytest_benchmark, '__version__', 'unknown version')}) has no "
            "BenchmarkFixture._make_stats; wattbench feeds device times through it -- install "
            "pytest-benchmark 4 or 5"
        )
    if benchmark._mode:
        raise RuntimeError(f"the benchmark fixture was already used ({benchmark._mode})")
    benchmark._mode = MODE_USED


def add_device_times(benchmark: Any, per_iteration_s: Sequence[float], iterations: int) -> None:
    """Record rounds of ``iterations`` launches each, ``per_iteration_s`` seconds per launch
    (one value per round), as the stats of a :func:`claim`-ed benchmark fixture."""
    if not per_iteration_s or iterations < 1:
        raise ValueError("need at least one round of at least one iteration")
    if benchmark._mode != MODE_USED:
        raise RuntimeError("claim() the benchmark fixture first")
    stats = benchmark._make_stats(iterations)
    for t in per_iteration_s:
        stats.update(float(t) * iterations)  # Metadata.update divides by iterations


def choice_json(c: Choice) -> dict[str, Any]:
    m = c.chosen
    return {
        "point": m.point.to_json(),
        "point_key": m.point.key,
        "time_ms": m.time_s * 1e3,
        "energy_j": m.energy_j,
        "avg_power_w": m.avg_power_w,
        "tflop_per_j": m.tflop_per_j,
        "sm_mhz_mean": m.sm_mhz_mean,
        "flags": list(m.flags),
        "energy_saving_rel": c.saving_rel,
        "slowdown_rel": c.slowdown_rel,
    }


def measurement_info(m: Measurement) -> dict[str, Any]:
    """The figures of the point the case's times belong to (the GPU as found / at defaults)."""
    return {
        "operating_point": {
            "point": m.point.to_json(),
            "point_key": m.point.key,
            "sm_mhz_mean": m.sm_mhz_mean,
            "mem_mhz_mean": m.mem_mhz_mean,
        },
        "time_ms": m.time_s * 1e3,
        "energy_j": m.energy_j,
        "energy_above_idle_j": m.energy_above_idle_j,
        "avg_power_w": m.avg_power_w,
        "tflops": m.tflops,
        "gbs": m.gbs,
        "tflop_per_j": m.tflop_per_j,
        "flags": list(m.flags),
    }


def optimum_info(choices: dict[str, Choice]) -> dict[str, Any]:
    return {name: choice_json(c) for name, c in choices.items()}


def machine_info_update(machine_info: dict[str, Any], device_info: dict[str, Any] | None) -> None:
    """Add the GPU's identity (and the versions that shape a measurement) under ``gpu``."""
    if device_info is not None:
        machine_info["gpu"] = device_info
