"""The kernel framework: declarations, the catalog, availability and the check engine.

A toy family (``double``: y = 2 x) shows that a family is one declaration and lets the check
engine meet implementations that are right, wrong, lazy (write nothing), raise, or find out at
build time that they cannot run.
"""

from __future__ import annotations

import math

import pytest
import torch

from wattbench.kernels import catalog, costs
from wattbench.kernels.env import Environment
from wattbench.kernels.family import (
    DtypeSpec,
    Family,
    Impl,
    ImplUnavailable,
    Inputs,
    Preset,
)
from wattbench.kernels.verify import (
    check,
    check_one,
    choose_impls,
    error_json,
    reference_device,
    rel_fro_error,
)
from wattbench.kernels.work import Work
from wattbench.profiler.errors import ShapeError, UnknownKernelError, UsageError

CPU_ENV = Environment(None, None, {"torch": "2", "triton": "3", "cupy": None})
A100_ENV = Environment("NVIDIA A100", (8, 0), {"torch": "2", "triton": "3", "cupy": "14"})
H100_ENV = Environment("NVIDIA H100", (9, 0), {"torch": "2", "triton": "3", "cupy": "14"})


# --- a toy family: y = 2 * x ---------------------------------------------------------------------


def _inputs(shape, dtype, seed, device):
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(shape[0], generator=gen, device=device)
    return Inputs("double", shape, dtype, seed, device, {"x": x}, torch.empty_like(x))


def _impl(name, body, **kw):
    def make_launch(inputs):
        x, out = inputs["x"], inputs.out
        return lambda: body(x, out)

    return Impl(name, f"{name} doubling", {"fp32": (7, 0)}, make_launch, cpu_path="torch", **kw)


def _raise_unavailable(inputs):
    raise ImplUnavailable("this build has no doubling", "install one")


GOOD = _impl("vendor", lambda x, out: torch.mul(x, 2, out=out))
WRONG = _impl("wrong", lambda x, out: torch.mul(x, 2.001, out=out))
LAZY = _impl("lazy", lambda x, out: None)


def _crash(x, out):
    raise RuntimeError("kernel crashed")


RAISES = _impl("raises", _crash)
MISSING = Impl("missing", "needs cupy", {"fp32": (7, 0)}, _raise_unavailable, requires=("cupy",))
LATE = Impl("late", "unavailable at build", {"fp32": (7, 0)}, _raise_unavailable, cpu_path="torch")


def toy_family(impls=(GOOD, WRONG, LAZY, RAISES, MISSING, LATE)) -> Family:
    return Family(
        name="double",
        description="y = 2 x",
        dims=("N",),
        dtypes={"fp32": DtypeSpec(1e-6, "fp32")},
        presets=(Preset("small", "two sizes", ((16,), (33,))),),
        impls=impls,
        make_inputs=_inputs,
        reference=lambda inputs, device: 2 * inputs["x"].to(device, torch.float64),
        work=lambda shape, dtype: Work(flops=shape[0], bytes=8 * shape[0], dtype=dtype),
    )


def test_check_engine_tells_right_wrong_lazy_raising_and_unavailable_apart():
    rep = check(toy_family(), (33,), "fp32", CPU_ENV, seed=3)
    status = {r.impl: r.status for r in rep.results}
    assert status == {
        "vendor": "pass",
        "wrong": "FAIL",
        "lazy": "FAIL",  # the poisoned output stayed NaN
        "raises": "error",
        "missing": "unavailable",
        "late": "unavailable",
    }
    assert rep.result("vendor").rel_error == 0.0
    assert rep.result("wrong").rel_error == pytest.approx(0.0005, rel=1e-4)
    assert "kernel crashed" in rep.result("raises").reason
    assert rep.result("missing").reason == "cupy not installed"
    assert rep.result("late").reason == "this build has no doubling -- install one"
    assert rep.failed
    assert rep.reference_device == "cpu" and rep.device == "cpu"
    assert all(r.time_ms is None for r in rep.results)  # no timings without CUDA


