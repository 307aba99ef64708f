"""The kernels' error types: the root of wattbench's one error hierarchy and the two kinds of
usage error a kernel can raise.

They live here, in the lowest layer, so that ``wattbench.kernels`` raises wattbench errors without
importing the profiler (Python's ``except`` follows the real class tree, so the root of one
hierarchy must sit beneath every package that raises into it). ``wattbench.profiler.errors``
re-exports these classes and adds the rest of the hierarchy (devices, measurement, safety).
"""

from __future__ import annotations


class WattbenchError(Exception):
    """Base class: a one-line ``message`` and a ``remedy``; ``str()`` gives both. The CLI prints
    ``str(error)`` and exits with ``exit_code`` (2 for usage errors, 1 for runtime errors)."""

    exit_code = 1

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        if self.remedy:
            return f"{self.message} -- {self.remedy}"
        return self.message


class UsageError(WattbenchError):
    """The command line, a file or an argument is wrong; nothing was touched."""

    exit_code = 2


class UnknownKernelError(UsageError):
    """A kernel family, implementation or dtype wattbench does not have (lists the valid ones)."""


class ShapeError(UsageError):
    """A malformed or unsupported problem shape (says the expected form)."""
