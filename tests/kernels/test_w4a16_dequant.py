"""The W4A16 kernels' conversion-free dequantization is bit for bit the converting one.

``triton_w4a16.magic_f32`` turns an integer into ``2^23 + i`` by OR-ing it into the mantissa of
2^23; the kernels compute ``(magic(q) - magic(zero)) * scale`` where they computed
``(float(q) - float(zero)) * scale``. A test kernel evaluates both for every nibble of packed
words -- every (code, zero) pair of [0, 15]^2 at each of the 8 nibble positions, then random
words (negative ones included: nibble 7 >= 8), zeros and fp16 / bf16 scales -- and the float32
results must be identical bit patterns, and equal to torch's float32 ``(q - zero) * scale``.
The GEMV's packed pairs (``dequantize_pairs``: ``MAGIC + q`` in each half of a word, one packed
subtract and multiply) must give that product rounded once to the 16-bit dtype, bit for bit.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from wattbench.kernels.qgemm import pack
from wattbench.kernels.qgemm import triton_w4a16 as t4

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _dequantize_both(words_ptr, zeros_ptr, scales_ptr, magic_ptr, convert_ptr, N: tl.constexpr):
    """Row j of the (8, N) outputs: nibble j of each word, dequantized both ways (float32)."""
    offs = tl.arange(0, N)
    words = tl.load(words_ptr + offs)
    zero = tl.load(zeros_ptr + offs)
    scale = tl.load(scales_ptr + offs).to(tl.float32)
    for j in tl.static_range(8):
        q = (words >> (4 * j)) & 15
        magic = (t4.magic_f32(q) - t4.magic_f32(zero.to(tl.int32))) * scale
        convert = (q.to(tl.float32) - zero.to(tl.float32)) * scale
        tl.store(magic_ptr + j * N + offs, magic)
        tl.store(convert_ptr + j * N + offs, convert)


@triton.jit
def _dequantize_pairs(
    words_ptr, zeros_ptr, scales_ptr, out_ptr, N: tl.constexpr, MAGIC: tl.constexpr
):
    """Row e of the (8, N) output: the weight at k offset e of each word, from the packed pairs."""
    offs = tl.arange(0, N)
    words = tl.load(words_ptr + offs)[None, :]
    scale = tl.load(scales_ptr + offs)[None, :]
    zero16 = t4.magic_16(tl.load(zeros_ptr + offs)[None, :], scale.dtype, MAGIC)
    for i in tl.static_range(4):
        lo, hi = tl.split(t4.dequantize_pairs(words, i, zero16, scale, MAGIC))
        tl.store(out_ptr + (2 * i) * N + offs[None, :], lo)
        tl.store(out_ptr + (2 * i + 1) * N + offs[None, :], hi)


def _nibbles(words: torch.Tensor) -> torch.Tensor:
    """(8, N) int64 codes: row j is nibble j of each int32 word."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    return torch.stack([(w >> (4 * j)) & 15 for j in range(8)])


def _check(words: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor) -> None:
    n = words.numel()
    magic = torch.full((8, n), float("nan"), dtype=torch.float32, device=DEVICE)
    convert = torch.full_like(magic, float("nan"))
    _dequantize_both[(1,)](words, zeros, scales, magic, convert, N=n)
    assert torch.equal(magic.view(torch.int32), convert.view(torch.int32))
    q = _nibbles(words.cpu()).to(torch.float32)
    want = (q - zeros.cpu().to(torch.float32)) * scales.cpu().to(torch.float32)
    assert torch.equal(magic.cpu().view(torch.int32), want.view(torch.int32))


