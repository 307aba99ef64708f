"""The packed int4 weight layout every W4A16 implementation reads (Triton, CUDA, the baseline).

The logical weight is W (K, N) -- ``X[M, K] @ W[K, N]`` -- of unsigned 4-bit codes ``q`` in
[0, 15]. Packed, it is an int32 tensor ``P`` of shape (K // 8, N), row-major (N contiguous, so a
row of words is ``4 * N`` bytes). Word ``P[r, n]`` holds the eight codes ``q[8r + e, n]``,
e = 0..7, one per nibble (nibble j = bits 4j .. 4j + 3, j = 0 the least significant):

    e (k offset in the word)   0  1  2  3  4  5  6  7
    nibble j                   0  4  1  5  2  6  3  7        (NIBBLE_OF_OFFSET)

i.e. the even offsets 0, 2, 4, 6 fill nibbles 0-3 and the odd offsets 1, 3, 5, 7 nibbles 4-7.
So ``(P >> 4i) & 0x000F000F`` puts the codes of k = 8r + 2i and 8r + 2i + 1 in the low bits of
the word's two 16-bit halves: OR-ed with 0x6400 (fp16 1024.0) or 0x4300 (bf16 128.0), each half
is exactly 1024 + q (128 + q). Two integer instructions give a consecutive pair of k as an
fp16x2 / bf16x2 register: the B fragment of ``mma.m16n8k16`` (thread t of a quad holds k = 2t,
2t + 1) and the pairs of the GEMV. Words may be negative (nibble 7 >= 8); readers mask after an
arithmetic shift. Needs K % 8 == 0.

Group-wise quantization parameters (``quantize.quantize_int4``) complete the format: ``scales``
(K // G, N) in the activation dtype and ``zeros`` (K // G, N) uint8 in [0, 15], with
``W[k, n] = (q[k, n] - zeros[k // G, n]) * scales[k // G, n]``.
"""

from __future__ import annotations

from wattbench.kernels.errors import ShapeError, UsageError

#: nibble that holds k offset e (0..7) within a word
NIBBLE_OF_OFFSET: tuple[int, ...] = (0, 4, 1, 5, 2, 6, 3, 7)
#: k offset held by nibble j (the inverse permutation)
OFFSET_OF_NIBBLE: tuple[int, ...] = tuple(NIBBLE_OF_OFFSET.index(j) for j in range(8))
#: codes per packed int32 word
CODES_PER_WORD = 8


def _shifts(device):
    import torch

    return torch.tensor([4 * j for j in NIBBLE_OF_OFFSET], dtype=torch.int64, device=device)


def pack_int4(q):
    """Codes ``q`` (K, N), integers in [0, 15], -> packed int32 (K // 8, N) (module docstring)."""
    import torch

    if q.dim() != 2:
        raise ShapeError(f"int4 codes must be 2-D (K, N), got {tuple(q.shape)}", "pass W as (K, N)")
    k, n = q.shape
    if k % CODES_PER_WORD:
        raise ShapeError(
            f"packing int4 needs K to be a multiple of 8, got K = {k}", "pad K to a multiple of 8"
        )
    if q.dtype.is_floating_point or q.dtype == torch.bool:
        raise UsageError(f"int4 codes must be an integer tensor, got {q.dtype}", "pass uint8 codes")
    wide = q.to(torch.int64)
    if wide.numel() and (wide.min() < 0 or wide.max() > 15):
        raise UsageError("int4 codes must lie in [0, 15]", "quantize with quantize.quantize_int4")
    words = (wide.view(k // 8, 8, n) << _shifts(q.device).view(1, 8, 1)).sum(dim=1)
    words = torch.where(words >= 2**31, words - 2**32, words)  # two's complement int32
    return words.to(torch.int32).contiguous()


def unpack_int4(packed):
    """Packed int32 (K // 8, N) -> codes uint8 (K, N); the exact inverse of :func:`pack_int4`."""
    import torch

    if packed.dim() != 2 or packed.dtype != torch.int32:
        raise ShapeError(
            f"packed int4 weights are int32 (K // 8, N), got {packed.dtype} {tuple(packed.shape)}",
            "pass the output of pack_int4",
        )
    rows, n = packed.shape
    codes = (packed.to(torch.int64).unsqueeze(1) >> _shifts(packed.device).view(1, 8, 1)) & 15
    return codes.reshape(rows * 8, n).to(torch.uint8)
