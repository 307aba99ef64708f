"""The matmul declaration: presets, dtypes, tolerances, Work, inputs, reference, CPU vendor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wattbench.kernels import catalog
from wattbench.kernels.env import probe
from wattbench.kernels.family import Family
from wattbench.kernels.matmul import family as mm
from wattbench.kernels.verify import check, check_one, rel_fro_error
from wattbench.kernels.work import DTYPE_BYTES

MATMUL = catalog.family("matmul")
TINY = (67, 45, 93)


@pytest.mark.parametrize("fam", catalog.FAMILIES, ids=lambda f: f.name)
def test_every_family_is_complete(fam: Family):
    assert fam.presets and fam.dtypes and fam.impls
    assert fam.baseline is fam.impls[0]
    for dtype in fam.dtypes:
        assert 0 < fam.tolerance(dtype) < 0.1
    for impl in fam.impls:
        assert set(impl.dtypes) <= set(fam.dtypes), impl.name
        for cc in impl.min_compute_capability.values():
            assert (6, 0) <= cc <= (12, 0)
    for preset in fam.presets:
        for shape in preset.shapes:
            assert len(shape) == len(fam.dims) and min(shape) >= 1
    assert set(fam.baseline.dtypes) == set(fam.dtypes)  # speedups need the baseline everywhere


def test_matmul_names():
    assert MATMUL.shape_form == "MxNxK"
    assert tuple(MATMUL.dtypes) == ("bf16", "fp16", "fp32", "tf32", "fp8")
    names = ["vendor", "triton", "triton-fastacc", "cupy", "cublas-cupy"]
    assert [i.name for i in MATMUL.impls] == names
    fp8 = {i.name: i.min_compute_capability.get("fp8") for i in MATMUL.impls}
    assert fp8 == dict(zip(names, [(8, 9), (8, 9), (8, 9), None, None], strict=True))
    assert MATMUL.impl("triton-fastacc").dtypes == ("fp8",)


def test_impl_dtypes_match_the_kernel_modules():
    """The declarations promise what the wrapped modules of the other engineers support."""
    from wattbench.kernels.matmul import cupy_matmul

    assert set(MATMUL.impl("cupy").dtypes) == set(cupy_matmul.SUPPORTED_DTYPES)
    assert set(MATMUL.impl("cublas-cupy").dtypes) == set(cupy_matmul.CUBLAS_DTYPES)
    from wattbench.kernels.matmul import triton_matmul

    # "tf32" is fp32 storage with allow_tf32=True
    assert set(MATMUL.impl("triton").dtypes) == {*triton_matmul.SUPPORTED_DTYPES, "tf32"}


def test_square_and_odd_presets():
    assert MATMUL.shapes("square") == tuple((s, s, s) for s in (1024, 2048, 4096, 8192, 16384))
    odd = MATMUL.shapes("odd")
    assert odd == ((1000, 1000, 1000), (4097, 4095, 4093), (67, 45, 93))
    for shape in odd:  # multiples of no block size >= 16
        assert all(d % 16 for d in shape)


@pytest.mark.parametrize(
    ("model", "layer", "k", "n"),
    [
        ("llama3-8b", "qkv", 4096, 4096 + 2 * 8 * 128),
        ("llama3-8b", "o", 4096, 4096),
        ("llama3-8b", "gate_up", 4096, 2 * 14336),
        ("llama3-8b", "down", 14336, 4096),
        ("llama3-70b", "qkv", 8192, 8192 + 2 * 8 * 128),
        ("llama3-70b", "o", 8192, 8192),
        ("llama3-70b", "gate_up", 8192, 2 * 28672),
        ("llama3-70b", "down", 28672, 8192),
    ],
)
def test_llama_presets_are_x_at_w(model, layer, k, n):
    tokens = (1, 16, 128, 1024, 4096, 16384)
    assert MATMUL.shapes(f"{model}-{layer}") == tuple((m, n, k) for m in tokens)
    assert MATMUL.parse_shape(f"{model}-{layer}@77") == (77, n, k)
    assert (1, n, k) in MATMUL.shapes(model)


def test_model_presets_hold_all_layers():
    assert len(MATMUL.shapes("llama3-8b")) == 24
    assert MATMUL.shapes("llama3-70b@128") == (
        (128, 10240, 8192),
        (128, 8192, 8192),
        (128, 57344, 8192),
        (128, 8192, 28672),
    )


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32", "tf32", "fp8"])
def test_work_formula(dtype):
    m, n, k = 4097, 4095, 4093
    w = MATMUL.work((m, n, k), dtype)
    assert w.flops == 2 * m * n * k and w.dtype == dtype
    size = DTYPE_BYTES[dtype]
    out_size = 2 if dtype == "fp8" else size  # fp8 writes bf16
    assert w.bytes == (m * k + k * n) * size + m * n * out_size


# --- inputs and reference ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32", "tf32", "fp8"])
def test_inputs_are_seeded_shaped_and_never_zero(dtype):
    a1 = mm.make_inputs(TINY, dtype, 7, "cpu")
    a2 = mm.make_inputs(TINY, dtype, 7, "cpu")
    b = mm.make_inputs(TINY, dtype, 8, "cpu")
    m, n, k = TINY
    assert a1["a"].shape == (m, k) and a1["b"].shape == (k, n) and a1.out.shape == (m, n)
    want = "float8_e4m3fn" if dtype == "fp8" else mm.TORCH_DTYPES[dtype][0]
    assert a1["a"].dtype == getattr(torch, want)
    for name in ("a", "b"):
        x1, x2, y = (v[name].to(torch.float64) for v in (a1, a2, b))
        assert torch.equal(x1, x2)
        assert not torch.equal(x1, y)
        assert (x1 != 0).float().mean() > 0.9  # random normal, not zeros
    assert a1.out.dtype == (torch.bfloat16 if dtype == "fp8" else a1["a"].dtype)
    if dtype == "fp8":
        for name in ("a", "b"):
            scale = a1[f"scale_{name}"]
            assert scale.dtype == torch.float32 and scale.dim() == 0 and scale > 0
            # scaled so that the largest magnitude sits at e4m3's maximum
            assert a1[name].to(torch.float32).abs().max() == mm.FP8_E4M3_MAX


def test_low_precision_inputs_are_the_fp32_inputs_rounded():
    fp32 = mm.make_inputs(TINY, "fp32", 1, "cpu")
    bf16 = mm.make_inputs(TINY, "bf16", 1, "cpu")
    assert torch.equal(fp32["a"].to(torch.bfloat16), bf16["a"])


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp8"])
def test_reference_matches_numpy(dtype):
    inp = mm.make_inputs(TINY, dtype, 2, "cpu")
    ref = mm.reference(inp, "cpu")
    assert ref.dtype == torch.float64 and ref.shape == (TINY[0], TINY[1])
    a = inp["a"].to(torch.float64).numpy()
    b = inp["b"].to(torch.float64).numpy()
    if dtype == "fp8":
        a = a * float(inp["scale_a"])
        b = b * float(inp["scale_b"])
    np.testing.assert_allclose(ref.numpy(), a @ b, rtol=1e-12, atol=1e-9)


# --- the vendor implementation on the CPU --------------------------------------------------------


@pytest.mark.parametrize("dtype", ["fp32", "tf32", "fp16", "bf16", "fp8"])
def test_vendor_on_cpu_is_within_tolerance(dtype):
    inp = mm.make_inputs(TINY, dtype, 0, "cpu")
    launch = MATMUL.impl("vendor").make_launch(inp)
    inp.poison()
    ptr = inp.out.data_ptr()
    launch()
    assert inp.out.data_ptr() == ptr  # written in place
    err = rel_fro_error(inp.out, mm.reference(inp, "cpu"))
    assert err <= MATMUL.tolerance(dtype)
    if dtype in ("bf16", "fp16", "fp8"):
        assert err > 1e-5  # the output rounding is real: the check can fail


def test_fp32_tolerance_rejects_tf32_math():
    """A kernel that silently rounds fp32 operands to TF32 must fail the fp32 tolerance."""
    inp = mm.make_inputs((64, 64, 512), "fp32", 0, "cpu")

    def to_tf32(x):
        i = x.view(torch.int32)
        return ((i + 0x1000) & ~0x1FFF).view(torch.float32)

    tf32_result = (to_tf32(inp["a"]).double() @ to_tf32(inp["b"]).double()).float()
    err = rel_fro_error(tf32_result, mm.reference(inp, "cpu"))
    assert MATMUL.tolerance("fp32") < err <= MATMUL.tolerance("tf32")


def test_fast_accumulation_has_its_own_fp8_tolerance():
    """Only triton-fastacc's fp8 is held to its own (looser) tolerance; a check reports it."""
    fastacc = MATMUL.impl("triton-fastacc")
    assert "use_fast_accum" in fastacc.math["fp8"]
    assert MATMUL.tolerance("fp8", fastacc) == fastacc.tolerance_rel_fro["fp8"]
    assert MATMUL.tolerance("fp8", fastacc) > MATMUL.tolerance("fp8")
    assert MATMUL.tolerance("fp8", MATMUL.impl("triton")) == MATMUL.tolerance("fp8")
    assert MATMUL.tolerance("fp16", MATMUL.impl("vendor")) == MATMUL.tolerance("fp16")
    env = probe()
    rep = check(MATMUL, TINY, "fp8", env, impls=["triton", "triton-fastacc"], seed=6)
    tolerances = {r.impl: r.tolerance_rel_fro for r in rep.results}
    assert tolerances == {
        "vendor": MATMUL.tolerance("fp8"),
        "triton": MATMUL.tolerance("fp8"),
        "triton-fastacc": fastacc.tolerance_rel_fro["fp8"],
    }
    if not env.cuda and env.triton_interpret and env.modules.get("triton"):
        # the interpreter sums fp8 products exactly: both Triton variants give the same C
        assert rep.result("triton-fastacc").status == "pass"
        assert rep.result("triton-fastacc").rel_error == rep.result("triton").rel_error
        one = check_one(MATMUL, fastacc, TINY, "fp8", "cpu", seed=6)  # the pytest plugin's check
        assert one.tolerance_rel_fro == fastacc.tolerance_rel_fro["fp8"]


