"""Safe names from untrusted text (GPU names and workload labels read from result files), for
file names and labels alike (plots, exported files).

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
