"""The run record's schema: its id, the JSON Schema file, and validation against it.

``run-record.schema.json`` (JSON Schema draft 2020-12, shipped in this package) is the one
definition of a valid record. :func:`validate` checks a document against it with the
``jsonschema`` package when that is importable, and otherwise with a small built-in checker that
understands the subset of keywords the file uses (type, required, properties,
additionalProperties, items, const, enum, minimum, pattern, $ref to ``#/$defs/...``), so both
paths enforce the same rules.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

SCHEMA_NAME = "wattbench.run"
SCHEMA_VERSION = 1
SCHEMA_ID = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"  # the value of every record's "schema" key
SCHEMA_FILE = "run-record.schema.json"


@functools.cache
def json_schema() -> dict[str, Any]:
    """The run record's JSON Schema (draft 2020-12) as a dict."""
    text = resources.files("wattbench.profiler.store").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


def parse_schema_id(value: Any) -> tuple[str, int | None] | None:
    """Split ``"name/version"`` into (name, version); version None if not an integer.

    Returns None when ``value`` is not a string of that form.
    """
    if not isinstance(value, str) or "/" not in value:
        return None
    name, _, version = value.rpartition("/")
    return name, int(version) if version.isdigit() else None


def validate(doc: Any, *, use_jsonschema: bool | None = None) -> list[str]:
    """Problems of ``doc`` against the run-record schema, as ``"path: message"``; [] if valid.

    ``use_jsonschema``: None uses the ``jsonschema`` package when importable, else the built-in
    checker; True / False force one (True raises ImportError without the package).
    """
    return validate_against(json_schema(), doc, use_jsonschema=use_jsonschema)


def validate_against(
    schema: dict[str, Any], doc: Any, *, use_jsonschema: bool | None = None
) -> list[str]:
    """Problems of ``doc`` against the JSON Schema ``schema`` (one of wattbench's schema files,
    which keep to the keywords the built-in checker knows), as ``"path: message"``."""
    if use_jsonschema is None:
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            use_jsonschema = False
        else:
            use_jsonschema = True
    if use_jsonschema:
        return _validate_jsonschema(schema, doc)
    problems: list[str] = []
    _check(doc, schema, schema, "", problems)
    return problems


def _where(path: str) -> str:
    return path or "(top level)"


def _validate_jsonschema(schema: dict[str, Any], doc: Any) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_where('/'.join(str(p) for p in e.absolute_path))}: {e.message}" for e in errors]


# --- built-in checker (the subset of JSON Schema the schema file uses) ---------------------------

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported $ref {ref!r} in {SCHEMA_FILE}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str, out: list) -> None:
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, path, out)
    if "const" in schema and value != schema["const"]:
        out.append(f"{_where(path)}: {schema['const']!r} was expected, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{_where(path)}: {value!r} is not one of {schema['enum']!r}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            out.append(f"{_where(path)}: {value!r} is not of type {' or '.join(types)}")
            return
    # written so that NaN fails a bound (NaN < x and NaN <= x are both False)
    if "minimum" in schema and _TYPES["number"](value) and not value >= schema["minimum"]:
        out.append(f"{_where(path)}: {value!r} is less than the minimum {schema['minimum']!r}")
    low = schema.get("exclusiveMinimum")
    if low is not None and _TYPES["number"](value) and not value > low:
        out.append(f"{_where(path)}: {value!r} is not greater than {low!r}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        out.append(f"{_where(path)}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                out.append(f"{_where(path)}: {key!r} is a required property")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                _check(item, sub, root, f"{path}/{key}" if path else str(key), out)
            elif extra is False:
                out.append(f"{_where(path)}: additional property {key!r} is not allowed")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], root, f"{path}/{i}" if path else str(i), out)
