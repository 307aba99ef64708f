"""wattbench's per-user folders (XDG base directories), kept on node-local storage.

State (simulated GPUs, actuation journals, thermal models) must be on the node it describes:
on HPC sites ``$HOME`` is a network filesystem shared by every node, where ``flock`` is not
reliable and one node's journal would be another's. So when ``XDG_STATE_HOME`` is unset and the
home folder is on a network filesystem, state goes to ``/var/tmp/wattbench-<uid>`` instead.
Run records (data) stay in the home folder: they are meant to be shared.
"""

from __future__ import annotations

import os
from pathlib import Path

#: filesystem types that are not node-local (``/proc/self/mountinfo`` names)
NETWORK_FS = frozenset(
    {
        *("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "ceph"),
        *("fuse.sshfs", "fuse.glusterfs", "glusterfs", "afs", "panfs", "wekafs", "fuse.weka"),
        *("fuse.juicefs", "fuse.s3fs", "fuse.gcsfuse", "orangefs", "ocfs2", "fuse.ceph"),
    }
)
MOUNTINFO = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def fs_type(path: str | os.PathLike[str], mountinfo: str | None = None) -> str | None:
    """The filesystem type of the mount holding ``path`` (None when unknown: not Linux)."""
    if mountinfo is None:
        try:
            with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
                mountinfo = f.read()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount = _unescape(fields[4])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, right.split()[0]
    return kind


def node_local_state() -> Path:
    """``/var/tmp/wattbench-<uid>``: node-local, kept across reboots on most systems."""
    return Path("/var/tmp") / f"wattbench-{os.getuid()}"


def state_home() -> Path:
    """``$XDG_STATE_HOME/wattbench`` (default ``~/.local/state/wattbench``, or
    :func:`node_local_state` when the home folder is on a network filesystem): simulated GPUs'
    state, actuation journals, thermal models."""
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "wattbench"
    home = os.path.expanduser("~")
    if fs_type(home) in NETWORK_FS:
        return node_local_state()
    return Path(home, ".local", "state") / "wattbench"


def data_home() -> Path:
    """``$XDG_DATA_HOME/wattbench`` (default ``~/.local/share/wattbench``): run records."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "wattbench"
