"""The Triton attention kernels against the float64 reference.

Without a GPU they run in Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest) at small
fp16 shapes: causal and full prefill, grouped-query attention, MHA, lengths that are multiples of
no block size (67, 131), several decode splits, one split, empty splits; the output is poisoned
with NaN first, and the natural log-sum-exp is checked against float64 too (absolute error:
scores are fp32 sums of exact products, ~1e-6 here). Decode is also checked against prefill run
with one query, and its single launch (the last split program to arrive merges) for bitwise
determinism and counters left at 0. The kernels take fp16 and bf16 only; bf16 is not run here
(the interpreter's bf16 ``tl.dot`` is wrong). On a GPU (``gpu`` marker): bf16, model shapes, the
autotuned configs and a CUDA graph replay of decode.
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


# B, HQ, HKV, L, D, chunk: several splits with a short last one; 19 splits; G = 3 (padded rows);
# MHA with D = 128 and the split rule's own choice; a cache shorter than one block (one split);
# one split of many blocks; odd everything: B = 3, G = 5, D = 128, a last split of one key
DECODE_CASES = [
    (1, 4, 2, 131, 64, 32),
    (1, 2, 1, 600, 64, 32),
    (2, 6, 2, 100, 64, 64),
    (1, 2, 2, 70, 128, None),
    (1, 8, 1, 5, 64, None),
    (1, 4, 2, 131, 64, 160),
    (3, 10, 2, 97, 128, 32),
]


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_decode_matches_float64(case):
    b, hq, hkv, length, d, chunk = case
    q, k, v, out, lse = _operands(b, hq, hkv, 1, length, d, seed=length)
    launch = triton_decode.make_launch(q, k, v, out, lse=lse, chunk=chunk)
    launch()
    err, lse_err = _errors(out, lse, q, k, v, causal=False)
    assert err < TOL["fp16"] and lse_err < LSE_ATOL
    assert launch.splits == math.ceil(length / launch.chunk)
    assert not launch.counters.any()  # the merging program set its counter back to 0


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


@pytest.mark.gpu
def test_gpu_decode_graph_replays_are_bitwise_equal():
    """On a GPU the split programs finish in any order: 20 launches and 3 replays of a CUDA
    graph of one launch (captured after autotuning) give bitwise the first result; the counters
    are back at 0 after each (a replay finds them as the capture left them)."""
    q, k, v, out, lse = _operands(4, 32, 8, 1, 8195, 128, dtype="bf16", seed=2)
    launch = triton_decode.make_launch(q, k, v, out, lse=lse)
    assert launch.splits > 1
    first = _run(launch, out, lse)
    for _ in range(20):
        launch()
    torch.cuda.synchronize()
    assert torch.equal(out, first[0]) and torch.equal(lse, first[1])
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        launch()
    for _ in range(3):
        out.fill_(math.nan)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, first[0]) and torch.equal(lse, first[1])
        assert not launch.counters.any()


# B, HQ, HKV, L, D, chunk, splits: two empty splits of four; one key, two empty splits (only the
# first split has a key); GQA G = 3 with three empty splits
EMPTY_SPLIT_CASES = [
    (1, 4, 2, 40, 64, 32, 4),
    (2, 2, 1, 1, 64, 32, 3),
    (1, 6, 2, 70, 128, 32, 6),
]


@pytest.mark.parametrize("case", EMPTY_SPLIT_CASES, ids=lambda c: "x".join(map(str, c)))
def test_empty_splits_weigh_nothing(case):
    """A grid sized for a longer cache (trailing splits with no key) gives the same result, not
    NaN: an empty split stores zero output and log-sum-exp -inf."""
    b, hq, hkv, length, d, chunk, splits = case
    q, k, v, out, lse = _operands(b, hq, hkv, 1, length, d, seed=3)
    chunk = chunk if not CUDA else 128
    launch = triton_decode.make_launch(q, k, v, out, lse=lse, chunk=chunk, splits=splits)
    assert launch.splits == splits > math.ceil(length / chunk)
    launch()
    err, lse_err = _errors(out, lse, q, k, v, causal=False)
    assert err < TOL["fp16"] and lse_err < LSE_ATOL
    assert not launch.lse_part[:, :, -1].isfinite().any()  # the last split was empty
    with pytest.raises(ShapeError, match="cannot hold"):
        triton_decode.make_launch(q, k, v, out, lse=lse, chunk=chunk, splits=0)


def _run(launch, out, lse):
    out.fill_(math.nan)
    lse.fill_(math.nan)
    launch()
    if CUDA:
        torch.cuda.synchronize()
    return out.clone(), lse.clone()


def test_decode_is_deterministic_and_leaves_its_counters_at_zero():
    """Three launches of one closure, the output poisoned before each, are bitwise equal: each
    launch's merging program set its counter back to 0 (a counter left at ``splits`` would make
    no program of the next launch merge, leaving NaN)."""
    q, k, v, out, lse = _operands(2, 6, 2, 1, 150, 64, seed=5)
    launch = triton_decode.make_launch(q, k, v, out, lse=lse, chunk=32 if not CUDA else None)
    runs = [_run(launch, out, lse) for _ in range(3)]
    for o, o_lse in runs[1:]:
        assert torch.equal(o, runs[0][0]) and torch.equal(o_lse, runs[0][1])
    assert not launch.counters.any()
    err, lse_err = _errors(*runs[0], q, k, v, causal=False)
    assert err < TOL["fp16"] and lse_err < LSE_ATOL


@pytest.mark.skipif(CUDA, reason="arrival order is fixed only in the interpreter")
def test_decode_merge_does_not_depend_on_which_program_merges():
    """The interpreter runs the programs in a fixed order (split 0 first), so the last to
    arrive is always the last split. Presetting every counter to ``splits - 1`` makes split 0
    merge instead, before the others run, from the workspace the previous launch left (the same
    inputs, so the same partials): the output is bitwise the same, as the merge reads every
    split from the workspace in split order, whichever program does it."""
    q, k, v, out, lse = _operands(1, 4, 2, 1, 200, 64, seed=11)
    launch = triton_decode.make_launch(q, k, v, out, lse=lse, chunk=32)
    assert launch.splits == 7
    normal = _run(launch, out, lse)
    launch.counters.fill_(launch.splits - 1)
    early = _run(launch, out, lse)
    assert torch.equal(early[0], normal[0]) and torch.equal(early[1], normal[1])
    # the other six programs counted 0..5 after split 0's reset: no second merge, counters at 6
    assert launch.counters.tolist() == [launch.splits - 1] * 2
    launch.counters.zero_()
    assert all(torch.equal(a, b) for a, b in zip(_run(launch, out, lse), normal, strict=True))
