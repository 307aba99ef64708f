"""The ``w8a8`` and ``w4a16`` family declarations: dtypes, Work, presets, inputs, references, and
the vendor baselines on torch's CPU kernels.

The references are float64 on the dequantized operands; here they are also rebuilt independently
(W from the packed words nibble by nibble, with the documented nibble order), so a wrong unpack
cannot hide behind a reference that shares it. Vendor results are compared with them through the
check engine (poisoned output, relative Frobenius error against each dtype's tolerance).
"""

from __future__ import annotations

import re

import pytest
import torch

from wattbench.kernels import catalog, costs
from wattbench.kernels.env import Environment
from wattbench.kernels.qgemm import pack, presets, w4a16, w8a8
from wattbench.kernels.qgemm.names import W4A16_DTYPES
from wattbench.kernels.verify import check
from wattbench.profiler.errors import ShapeError, UnknownKernelError
from wattbench.profiler.sim.spec import DTYPES as SIM_PEAK_KEYS

CPU = Environment(None, None, {"torch": "2", "triton": "3", "cupy": None}, triton_interpret=True)
H100 = Environment("NVIDIA H100", (9, 0), {"torch": "2", "triton": "3", "cupy": "14"})
A100 = Environment("NVIDIA A100", (8, 0), {"torch": "2", "triton": "3", "cupy": "14"})
FAMILIES = (w8a8.FAMILY, w4a16.FAMILY)


def test_in_the_catalog_after_matmul_with_label_safe_dtypes():
    names = catalog.names()
    assert names.index("matmul") < names.index("w8a8") < names.index("w4a16")
    assert catalog.family("w4a16") is w4a16.FAMILY
    assert set(w8a8.FAMILY.dtypes) == {"int8", "int8-fp16", "fp8", "fp8-row"}
    assert set(w4a16.FAMILY.dtypes) == set(W4A16_DTYPES) and len(W4A16_DTYPES) == 6
    for fam in FAMILIES:
        assert fam.baseline.name == "vendor"
        fastacc = ["triton-fastacc"] if fam is w8a8.FAMILY else []
        assert [i.name for i in fam.impls] == ["vendor", "triton", *fastacc, "cupy"]
        for name in fam.dtypes:
            assert re.fullmatch(r"[a-z0-9-]+", name), name
        cmp = fam.comparison
        assert (cmp.label, cmp.family, cmp.impl) == ("bf16 cuBLAS", "matmul", "vendor")
        assert cmp.dtype == "bf16"
        assert cmp.problem_shape((3, 72, 128)) == (3, 72, 128)


@pytest.mark.parametrize(
    ("fam", "dtype", "peak"),
    [(w8a8.FAMILY, "int8", "int8"), (w8a8.FAMILY, "int8-fp16", "int8"),
     (w8a8.FAMILY, "fp8", "fp8"), (w8a8.FAMILY, "fp8-row", "fp8"),
     (w4a16.FAMILY, "bf16-g128", "bf16"), (w4a16.FAMILY, "fp16-g32", "fp16")],
)  # fmt: skip
def test_work_dtype_is_a_simulator_peak_key(fam, dtype, peak):
    work = fam.work((16, 4096, 4096), dtype)
    assert work.dtype == peak and work.dtype in SIM_PEAK_KEYS
    assert work.flops == 2.0 * 16 * 4096 * 4096


def test_work_bytes_count_packed_weights_scales_and_zeros():
    m, n, k = 3, 72, 96
    assert w8a8.work((m, n, k), "int8").bytes == m * k + k * n + 4 * (m + n) + 2 * m * n
    assert w8a8.work((m, n, k), "fp8-row").bytes == m * k + k * n + 4 * (m + n) + 2 * m * n
    assert w8a8.work((m, n, k), "fp8").bytes == m * k + k * n + 4 * 2 + 2 * m * n
    # W4A16 at M = 1, 8192^2, G = 128: x and C 2 B, W 4 bits, 64 groups x (2 B + 1 B) per column
    big = w4a16.work((1, 8192, 8192), "bf16-g128")
    assert big.bytes == 2 * (8192 + 8192) + 8192 * 8192 // 2 + 64 * 8192 * 3
    assert w4a16.work((1, 8192, 8192), "fp16-g32").bytes == 2 * (2 * 8192) + 2**25 + 256 * 8192 * 3
    assert big.arithmetic_intensity == pytest.approx(2 * 8192 * 8192 / big.bytes)
    # the weight dominates at decode: about 4x fewer bytes than the same bf16 GEMM
    bf16 = catalog.family("matmul").work((1, 8192, 8192), "bf16")
    assert 3.5 < bf16.bytes / big.bytes < 4.0


