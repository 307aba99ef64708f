"""A small YAML writer whose output any YAML 1.1 / 1.2 parser reads back exactly.

Block mappings and sequences; every string -- key or value -- is written as a double-quoted
scalar with JSON escapes (a JSON string is a valid YAML double-quoted scalar), with characters
YAML does not allow raw in a stream (C0/C1 controls, DEL, line and paragraph separators, BOM,
non-characters, lone surrogates) written as ``\\uXXXX``. So no value can start a comment, a new
key, a list item or a document, whatever it contains. :class:`Literal` text (ASCII, printable,
one line per line) is written as a ``|`` block, for embedded files such as a points document.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any


class Literal(str):
    """Text written as a ``|`` literal block; must be printable ASCII lines (else quoted)."""


def _allowed_raw(c: str) -> bool:
    o = ord(c)
    controls = o < 0x20 or 0x7F <= o <= 0x9F
    return not (controls or 0xD800 <= o <= 0xDFFF or o in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF))


def quote(text: str) -> str:
    """``text`` as a double-quoted YAML scalar (JSON escapes)."""
    body = json.dumps(text, ensure_ascii=False)[1:-1]  # escapes \ " and C0 controls
    out = []
    for c in body:
        out.append(c if _allowed_raw(c) or c in '\\"' else f"\\u{ord(c):04x}")
    return '"' + "".join(out) + '"'


def _literal_ok(text: str) -> bool:
    return (
        text.isascii()
        and all(" " <= c <= "~" or c == "\n" for c in text)
        and not text.startswith((" ", "\n"))
        and not text.endswith("\n\n")
    )


def scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"YAML output cannot hold {v!r}")
        return repr(v)
    if isinstance(v, str):
        return quote(v)
    raise TypeError(f"cannot write {type(v).__name__} as YAML")


def _lines(v: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(v, Mapping):
        if not v:
            return [pad + "{}"]
        for k, item in v.items():
            key = quote(str(k))
            if isinstance(item, Literal) and _literal_ok(item):
                out.append(f"{pad}{key}: |" + ("" if item.endswith("\n") else "-"))
                out.extend(f"{pad}  {ln}" if ln else "" for ln in item.rstrip("\n").split("\n"))
            elif isinstance(item, Mapping | list | tuple) and item:
                out.append(f"{pad}{key}:")
                out.extend(_lines(item, indent + 2))
            else:
                out.append(f"{pad}{key}: {_inline(item)}")
        return out
    if isinstance(v, Sequence) and not isinstance(v, str):
        if not v:
            return [pad + "[]"]
        for item in v:
            if isinstance(item, Mapping | list | tuple) and item:
                sub = _lines(item, indent + 2)
                out.append(f"{pad}- {sub[0].lstrip()}")
                out.extend(sub[1:])
            else:
                out.append(f"{pad}- {_inline(item)}")
        return out
    return [pad + scalar(v)]


def _inline(v: Any) -> str:
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, list | tuple):
        return "[]"
    return scalar(v)


def dump(doc: Any, comment: str = "") -> str:
    """``doc`` (mappings, sequences, str, int, float, bool, None) as one YAML document.
    ``comment`` (trusted text, one ``#`` line per line) goes on top."""
    head = [f"# {ln}" for ln in comment.splitlines()] if comment else []
    return "\n".join([*head, *_lines(doc, 0)]) + "\n"
