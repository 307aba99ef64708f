"""What every attention implementation shares: operand checks and the decode split rule.

Operands are torch tensors ``q [B, HQ, Nq, D]``, ``k`` and ``v [B, HKV, Nkv, D]`` and ``out`` of
q's shape, one dtype (fp16 or bf16), one device, the last dimension contiguous. Query head ``h``
reads KV head ``h // (HQ // HKV)``. Sizes are counted in elements.

Split-KV decode (flash-decoding): the KV range ``[0, L)`` of every (batch, KV head) is cut into
``splits`` chunks of ``chunk`` keys (the last one shorter); each chunk gives a partial output and
its log-sum-exp, and a merge weighs them by their log-sum-exps (the Triton kernel: the last split
program of each KV head, in the same launch; the CUDA kernel: a second launch).
:func:`choose_splits` sizes the chunks so that the GPU has about ``PROGRAMS_PER_SM`` programs per
SM, with chunks of at least ``MIN_CHUNK`` keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wattbench.kernels.errors import ShapeError, UnknownKernelError, UsageError

#: head dimensions of the custom (Triton and CUDA) kernels
KERNEL_HEAD_DIMS = (64, 128)
#: programs (thread blocks) per SM the decode split rule aims for
PROGRAMS_PER_SM = 4
#: fewest keys per split (a split's fixed cost: a program start, a partial result, its merge)
MIN_CHUNK = 256
#: every chunk is a multiple of this many keys (the largest key block of any decode kernel)
CHUNK_MULTIPLE = 128


def head_dim_reason(d: int) -> str | None:
    """Why the custom kernels cannot take head dimension ``d``, or None."""
    if d not in KERNEL_HEAD_DIMS:
        return f"head dim D={d}: the custom kernels have D = 64 or 128"
    return None


def check_heads(hq: int, hkv: int) -> None:
    """ShapeError unless HQ is a positive multiple of HKV."""
    if hkv < 1 or hq < 1 or hq % hkv:
        raise ShapeError(
            f"HQ={hq} query heads cannot share HKV={hkv} KV heads evenly",
            "give HQ a multiple of HKV (grouped-query attention: HQ = G * HKV), e.g. 32x8",
        )


@dataclass(frozen=True)
class Operands:
    """Validated attention operands (see the module docstring); ``group`` = HQ // HKV."""

    batch: int
    hq: int
    hkv: int
    nq: int
    nkv: int
    d: int
    dtype: str  # "fp16" or "bf16"

    @property
    def group(self) -> int:
        return self.hq // self.hkv


def check_operands(q, k, v, out, *, what: str, dtypes=("fp16", "bf16"), lse=None) -> Operands:
    """Validate q, k, v, out (and an optional float32 ``lse [B, HQ, Nq]``) once."""
    import torch

    names = {torch.float16: "fp16", torch.bfloat16: "bf16"}
    for role, t in (("q", q), ("k", k), ("v", v), ("out", out)):
        if not isinstance(t, torch.Tensor):
            raise UsageError(f"{what}: {role} is a {type(t).__name__}", "pass torch tensors")
        if t.dim() != 4:
            raise ShapeError(
                f"{what}: {role} has shape {tuple(t.shape)}, not 4-D",
                "pass q, out as [B, HQ, Nq, D] and k, v as [B, HKV, Nkv, D]",
            )
        if t.stride(-1) != 1:
            raise ShapeError(
                f"{what}: {role} is not contiguous in its last dimension", "pass .contiguous()"
            )
    b, hq, nq, d = q.shape
    _, hkv, nkv, _ = k.shape
    if tuple(k.shape) != tuple(v.shape) or k.shape[0] != b or k.shape[3] != d:
        raise ShapeError(
            f"{what}: k {tuple(k.shape)} and v {tuple(v.shape)} do not fit q {tuple(q.shape)}",
            "k and v must both be [B, HKV, Nkv, D] with q's B and D",
        )
    if tuple(out.shape) != tuple(q.shape):
        raise ShapeError(
            f"{what}: out is {tuple(out.shape)}, q is {tuple(q.shape)}", "out must have q's shape"
        )
    if min(b, nq, nkv, d) < 1:
        raise ShapeError(
            f"{what}: empty operand (q {tuple(q.shape)}, k {tuple(k.shape)})", "use sizes >= 1"
        )
    check_heads(hq, hkv)
    dtype = names.get(q.dtype)
    if dtype is None or dtype not in dtypes or any(t.dtype != q.dtype for t in (k, v, out)):
        raise UnknownKernelError(
            f"{what}: dtypes q {q.dtype}, k {k.dtype}, v {v.dtype}, out {out.dtype}",
            f"give all four one dtype of: {', '.join(dtypes)}",
        )
    if any(t.device != q.device for t in (k, v, out)):
        raise UsageError(f"{what}: operands on different devices", "put all on one device")
    if lse is not None:
        if tuple(lse.shape) != (b, hq, nq) or lse.dtype != torch.float32 or not lse.is_contiguous():
            raise ShapeError(
                f"{what}: lse is {tuple(lse.shape)} {lse.dtype}",
                f"lse must be a contiguous float32 tensor of shape ({b}, {hq}, {nq})",
            )
        if lse.device != q.device:
            raise UsageError(f"{what}: lse is on {lse.device}, q on {q.device}", "use one device")
    return Operands(b, hq, hkv, nq, nkv, d, dtype)


def choose_splits(
    length: int,
    programs: int,
    sms: int,
    *,
    min_chunk: int = MIN_CHUNK,
    multiple: int = CHUNK_MULTIPLE,
) -> tuple[int, int]:
    """``(splits, chunk)`` for a KV range of ``length`` keys when ``programs`` programs (batch x
    KV heads x head groups) run it on ``sms`` SMs: ``splits * chunk >= length > (splits - 1) *
    chunk``, ``chunk`` a multiple of ``multiple``, every split non-empty."""
    if length < 1 or programs < 1 or sms < 1:
        raise ValueError("choose_splits needs positive length, programs and sms")
    want = math.ceil(PROGRAMS_PER_SM * sms / programs)
    splits = max(1, min(want, length // max(min_chunk, 1)))
    chunk = math.ceil(math.ceil(length / splits) / multiple) * multiple
    return math.ceil(length / chunk), chunk