def test_check_runs_only_named_impls_and_always_the_baseline():
    fam = toy_family()
    rep = check(fam, (16,), "fp32", CPU_ENV, impls=["lazy"])
    assert [r.impl for r in rep.results] == ["vendor", "lazy"]
    assert [i.name for i in choose_impls(fam, ["late", "vendor", "late"])] == ["vendor", "late"]
    assert not check(fam, (16,), "fp32", CPU_ENV, impls=["vendor"]).failed


def test_check_without_verification_marks_unverified():
    rep = check(toy_family((GOOD,)), (16,), "fp32", CPU_ENV, verify=False)
    assert rep.results[0].status == "unverified" and rep.reference_device is None


def test_check_one_is_the_engine_for_one_impl_and_keeps_its_launch():
    """check_one (the pytest plugin's check) gives the engine's verdicts and errors on inputs of
    its own, and keeps the checked launch: run again, it writes the poisoned output anew."""
    fam = toy_family()
    engine = check(fam, (33,), "fp32", CPU_ENV, seed=3)
    ones = {i.name: check_one(fam, i, (33,), "fp32", "cpu", seed=3) for i in (GOOD, WRONG, LAZY)}
    assert {n: o.status for n, o in ones.items()} == {
        "vendor": "pass",
        "wrong": "FAIL",
        "lazy": "FAIL",
    }
    assert ones["vendor"].rel_error == engine.result("vendor").rel_error == 0.0
    assert ones["wrong"].rel_error == engine.result("wrong").rel_error
    assert math.isnan(ones["lazy"].rel_error)  # the poisoned output stayed NaN
    lazy = check(fam, (33,), "fp32", CPU_ENV, seed=3).result("lazy").to_json()
    assert lazy["rel_error"] == "nan" == error_json(ones["lazy"].rel_error)  # JSON has no NaN
    assert error_json(0.5) == 0.5 and error_json(None) is None and error_json(math.inf) == "inf"
    good = ones["vendor"]
    assert good.device == good.reference_device == "cpu" and good.tolerance_rel_fro == 1e-6
    inputs, launch = good.kept()
    inputs.poison()
    launch()
    assert torch.equal(inputs.out, 2 * inputs["x"])
    with pytest.raises(RuntimeError, match="kernel crashed"):
        check_one(fam, RAISES, (33,), "fp32", "cpu")
    with pytest.raises(ImplUnavailable):
        check_one(fam, LATE, (33,), "fp32", "cpu")
    assert reference_device("cuda:1", 2.0**32) == "cpu"
    assert reference_device("cuda:1", 2.0**33) == "cuda:1"


def test_work_rates_are_per_iteration_in_named_units():
    """Every rate wattbench prints comes from these methods (TFLOP/s, GB/s, TFLOP/J, GB/J)."""
    w = Work(flops=2e12, bytes=4e9, dtype="bf16")
    assert (w.tflop, w.gb) == (2.0, 4.0)
    assert w.tflops(0.5) == 4.0 and w.gbs(0.5) == 8.0
    assert w.tflop_per_j(400.0) == pytest.approx(0.005) and w.gb_per_j(400.0) == 0.01
    assert w.arithmetic_intensity == 500.0
    assert Work.from_json(w.to_json()) == w
    assert Work.from_json({"flops": 0, "bytes": "8", "dtype": "fp32"}).gbs(2.0) == 4e-9
    with pytest.raises(ValueError):
        Work(0, 0, "fp32")


def test_rel_fro_error():
    ref = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert rel_fro_error(torch.tensor([3.0, 4.0]), ref) == 0.0
    assert rel_fro_error(torch.tensor([3.0, 4.5]), ref) == pytest.approx(0.1)
    nan = rel_fro_error(torch.tensor([float("nan"), 4.0]), ref)
    assert nan != nan


def test_poison_fills_float_with_nan_and_int_with_max():
    inp = _inputs((8,), "fp32", 0, "cpu")
    inp.poison()
    assert torch.isnan(inp.out).all()
    inp.out = torch.zeros(4, dtype=torch.int32)
    inp.poison()
    assert (inp.out == torch.iinfo(torch.int32).max).all()


