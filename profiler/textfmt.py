"""Number formatting shared by every printed figure."""

from __future__ import annotations


def percent(fraction: float | None, *, signed: bool = False, digits: int = 1) -> str:
    """``0.056`` -> ``5.6%`` (``+5.6%`` when ``signed``); None -> ``-``. A value that rounds to
    zero prints as ``0.0%``, never ``-0.0%``."""
    if fraction is None:
        return "-"
    text = f"{fraction * 100:{'+' if signed else ''}.{digits}f}%"
    if float(text.rstrip("%")) == 0:
        return f"{'+' if signed else ''}{0:.{digits}f}%"
    return text
