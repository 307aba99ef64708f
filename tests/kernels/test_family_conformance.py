"""Conformance of every family the catalog finds (CONTRIBUTING.md, "Add a kernel family").

Per family: the declaration is consistent (names, dims, dtypes, presets, suite), its Work is
positive at every preset's first shape, its inputs are seeded, deterministic and of the declared
shape, and every implementation passes ``check`` against the float64 reference at the family's
smallest preset shape in every dtype it runs on the CPU (torch, or Triton's interpreter). A new
family folder is in these tests with no edit here.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from wattbench.kernels import catalog, verify
from wattbench.kernels.env import probe
from wattbench.kernels.family import Family, Shape, Suite, shape_text
from wattbench.profiler.pytest_plugin.cases import problems

CUDA = torch.cuda.is_available()
FAMILIES = {fam.name: fam for fam in catalog.FAMILIES}


def smallest_shape(fam: Family) -> Shape:
    """The preset shape of the fewest elements (ties: the first declared)."""
    shapes = [s for p in fam.presets for s in p.shapes]
    return min(shapes, key=math.prod)


def cpu_cases() -> list:
    """(family, dtype) pairs some implementation of which runs on the CPU."""
    return [
        pytest.param(fam.name, dtype, id=f"{fam.name}-{dtype}")
        for fam in catalog.FAMILIES
        for dtype in fam.dtypes
        if any(i.runs_on_cpu(dtype) for i in fam.impls)
    ]


def test_the_catalog_is_the_scan_of_the_family_folders_in_order():
    assert catalog.family_folders()[:3] == catalog.FIRST
    assert catalog.discover() == catalog.FAMILIES
    assert catalog.names()[:6] == ("matmul", "prefill", "prefill-full", "decode", "w8a8", "w4a16")
    assert len(set(catalog.names())) == len(catalog.names())


@pytest.mark.parametrize("name", FAMILIES)
def test_the_declaration_is_consistent(name):
    fam = FAMILIES[name]
    assert fam.name == name and fam.description and fam.dims
    assert all(d and d.isidentifier() for d in fam.dims), fam.dims
    assert fam.presets, "a family names at least one preset (the suite's default is built on it)"
    assert fam.baseline.cpu_path is not None, "the baseline has a CPU path (checks without a GPU)"
    for impl in fam.impls:
        assert impl.description
        assert set(impl.dtypes) <= set(fam.dtypes)
        assert set(impl.math) <= set(impl.dtypes), f"{impl.name}: math for undeclared dtypes"
    for preset in fam.presets:
        for shape in preset.shapes:
            assert fam.parse_shape(shape_text(shape)) == shape
    for dtype in fam.dtypes:
        for preset in fam.presets:
            work = fam.work(preset.shapes[0], dtype)
            assert work.flops >= 0 and work.bytes > 0
    full, quick, quick_dtypes = fam.suite_shapes()
    assert problems(fam.name, full), "the full suite has cases"
    assert set(quick_dtypes) <= set(fam.dtypes)
    problems(fam.name, quick, dtypes=quick_dtypes)  # parses


@pytest.mark.parametrize("name", FAMILIES)
def test_inputs_are_seeded_and_of_the_declared_shape(name):
    fam = FAMILIES[name]
    shape = smallest_shape(fam)
    dtype = next(iter(fam.dtypes))
    a = fam.make_inputs(shape, dtype, 3, "cpu")
    b = fam.make_inputs(shape, dtype, 3, "cpu")
    c = fam.make_inputs(shape, dtype, 4, "cpu")
    assert (a.family, a.shape, a.dtype, a.seed, a.device) == (name, shape, dtype, 3, "cpu")
    assert a.tensors.keys() == b.tensors.keys() and a.tensors
    for key in a.tensors:
        assert torch.equal(a[key].float(), b[key].float()), key
    assert any(not torch.equal(a[k].float(), c[k].float()) for k in a.tensors)
    ref = fam.reference(a, "cpu")
    assert ref.dtype == torch.float64 and ref.shape == a.out.shape
    assert torch.isfinite(ref).all() and ref.abs().sum() > 0


@pytest.mark.skipif(CUDA, reason="the CPU paths (torch, Triton's interpreter)")
@pytest.mark.parametrize(("name", "dtype"), cpu_cases())
def test_every_cpu_path_is_correct_at_the_smallest_preset_shape(name, dtype):
    fam = FAMILIES[name]
    shape = smallest_shape(fam)
    env = probe(catalog.required_modules())
    rep = verify.check(fam, shape, dtype, env, seed=1)
    assert [r.impl for r in rep.results] == [i.name for i in fam.impls]
    for impl, res in zip(fam.impls, rep.results, strict=True):
        if impl.runs_on_cpu(dtype):  # the smallest preset shape is within every CPU path
            assert res.status == verify.PASS, (impl.name, shape_text(shape), res)
            assert res.rel_error <= res.tolerance_rel_fro
        else:
            assert res.status == verify.UNAVAILABLE, (impl.name, res)


def test_a_suite_declaration_is_checked_and_defaults_to_every_preset():
    fam = FAMILIES["matmul"]
    fields = {f.name: getattr(fam, f.name) for f in dataclasses.fields(fam)}
    default = Family(**{**fields, "suite": Suite()})
    full, quick, dtypes = default.suite_shapes()
    assert full == tuple(p.name for p in fam.presets)
    assert quick == (shape_text(fam.presets[0].shapes[0]),) and dtypes == ("bf16",)
    for bad, says in (
        (Suite(quick_dtypes=("int3",)), "quick_dtypes ['int3']"),
        (Suite(full=("no-such-preset",)), "suite shape 'no-such-preset'"),
        (Suite(quick=("1x2",)), "suite shape '1x2'"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            Family(**{**fields, "suite": bad})