def test_an_impl_tolerance_needs_one_of_its_dtypes():
    from wattbench.kernels.family import Impl

    for bad in ({"fp16": 1e-2}, {"fp8": 0.0}):
        with pytest.raises(ValueError, match="tolerance"):
            Impl("x", "x", {"fp8": (8, 9)}, make_launch=lambda inputs: None, tolerance_rel_fro=bad)


def test_cpu_check_runs_vendor_and_triton_interpreter():
    env = probe()
    if env.cuda:
        pytest.skip("CPU path: this machine has a CUDA device")
    rep = check(MATMUL, TINY, "fp16", env, seed=5)
    assert rep.result("vendor").status == "pass"
    if env.triton_interpret and env.modules.get("triton"):
        assert rep.result("triton").status == "pass"
    assert rep.result("cupy").status == "unavailable"
    assert not rep.failed


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32", "tf32"])
def test_gpu_check_times_every_available_impl(dtype):
    from wattbench.kernels.timing import TimingSettings

    env = probe()
    rep = check(MATMUL, (256, 512, 384), dtype, env, timing=TimingSettings(warmup=1, reps=3))
    assert not rep.failed, [r for r in rep.results if r.failed]
    assert rep.result("vendor").status == "pass"
    assert rep.result("vendor").speedup_vs_baseline == 1.0
    for r in rep.results:
        if r.status == "pass":
            assert r.time_ms > 0 and r.tflops > 0 and r.speedup_vs_baseline > 0
            # timed under the default L2 policy: input sets that together hold twice the L2
            assert r.l2["policy"] == "rotate" and r.l2["covered"] and r.l2["sets"] > 1


@pytest.mark.gpu
def test_gpu_launch_for_the_sweep_runner():
    from wattbench.kernels.timing import TimingSettings, time_launch_ms

    for policy in ("rotate", "warm"):
        launch = catalog.gpu_launch("matmul", "vendor", (512, 512, 512), "bf16", l2=policy)
        times = time_launch_ms(launch, TimingSettings(warmup=2, reps=3, l2=policy))
        assert len(times) == 3 and all(t > 0 for t in times)
        plan = launch.plan
        assert plan.policy == policy
        if policy == "rotate":  # 1.5 MiB per set: many sets, together twice the L2
            assert plan.sets > 1 and plan.covered
            assert plan.l2_bytes == torch.cuda.get_device_properties(0).L2_cache_size
        else:
            assert plan.sets == 1
        del launch
