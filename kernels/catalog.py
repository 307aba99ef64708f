"""The catalog: every kernel family wattbench has, as an explicit tuple (no import-time
registration). A new family is one declaration module plus one entry in :data:`FAMILIES`."""

from __future__ import annotations

from wattbench.kernels.attention.family import DECODE, PREFILL, PREFILL_FULL
from wattbench.kernels.errors import UnknownKernelError, UsageError
from wattbench.kernels.family import Family, Impl
from wattbench.kernels.l2 import DEFAULT_POLICY, RotatingLaunch, check_policy, rotating_launch
from wattbench.kernels.matmul.family import FAMILY as MATMUL
from wattbench.kernels.qgemm.w4a16 import FAMILY as W4A16
from wattbench.kernels.qgemm.w8a8 import FAMILY as W8A8

FAMILIES: tuple[Family, ...] = (MATMUL, PREFILL, PREFILL_FULL, DECODE, W8A8, W4A16)


def required_modules() -> tuple[str, ...]:
    """The modules of the GPU stack (torch, triton, cupy) and any other an impl requires."""
    from wattbench.kernels.env import STACK

    extra = (m for f in FAMILIES for i in f.impls for m in i.requires)
    return tuple(dict.fromkeys((*STACK, *extra)))


def names() -> tuple[str, ...]:
    return tuple(f.name for f in FAMILIES)


def family(name: str) -> Family:
    """The family called ``name`` (UnknownKernelError lists the valid ones)."""
    for fam in FAMILIES:
        if fam.name == name:
            return fam
    raise UnknownKernelError(
        f"unknown kernel {name!r}",
        f"choose one of: {', '.join(names())} (`wattbench kernels` lists them)",
    )


def impl(family_name: str, impl_name: str) -> Impl:
    return family(family_name).impl(impl_name)


def gpu_launch(
    family_name: str,
    impl_name: str,
    shape,
    dtype: str,
    seed: int = 0,
    cuda_index: int = 0,
    *,
    l2: str = DEFAULT_POLICY,
) -> RotatingLaunch:
    """A launch of one problem on CUDA device ``cuda_index`` (CUDA's numbering, after
    ``CUDA_VISIBLE_DEVICES``; it becomes the current device) with seeded inputs allocated once,
    under the L2 policy ``l2`` (:mod:`wattbench.kernels.l2`): ``"rotate"`` (default) allocates
    input sets seeded ``seed``, ``seed + 1``, ... until they hold twice the L2 (within a memory
    bound) and each call runs the next set; ``"warm"`` runs the ``seed`` set every call.

    This is what a real-GPU runner repeats; ``launch.plan`` (``launch.describe()`` as JSON) says
    which policy is in force and how many sets it came to. Raises UsageError (with the reason)
    when there is no CUDA device, the implementation cannot run the problem here, or ``l2``
    names no policy.
    """
    from wattbench.kernels.env import probe

    fam = family(family_name)
    chosen = fam.impl(impl_name)
    fam.dtype(dtype)
    check_policy(l2)
    shape = tuple(shape)
    env = probe(chosen.requires)
    if not env.cuda:
        raise UsageError(
            f"cannot run {fam.name} on a real GPU here: {env.cuda_error}",
            "check the driver and CUDA_VISIBLE_DEVICES, or use a simulated GPU (sim:)",
        )
    reason = chosen.why_unavailable(dtype, env, shape, fam.work(shape, dtype).flops)
    if reason:
        raise UsageError(
            f"{fam.name} {chosen.name} cannot run {dtype} here: {reason}",
            "`wattbench kernels` lists what runs on this machine",
        )
    import torch

    torch.cuda.set_device(cuda_index)
    return rotating_launch(
        fam, chosen, shape, dtype, device=f"cuda:{cuda_index}", seed=seed, policy=l2
    )
