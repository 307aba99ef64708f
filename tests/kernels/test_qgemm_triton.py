"""The Triton quantized GEMMs against float64 references, in Triton's interpreter here.

Operands come from the families' seeded quantizers (fresh random data, never zeros); outputs are
poisoned with NaN first; errors are relative Frobenius norms against float64 computed from the
dequantized operands the kernel saw, so only the kernel's own rounding remains:

* W8A8 int8: products and int32 sums are exact, scaling is fp32 (~1e-7), so the error is C's
  rounding: fp16 out within 2**-10 (twice its unit roundoff), bf16 out within 2**-7. (Triton's
  interpreter rounds to bf16 by truncation, about twice the error of the GPU's round-to-nearest;
  still within 2**-7.) fp8: products exact in fp32, fp32 sums: the same bounds.
* W4A16: the dequantized weight is rounded to the activation dtype once (~u / sqrt(3) in the
  norm) and C once more: fp16 within 2**-10 (bf16 only on a GPU: the interpreter's bf16 dot is
  wrong).

Every W4A16 path runs: the split-K GEMV (register FMAs for M <= 4, tl.dot for 4 < M <= 16; one
split and several, whose last program reduces and resets its counter) and the tiled GEMM
(M > 16), at the boundaries M = 1, 4, 5, 16, 17, odd M, N and K, and every group size (96 too).
The fp8 fast-accumulation variant runs too (the interpreter has no imprecise accumulator, so
there it checks the plumbing and the masking, not the Hopper adder).
GPU-marked tests repeat this with bf16 and real shapes.
"""

from __future__ import annotations

import pytest
import torch

from wattbench.kernels.errors import UsageError
from wattbench.kernels.qgemm import pack, quantize, w4a16, w8a8
from wattbench.kernels.qgemm import triton_w4a16 as t4
from wattbench.kernels.qgemm import triton_w8a8 as t8
from wattbench.kernels.verify import rel_fro_error
from wattbench.profiler.errors import ShapeError, UnknownKernelError

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float16: 2**-10, torch.bfloat16: 2**-7}


def _run(launch, inputs, ref) -> float:
    inputs.poison()
    launch()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    assert not inputs.out.isnan().any(), "the kernel left unwritten (NaN) elements"
    return rel_fro_error(inputs.out, ref)


def _w8a8(shape, dtype, seed=0, **kw):
    inputs = w8a8.make_inputs(shape, dtype, seed, DEVICE)
    launch = t8.make_launch(
        inputs["a"], inputs["b"], inputs.out, inputs["scale_a"], inputs["scale_b"], **kw
    )
    return inputs, launch, w8a8.reference(inputs, inputs.device)


def _w4a16(shape, dtype, seed=0, **kw):
    inputs = w4a16.make_inputs(shape, dtype, seed, DEVICE)
    group = int(dtype.split("-g")[1])
    args = (inputs["x"], inputs["qweight"], inputs["scales"], inputs["zeros"], inputs.out)
    return inputs, t4.make_launch(*args, group, **kw), w4a16.reference(inputs, inputs.device)


# --- W8A8 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 72, 96), (33, 17, 40), (1, 8, 16)], ids=str)
@pytest.mark.parametrize("dtype", ["int8", "int8-fp16", "fp8", "fp8-row"])
def test_w8a8_matches_float64(dtype, shape):
    inputs, launch, ref = _w8a8(shape, dtype, seed=sum(shape))
    err = _run(launch, inputs, ref)
    assert err < TOL[inputs.out.dtype], err
    assert err > 0  # rounding happened: the comparison is live


@pytest.mark.parametrize("dtype", ["fp8", "fp8-row"])
def test_w8a8_fast_accumulation_matches_float64(dtype):
    inputs, launch, ref = _w8a8((33, 17, 72), dtype, seed=5, fast_acc=True)
    err = _run(launch, inputs, ref)
    assert 0 < err < TOL[inputs.out.dtype], err


def test_w8a8_fast_accumulation_is_fp8_only():
    inputs, _, _ = _w8a8((4, 8, 32), "int8")
    args = (inputs["a"], inputs["b"], inputs.out, inputs["scale_a"], inputs["scale_b"])
    with pytest.raises(UsageError, match="fast accumulation is for fp8"):
        t8.make_launch(*args, fast_acc=True)