def test_every_code_and_zero() -> None:
    """Word n holds code (n + j) % 16 in nibble j and has zero n // 16: all 256 (code, zero)
    pairs at every nibble position, scale 1 and a negative scale."""
    n = torch.arange(256)
    codes = torch.stack([(n + j) % 16 for j in range(8)])
    words = torch.zeros(256, dtype=torch.int64)
    for j in range(8):
        words |= codes[j] << (4 * j)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)  # two's complement
    assert torch.equal(_nibbles(words), codes)
    zeros = (n // 16).to(torch.uint8)
    for scale in (1.0, -0.3125):
        scales = torch.full((256,), scale, dtype=torch.float16)
        _check(words.to(DEVICE), zeros.to(DEVICE), scales.to(DEVICE))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_random_words_zeros_and_scales(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(19)
    n = 512
    words = torch.randint(-(2**31), 2**31, (n,), generator=gen, dtype=torch.int64)
    zeros = torch.randint(0, 16, (n,), generator=gen, dtype=torch.uint8)
    scales = (torch.randn(n, generator=gen) * 0.02).to(dtype)
    scales[:4] = torch.tensor([0.0, -0.0, 1e-7, -65504.0 if dtype == torch.float16 else -1e37])
    _check(words.to(torch.int32).to(DEVICE), zeros.to(DEVICE), scales.to(DEVICE))


@pytest.mark.parametrize("m", [64, 16], ids=["gemm", "gemv"])
def test_kernels_dequantize_bit_for_bit(m: int) -> None:
    """Both kernels' weights are the converting dequantization, rounded once: X = rows of the
    identity makes each output element one weight (1 * w, plus exact zeros, in fp32), so C is
    ``((q - zero) * scale)`` rounded to fp16, equal to torch's (as values: the sum with +0
    products turns a -0 weight into +0; the test above compares signs of zero too). The GEMM
    (M = 64) reads all K = 64 rows at once, the GEMV (M = 16) 16 of them per launch."""
    k, n, group = 64, 40, 32
    gen = torch.Generator().manual_seed(m)
    codes = torch.randint(0, 16, (k, n), generator=gen, dtype=torch.uint8)
    codes[:16, :16] = torch.arange(16, dtype=torch.uint8)[:, None]  # every code, in every nibble
    zeros = torch.randint(0, 16, (k // group, n), generator=gen, dtype=torch.uint8)
    scales = (torch.randn(k // group, n, generator=gen) * 0.05).to(torch.float16)
    g = torch.arange(k) // group
    want = (codes.to(torch.float32) - zeros[g].to(torch.float32)) * scales[g].to(torch.float32)
    want = want.to(torch.float16)
    qweight = pack.pack_int4(codes).to(DEVICE)
    eye = torch.eye(k, dtype=torch.float16)
    for k0 in range(0, k, m):
        x = eye[k0 : k0 + m].contiguous().to(DEVICE)
        out = torch.full((m, n), float("nan"), dtype=torch.float16, device=DEVICE)
        t4.make_launch(x, qweight, scales.to(DEVICE), zeros.to(DEVICE), out, group)()
        assert torch.equal(out.cpu(), want[k0 : k0 + m])


_BF16_ON_GPU = pytest.mark.skipif(
    DEVICE != "cuda", reason="Triton's interpreter bit-casts int16 to bf16 wrongly: bf16 on a GPU"
)


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=_BF16_ON_GPU)])
def test_packed_pairs_are_the_converting_dequantization_rounded(dtype: torch.dtype) -> None:
    """The GEMV's f16x2 / bf16x2 dequantization gives ``((q - zero) * scale)`` computed in fp32
    and rounded once to the 16-bit dtype, bit for bit, for every (code, zero) pair at every
    nibble position and random scales (a negative and a zero one among them)."""
    n = torch.arange(256)
    codes = torch.stack([(n + j) % 16 for j in range(8)])  # nibble j of word n
    words = torch.zeros(256, dtype=torch.int64)
    for j in range(8):
        words |= codes[j] << (4 * j)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    zeros = (n // 16).to(torch.uint8)
    scales = (torch.randn(256, generator=torch.Generator().manual_seed(3)) * 0.05).to(dtype)
    scales[:2] = torch.tensor([-0.3125, 0.0])
    out = torch.full((8, 256), float("nan"), dtype=dtype, device=DEVICE)
    magic = t4.MAGIC_16[str(dtype).removeprefix("torch.")]
    _dequantize_pairs[(1,)](
        words.to(DEVICE), zeros.to(DEVICE), scales.to(DEVICE), out, N=256, MAGIC=magic
    )
    q = codes[list(pack.NIBBLE_OF_OFFSET)].to(torch.float32)  # row e: the code at k offset e
    want = ((q - zeros.to(torch.float32)) * scales.to(torch.float32)).to(dtype)
    assert torch.equal(out.cpu().view(torch.int16), want.view(torch.int16))
