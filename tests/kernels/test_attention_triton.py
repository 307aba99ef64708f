"""The Triton attention kernels against the float64 reference.

Without a GPU they run in Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest) at small
fp16 shapes: causal and full prefill, grouped-query attention, MHA, lengths that are multiples of
no block size (67, 131), several decode splits; the output is poisoned with NaN first, and the
natural log-sum-exp is checked against float64 too (absolute error: scores are fp32 sums of
exact products, ~1e-6 here). Decode is also checked against prefill run with one query.
On a GPU (``gpu`` marker): bf16, model shapes and the autotuned configs.
"""

from __future__ import annotations

import math

import pytest
import torch

from wattbench.kernels.attention import triton_decode, triton_prefill
from wattbench.kernels.attention.reference import attention_float64
from wattbench.profiler.errors import ShapeError, UnknownKernelError

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
TOL = {"fp16": 2e-3, "bf16": 1e-2}  # the family's tolerances (see family.py)
LSE_ATOL = 1e-3
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _operands(b, hq, hkv, nq, nkv, d, dtype="fp16", seed=0):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    dt = DTYPES[dtype]

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=DEVICE).to(dt)

    q, k, v = randn(b, hq, nq, d), randn(b, hkv, nkv, d), randn(b, hkv, nkv, d)
    out = torch.full_like(q, math.nan)
    lse = torch.full((b, hq, nq), math.nan, device=DEVICE)
    return q, k, v, out, lse


def _errors(out, lse, q, k, v, causal):
    if CUDA:
        torch.cuda.synchronize()
    assert not out.isnan().any() and not lse.isnan().any(), "unwritten (NaN) elements"
    ref, ref_lse = attention_float64(q, k, v, causal=causal, device="cpu")
    err = float((out.cpu().double() - ref).norm() / ref.norm())
    return err, float((lse.cpu().double() - ref_lse).abs().max())


# B, HQ, HKV, N, D: GQA with N a multiple of no block, MHA with D = 128, MQA with one block
PREFILL_SHAPES = [(1, 4, 2, 67, 64), (2, 2, 2, 33, 128), (1, 3, 1, 16, 64)]


