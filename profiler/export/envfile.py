"""An operating point as a POSIX shell env file: ``. ./point.env`` then use the variables.

Every value is ``shlex.quote``-d, so sourcing the file assigns exactly the document's text and
runs nothing. Unlocked clocks and the default power limit are empty strings. Not for
``docker --env-file`` or systemd ``EnvironmentFile``, which do not remove shell quotes.
"""

from __future__ import annotations

import shlex

from wattbench.profiler.export.slurm import gpu_freq
from wattbench.profiler.store.points import GpuInfo, PointEntry

PREFIX = "WATTBENCH_"


def _text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def variables(entry: PointEntry, info: GpuInfo) -> dict[str, str]:
    """Variable name -> value (text) for ``entry``."""
    values = {
        "GPU_NAME": entry.gpu_name,
        "GPU_UUID": entry.gpu_uuid,
        "WORKLOAD": entry.workload,
        "WORKLOAD_CLASS": entry.workload_class,
        "OBJECTIVE": entry.objective,
        "SM_MHZ": entry.sm_mhz,
        "MEM_MHZ": entry.mem_mhz,
        "POWER_LIMIT_W": entry.power_limit_w,
        "GPU_FREQ": gpu_freq(entry, info),
        "EXPECTED_SLOWDOWN_REL": entry.expected_slowdown_rel,
        "EXPECTED_ENERGY_SAVING_REL": entry.expected_energy_saving_rel,
        "SIMULATED": entry.simulated,
    }
    return {PREFIX + k: _text(v) for k, v in values.items()}


def env_file(entry: PointEntry, info: GpuInfo) -> str:
    lines = [
        "# wattbench operating point (wattbench.points/1). Source it: . ./this-file",
        "# empty SM_MHZ / MEM_MHZ: clock unlocked; empty POWER_LIMIT_W: the default limit",
    ]
    if entry.simulated:
        lines.append("# SIMULATED: this point comes from a simulated GPU's model outputs.")
    lines.extend(f"{k}={shlex.quote(v)}" for k, v in variables(entry, info).items())
    return "\n".join(lines) + "\n"