def test_w8a8_per_tensor_scale_reaches_every_element():
    inputs, _, _ = _w8a8((40, 36, 64), "int8-fp16", seed=4)
    inputs.tensors["scale_b"] = inputs["scale_b"].amax().reshape(())  # one for the tensor
    launch = t8.make_launch(
        inputs["a"], inputs["b"], inputs.out, inputs["scale_a"], inputs["scale_b"]
    )
    assert _run(launch, inputs, w8a8.reference(inputs, inputs.device)) < 2**-10


def test_w8a8_refuses_bad_operands():
    inputs, _, _ = _w8a8((4, 8, 32), "int8")
    a, b = inputs["a"], inputs["b"]
    out, sa, sb = inputs.out, inputs["scale_a"], inputs["scale_b"]
    with pytest.raises(ShapeError, match="do not fit"):
        t8.make_launch(a, b[:16], out, sa, sb)
    with pytest.raises(UnknownKernelError, match=r"no torch\.int8 x torch\.float32"):
        t8.make_launch(a, b.float(), out, sa, sb)
    with pytest.raises(UnknownKernelError):
        t8.make_launch(a, b, out.float(), sa, sb)
    with pytest.raises(ShapeError, match="scale_a has 3 elements"):
        t8.make_launch(a, b, out, sa[:3], sb)


# --- W4A16 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["fp16-g32", "fp16-g64", "fp16-g128"])
@pytest.mark.parametrize("m", [1, 3, 16])
def test_w4a16_gemv_every_group(m, dtype):
    inputs, launch, ref = _w4a16((m, 72, 256), dtype, seed=m)
    # 32 word rows: FMA blocks of 8 (4 splits), tl.dot blocks of 16 (2); 3 bands, 4 SMs
    assert (launch.fma, launch.splits) == ((True, 4) if m <= t4.FMA_MAX_M else (False, 2))
    assert _run(launch, inputs, ref) < TOL[torch.float16]


@pytest.mark.parametrize("m", [1, 2, 4, 5, 16, 17])
@pytest.mark.parametrize("group", [32, 96])
def test_w4a16_path_boundaries_at_odd_sizes(m, group):
    """M = 1, 2, 4 (register FMAs), 5, 16 (tl.dot GEMV), 17 (tiled GEMM) at N = 37 and
    K = 288: 36 word rows, not a multiple of any block; groups of 32 and 96 (3 groups)."""
    k, n = 288, 37
    gen = torch.Generator().manual_seed(m * group)
    x = torch.randn(m, k, generator=gen).to(torch.float16).to(DEVICE)
    codes, scales, zeros = quantize.quantize_int4(
        torch.randn(k, n, generator=gen), group, torch.float16
    )
    qweight = pack.pack_int4(codes).to(DEVICE)
    out = torch.full((m, n), float("nan"), dtype=torch.float16, device=DEVICE)
    launch = t4.make_launch(x, qweight, scales.to(DEVICE), zeros.to(DEVICE), out, group)
    assert launch.fma == (m <= t4.FMA_MAX_M)
    assert (launch.splits == 0) == (m > t4.GEMV_MAX_M)
    launch()
    ref = x.double().cpu() @ quantize.dequantize_int4(codes, scales, zeros)
    assert not out.isnan().any()
    assert 0 < rel_fro_error(out.cpu(), ref) < TOL[torch.float16]


@pytest.mark.parametrize("split", [1, 3])
def test_w4a16_gemv_split_k_reduces_and_resets_its_counters(split):
    inputs, launch, ref = _w4a16((5, 40, 384), "fp16-g32", seed=9, split=split)
    assert launch.splits == split
    first = _run(launch, inputs, ref)
    assert first < TOL[torch.float16]
    result = inputs.out.clone()
    assert _run(launch, inputs, ref) == first  # the next launch finds its counters at 0
    assert torch.equal(result, inputs.out)  # deterministic: partials added in split order


