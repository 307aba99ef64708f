"""The pytest plugin's correctness verdict: what the check engine found
(``kernels/verify.py``'s :func:`~wattbench.kernels.verify.check_one`: seeded random inputs, the
output poisoned (NaN) before the launch, the relative Frobenius error against the family's
float64 reference, the dtype's tolerance) as the case's ``correctness`` entry and failure text.

:func:`cpu_check_reason` says whether an implementation can be checked on the CPU at a problem's
own shape, for simulated GPUs, which run no kernel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from wattbench.kernels.env import Environment
from wattbench.kernels.family import Impl, Shape
from wattbench.kernels.verify import FAIL, OneCheck, error_json

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
        return {**dataclasses.asdict(self), "rel_error": error_json(self.rel_error)}

    @classmethod
    def of(cls, one: OneCheck) -> Verdict:
        """The verdict of one check by the engine."""
        return cls(
            one.status, one.tolerance_rel_fro, one.rel_error, one.device, one.reference_device
        )

    def failure_text(self, label: str) -> str:
        return (
            f"{label}: relative Frobenius error {self.rel_error:.3g} exceeds the tolerance "
            f"{self.tolerance_rel_fro:.3g} (float64 reference on {self.reference_device}, "
            f"kernel on {self.where})"
        )


def cpu_check_reason(
    impl: Impl, shape: Shape, dtype: str, flops: float, env: Environment
) -> str | None:
    """Why ``impl`` cannot be checked on the CPU at ``shape`` (too big, no CPU path, a missing
    module), or None when it can. A CUDA device in ``env`` is ignored: the check is on the CPU."""
    cpu_env = dataclasses.replace(env, device_name=None, compute_capability=None)
    return impl.why_unavailable(dtype, cpu_env, shape, flops)


def not_checked(tolerance: float, note: str) -> Verdict:
    return Verdict(NOT_CHECKED, tolerance, note=note)
