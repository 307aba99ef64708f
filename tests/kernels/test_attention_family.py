"""The attention declarations: presets, dtypes, Work, inputs, the float64 reference, shape
errors, the split rule, the vendor impl on the CPU, and ``wattbench check`` / a simulated sweep
end to end (the CLI's own parser, as ``wattbench`` drives it)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from wattbench.kernels import catalog
from wattbench.kernels.attention import family as fa
from wattbench.kernels.attention import problem
from wattbench.kernels.attention.reference import attention_float64
from wattbench.kernels.env import probe
from wattbench.kernels.verify import check, rel_fro_error
from wattbench.profiler.errors import ShapeError

PREFILL, PREFILL_FULL, DECODE = fa.PREFILL, fa.PREFILL_FULL, fa.DECODE
CUDA = torch.cuda.is_available()


def test_catalog_lists_the_three_families_after_matmul():
    assert catalog.names()[:4] == ("matmul", "prefill", "prefill-full", "decode")
    for fam in fa.FAMILIES:
        assert catalog.family(fam.name) is fam
        assert [i.name for i in fam.impls] == ["vendor", "triton", "cupy"]
        assert tuple(fam.dtypes) == ("bf16", "fp16")
    assert PREFILL.shape_form == "BxHQxHKVxNxD" and DECODE.shape_form == "BxHQxHKVxLxD"


def test_model_presets_have_real_head_layouts_and_sweep_the_length():
    assert PREFILL.shapes("llama3-8b") == tuple((1, 32, 8, n, 128) for n in fa.SEQ_LENS)
    assert PREFILL.parse_shape("llama3-70b@4096") == (1, 64, 8, 4096, 128)
    assert PREFILL_FULL.parse_shape("llama3.2-1b@777") == (1, 32, 8, 777, 64)
    assert fa.SEQ_LENS[0] == 512 and fa.SEQ_LENS[-1] == 16384
    assert DECODE.shapes("llama3-8b") == tuple((16, 32, 8, n, 128) for n in fa.CACHE_LENS)
    assert fa.CACHE_LENS[0] == 1024 and fa.CACHE_LENS[-1] == 131072
    assert DECODE.parse_shape("llama3-70b@8192") == (8, 64, 8, 8192, 128)
    assert DECODE.shapes("llama3-8b-batch") == tuple((b, 32, 8, 8192, 128) for b in fa.BATCHES)
    assert DECODE.parse_shape("llama3-8b-batch@64") == (64, 32, 8, 8192, 128)
    assert min(fa.BATCHES) == 1 and max(fa.BATCHES) == 64
    with pytest.raises(ShapeError, match="names 6 prefill shapes"):
        PREFILL.parse_shape("llama3-8b")
    with pytest.raises(ShapeError, match="no preset"):
        DECODE.parse_shape("mistral@8")


def test_odd_presets_are_multiples_of_no_block_size():
    for fam in fa.FAMILIES:
        for _b, hq, hkv, n, d in fam.shapes("odd"):
            assert n % 16 and hq % hkv == 0 and d in (64, 128)
    groups = {hq // hkv for _b, hq, hkv, _n, _d in DECODE.shapes("odd")}
    assert {1, 2, 3} <= groups  # MHA, GQA, and a group that no power of two tiles


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_work_formulas(dtype):
    b, hq, hkv, n, d = 2, 32, 8, 4096, 128
    full = PREFILL_FULL.work((b, hq, hkv, n, d), dtype)
    causal = PREFILL.work((b, hq, hkv, n, d), dtype)
    assert full.flops == 4 * b * hq * n * n * d and causal.flops == full.flops / 2
    elements = 2 * b * hq * n * d + 2 * b * hkv * n * d  # q, o; k, v
    assert full.bytes == causal.bytes == 2 * elements and full.dtype == dtype
    length = 131072
    dec = DECODE.work((b, hq, hkv, length, d), dtype)
    assert dec.flops == 4 * b * hq * length * d
    assert dec.bytes == 2 * (2 * b * hkv * length * d + 2 * b * hq * d)
    assert dec.arithmetic_intensity < 8  # memory-bound: G = 4 query heads per KV element
    assert full.arithmetic_intensity > 500  # compute-bound


@pytest.mark.parametrize("fam", fa.FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("shape", [(1, 6, 4, 64, 64), (1, 4, 8, 64, 64), (1, 0, 1, 8, 64)])
def test_heads_that_do_not_group_are_shape_errors(fam, shape):
    with pytest.raises(ShapeError) as info:
        fam.work(shape, "fp16")
    assert info.value.remedy
    with pytest.raises(ShapeError):
        fam.make_inputs(shape, "fp16", 0, "cpu")


def test_custom_impls_refuse_other_head_dims_with_a_reason():
    env = probe()
    for fam in fa.FAMILIES:
        for impl in fam.impls[1:]:
            assert "D = 64 or 128" in impl.limits((1, 4, 2, 64, 96), "fp16", True)
            assert impl.limits((1, 4, 2, 64, 128), "fp16", True) is None
        assert fam.baseline.limits is None  # SDPA takes any head dim
    reason = PREFILL.impl("triton").why_unavailable("fp16", env, (1, 2, 1, 8, 80), 1.0)
    assert reason is not None


@pytest.mark.parametrize("fam", fa.FAMILIES, ids=lambda f: f.name)
def test_inputs_are_seeded_shaped_and_random(fam):
    shape = (2, 4, 2, 33, 64)
    a, a2, other = (fam.make_inputs(shape, "bf16", s, "cpu") for s in (3, 3, 4))
    nq = 1 if fam is DECODE else 33
    assert a["q"].shape == (2, 4, nq, 64) and a.out.shape == (2, 4, nq, 64)
    assert a["k"].shape == a["v"].shape == (2, 2, 33, 64)
    for name in ("q", "k", "v"):
        x = a[name]
        assert x.dtype == torch.bfloat16 and x.is_contiguous()
        assert torch.equal(x, a2[name]) and not torch.equal(x, other[name])
        assert (x != 0).float().mean() > 0.9 and 0.8 < x.float().std() < 1.2
    assert not torch.equal(a["k"], a["v"])
    assert a.out.dtype == torch.bfloat16 and a.family == fam.name


def _naive(q, k, v, causal):
    """Textbook attention in float64, one (batch, head) at a time."""
    b_n, hq, nq, d = q.shape
    group = hq // k.shape[1]
    out = torch.empty(b_n, hq, nq, d, dtype=torch.float64)
    lse = torch.empty(b_n, hq, nq, dtype=torch.float64)
    for b in range(b_n):
        for h in range(hq):
            s = q[b, h].double() @ k[b, h // group].double().T / math.sqrt(d)
            if causal:
                s = s + torch.full_like(s, -math.inf).triu(1)
            lse[b, h] = torch.logsumexp(s, -1)
            out[b, h] = torch.softmax(s, -1) @ v[b, h // group].double()
    return out, lse


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("max_scores", [2**24, 100])  # one chunk; many small query chunks
def test_reference_matches_textbook_attention(causal, max_scores):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 6, 37, 64, generator=gen)
    k = torch.randn(2, 2, 37, 64, generator=gen)
    v = torch.randn(2, 2, 37, 64, generator=gen)
    o, lse = attention_float64(q, k, v, causal=causal, max_scores=max_scores)
    o_ref, lse_ref = _naive(q, k, v, causal)
    assert o.dtype == lse.dtype == torch.float64
    torch.testing.assert_close(o, o_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, lse_ref, rtol=1e-12, atol=1e-12)
    if causal:  # row 0 sees key 0 only
        torch.testing.assert_close(o[:, :2, 0], v[:, 0, 0].double()[:, None].expand(2, 2, 64))


def test_decode_reference_is_the_last_row_of_full_prefill():
    inp = DECODE.make_inputs((2, 4, 2, 50, 64), "fp16", 1, "cpu")
    ref = DECODE.reference(inp, "cpu")
    k, v = inp["k"], inp["v"]
    q_full = torch.zeros(2, 4, 50, 64, dtype=torch.float16)
    q_full[:, :, -1:] = inp["q"]
    # causal prefill's last row sees every key: the same as decode
    o_causal, _ = attention_float64(q_full, k, v, causal=True)
    torch.testing.assert_close(ref, o_causal[:, :, -1:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("fam", fa.FAMILIES, ids=lambda f: f.name)
def test_vendor_on_cpu_is_within_tolerance_and_writes_in_place(fam, dtype):
    inp = fam.make_inputs((1, 4, 2, 67, 64), dtype, 0, "cpu")
    launch = fam.impl("vendor").make_launch(inp)
    inp.poison()
    ptr = inp.out.data_ptr()
    launch()
    assert inp.out.data_ptr() == ptr
    err = rel_fro_error(inp.out, fam.reference(inp, "cpu"))
    assert 1e-5 < err <= fam.tolerance(dtype)  # output rounding is real: the check can fail


def test_vendor_expands_kv_heads_where_sdpa_has_no_gqa(monkeypatch):
    from wattbench.kernels.attention import vendor

    assert vendor.sdpa_has_gqa("2.5.0") and vendor.sdpa_has_gqa("2.13.0+cpu")
    assert not vendor.sdpa_has_gqa("2.4.1") and not vendor.sdpa_has_gqa("1.13")
    monkeypatch.setattr(vendor, "sdpa_has_gqa", lambda version: False)
    inp = PREFILL.make_inputs((1, 4, 2, 30, 64), "fp16", 0, "cpu")
    launch = vendor.make_sdpa_launch(inp, causal=True)
    inp.poison()
    launch()
    assert rel_fro_error(inp.out, PREFILL.reference(inp, "cpu")) <= PREFILL.tolerance("fp16")


def test_tolerances_reject_a_wrong_mask():
    """A kernel that ignores the causal mask must fail the causal family's tolerance."""
    inp = PREFILL.make_inputs((1, 2, 1, 40, 64), "fp16", 0, "cpu")
    no_mask, _ = attention_float64(inp["q"], inp["k"], inp["v"], causal=False)
    err = rel_fro_error(no_mask.to(torch.float16), PREFILL.reference(inp, "cpu"))
    assert err > 50 * PREFILL.tolerance("bf16")