# --- declarations are validated when built -------------------------------------------------------


def test_family_rejects_inconsistent_declarations():
    with pytest.raises(ValueError, match="dtypes"):
        toy_family((Impl("x", "", {"bf16": (8, 0)}, _raise_unavailable),))
    with pytest.raises(ValueError, match="duplicate impl"):
        toy_family((GOOD, GOOD))
    with pytest.raises(ValueError, match="no implementation"):
        toy_family(())
    fam = toy_family()
    with pytest.raises(ValueError, match="tolerance"):
        Family(**{**_fields(fam), "dtypes": {"fp32": DtypeSpec(0.0)}})
    with pytest.raises(ValueError, match="preset 'bad'"):
        Family(**{**_fields(fam), "presets": (Preset("bad", "", ((4, 4),)),)})
    with pytest.raises(ValueError, match="cpu_path"):
        Impl("x", "", {"fp32": (7, 0)}, _raise_unavailable, cpu_path="gpu")
    with pytest.raises(ValueError, match="cpu_dtypes"):
        Impl("x", "", {"fp32": (7, 0)}, _raise_unavailable, cpu_dtypes=("bf16",))


def _fields(fam: Family) -> dict:
    return {k: getattr(fam, k) for k in fam.__dataclass_fields__}


# --- availability --------------------------------------------------------------------------------


def test_why_unavailable_reasons():
    matmul = catalog.family("matmul")
    vendor, triton, cupy = (matmul.impl(n) for n in ("vendor", "triton", "cupy"))
    assert vendor.why_unavailable("fp8", A100_ENV) == (
        "fp8 needs compute capability >= 8.9 (this GPU: 8.0)"
    )
    assert vendor.why_unavailable("fp8", H100_ENV) is None
    assert vendor.why_unavailable("bf16", A100_ENV) is None
    assert cupy.why_unavailable("fp8", H100_ENV).startswith("no fp8 path (it has fp16, bf16)")
    assert cupy.why_unavailable("fp16", CPU_ENV) == "cupy not installed"
    no_cuda = Environment(None, None, {"torch": "2", "triton": "3", "cupy": "14"})
    assert cupy.why_unavailable("fp16", no_cuda) == "no CUDA device"
    assert "TRITON_INTERPRET=1" in triton.why_unavailable("fp16", no_cuda)
    interp = Environment(None, None, {"torch": "2", "triton": "3"}, triton_interpret=True)
    assert triton.why_unavailable("fp16", interp, (67, 45, 93), 2 * 67 * 45 * 93) is None
    assert "too much for its CPU path" in triton.why_unavailable(
        "fp16", interp, (1024,) * 3, 2 * 1024**3
    )
    assert triton.why_unavailable("bf16", interp) == "no CUDA device, and bf16 has no CPU path"
    no_torch = Environment(None, None, {"torch": None})
    assert vendor.why_unavailable("fp32", no_torch) == "torch not installed"
    # shape limits of the implementation: cuBLASLt fp8 wants K and N multiples of 16
    assert "multiples of 16" in vendor.why_unavailable("fp8", H100_ENV, (64, 45, 64))
    assert vendor.why_unavailable("fp8", H100_ENV, (67, 48, 64)) is None
    assert vendor.why_unavailable("fp8", CPU_ENV, (67, 45, 93)) is None


# --- the catalog and its errors ------------------------------------------------------------------


def test_catalog_lookups_list_valid_choices():
    assert catalog.names() == tuple(f.name for f in catalog.FAMILIES)
    assert catalog.required_modules()[:3] == ("torch", "triton", "cupy")
    assert "matmul" in catalog.names()
    with pytest.raises(UnknownKernelError, match="matmul") as e:
        catalog.family("conv")
    assert "'conv'" in e.value.message and "matmul" in e.value.remedy
    with pytest.raises(UnknownKernelError) as e:
        catalog.impl("matmul", "cutlass")
    assert e.value.remedy.startswith("choose one of: vendor, triton, triton-fastacc, cupy, cublas")
    with pytest.raises(UnknownKernelError) as e:
        catalog.family("matmul").dtype("int3")
    assert e.value.remedy == "choose one of: bf16, fp16, fp32, tf32, fp8"
    assert e.value.exit_code == 2


