"""Suite cases: problems of a family over implementations x shapes x dtypes, as pytest params.

Every case is marked ``full``; the quick subset is marked ``quick`` as well. Ids are the
problems' labels (``matmul-triton-bf16-8192x8192x8192``). An (implementation, dtype) pair the
implementation does not declare is not a case; what an implementation cannot run on the GPU at
hand (architecture, missing module, a shape it refuses) is skipped at run time with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from wattbench.kernels import catalog
from wattbench.kernels.costs import Problem
from wattbench.kernels.family import Family


def problems(
    family: str,
    shapes: Sequence[str],
    *,
    dtypes: Sequence[str] | None = None,
    impls: Sequence[str] | None = None,
) -> list[Problem]:
    """Every (shape, dtype, implementation) of ``family`` named: ``shapes`` as the family writes
    them (``4096x4096x4096``, a preset, ``PRESET@V``), ``dtypes`` / ``impls`` None for all.
    Ordered shape, dtype, implementation (baseline first), without repeats."""
    fam = catalog.family(family)
    for name in dtypes or ():
        fam.dtype(name)
    chosen = [fam.impl(n) for n in impls] if impls else list(fam.impls)
    all_shapes = dict.fromkeys(s for text in shapes for s in fam.shapes(text))
    out: list[Problem] = []
    for shape in all_shapes:
        for dtype in dtypes or fam.dtypes:
            out.extend(
                Problem(fam.name, impl.name, shape, dtype)
                for impl in chosen
                if dtype in impl.dtypes
            )
    return list(dict.fromkeys(out))


def cases(full: Iterable[Problem], quick: Iterable[Problem] = ()) -> list:
    """``pytest.param`` per problem (``full`` and ``quick`` together, quick ones first), marked
    ``full``, and ``quick`` too when in ``quick``; id = the problem's label."""
    quick = list(dict.fromkeys(quick))
    quick_set = set(quick)
    ordered = list(dict.fromkeys([*quick, *full]))
    return [
        pytest.param(
            p,
            id=p.label,
            marks=(pytest.mark.full, pytest.mark.quick) if p in quick_set else (pytest.mark.full,),
        )
        for p in ordered
    ]


def suite_cases(families: Iterable[Family] | None = None) -> list:
    """The suite of every family (default: the catalog's, in its order): per family, the quick
    cases then the full ones, as its :class:`~wattbench.kernels.family.Suite` declares them."""
    out = []
    for fam in catalog.FAMILIES if families is None else families:
        full, quick, quick_dtypes = fam.suite_shapes()
        out.extend(cases(problems(fam.name, full), problems(fam.name, quick, dtypes=quick_dtypes)))
    return out
