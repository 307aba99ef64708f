"""Kubernetes names and labels from untrusted text: label syntax checks and DNS names (the
file-safe :func:`~wattbench.profiler.names.safe_name` they build on lives in ``profiler/names.py``).
"""

from __future__ import annotations

import re

from wattbench.profiler.names import short_hash

_LABEL_OK = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
_PREFIX_OK = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def is_label_value(text: str) -> bool:
    """Kubernetes label value syntax: empty, or <= 63 of ``[A-Za-z0-9._-]`` with alphanumeric
    ends."""
    return bool(_LABEL_OK.match(text))


def is_label_key(text: str) -> bool:
    """Kubernetes label key syntax: ``[prefix/]name``, prefix a DNS subdomain (<= 253)."""
    prefix, _, name = text.rpartition("/")
    if prefix and not _PREFIX_OK.match(prefix):
        return False
    return bool(name) and is_label_value(name)


def dns_name(text: str, max_len: int = 253) -> str:
    """``text`` as a DNS subdomain name (Kubernetes object names): lowercase ``[a-z0-9.-]``
    with alphanumeric ends; a hash of the original is appended when it had to change."""
    clean = re.sub(r"[^a-z0-9.-]+", "-", text.lower())
    clean = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", clean)
    if clean == text and 0 < len(clean) <= max_len:
        return clean
    h = short_hash(text)
    keep = re.sub(r"[^a-z0-9]+$", "", clean[: max(0, max_len - len(h) - 1)])
    return f"{keep}-{h}" if keep else h
