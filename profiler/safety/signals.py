"""The old home of :mod:`wattbench.profiler.signals` (signals as exceptions), which moved beneath
the device layer; kept only because ``fleet/worker.py`` still imports ``Terminated`` from here."""

from wattbench.profiler.signals import Terminated

__all__ = ["Terminated"]