def test_choose_splits_fills_the_gpu_and_covers_the_range():
    for length in (1, 5, 131, 1000, 8191, 8192, 131072):
        for programs in (1, 8, 128, 512, 10_000):
            for sms in (4, 108, 132):
                splits, chunk = problem.choose_splits(length, programs, sms)
                assert chunk % problem.CHUNK_MULTIPLE == 0
                assert (splits - 1) * chunk < length <= splits * chunk  # no empty split
                if splits > 1:
                    assert chunk >= problem.MIN_CHUNK
    # Llama-3 8B, batch 16 at L = 8192 on an H100: 128 programs -> about 4 per SM
    splits, chunk = problem.choose_splits(8192, 16 * 8, 132)
    assert splits * 16 * 8 >= 4 * 132 and splits == 5 and chunk == 1664
    assert problem.choose_splits(131072, 8, 132) == (64, 2048)  # batch 1: many splits
    assert problem.choose_splits(1024, 512 * 8, 132) == (1, 1024)  # full GPU: no split
    with pytest.raises(ValueError):
        problem.choose_splits(0, 1, 1)


def _run_cli(*argv: str) -> int:
    from wattbench.profiler.cli import check as check_cli

    parser = argparse.ArgumentParser(prog="wattbench")
    check_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.run(args)


