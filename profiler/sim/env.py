"""The simulator's environment variables, each read and checked in one place.

A value that cannot be used is a :class:`~wattbench.profiler.errors.EnvironmentVariableError`
(usage, exit 2) naming the variable, its value and what it accepts -- never a traceback, never a
silent default.
"""

from __future__ import annotations

import math
import os

from wattbench.profiler.errors import EnvironmentVariableError

PRIVILEGE_ENV = "WATTBENCH_SIM_PRIVILEGE"
SEED_ENV = "WATTBENCH_SIM_SEED"
UNIT_VARIATION_ENV = "WATTBENCH_SIM_UNIT_VARIATION"
FAULT_ENV = "WATTBENCH_SIM_LAUNCH_FAULT_AFTER_S"
STATE_DIR_ENV = "WATTBENCH_SIM_STATE_DIR"
HOST_ENV = "WATTBENCH_SIM_HOST"
NVML_ENV = "WATTBENCH_SIM_NVML"  # read in sim/node.py (a node name needs the specs)
IDLE_STOP_ENV = "WATTBENCH_SIM_SERVICE_IDLE_S"
#: default seconds without clients or loads after which the shared node's service stops
IDLE_STOP_S = 60.0

PRIVILEGES = ("root", "user", "power-only")


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None or not value.strip() else value.strip()


def _bad(name: str, value: str, accepts: str) -> EnvironmentVariableError:
    return EnvironmentVariableError(
        f"{name}={value!r} is not {accepts}", f"set {name} to {accepts}, or unset it"
    )


def privilege() -> str:
    """``root`` (default), ``user`` or ``power-only``."""
    value = _raw(PRIVILEGE_ENV) or "root"
    if value not in PRIVILEGES:
        raise _bad(PRIVILEGE_ENV, value, "root, user or power-only")
    return value


def seed() -> int:
    """Seed of the sensors' noise (default 0)."""
    value = _raw(SEED_ENV)
    if value is None:
        return 0
    try:
        n = int(value)
    except ValueError:
        raise _bad(SEED_ENV, value, "a non-negative integer") from None
    if n < 0:
        raise _bad(SEED_ENV, value, "a non-negative integer")
    return n


def unit_variation() -> bool:
    """Whether units depart from the nominal chip (default on; ``0`` turns it off)."""
    value = _raw(UNIT_VARIATION_ENV)
    if value is None or value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise _bad(UNIT_VARIATION_ENV, value, "0 or 1")


def launch_fault_after_s(uuid: str | None = None) -> float | None:
    """Virtual seconds after which simulated launches fail (tests), or None.

    ``<s>`` applies to every simulated GPU; ``<s>@<uuid prefix>`` only to the GPU whose UUID
    starts with the prefix (one GPU of a node failing mid-sweep), None for the others."""
    value = _raw(FAULT_ENV)
    if value is None:
        return None
    text, _, prefix = value.partition("@")
    try:
        t = float(text)
    except ValueError:
        raise _bad(FAULT_ENV, value, "seconds >= 0, optionally @<GPU UUID prefix>") from None
    if not math.isfinite(t) or t < 0:
        raise _bad(FAULT_ENV, value, "seconds >= 0, optionally @<GPU UUID prefix>")
    if prefix and uuid is not None and not uuid.lower().startswith(prefix.strip().lower()):
        return None
    return t


def service_idle_stop_s() -> float:
    """``WATTBENCH_SIM_SERVICE_IDLE_S``: seconds without clients or loads before the shared
    node's service stops (default :data:`IDLE_STOP_S`)."""
    value = _raw(IDLE_STOP_ENV)
    if value is None:
        return IDLE_STOP_S
    try:
        s = float(value)
    except ValueError:
        s = -1.0
    if not s > 0 or not math.isfinite(s):
        raise _bad(IDLE_STOP_ENV, value, "a number of seconds > 0")
    return s


def sim_host() -> str | None:
    """``WATTBENCH_SIM_HOST``: the machine the simulated GPUs are in (several emulated nodes on
    one machine, e.g. a local Slurm cluster): it changes their UUIDs, serials and state files,
    so each emulated node has cards of its own. Unset: the one machine."""
    value = _raw(HOST_ENV)
    if value is None:
        return None
    if not all(c.isalnum() or c in "._-" for c in value) or len(value) > 64:
        raise _bad(HOST_ENV, value, "a host name (letters, digits, '.', '_', '-')")
    return value


def state_dir_checked() -> None:
    """``WATTBENCH_SIM_STATE_DIR``, when set, must be a folder (or not exist yet) that this
    process can write."""
    value = _raw(STATE_DIR_ENV)
    if value is None:
        return
    path = os.path.expanduser(value)
    existing = path
    while not os.path.exists(existing):
        parent = os.path.dirname(existing.rstrip("/")) or "."
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise EnvironmentVariableError(
            f"{STATE_DIR_ENV}={value!r} is not a folder ({existing} is a file)",
            f"point {STATE_DIR_ENV} at a folder you can write, or unset it",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EnvironmentVariableError(
            f"{STATE_DIR_ENV}={value!r} cannot be written ({existing} is read-only)",
            f"point {STATE_DIR_ENV} at a folder you can write, or unset it",
        )


def check_all() -> None:
    """Read every simulator variable once (the CLI does this before any command runs)."""
    from wattbench.profiler.sim.node import from_env

    privilege()
    seed()
    unit_variation()
    launch_fault_after_s()
    state_dir_checked()
    sim_host()
    from_env()  # WATTBENCH_SIM_NVML
    service_idle_stop_s()
