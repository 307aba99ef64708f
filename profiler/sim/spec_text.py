"""A spec's raw table written back as TOML (the inverse of ``tomllib.loads`` for the values a
spec holds: strings, booleans, numbers, lists of them, tables and arrays of tables)."""

from __future__ import annotations

import json
import math
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"TOML has no {v}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is JSON's string, for these characters
    if isinstance(v, list) and not any(isinstance(x, dict) for x in v):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as a TOML value")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def toml_text(raw: dict[str, Any], header: str = "") -> str:
    """``raw`` as TOML text, ``header`` (comment lines) first."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]

    def table(d: dict[str, Any], path: list[str]) -> None:
        for k, v in d.items():
            if not isinstance(v, dict) and not _is_table_array(v):
                lines.append(f"{k} = {_value(v)}")
        for k, v in d.items():
            if isinstance(v, dict):
                lines.append("")
                lines.append(f"[{'.'.join([*path, k])}]")
                table(v, [*path, k])
            elif _is_table_array(v):
                for item in v:
                    lines.append("")
                    lines.append(f"[[{'.'.join([*path, k])}]]")
                    table(item, [*path, k])

    table(raw, [])
    return "\n".join(lines) + "\n"