@pytest.mark.skipif(CUDA, reason="the CPU path of check")
@pytest.mark.parametrize(
    ("kernel", "shape"),
    [("prefill", "1x4x2x67x64"), ("prefill-full", "1x4x2x67x64"), ("decode", "1x4x2x131x64")],
)
def test_check_cli_on_the_cpu(kernel, shape, capsys):
    rc = _run_cli("check", "--kernel", kernel, "--shape", shape, "--dtype", "fp16", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["passed"]
    (rep,) = doc["reports"]
    results = {r["impl"]: r for r in rep["results"]}
    assert results["vendor"]["status"] == "pass"
    assert results["triton"]["status"] == "pass"  # Triton's interpreter
    assert results["triton"]["rel_error"] < 2e-3
    assert results["cupy"]["status"] == "unavailable"
    assert rep["work"]["flops"] == catalog.family(kernel).work(tuple(rep["shape"]), "fp16").flops


def test_check_cli_bad_shape_is_a_usage_error():
    with pytest.raises(ShapeError, match="HQ=6"):
        _run_cli("check", "--kernel", "decode", "--shape", "1x6x4x64x64", "--dtype", "fp16")
    with pytest.raises(ShapeError, match="malformed"):
        _run_cli("check", "--kernel", "prefill", "--shape", "4x64x64", "--dtype", "fp16")


def test_check_engine_skips_triton_bf16_on_the_cpu():
    env = probe()
    if env.cuda:
        pytest.skip("CPU path")
    rep = check(DECODE, (1, 2, 1, 40, 64), "bf16", env)
    assert rep.result("vendor").status == "pass"
    assert "bf16 has no CPU path" in rep.result("triton").reason


def test_simulated_sweep_of_decode_uses_only_work(tmp_path, capsys):
    from wattbench.profiler.cli.main import main

    out = tmp_path / "runs"
    rc = main(["sweep", "--device", "sim:h100-sxm", "--kernel", "decode", "--shape",
               "llama3-8b@8192", "--dtype", "bf16", "--sm-clocks", "every:8", "--out", str(out),
               "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    (run_file,) = out.glob("*.json")
    doc = json.loads(run_file.read_text())
    assert doc["problem"]["family"] == "decode"
    assert doc["problem"]["shape"] == [16, 32, 8, 8192, 128]
    assert doc["work"]["bytes"] == DECODE.work((16, 32, 8, 8192, 128), "bf16").bytes
