"""One correctness check of one implementation, with the check engine's pieces
(``kernels/verify.py``): seeded random inputs, the output poisoned (NaN) before the launch, the
relative Frobenius error against the family's float64 reference, the dtype's tolerance.

:func:`check_once` returns the launch it checked and its inputs (on a CUDA device, to be timed
next, as set 0 of an L2 rotation) so that they are allocated once. :func:`cpu_check_reason`
says whether an implementation can be checked on the CPU at a problem's own shape, for
simulated GPUs, which run no kernel.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from wattbench.kernels.env import Environment
from wattbench.kernels.family import Family, Impl, Inputs, Launch, Shape
from wattbench.kernels.verify import FAIL, PASS, REFERENCE_CPU_MAX_FLOPS, rel_fro_error

NOT_CHECKED = "not-checked"


@dataclass(frozen=True)
class Verdict:
    """``status``: pass / FAIL / not-checked; ``where``: the torch device it ran on ("cpu",
    "cuda:0"); ``reference_device``: where the float64 reference was computed."""

    status: str
    tolerance_rel_fro: float
    rel_error: float | None = None
    where: str | None = None
    reference_device: str | None = None
    note: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["rel_error"] is not None and not math.isfinite(d["rel_error"]):
            d["rel_error"] = str(d["rel_error"])  # JSON has no NaN / inf
        return d

    def failure_text(self, label: str) -> str:
        return (
            f"{label}: relative Frobenius error {self.rel_error:.3g} exceeds the tolerance "
            f"{self.tolerance_rel_fro:.3g} (float64 reference on {self.reference_device}, "
            f"kernel on {self.where})"
        )


@dataclass
class Checked:
    """A verdict and, when kept, the checked launch and the inputs it holds."""

    verdict: Verdict
    launch: Launch | None = None
    inputs: Inputs | None = None

    def kept(self) -> tuple[Inputs, Launch]:
        """The inputs and the launch kept by ``check_once(..., keep_launch=True)``."""
        if self.inputs is None or self.launch is None:
            raise ValueError("the check kept no launch: pass keep_launch=True")
        return self.inputs, self.launch


def check_once(
    family: Family,
    impl: Impl,
    shape: Shape,
    dtype: str,
    device: str,
    *,
    seed: int = 0,
    keep_launch: bool = False,
) -> Checked:
    """Run ``impl`` once on ``device`` ("cpu" or "cuda:N") and compare with float64.

    Raises ``ImplUnavailable`` when the implementation finds it cannot run here, and whatever the
    implementation raises. ``keep_launch`` returns the launch and its inputs."""
    import torch

    tolerance = family.tolerance(dtype)
    flops = family.work(shape, dtype).flops
    ref_device = "cpu" if device == "cpu" or flops <= REFERENCE_CPU_MAX_FLOPS else device
    inputs = family.make_inputs(shape, dtype, seed, device)
    ref = family.reference(inputs, ref_device)
    launch = impl.make_launch(inputs)
    inputs.poison()
    launch()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    err = rel_fro_error(inputs.out, ref)
    del ref
    status = PASS if err <= tolerance else FAIL  # NaN (nothing written) is not <= anything
    verdict = Verdict(status, tolerance, err, device, ref_device)
    if not keep_launch:
        return Checked(verdict)
    return Checked(verdict, launch, inputs)


def cpu_check_reason(
    impl: Impl, shape: Shape, dtype: str, flops: float, env: Environment
) -> str | None:
    """Why ``impl`` cannot be checked on the CPU at ``shape`` (too big, no CPU path, a missing
    module), or None when it can. A CUDA device in ``env`` is ignored: the check is on the CPU."""
    cpu_env = dataclasses.replace(env, device_name=None, compute_capability=None)
    return impl.why_unavailable(dtype, cpu_env, shape, flops)


def not_checked(tolerance: float, note: str) -> Verdict:
    return Verdict(NOT_CHECKED, tolerance, note=note)