@pytest.mark.parametrize("text", ["64x64", "64x64x", "axbxc", "64x64x64x64", "", "-1x2x3"])
def test_malformed_shapes_say_the_form_and_the_presets(text):
    with pytest.raises(ShapeError) as e:
        costs.parse_shape("matmul", text)
    assert "MxNxK" in e.value.remedy and "square" in e.value.remedy


def test_shape_text_forms():
    fam = catalog.family("matmul")
    assert fam.parse_shape("8x4x2") == fam.parse_shape(" 8X4×2 ") == fam.parse_shape("8,4,2")
    assert fam.parse_shape("8x4x2") == (8, 4, 2)
    with pytest.raises(ShapeError, match="zero dimension"):
        fam.parse_shape("0x4x2")
    assert fam.parse_shape("llama3-8b-qkv@128") == (128, 6144, 4096)
    with pytest.raises(ShapeError, match="6 matmul shapes") as e:
        fam.parse_shape("llama3-8b-qkv")
    assert "llama3-8b-qkv@V" in e.value.remedy
    with pytest.raises(ShapeError, match="no preset 'llama9'") as e:
        fam.shapes("llama9")
    assert "llama3-70b" in e.value.remedy
    with pytest.raises(ShapeError, match="malformed preset parameter"):
        fam.shapes("llama3-8b-qkv@0")
    with pytest.raises(ShapeError, match="no swept dimension to set to 64"):
        fam.shapes("square@64")


def test_costs_api_for_the_profiler():
    p = costs.make_problem("matmul", "8192x8192x8192", "bf16")
    assert (p.family, p.impl, p.shape, p.dtype) == ("matmul", "vendor", (8192,) * 3, "bf16")
    assert p.label == "matmul-vendor-bf16-8192x8192x8192"
    assert p.to_json() == {
        "family": "matmul",
        "impl": "vendor",
        "shape": [8192] * 3,
        "dtype": p.dtype,
    }
    w = costs.work_of(p)
    assert w.flops == 2 * 8192**3 and w.bytes == 3 * 8192**2 * 2 and w.dtype == "bf16"
    p70 = costs.make_problem("matmul", "llama3-70b-o@16", "fp8", "triton")
    assert p70.shape == (16, 8192, 8192)
    with pytest.raises(UnknownKernelError, match="no implementation 'cutlass'"):
        costs.make_problem("matmul", "64x64x64", "bf16", "cutlass")
    with pytest.raises(UnknownKernelError, match="cupy has no dtype 'fp32'") as e:
        costs.make_problem("matmul", "64x64x64", "fp32", "cupy")
    assert "vendor, triton, cublas-cupy" in e.value.remedy
    with pytest.raises(UnknownKernelError, match="no dtype 'int3'"):
        costs.make_problem("matmul", "64x64x64", "int3")
    with pytest.raises(UnknownKernelError, match="unknown kernel"):
        costs.make_problem("conv", "64x64x64", "bf16")


def test_gpu_launch_without_cuda_is_a_usage_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(UsageError, match="cannot run matmul on a real GPU here"):
        catalog.gpu_launch("matmul", "vendor", (64, 64, 64), "bf16")


def test_check_reports_failing_inputs_as_errors_of_every_runnable_impl():
    def broken_inputs(shape, dtype, seed, device):
        raise MemoryError("no room for the operands")

    fam = Family(**{**_fields(toy_family((GOOD, MISSING))), "make_inputs": broken_inputs})
    rep = check(fam, (16,), "fp32", CPU_ENV)
    assert rep.result("vendor").status == "error" and rep.failed
    assert "MemoryError: no room" in rep.result("vendor").reason
    assert rep.result("missing").status == "unavailable"
