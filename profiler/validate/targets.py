"""The acceptance targets of wattbench's kernels and the verdict table.

Each target is a ratio measured on a GPU: a *speed* target is the reference's time over the
implementation's (graph-timed, interleaved, inputs rotated past L2), a *bandwidth* target the
implementation's achieved bytes per second (its Work's minimum traffic over its time) over the
measured HBM read bandwidth. A target passes when the ratio is at least its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wattbench.kernels.costs import Problem
from wattbench.kernels.family import Shape


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    threshold: float
    measured: Problem
    #: the speed reference (None: a bandwidth target, against the measured HBM read bandwidth)
    reference: Problem | None
    #: run the reference with SDPA restricted to its flash kernel (a fallback is not timed)
    flash_only: bool = False

    def text(self) -> str:
        against = self.reference.label if self.reference else "measured HBM read bandwidth"
        return f"{self.measured.label} vs {against}: ratio >= {self.threshold:g}"


def _mm(impl: str, shape: Shape, dtype: str = "bf16") -> Problem:
    return Problem("matmul", impl, shape, dtype)


TARGETS: tuple[Target, ...] = (
    Target(
        "matmul-4096",
        "Triton matmul, bf16 4096^3",
        0.95,
        _mm("triton", (4096, 4096, 4096)),
        _mm("vendor", (4096, 4096, 4096)),
    ),
    Target(
        "matmul-8192",
        "Triton matmul, bf16 8192^3",
        0.95,
        _mm("triton", (8192, 8192, 8192)),
        _mm("vendor", (8192, 8192, 8192)),
    ),
    Target(
        "matmul-m16",
        "Triton matmul, bf16 M=16",
        1.10,
        _mm("triton", (16, 8192, 8192)),
        _mm("vendor", (16, 8192, 8192)),
    ),
    Target(
        "matmul-m64",
        "Triton matmul, bf16 M=64",
        1.10,
        _mm("triton", (64, 8192, 8192)),
        _mm("vendor", (64, 8192, 8192)),
    ),
    Target(
        "prefill",
        "Triton prefill vs SDPA flash, bf16",
        0.90,
        Problem("prefill", "triton", (1, 32, 8, 2048, 128), "bf16"),
        Problem("prefill", "vendor", (1, 32, 8, 2048, 128), "bf16"),
        flash_only=True,
    ),
    Target(
        "decode",
        "Triton decode, share of HBM read bandwidth",
        0.80,
        Problem("decode", "triton", (16, 32, 8, 8192, 128), "bf16"),
        None,
    ),
    Target(
        "w4a16-m1",
        "W4A16 Triton GEMV vs bf16 cuBLAS, M=1",
        2.5,
        Problem("w4a16", "triton", (1, 8192, 8192), "bf16-g128"),
        _mm("vendor", (1, 8192, 8192)),
    ),
    Target(
        "w8a8",
        "W8A8 Triton fp8 vs bf16 cuBLAS, 8192^3",
        1.5,
        Problem("w8a8", "triton", (8192, 8192, 8192), "fp8"),
        _mm("vendor", (8192, 8192, 8192)),
    ),
    Target(  # reported under its own label: not the same arithmetic as the target above
        "w8a8-fastacc",
        "W8A8 Triton fp8 fast-accumulation vs bf16 cuBLAS, 8192^3",
        1.5,
        Problem("w8a8", "triton-fastacc", (8192, 8192, 8192), "fp8"),
        _mm("vendor", (8192, 8192, 8192)),
    ),
    Target(
        "cupy-gemm",
        "CuPy GEMM vs cuBLAS, bf16 4096^3",
        0.60,
        _mm("cupy", (4096, 4096, 4096)),
        _mm("vendor", (4096, 4096, 4096)),
    ),
)


def verdict(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per target: the measured ratio and PASS / FAIL, or why it was not measured."""
    by_key = {o["key"]: o for o in outcomes}
    rows = []
    for t in TARGETS:
        o = by_key.get(f"target:{t.key}")
        ratio = o.get("ratio") if o else None
        if o is None:
            result = "not run"
        elif o["status"] in ("pass", "fail"):
            result = o["status"].upper()
        elif str(o.get("summary", "")).startswith("needs a GPU"):
            result = "not measured: needs a GPU"
        else:
            result = f"not measured ({o['status']}): {str(o.get('summary', ''))[:70]}"
        rows.append(
            {
                "key": t.key,
                "title": t.title,
                "threshold": t.threshold,
                "ratio": ratio,
                "verdict": result,
            }
        )
    return rows


def render_verdict(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    if markdown:
        lines = ["| target | threshold | measured | verdict |", "|---|---|---|---|"]
        for r in rows:
            got = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
            lines.append(f"| {r['title']} | >= {r['threshold']:g} | {got} | {r['verdict']} |")
        return "\n".join(lines)
    width = max(len(r["title"]) for r in rows)
    lines = [f"{'target':<{width}}  need   got    verdict"]
    for r in rows:
        got = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        lines.append(f"{r['title']:<{width}}  {r['threshold']:<5g}  {got:<5}  {r['verdict']}")
    return "\n".join(lines)
