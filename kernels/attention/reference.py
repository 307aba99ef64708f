"""The float64 reference of attention: ``o = softmax(q k^T * scale + mask) v`` and its log-sum-exp.

Shapes: q ``[B, HQ, Nq, D]``, k and v ``[B, HKV, Nkv, D]`` with ``HQ % HKV == 0``; query head h
reads KV head ``h // (HQ // HKV)`` (grouped-query attention). ``causal`` masks key j for query i
when ``j > i`` (top-left aligned; prefill has Nq == Nkv). ``scale`` defaults to ``D ** -0.5``.
``lse[b, h, i] = log(sum_j exp(s_ij))`` in natural log of the scaled, masked scores.

Computed per (batch, KV head) and in query chunks of at most ``max_scores`` scores at a time, so
the float64 score matrix of a long sequence never exists whole.
"""

from __future__ import annotations

import math

#: largest float64 score block (elements) held at once: 2**24 = 128 MiB
MAX_SCORES = 2**24


def attention_float64(
    q, k, v, *, causal: bool, scale: float | None = None, device=None, max_scores: int = MAX_SCORES
):
    """``(o, lse)`` in float64 on ``device`` (default: q's device): o ``[B, HQ, Nq, D]``, lse
    ``[B, HQ, Nq]``. Inputs of any floating dtype are converted chunk by chunk."""
    import torch

    device = torch.device(device) if device is not None else q.device
    b_n, hq, nq, d = q.shape
    hkv, nkv = k.shape[1], k.shape[2]
    group = hq // hkv
    scale = d**-0.5 if scale is None else scale
    o = torch.empty(b_n, hq, nq, d, dtype=torch.float64, device=device)
    lse = torch.empty(b_n, hq, nq, dtype=torch.float64, device=device)
    # rows of one chunk: group heads x rows <= max_scores / nkv
    rows = max(1, min(nq, max_scores // max(1, group * nkv)))
    for b in range(b_n):
        for hk in range(hkv):
            kk = k[b, hk].to(device=device, dtype=torch.float64)  # [Nkv, D]
            vv = v[b, hk].to(device=device, dtype=torch.float64)
            heads = slice(hk * group, (hk + 1) * group)
            for i0 in range(0, nq, rows):
                i1 = min(nq, i0 + rows)
                qq = q[b, heads, i0:i1].to(device=device, dtype=torch.float64)  # [G, r, D]
                s = torch.matmul(qq, kk.T).mul_(scale)  # [G, r, Nkv]
                if causal:
                    qi = torch.arange(i0, i1, device=device)[:, None]
                    kj = torch.arange(nkv, device=device)[None, :]
                    s.masked_fill_(kj > qi, -math.inf)
                row_lse = torch.logsumexp(s, dim=-1)  # [G, r]
                p = torch.exp(s.sub_(row_lse[..., None]))
                o[b, heads, i0:i1] = torch.matmul(p, vv)
                lse[b, heads, i0:i1] = row_lse
                del s, p, qq
    return o, lse