def test_shape_constraints_are_shape_errors_with_remedies():
    with pytest.raises(ShapeError, match="multiple of 64, got K = 96") as info:
        w4a16.work((3, 72, 96), "fp16-g64")
    assert "smaller group" in info.value.remedy
    with pytest.raises(ShapeError, match="multiple of 128"):
        w4a16.make_inputs((3, 72, 96), "bf16-g128", 0, "cpu")
    w4a16.work((3, 72, 96), "fp16-g32")  # 96 = 3 groups of 32
    with pytest.raises(ShapeError, match="int32"):
        w8a8.work((1, 8, 200_000), "int8")
    w8a8.work((1, 8, 200_000), "fp8")  # fp32 accumulation: no such limit
    with pytest.raises(UnknownKernelError):
        costs.make_problem("w4a16", "1x8x128", "bf16-g16")


def test_presets_decode_prefill_and_llama_projections():
    fam = w4a16.FAMILY
    assert fam.shapes("llama3-8b-o@1") == ((1, 4096, 4096),)
    decode = fam.preset("decode")
    assert {s[0] for s in decode.shapes} == set(presets.DECODE_TOKENS) == {1, 2, 4, 8, 16}
    assert {s[0] for s in fam.preset("prefill").shapes} == {512, 1024, 2048, 4096, 8192}
    assert len(fam.shapes("decode@4")) == 8  # every 8B and 70B projection at M = 4
    assert (4, 57344, 8192) in fam.shapes("decode@4")  # 70B gate_up
    assert fam.shapes("llama3-70b-down@8192") == ((8192, 8192, 28672),)
    assert fam.shapes("targets") == ((1, 8192, 8192), (8192, 8192, 8192))
    for p in fam.presets:
        assert all(s[2] % 128 == 0 for s in p.shapes), p.name  # every group size fits
    assert costs.make_problem("w8a8", "llama3-8b-qkv@16", "int8").shape == (16, 6144, 4096)


