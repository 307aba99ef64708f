"""Sweeps: the operating-point spaces to measure (see :mod:`wattbench.profiler.sweep.space`)."""

from wattbench.profiler.sweep.space import (
    CLOCK_FORMS,
    POWER_FORMS,
    Space,
    parse_memory_clocks,
    parse_power_limits,
    parse_sm_clocks,
    resolve_clocks,
)

__all__ = [
    "CLOCK_FORMS",
    "POWER_FORMS",
    "Space",
    "parse_memory_clocks",
    "parse_power_limits",
    "parse_sm_clocks",
    "resolve_clocks",
]
