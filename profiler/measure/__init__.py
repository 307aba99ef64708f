"""Measurement: time and energy of a problem at one operating point."""

from wattbench.profiler.measure.actuator import Actuator
from wattbench.profiler.measure.clock import Clock, WallClock
from wattbench.profiler.measure.measure import MeasureSettings, PointMeasurer
from wattbench.profiler.measure.types import Measurement, OperatingPoint, Sample

__all__ = [
    "Actuator",
    "Clock",
    "MeasureSettings",
    "Measurement",
    "OperatingPoint",
    "PointMeasurer",
    "Sample",
    "WallClock",
]
