"""The int4 packing layout and the quantizers of the quantized GEMMs (``kernels/qgemm``).

Pack / unpack must be exact inverses; the layout is checked bit by bit against its documented
nibble order, including the two bit tricks the CUDA kernels build on (a nibble pair OR-ed into
fp16 / bf16 magic numbers, a nibble OR-ed into the mantissa of 2^23), using real fp16 / bf16 /
fp32 bit reinterpretation. Quantizers are checked against their error bounds on fresh random
data: int8 and the int4 groups within half a step (plus the scale's own rounding), fp8 within
e4m3's relative spacing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wattbench.kernels.qgemm import pack, quantize
from wattbench.profiler.errors import ShapeError, UsageError


def _codes(k: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 16, (k, n), generator=gen, dtype=torch.uint8)


@pytest.mark.parametrize("shape", [(8, 1), (64, 72), (96, 3), (256, 40)])
def test_pack_unpack_round_trip_is_exact(shape):
    q = _codes(*shape, seed=sum(shape))
    packed = pack.pack_int4(q)
    assert packed.dtype == torch.int32 and tuple(packed.shape) == (shape[0] // 8, shape[1])
    assert packed.is_contiguous()
    assert torch.equal(pack.unpack_int4(packed), q)
    assert (packed < 0).any() or shape == (8, 1)  # words with nibble 7 >= 8 are negative


def test_layout_nibble_order_by_hand():
    # one column, k = 0..7 holding codes 1..8: nibble j holds k offset OFFSET_OF_NIBBLE[j]
    q = torch.arange(1, 9, dtype=torch.uint8).view(8, 1)
    word = pack.pack_int4(q).item() & 0xFFFFFFFF
    nibbles = [(word >> (4 * j)) & 0xF for j in range(8)]
    assert pack.NIBBLE_OF_OFFSET == (0, 4, 1, 5, 2, 6, 3, 7)
    assert nibbles == [1, 3, 5, 7, 2, 4, 6, 8]  # k offsets 0, 2, 4, 6, 1, 3, 5, 7
    assert [pack.OFFSET_OF_NIBBLE[j] for j in range(8)] == [0, 2, 4, 6, 1, 3, 5, 7]
    assert word == 0x86427531


def test_nibble_pairs_become_fp16_and_bf16_pairs():
    """(w >> 4i) & 0x000F000F | 0x64006400 is the fp16 pair (1024 + q[2i], 1024 + q[2i + 1]);
    with 0x43004300 it is the bf16 pair (128 + q[2i], 128 + q[2i + 1])."""
    q = _codes(64, 16, seed=5)
    words = pack.pack_int4(q).numpy().astype(np.uint32)
    for i in range(4):
        pair = (words >> np.uint32(4 * i)) & np.uint32(0x000F000F)
        f16 = (pair | np.uint32(0x64006400)).view(np.float16).reshape(8, 16, 2)
        bf16 = torch.from_numpy((pair | np.uint32(0x43004300)).view(np.int16)).view(torch.bfloat16)
        lo, hi = q[2 * i :: 8].float().numpy(), q[2 * i + 1 :: 8].float().numpy()
        assert np.array_equal(f16[..., 0].astype(np.float32), 1024 + lo)
        assert np.array_equal(f16[..., 1].astype(np.float32), 1024 + hi)
        assert torch.equal(bf16.reshape(8, 16, 2)[..., 0].float(), 128 + torch.from_numpy(lo))
        assert torch.equal(bf16.reshape(8, 16, 2)[..., 1].float(), 128 + torch.from_numpy(hi))


def test_a_nibble_in_the_mantissa_of_2p23_is_exact():
    q = _codes(64, 8, seed=6)
    words = pack.pack_int4(q).numpy().astype(np.uint32)
    for j in range(8):
        f = ((words >> np.uint32(4 * j)) & np.uint32(0xF) | np.uint32(0x4B000000)).view(np.float32)
        assert np.array_equal(f - np.float32(2**23), q[pack.OFFSET_OF_NIBBLE[j] :: 8].numpy())


def test_pack_refuses_bad_input():
    with pytest.raises(ShapeError, match="multiple of 8"):
        pack.pack_int4(_codes(12, 4, seed=1))
    with pytest.raises(UsageError, match=r"\[0, 15\]"):
        pack.pack_int4(torch.full((8, 2), 16, dtype=torch.int16))
    with pytest.raises(UsageError, match="integer"):
        pack.pack_int4(torch.zeros(8, 2))
    with pytest.raises(ShapeError):
        pack.unpack_int4(torch.zeros(2, 2, dtype=torch.int64))


@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_int4_quantization_error_is_bounded(group, dtype):
    k, n = 256, 24
    w = torch.randn(k, n, generator=torch.Generator().manual_seed(group)) * 0.02
    w[:, 3] = 0.0  # an all-zero column
    w[:group, 5] = 0.7  # a constant group
    codes, scales, zeros = quantize.quantize_int4(w, group, dtype)
    assert codes.dtype == zeros.dtype == torch.uint8 and scales.dtype == dtype
    assert tuple(scales.shape) == tuple(zeros.shape) == (k // group, n)
    assert int(codes.max()) <= 15 and int(zeros.max()) <= 15
    deq = quantize.dequantize_int4(codes, scales, zeros)
    assert deq.dtype == torch.float64
    u = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-11
    step = scales.double().repeat_interleave(group, dim=0)
    err = (deq - w.double()).abs()
    assert (err <= step * (0.5 + 15 * u) + 1e-12).all()
    assert err[:, 3].max() == 0 and err[:group, 5].max() < 0.7 * u * 2
    # the error is the quantizer's, not zero: the check can fail
    assert (err / step).max() > 0.3


def test_int4_dequantize_in_a_dtype_and_errors():
    codes, scales, zeros = quantize.quantize_int4(torch.randn(64, 8), 32, torch.float16)
    assert quantize.dequantize_int4(codes, scales, zeros, torch.float32).dtype == torch.float32
    with pytest.raises(ShapeError, match="multiple of 64"):
        quantize.quantize_int4(torch.randn(96, 8), 64, torch.float16)
    with pytest.raises(ShapeError, match="multiple of 32"):
        quantize.check_group(96, 48)
    with pytest.raises(ShapeError):
        quantize.dequantize_int4(codes, scales[:1], zeros)


def test_int8_rows_symmetric_within_half_a_step():
    x = torch.randn(9, 70, generator=torch.Generator().manual_seed(2))
    x[4] = 0.0
    q, scale = quantize.quantize_int8_rows(x)
    assert q.dtype == torch.int8 and tuple(scale.shape) == (9, 1) and scale.dtype == torch.float32
    assert int(q.abs().max()) == 127 and scale[4].item() == 1.0
    err = (q.double() * scale.double() - x.double()).abs()
    assert (err <= scale.double() / 2 * (1 + 1e-6)).all()
    assert (q.abs().amax(dim=1)[[0, 1, 2, 3, 5, 6, 7, 8]] == 127).all()  # the row max maps to 127


@pytest.mark.parametrize("per_row", [False, True], ids=["tensor", "row"])
def test_fp8_within_e4m3_spacing(per_row):
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(3))
    q, scale = quantize.quantize_fp8(x, per_row)
    assert q.dtype == torch.float8_e4m3fn and scale.dtype == torch.float32
    assert tuple(scale.shape) == ((6, 1) if per_row else ())
    deq = q.double() * scale.double()
    # e4m3 keeps 3 mantissa bits: relative rounding <= 2**-4 for normal values
    tiny = 2.0**-6 * scale.double()  # below e4m3's smallest normal the spacing is absolute
    assert ((deq - x.double()).abs() <= torch.maximum(x.double().abs() * 2**-4, tiny)).all()
    amax = q.float().abs().amax(dim=1) if per_row else q.float().abs().amax()
    assert torch.all(amax == 448.0)
