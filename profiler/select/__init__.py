"""Selection: choose an operating point from a run's measurements by an objective.

Pure functions over :class:`~wattbench.profiler.measure.types.Measurement` sequences; see
:mod:`wattbench.profiler.select.objectives` for the rules (baseline, flagged points, ties).
"""

from wattbench.profiler.select.objectives import (
    FLAG_POLICIES,
    OBJECTIVE_FORMS,
    OBJECTIVES,
    UNTRUSTED_FLAGS,
    Choice,
    Objective,
    candidates,
    find_baseline,
    is_trusted,
    min_ed2p,
    min_edp,
    min_energy,
    min_energy_within_slowdown,
    min_zeus_cost,
    pareto_front,
    parse_objective,
    point_order,
    zeus_cost,
)

__all__ = [
    "FLAG_POLICIES",
    "OBJECTIVES",
    "OBJECTIVE_FORMS",
    "UNTRUSTED_FLAGS",
    "Choice",
    "Objective",
    "candidates",
    "find_baseline",
    "is_trusted",
    "min_ed2p",
    "min_edp",
    "min_energy",
    "min_energy_within_slowdown",
    "min_zeus_cost",
    "pareto_front",
    "parse_objective",
    "point_order",
    "zeus_cost",
]
