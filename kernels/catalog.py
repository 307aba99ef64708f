"""The catalog: every kernel family wattbench has, found by one explicit, deterministic scan (no
import-time registration, no registry another module fills in).

A family folder is a sub-package of ``wattbench.kernels`` (a folder of ``kernels/`` with an
``__init__.py``) with a module ``family`` that declares, at module level, either ``FAMILY`` (one
:class:`~wattbench.kernels.family.Family`) or ``FAMILIES`` (a tuple of them, in order). Folders
without a ``family`` module are helpers and are skipped. The families of :data:`FIRST` come
first, in that order; every other folder's follow in folder-name order. Adding a family is
adding its folder: nothing here, in pyproject.toml or in the suites changes (CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType

from wattbench.kernels.errors import UnknownKernelError, UsageError
from wattbench.kernels.family import Family, Impl
from wattbench.kernels.l2 import DEFAULT_POLICY, RotatingLaunch, check_policy, rotating_launch

#: the package whose sub-packages are scanned
PACKAGE = "wattbench.kernels"
#: the name of a family folder's declaration module
DECLARATION = "family"
#: the folders listed first, in this order (the order `wattbench kernels` has always had)
FIRST = ("matmul", "attention", "qgemm")


def family_folders(package: str = PACKAGE) -> tuple[str, ...]:
    """The sub-packages of ``package`` that have a ``family`` module: :data:`FIRST` first, the
    others by name."""
    pkg = importlib.import_module(package)
    folders = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.ispkg:
            continue
        sub = importlib.import_module(f"{package}.{info.name}")
        if any(m.name == DECLARATION for m in pkgutil.iter_modules(sub.__path__)):
            folders.append(info.name)
    rank = {name: i for i, name in enumerate(FIRST)}
    return tuple(sorted(folders, key=lambda n: (rank.get(n, len(rank)), n)))


def declared(module: ModuleType) -> tuple[Family, ...]:
    """The families ``module`` declares: its ``FAMILY`` or its ``FAMILIES`` (exactly one)."""
    has = [name for name in ("FAMILY", "FAMILIES") if hasattr(module, name)]
    if len(has) != 1:
        raise TypeError(f"{module.__name__} must declare exactly one of FAMILY, FAMILIES")
    value = getattr(module, has[0])
    families = (value,) if has[0] == "FAMILY" else value
    if not isinstance(families, tuple) or not families:
        raise TypeError(f"{module.__name__}.FAMILIES must be a non-empty tuple of Family")
    for fam in families:
        if not isinstance(fam, Family):
            raise TypeError(f"{module.__name__}.{has[0]} holds {fam!r}, not a Family")
    return families


def discover(package: str = PACKAGE) -> tuple[Family, ...]:
    """Every family declared by a family folder of ``package``, in catalog order (names unique)."""
    found = [
        fam
        for folder in family_folders(package)
        for fam in declared(importlib.import_module(f"{package}.{folder}.{DECLARATION}"))
    ]
    _check_unique(found)
    return tuple(found)


def _check_unique(families: Iterable[Family]) -> None:
    seen: set[str] = set()
    for fam in families:
        if fam.name in seen:
            raise ValueError(f"two kernel families are called {fam.name!r}")
        seen.add(fam.name)


FAMILIES: tuple[Family, ...] = discover()


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
