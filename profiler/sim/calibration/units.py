"""Same-model units side by side: how each unit of a simulated node departs from the nominal chip
and what that does to its power, its clock under the cap and its energy-optimal clock
(noise-free model at steady state; ``wattbench sim units``)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from wattbench.profiler.sim import physics
from wattbench.profiler.sim.gpu import SimulatedGpu
from wattbench.profiler.sim.spec import GpuSpec


@dataclass(frozen=True)
class UnitRow:
    index: int
    uuid: str
    serial: str
    leakage_scale: float
    voltage_offset_mv: float
    resistance_scale: float
    power_at_lock_w: float  # steady power with the SM clock locked at the report's clock
    capped_sm_mhz: int  # steady clock at default settings
    tflops_default: float
    optimal_sm_mhz: int  # least energy per iteration over the supported clocks
    optimal_saving: float  # energy saved there vs default settings (fraction)
    optimal_slowdown: float  # time lost there vs default settings (fraction)


def unit_rows(spec: GpuSpec, units: int, work: physics.Workload, lock_mhz: int) -> list[UnitRow]:
    rows = []
    for i in range(units):
        gpu = SimulatedGpu(spec, i, noise=False, unit_variation=True, persist=False)
        u = gpu.unit
        at_lock = physics.steady_state(spec, work, sm_lock_mhz=lock_mhz, unit=u)
        base = physics.steady_state(spec, work, unit=u)
        best = min(
            (
                physics.steady_state(spec, work, sm_lock_mhz=f, unit=u)
                for f in spec.clocks.sm_clocks_mhz()
            ),
            key=lambda s: s.energy_j,
        )
        rows.append(
            UnitRow(
                index=i,
                uuid=gpu.uuid,
                serial=gpu.serial,
                leakage_scale=u.leakage_scale,
                voltage_offset_mv=u.voltage_offset_v * 1000,
                resistance_scale=u.resistance_scale,
                power_at_lock_w=at_lock.power_w,
                capped_sm_mhz=base.sm_mhz,
                tflops_default=work.tflops(base.time_s),
                optimal_sm_mhz=best.sm_mhz,
                optimal_saving=1 - best.energy_j / base.energy_j,
                optimal_slowdown=best.time_s / base.time_s - 1,
            )
        )
    return rows


def spread(values: list[float]) -> tuple[float, float]:
    """(relative standard deviation, (max - min) / mean) of ``values``."""
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return sd / mean, (max(values) - min(values)) / mean
