"""wattbench's per-user folders (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


def state_home() -> Path:
    """``$XDG_STATE_HOME/wattbench`` (default ``~/.local/state/wattbench``): simulated GPUs'
    state, actuation journals, thermal models."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "wattbench"


def data_home() -> Path:
    """``$XDG_DATA_HOME/wattbench`` (default ``~/.local/share/wattbench``): run records."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "wattbench"
