"""Safe names from untrusted text (GPU names and workload labels read from result files).

Every function here returns text of ``[A-Za-z0-9._-]`` only. When the text had to change (other
characters, too long, bad ends), a short hash of the *original* is appended, so that distinct
inputs stay distinct and the same input always gives the same name.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EDGES = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")

#: Kubernetes label names and values: at most 63 characters
K8S_LABEL_MAX = 63


def short_hash(text: str, n: int = 8) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``text`` (UTF-8; lone surrogates escaped)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def safe_name(text: str, max_len: int = K8S_LABEL_MAX) -> str:
    """``text`` as ``[A-Za-z0-9._-]``, starting and ending with a letter or digit, at most
    ``max_len`` characters; ``text`` itself when it already is one. Never empty."""
    clean = _EDGES.sub("", _UNSAFE.sub("-", text))
    if clean == text and 0 < len(clean) <= max_len:
        return clean
    h = short_hash(text)
    keep = _EDGES.sub("", clean[: max(0, max_len - len(h) - 1)])
    return f"{keep}-{h}" if keep else h


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