@pytest.mark.parametrize("shape", PREFILL_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_prefill_matches_float64(shape, causal):
    b, hq, hkv, n, d = shape
    q, k, v, out, lse = _operands(b, hq, hkv, n, n, d, seed=n)
    triton_prefill.make_launch(q, k, v, out, causal=causal, lse=lse)()
    err, lse_err = _errors(out, lse, q, k, v, causal)
    assert err < TOL["fp16"] and lse_err < LSE_ATOL


def test_prefill_strided_views_and_scale():
    """Any strides but the last: q, k, v as [B, N, H, D] tensors transposed to [B, H, N, D]."""
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    q, k, v = (torch.randn(1, 40, h, 64, generator=gen, device=DEVICE).half().transpose(1, 2)
               for h in (4, 2, 2))  # fmt: skip
    assert not q.is_contiguous()
    out = torch.full((1, 4, 40, 64), math.nan, device=DEVICE, dtype=torch.float16)
    triton_prefill.make_launch(q, k, v, out, causal=True, scale=0.3)()
    ref, _ = attention_float64(q, k, v, causal=True, scale=0.3, device="cpu")
    assert float((out.cpu().double() - ref).norm() / ref.norm()) < TOL["fp16"]


def test_prefill_relaunch_is_identical():
    q, k, v, out, lse = _operands(1, 2, 1, 24, 24, 64)
    launch = triton_prefill.make_launch(q, k, v, out, causal=True, lse=lse)
    launch()
    first = out.clone()
    out.fill_(math.nan)
    launch()
    assert torch.equal(out, first)


# B, HQ, HKV, L, D, chunk: several splits with a short last one; G = 3 (padded rows); MHA with
# D = 128 and the split rule's own choice; a cache shorter than one block; more splits (19) than
# the combine kernel reads at a time (COMBINE_BLOCK_S = 16)
DECODE_CASES = [
    (1, 4, 2, 131, 64, 32),
    (1, 2, 1, 600, 64, 32),
    (2, 6, 2, 100, 64, 64),
    (1, 2, 2, 70, 128, None),
    (1, 8, 1, 5, 64, None),
]


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_decode_matches_float64(case):
    b, hq, hkv, length, d, chunk = case
    q, k, v, out, lse = _operands(b, hq, hkv, 1, length, d, seed=length)
    triton_decode.make_launch(q, k, v, out, lse=lse, chunk=chunk)()
    err, lse_err = _errors(out, lse, q, k, v, causal=False)
    assert err < TOL["fp16"] and lse_err < LSE_ATOL


def test_decode_uses_several_splits_in_the_interpreter():
    splits, chunk = triton_decode.splits_for(131, 2, torch.device(DEVICE))
    if CUDA:
        assert chunk % 128 == 0
    else:
        assert splits > 1 and chunk % triton_decode.INTERPRETER_CHUNK == 0


def test_decode_equals_prefill_with_one_query():
    """One query against L keys, non-causal: what prefill computes with N_q = 1 (run here by the
    Triton prefill kernel on a sequence whose last row is the query: causal, it sees all keys)."""
    b, hq, hkv, length, d = 1, 4, 2, 75, 64
    q, k, v, out, lse = _operands(b, hq, hkv, 1, length, d, seed=9)
    triton_decode.make_launch(q, k, v, out, lse=lse, chunk=32 if not CUDA else None)()
    q_seq = torch.zeros(b, hq, length, d, device=DEVICE, dtype=q.dtype)
    q_seq[:, :, -1:] = q
    o_seq = torch.full_like(q_seq, math.nan)
    lse_seq = torch.full((b, hq, length), math.nan, device=DEVICE)
    triton_prefill.make_launch(q_seq, k, v, o_seq, causal=True, lse=lse_seq)()
    if CUDA:
        torch.cuda.synchronize()
    # two kernels, two summation orders: equal to the rounding of o (fp16: 2**-11 relative)
    torch.testing.assert_close(out, o_seq[:, :, -1:], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(lse, lse_seq[:, :, -1:], rtol=0, atol=1e-4)


def test_bad_operands_are_refused():
    q, k, v, out, lse = _operands(1, 4, 2, 8, 8, 64)
    with pytest.raises(ShapeError, match="D = 64 or 128"):
        q96, k96, v96, o96, _ = _operands(1, 2, 1, 8, 8, 96)
        triton_prefill.make_launch(q96, k96, v96, o96, causal=True)
    with pytest.raises(ShapeError, match="cannot share"):
        q3, k3, v3, o3, _ = _operands(1, 3, 2, 8, 8, 64)
        triton_prefill.make_launch(q3, k3, v3, o3, causal=False)
    with pytest.raises(UnknownKernelError):
        triton_prefill.make_launch(q, k.float(), v, out, causal=True)
    with pytest.raises(ShapeError, match="lse"):
        triton_prefill.make_launch(q, k, v, out, causal=True, lse=lse[:, :, :4])
    with pytest.raises(ShapeError, match="queries against"):
        qk, kk, vk, ok, _ = _operands(1, 4, 2, 8, 16, 64)
        triton_prefill.make_launch(qk, kk, vk, ok, causal=True)
    with pytest.raises(ShapeError, match="one query token"):
        triton_decode.make_launch(q, k, v, out)
    q1, k1, v1, o1, _ = _operands(1, 4, 2, 1, 40, 64)
    with pytest.raises(ShapeError, match="chunk"):
        triton_decode.make_launch(q1, k1, v1, o1, chunk=20)
    with pytest.raises(ShapeError, match="last dimension"):
        triton_decode.make_launch(q1, k1.transpose(2, 3), v1, o1)


# --- on a GPU: bf16, model shapes, autotuned configs ---------------------------------------------

GPU_PREFILL = [(1, 32, 8, 4096, 128), (2, 32, 8, 1000, 64), (1, 64, 8, 2053, 128)]
GPU_DECODE = [(16, 32, 8, 8192, 128), (3, 12, 4, 1000, 128), (1, 32, 8, 32771, 64)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("shape", GPU_PREFILL, ids=lambda s: "x".join(map(str, s)))
def test_gpu_prefill(shape, causal, dtype):
    b, hq, hkv, n, d = shape
    q, k, v, out, lse = _operands(b, hq, hkv, n, n, d, dtype=dtype, seed=n)
    triton_prefill.make_launch(q, k, v, out, causal=causal, lse=lse)()
    torch.cuda.synchronize()
    ref, ref_lse = attention_float64(q, k, v, causal=causal, device="cuda")
    assert float((out.double() - ref).norm() / ref.norm()) < TOL[dtype]
    assert float((lse.double() - ref_lse).abs().max()) < LSE_ATOL


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("shape", GPU_DECODE, ids=lambda s: "x".join(map(str, s)))
def test_gpu_decode(shape, dtype):
    b, hq, hkv, length, d = shape
    q, k, v, out, lse = _operands(b, hq, hkv, 1, length, d, dtype=dtype, seed=length)
    triton_decode.make_launch(q, k, v, out, lse=lse)()
    torch.cuda.synchronize()
    ref, ref_lse = attention_float64(q, k, v, causal=False, device="cuda")
    assert float((out.double() - ref).norm() / ref.norm()) < TOL[dtype]
    assert float((lse.double() - ref_lse).abs().max()) < LSE_ATOL


def test_empty_splits_weigh_nothing():
    """A grid sized for a longer cache (trailing splits with no key) gives the same result, not
    NaN: an empty split stores zero output and log-sum-exp -inf."""
    q, k, v, out, lse = _operands(1, 4, 2, 1, 40, 64, seed=3)
    chunk = 32 if not CUDA else 128
    triton_decode.make_launch(q, k, v, out, lse=lse, chunk=chunk, splits=4)()
    err, lse_err = _errors(out, lse, q, k, v, causal=False)
    assert err < TOL["fp16"] and lse_err < LSE_ATOL
    with pytest.raises(ShapeError, match="cannot hold"):
        triton_decode.make_launch(q, k, v, out, lse=lse, chunk=chunk, splits=1)