def _words_to_weight(qweight, scales, zeros, group):
    """W rebuilt one nibble at a time from the documented layout (independent of unpack_int4)."""
    rows, n = qweight.shape
    words = qweight.to(torch.int64) & 0xFFFFFFFF
    w = torch.empty(rows * 8, n, dtype=torch.float64)
    for e in range(8):
        q = (words >> (4 * pack.NIBBLE_OF_OFFSET[e])) & 0xF
        k = torch.arange(rows) * 8 + e
        w[k] = (q.double() - zeros[k // group].double()) * scales[k // group].double()
    return w


@pytest.mark.parametrize("dtype", ["fp16-g32", "bf16-g64", "fp16-g128"])
def test_w4a16_inputs_and_reference(dtype):
    shape = (3, 72, 256)
    a = w4a16.make_inputs(shape, dtype, 7, "cpu")
    b = w4a16.make_inputs(shape, dtype, 7, "cpu")
    group = int(dtype.split("-g")[1])
    act = torch.bfloat16 if dtype.startswith("bf16") else torch.float16
    assert a["x"].dtype == act == a["scales"].dtype == a.out.dtype
    assert tuple(a["qweight"].shape) == (32, 72) and tuple(a["zeros"].shape) == (256 // group, 72)
    for name in ("x", "qweight", "scales", "zeros"):
        assert torch.equal(a[name], b[name])
        assert a[name].float().abs().sum() > 0
    ref = w4a16.reference(a, "cpu")
    w = _words_to_weight(a["qweight"], a["scales"], a["zeros"], group)
    assert ref.dtype == torch.float64
    assert torch.allclose(ref, a["x"].double() @ w, rtol=0, atol=1e-12)
    other = w4a16.make_inputs(shape, dtype, 8, "cpu")
    assert not torch.equal(a["qweight"], other["qweight"])


@pytest.mark.parametrize("dtype", ["int8", "int8-fp16", "fp8", "fp8-row"])
def test_w8a8_inputs_and_reference(dtype):
    inputs = w8a8.make_inputs((5, 24, 64), dtype, 3, "cpu")
    a, b = inputs["a"], inputs["b"]
    assert tuple(b.shape) == (64, 24) and b.stride() == (1, 64)  # the (N, K) weight, transposed
    want = torch.int8 if dtype.startswith("int8") else torch.float8_e4m3fn
    assert a.dtype == b.dtype == want
    per_tensor = dtype == "fp8"
    assert tuple(inputs["scale_a"].shape) == (() if per_tensor else (5, 1))
    assert tuple(inputs["scale_b"].shape) == (() if per_tensor else (1, 24))
    assert inputs.out.dtype == (torch.float16 if dtype == "int8-fp16" else torch.bfloat16)
    ref = w8a8.reference(inputs, "cpu")
    by_hand = (a.double() @ b.double()) * inputs["scale_a"].double() * inputs["scale_b"].double()
    assert torch.allclose(ref, by_hand, rtol=1e-12, atol=0)
    assert ref.abs().sum() > 0


@pytest.mark.parametrize(
    ("fam", "shape", "dtype"),
    [(w8a8.FAMILY, (3, 72, 96), "int8"), (w8a8.FAMILY, (20, 40, 64), "int8-fp16"),
     (w8a8.FAMILY, (3, 72, 96), "fp8"), (w8a8.FAMILY, (20, 40, 64), "fp8-row"),
     (w4a16.FAMILY, (3, 72, 96), "fp16-g32"), (w4a16.FAMILY, (67, 40, 128), "bf16-g64"),
     (w4a16.FAMILY, (1, 24, 256), "bf16-g128"), (w4a16.FAMILY, (17, 8, 128), "fp16-g128")],
)  # fmt: skip
def test_vendor_baseline_on_the_cpu_matches_float64(fam, shape, dtype):
    rep = check(fam, shape, dtype, CPU, impls=["vendor"], seed=11)
    (vendor,) = rep.results
    assert vendor.status == "pass", vendor
    assert 0 < vendor.rel_error < fam.tolerance(dtype)
    assert rep.work.flops == 2 * shape[0] * shape[1] * shape[2]


def test_vendor_is_reusable_launch_after_launch():
    inputs = w4a16.make_inputs((4, 16, 64), "fp16-g32", 1, "cpu")
    launch = w4a16.FAMILY.baseline.make_launch(inputs)
    launch()
    first = inputs.out.clone()
    inputs.poison()
    launch()
    assert torch.equal(first, inputs.out)


def test_availability_reasons():
    fam4, fam8 = w4a16.FAMILY, w8a8.FAMILY
    triton4, cupy4, cupy8 = fam4.impl("triton"), fam4.impl("cupy"), fam8.impl("cupy")
    assert "no CPU path" in triton4.why_unavailable("bf16-g128", CPU)  # the interpreter's bf16
    assert triton4.why_unavailable("fp16-g128", CPU, (3, 72, 128), 5e4) is None
    assert "N must be a multiple of 4" in cupy4.why_unavailable("fp16-g32", H100, (1, 70, 64))
    assert cupy4.why_unavailable("fp16-g32", H100, (1, 72, 64)) is None
    assert "K must be a multiple of 16" in cupy8.why_unavailable("int8", H100, (1, 72, 40))
    assert "no fp8 path" in cupy8.why_unavailable("fp8", H100)
    vendor8 = fam8.baseline
    assert "9.0" in vendor8.why_unavailable("fp8-row", Environment("L4", (8, 9), H100.modules))
    assert "8.9" in fam8.impl("triton").why_unavailable("fp8", A100)
    assert "multiples of 8" in vendor8.why_unavailable("int8", H100, (32, 70, 64))
