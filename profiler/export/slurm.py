"""Slurm renderings of an operating point.

* :func:`gpu_freq` -- the value of ``srun`` / ``sbatch`` ``--gpu-freq``, whose syntax is
  ``[[type=]value][,[type=]value][,verbose]``: a bare value is the graphics (SM) clock, ``memory=``
  the memory clock; values are MHz (or ``low``, ``medium``, ``high``, ``highm1``). Clocks are
  snapped to the nearest supported clock the document knows (Slurm would do the same on the node);
  an unlocked clock is left out. Slurm resets the clocks when the job ends.
* :func:`prolog` / :func:`epilog` -- Slurm cannot set a power limit per job, so a root
  ``Prolog`` sets it on the job's GPUs (``SLURM_JOB_GPUS``, else ``CUDA_VISIBLE_DEVICES``) with
  ``nvidia-smi -i <idx> -pl <W>``, after checking the GPU is the model the point is for and saving
  the limit in force; the ``Epilog`` puts the saved limit back (the default limit if the saved
  file is damaged). Neither fails the job: a failure is logged to stderr and the script exits 0,
  because a failing Prolog drains the node.

Every value from the document enters the scripts as a ``shlex.quote``-d assignment or as a
number wattbench formatted itself; file names are built from digits only.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence

from wattbench.profiler.store.points import GpuInfo, PointEntry


def snap(mhz: int, supported: Sequence[int]) -> int:
    """The supported clock nearest ``mhz`` (a tie goes to the lower); ``mhz`` if none known."""
    if not supported:
        return mhz
    return min(supported, key=lambda c: (abs(c - mhz), c))


def gpu_freq(entry: PointEntry, info: GpuInfo) -> str | None:
    """``--gpu-freq`` value for ``entry`` (e.g. ``1305`` or ``1305,memory=2619``); None when
    both clocks are unlocked (nothing for Slurm to set)."""
    parts = []
    mem = snap(entry.mem_mhz, info.mem_clocks_mhz) if entry.mem_mhz is not None else None
    if entry.sm_mhz is not None:
        parts.append(str(snap(entry.sm_mhz, info.sm_clocks_mhz(mem))))
    if mem is not None:
        parts.append(f"memory={mem}")
    return ",".join(parts) or None


def _watts(w: float) -> str:
    if not (isinstance(w, int | float) and math.isfinite(w) and w > 0):
        raise ValueError(f"not a power limit: {w!r}")
    return f"{float(w):.2f}".rstrip("0").rstrip(".")


_COMMON = """\
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
NVIDIA_SMI="${{WATTBENCH_NVIDIA_SMI:-nvidia-smi}}"
STATE_DIR="${{WATTBENCH_SLURM_STATE_DIR:-/run/wattbench-slurm}}"
{assignments}
log() {{ printf 'wattbench %s: job %s: %s\\n' "$WHAT" "$JOB" "$*" >&2; }}
JOB="${{SLURM_JOB_ID:-}}"
case "$JOB" in ''|*[!0-9]*) log "SLURM_JOB_ID is not a job number; nothing done"; exit 0;; esac
"""

_PROLOG = """\
GPUS="${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}"
[ -n "$GPUS" ] || exit 0
mkdir -p -- "$STATE_DIR" || { log "cannot create $STATE_DIR; power limit left as is"; exit 0; }
IFS=, read -r -a IDXS <<< "$GPUS"
for idx in "${IDXS[@]}"; do
  case "$idx" in ''|*[!0-9]*) log "GPU id '$idx' is not an index; skipped"; continue;; esac
  name="$("$NVIDIA_SMI" -i "$idx" --query-gpu=name --format=csv,noheader)" || {
    log "cannot read GPU $idx; skipped"; continue; }
  if [ "$name" != "$GPU_NAME" ]; then
    log "GPU $idx is not the model this point is for; left as is"; continue
  fi
  old="$("$NVIDIA_SMI" -i "$idx" --query-gpu=power.limit --format=csv,noheader,nounits)" || {
    log "cannot read the power limit of GPU $idx; skipped"; continue; }
  printf '%s\\n' "$old" > "$STATE_DIR/job-$JOB-gpu-$idx.pl" || {
    log "cannot save the power limit of GPU $idx; left as is"; continue; }
  "$NVIDIA_SMI" -i "$idx" -pl "$POWER_LIMIT_W" >&2 || log "nvidia-smi -pl failed on GPU $idx"
done
exit 0
"""

_EPILOG = """\
for f in "$STATE_DIR/job-$JOB-gpu-"*.pl; do
  [ -f "$f" ] || continue
  idx="${f##*-gpu-}"; idx="${idx%.pl}"
  case "$idx" in ''|*[!0-9]*) continue;; esac
  old="$(head -n 1 -- "$f" | tr -d ' ')"
  case "$old" in ''|*[!0-9.]*|*.*.*) old="$DEFAULT_LIMIT_W";; esac
  if [ -n "$old" ]; then
    "$NVIDIA_SMI" -i "$idx" -pl "$old" >&2 || log "nvidia-smi -pl failed on GPU $idx"
  else
    log "no saved or default power limit for GPU $idx; run: wattbench reset --device $idx"
  fi
  rm -f -- "$f"
done
exit 0
"""


def _script(what: str, entry: PointEntry, limit_w: float, info: GpuInfo, body: str) -> str:
    default = info.power_limit_w_default
    assignments = "\n".join(
        [
            f"WHAT={what}",
            f"GPU_NAME={shlex.quote(entry.gpu_name)}",
            f"WORKLOAD={shlex.quote(entry.workload)}",
            f"OBJECTIVE={shlex.quote(entry.objective)}",
            f"POWER_LIMIT_W={_watts(limit_w)}",
            f"DEFAULT_LIMIT_W={_watts(default) if default is not None else ''}",
        ]
    )
    sim = (
        "# SIMULATED: this point comes from a simulated GPU's model outputs.\n"
        if entry.simulated
        else ""
    )
    head = (
        "#!/bin/bash\n"
        f"# wattbench Slurm {what}: power limit of one operating point (wattbench.points/1).\n"
        "# Install as Prolog / Epilog (slurm.conf) for the nodes or partition that run this\n"
        "# workload; pair it with the other script of the same name. Runs as root.\n" + sim
    )
    return head + _COMMON.format(assignments=assignments) + body


def prolog(entry: PointEntry, info: GpuInfo) -> str:
    """Bash Prolog setting ``entry.power_limit_w`` on the job's GPUs of the entry's model."""
    limit_w = entry.power_limit_w
    if limit_w is None:
        raise ValueError("the point keeps the default power limit: no prolog needed")
    return _script("prolog", entry, limit_w, info, _PROLOG)


def epilog(entry: PointEntry, info: GpuInfo) -> str:
    """Bash Epilog restoring the power limits the matching :func:`prolog` saved."""
    limit_w = entry.power_limit_w
    if limit_w is None:
        raise ValueError("the point keeps the default power limit: no epilog needed")
    return _script("epilog", entry, limit_w, info, _EPILOG)