@pytest.mark.parametrize("dtype", ["fp16-g32", "fp16-g64", "fp16-g128"])
@pytest.mark.parametrize("shape", [(17, 24, 128), (67, 40, 256)], ids=["17x24x128", "67x40x256"])
def test_w4a16_tiled_every_group(shape, dtype):
    inputs, launch, ref = _w4a16(shape, dtype, seed=shape[0])
    assert launch.splits == 0  # the tiled kernel
    assert _run(launch, inputs, ref) < TOL[torch.float16]


def test_w4a16_gemv_split_choice():
    assert t4.gemv_block(1) == (1, 32, 8) and t4.gemv_block(3) == (4, 32, 8)  # interpreter's
    assert t4.gemv_block(5) == (16, 32, 16)
    assert t4.gemv_block(1, interpret=False) == (1, *t4.FMA_GPU_BLOCK)
    for m, block_r in ((1, 8), (16, 16)):
        splits, rows = t4.gemv_split(m, 8192, 8192, 132)
        assert splits * rows >= 8192 // 8 > (splits - 1) * rows and rows % block_r == 0
        assert t4.gemv_split(m, 8, 64, 4) == (1, block_r)  # 8 word rows: one split


def test_w4a16_refuses_bad_operands():
    inputs, _, _ = _w4a16((2, 16, 64), "fp16-g32")
    x, qw, s, z, out = inputs["x"], inputs["qweight"], inputs["scales"], inputs["zeros"], inputs.out
    with pytest.raises(ShapeError, match="multiple of 64"):
        t4.make_launch(x[:, :32], qw[:4], s[:1], z[:1], out, 64)
    with pytest.raises(ShapeError, match="scales is"):
        t4.make_launch(x, qw, s[:1], z, out, 32)
    with pytest.raises(UnknownKernelError, match="one dtype"):
        t4.make_launch(x, qw, s.float(), z, out, 32)
    with pytest.raises(UnknownKernelError, match="int32"):
        t4.make_launch(x, qw.to(torch.int64), s, z, out, 32)
    with pytest.raises(ShapeError, match="row-major"):
        t4.make_launch(x, qw.t().contiguous().t(), s, z, out, 32)
    bad = z.clone()
    bad[0, 0] = 128  # no int4 code: it would corrupt the packed bf16 dequantization's exponent
    with pytest.raises(UsageError, match=r"zero points must be int4 codes 0\.\.15"):
        t4.make_launch(x, qw, s, bad, out, 32)


# --- on a GPU: bf16 and real shapes ---------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16-g128", "bf16-g32", "fp16-g64"])
@pytest.mark.parametrize(
    "shape",
    [(1, 4096, 4096), (4, 4096, 4096), (5, 4096, 4096), (16, 6144, 4096), (512, 4096, 4096),
     (67, 1000, 256), (3, 1000, 384)],
    ids=str,
)  # fmt: skip
def test_w4a16_gpu(shape, dtype):
    inputs, launch, ref = _w4a16(shape, dtype, seed=1)
    assert _run(launch, inputs, ref) < (2**-7 if dtype.startswith("bf16") else 2**-10)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["int8", "int8-fp16", "fp8", "fp8-row"])
@pytest.mark.parametrize("shape", [(1, 4096, 4096), (1024, 1024, 1024), (4097, 4095, 4096)])
def test_w8a8_gpu(shape, dtype):
    if dtype.startswith("fp8") and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs compute capability 8.9")
    inputs, launch, ref = _w8a8(shape, dtype, seed=2)
    assert _run(launch, inputs, ref) < TOL[inputs.out.dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp8", "fp8-row"])
@pytest.mark.parametrize("shape", [(1, 4096, 4096), (1024, 1024, 8192), (4097, 4095, 4096)])
def test_w8a8_fast_accumulation_gpu(shape, dtype):
    """On Hopper the fast accumulation is the tensor cores' own reduced-precision adder over all
    of K: the family tolerance must still hold at K = 4096 and 8192."""
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs compute capability 8.9")
    inputs, launch, ref = _w8a8(shape, dtype, seed=3, fast_acc=True)
    assert _run(launch, inputs, ref) < TOL[inputs.out.dtype]
