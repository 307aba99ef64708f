"""The Triton matmul against a float64 reference, in Triton's interpreter here (tiny shapes).

Inputs are fresh seeded ``torch.randn`` values (never zeros) and every output is poisoned with NaN
before the run, so a tile that is never written fails the comparison. Errors are relative
Frobenius norms ``||C - ref||_F / ||ref||_F`` with ``ref`` computed in float64 from the very
inputs the kernel saw (for fp8: the fp8-rounded values), so what remains is the kernel's own
rounding:

* fp32 accumulation of K products adds about sqrt(K) * 2**-24 (< 1e-6 for K <= 1000);
* rounding C to its dtype adds at most its unit roundoff u per element, so at most u in the
  Frobenius norm (about u / sqrt(3) on average).

Each tolerance is therefore twice the output dtype's unit roundoff: fp16 u = 2**-11 -> 2**-10;
bf16 u = 2**-8 -> 2**-7. fp32 with IEEE products is bounded by accumulation alone: 1e-5, which
tf32 products (inputs rounded to a 10-bit mantissa, about 2**-11 relative each) would exceed;
tf32 gets 2**-8 (two inputs rounded or truncated to 2**-10 each, with margin).
"""

from __future__ import annotations

import pytest
import torch

from wattbench.kernels.matmul import triton_matmul as tm
from wattbench.kernels.triton_support import size_bucket
from wattbench.profiler.errors import ShapeError, UnknownKernelError, WattbenchError

FP16_TOL = 2**-10
BF16_TOL = 2**-7
FP32_IEEE_TOL = 1e-5
TF32_TOL = 2**-8
#: fp8 inputs are exact in the reference, so the tolerance is that of the output dtype
FP8_TOL = {torch.bfloat16: BF16_TOL, torch.float16: FP16_TOL, torch.float32: FP32_IEEE_TOL}
TOL = {torch.float16: FP16_TOL, torch.bfloat16: BF16_TOL, torch.float32: FP32_IEEE_TOL}

#: (M, N, K): unit, odd sizes straddling the interpreter's 32-wide blocks, decode-like M = 1
SHAPES = [(1, 1, 1), (67, 45, 93), (17, 129, 33), (1, 64, 200)]
FP8 = torch.float8_e4m3fn
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _randn(rows: int, cols: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=gen).to(device=DEVICE, dtype=dtype)


def _operands(
    m: int, n: int, k: int, dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    return _randn(m, k, dtype, 2 * seed + 1), _randn(k, n, dtype, 2 * seed + 2)


def _poisoned(m: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.full((m, n), float("nan"), dtype=dtype, device=DEVICE)


def _rel_err(c: torch.Tensor, ref: torch.Tensor) -> float:
    c64 = c.double()
    assert not c64.isnan().any(), "the kernel left unwritten (NaN) elements"
    return float(torch.linalg.norm(c64 - ref) / torch.linalg.norm(ref))


def _reference(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return (a.double() @ b.double()) * scale


# --- correctness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True], ids=["tiled", "persistent"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
def test_matches_float64_reference(
    dtype: torch.dtype, shape: tuple[int, int, int], persistent: bool
) -> None:
    m, n, k = shape
    a, b = _operands(m, n, k, dtype)
    out = _poisoned(m, n, dtype)
    c = tm.matmul(a, b, out=out, persistent=persistent, split_k=1, tma=False)
    assert c is out
    assert c.dtype == dtype
    assert _rel_err(c, _reference(a, b)) < TOL[dtype]


@pytest.mark.parametrize("persistent", [False, True], ids=["tiled", "persistent"])
@pytest.mark.parametrize("shape", [(67, 45, 93), (1, 64, 200)], ids=["67x45x93", "1x64x200"])
@pytest.mark.parametrize(
    "out_dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"]
)
def test_fp8_with_scales(
    out_dtype: torch.dtype, shape: tuple[int, int, int], persistent: bool
) -> None:
    m, n, k = shape
    a, b = _operands(m, n, k, FP8, seed=3)
    scale_a = torch.tensor(0.5, device=DEVICE)  # 0-d
    scale_b = torch.tensor([3.0], device=DEVICE)  # 1-element
    out = _poisoned(m, n, out_dtype)
    c = tm.matmul(
        a, b, out=out, scale_a=scale_a, scale_b=scale_b, persistent=persistent, split_k=1, tma=False
    )
    assert _rel_err(c, _reference(a, b, 0.5 * 3.0)) < FP8_TOL[out_dtype]


@pytest.mark.parametrize(
    ("persistent", "split_k"), [(False, 1), (True, None), (None, 3)], ids=["tiled", "pers", "split"]
)
def test_fp8_fast_accumulation(persistent: bool | None, split_k: int | None) -> None:
    """The interpreter sums fp8 products exactly, with or without fast accumulation: the same C
    as the precise path, bit for bit (the reduced precision exists on sm_90 only)."""
    m, n, k = 17, 129, 93
    a, b = _operands(m, n, k, FP8, seed=12)
    kw = {"persistent": persistent, "split_k": split_k, "scale_a": 0.5, "out_dtype": torch.float32}
    fast = tm.matmul(a, b, fast_accum=True, **kw)
    assert _rel_err(fast, _reference(a, b, 0.5)) < FP8_TOL[torch.float32]
    assert torch.equal(fast, tm.matmul(a, b, **kw))


def test_fast_accumulation_is_for_fp8_only() -> None:
    a, b = _operands(4, 5, 6, torch.float16)
    with pytest.raises(WattbenchError, match="fast_accum applies to fp8 inputs only"):
        tm.make_launch(a, b, _poisoned(4, 5, torch.float16), fast_accum=True)


def test_fp8_defaults_to_bf16_output_and_float_scales() -> None:
    a, b = _operands(17, 129, 33, FP8, seed=4)
    c = tm.matmul(a, b, scale_a=2.0)  # scale_b missing: 1.0
    assert c.dtype == torch.bfloat16
    assert _rel_err(c, _reference(a, b, 2.0)) < BF16_TOL


def test_fp8_reference_uses_the_rounded_inputs() -> None:
    """The fp8 comparison is meaningful: fp8 rounding itself is far above the tolerance."""
    gen = torch.Generator().manual_seed(5)
    a32 = torch.randn(67, 93, generator=gen)
    b32 = torch.randn(93, 45, generator=gen)
    c = tm.matmul(a32.to(FP8).to(DEVICE), b32.to(FP8).to(DEVICE), out_dtype=torch.float32)
    assert _rel_err(c, _reference(a32, b32)) > 100 * FP8_TOL[torch.float32]


def test_strided_operands_and_output() -> None:
    """Transposed views and a column-major output: strides are honoured, nothing is copied."""
    m, n, k = 67, 45, 93
    a = _randn(k, m, torch.float16, 7).T  # (M, K), column-major
    b = _randn(n, k, torch.float16, 8).T  # (K, N), K-contiguous
    out = _poisoned(n, m, torch.float16).T  # (M, N), column-major
    tm.matmul(a, b, out=out)
    assert _rel_err(out, _reference(a, b)) < FP16_TOL


def test_scales_are_read_at_each_launch() -> None:
    a, b = _operands(17, 129, 33, FP8, seed=6)
    scale_a = torch.tensor(1.0, device=DEVICE)
    out = _poisoned(17, 129, torch.float32)
    launch = tm.make_launch(a, b, out, scale_a=scale_a, scale_b=torch.tensor(3.0, device=DEVICE))
    launch()
    assert _rel_err(out, _reference(a, b, 3.0)) < FP8_TOL[torch.float32]
    scale_a.fill_(0.25)
    launch()
    assert _rel_err(out, _reference(a, b, 0.75)) < FP8_TOL[torch.float32]


# --- split-K --------------------------------------------------------------------------------------

#: (M, N, K): K a multiple of no split length, M <= 64 (the rule's range) and one above it
SPLIT_SHAPES = [(17, 129, 93), (1, 64, 200), (64, 70, 300), (67, 45, 161)]


@pytest.mark.parametrize("split_k", [2, 3, 5])
@pytest.mark.parametrize("shape", SPLIT_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, FP8], ids=["fp16", "fp32", "fp8"])
def test_split_k_matches_float64_reference(
    dtype: torch.dtype, shape: tuple[int, int, int], split_k: int
) -> None:
    """Each split's fp32 partial is summed in split order and scaled once, so the error is the
    unsplit kernel's (fp8: scales applied after the reduction, fp32 output)."""
    m, n, k = shape
    a, b = _operands(m, n, k, dtype, seed=split_k)
    out_dtype = torch.bfloat16 if dtype == FP8 else dtype  # fp8 reaches TMA with bf16 C only
    scale = 0.5 if dtype == FP8 else None
    out = _poisoned(m, n, out_dtype)
    launch = tm.make_launch(a, b, out, split_k=split_k, scale_a=scale)
    plan = tm.split_k_plan(m, n, k, tm.num_sms(a.device), split_k)
    assert (launch.variant, launch.splits) == ("split-k", plan.splits)
    assert 2 <= plan.splits <= split_k
    assert (plan.splits - 1) * plan.k_per_split < k <= plan.splits * plan.k_per_split  # none empty
    launch()
    first = out.clone()
    assert _rel_err(out, _reference(a, b, scale or 1.0)) < TOL[out_dtype]
    out.fill_(float("nan"))  # the counters were reset: a second launch writes every tile again
    launch()
    assert torch.equal(out, first)  # bitwise the same


def test_split_k_wish_beyond_k_gives_no_empty_split() -> None:
    """K = 93 holds three 32-long granules (the interpreter's BLOCK_K): a wish of 8 splits makes
    3, the last 29 long; in the GPU geometry 8 splits of K = 300 make 3 (128, 128, 44)."""
    assert tm.split_k_plan(5, 45, 93, 4, 8, tm.INTERPRETER_SPLIT).splits == 3
    gpu = tm.split_k_plan(5, 45, 300, 132, 8, tm.GPU_SPLIT)
    assert (gpu.splits, gpu.k_per_split) == (3, 128)
    for k in range(1, 700, 7):
        for wish in (1, 2, 3, 7, 64):
            p = tm.split_k_plan(16, 4096, k, 132, wish, tm.GPU_SPLIT)
            assert p.k_per_split % tm.GPU_SPLIT.k_multiple == 0
            assert (p.splits - 1) * p.k_per_split < k <= p.splits * p.k_per_split
            assert 1 <= p.splits <= wish
    if tm._INTERPRET:
        m, n, k = 5, 45, 93
        a, b = _operands(m, n, k, torch.float16, seed=21)
        out = _poisoned(m, n, torch.float16)
        launch = tm.make_launch(a, b, out, split_k=8)
        assert launch.splits == 3
        launch()
        assert _rel_err(out, _reference(a, b)) < FP16_TOL


@pytest.mark.parametrize(
    ("shape", "splits"),
    [
        ((16, 6144, 4096), 2),  # llama3-8b-qkv@16: 96 tiles of 16x64, 264 programs a wave
        ((1, 4096, 4096), 4),  # llama3-8b-o@1: 64 tiles
        ((16, 4096, 14336), 4),  # llama3-8b-down@16
        ((64, 4096, 4096), 4),  # 64 tiles of 64x64
        ((16, 28672, 4096), 1),  # llama3-8b-gate_up@16: 448 tiles, over 3 waves already
        ((16, 10240, 8192), 1),  # llama3-70b-qkv@16: 160 tiles, two would exceed the wave
        ((16, 1024, 1024), 2),  # 16 tiles, but K holds two 512-long splits only
        ((16, 4096, 256), 1),  # K below two minimal splits
        ((128, 6144, 4096), 1),  # M > 64: the tile grid fills the GPU
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_split_k_rule_on_132_sms(shape: tuple[int, int, int], splits: int) -> None:
    m, n, k = shape
    plan = tm.split_k_plan(m, n, k, 132, geometry=tm.GPU_SPLIT)
    assert plan.splits == splits
    assert plan.tiles * plan.splits <= max(plan.tiles, tm.SPLIT_K_PROGRAMS_PER_SM * 132)
    assert plan.block_m == min(max(16, 1 << (m - 1).bit_length()), 64)


def test_split_k_rule_applies_in_make_launch() -> None:
    """split_k=None: the rule splits a skinny problem (4 interpreter SMs: 1x64x200 has 2 tiles of
    16x32, so 4 splits); persistent=True never splits; M > 64 does not split."""
    a, b = _operands(1, 64, 200, torch.float16, seed=22)
    out = _poisoned(1, 64, torch.float16)
    auto = tm.make_launch(a, b, out)
    want = tm.split_k_plan(1, 64, 200, tm.num_sms(a.device)).splits
    assert auto.splits == want and auto.variant == ("split-k" if want > 1 else "tiled")
    if tm._INTERPRET:
        assert want == 4
    assert tm.make_launch(a, b, out, persistent=True).variant.endswith("persistent")
    a2, b2 = _operands(67, 45, 93, torch.float16, seed=23)
    assert tm.make_launch(a2, b2, _poisoned(67, 45, torch.float16)).splits == 1


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4"])
def test_split_k_must_be_a_positive_integer(bad: object) -> None:
    a, b = _operands(4, 5, 6, torch.float16)
    with pytest.raises(WattbenchError, match="split_k must be an integer >= 1") as info:
        tm.make_launch(a, b, _poisoned(4, 5, torch.float16), split_k=bad)  # type: ignore[arg-type]
    assert info.value.remedy


def test_split_k_and_persistent_exclude_each_other() -> None:
    a, b = _operands(4, 5, 64, torch.float16)
    with pytest.raises(WattbenchError, match="do not split K"):
        tm.make_launch(a, b, _poisoned(4, 5, torch.float16), persistent=True, split_k=2)


# --- make_launch ----------------------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True], ids=["tiled", "persistent"])
def test_make_launch_writes_into_out_and_repeats(persistent: bool) -> None:
    m, n, k = 67, 45, 93
    a, b = _operands(m, n, k, torch.float16, seed=9)
    out = _poisoned(m, n, torch.float16)
    ptr = out.data_ptr()
    launch = tm.make_launch(a, b, out, persistent=persistent, split_k=1, tma=False)
    assert launch.variant == ("persistent" if persistent else "tiled")
    assert launch() is None
    first = out.clone()
    assert out.data_ptr() == ptr
    assert _rel_err(first, _reference(a, b)) < FP16_TOL
    out.fill_(float("nan"))
    launch()
    assert out.data_ptr() == ptr
    assert torch.equal(out, first)


def test_make_launch_validates_out() -> None:
    a, b = _operands(4, 5, 6, torch.float16)
    with pytest.raises(ShapeError, match=r"\(5, 4\), expected \(4, 5\)"):
        tm.make_launch(a, b, _poisoned(5, 4, torch.float16))
    with pytest.raises(UnknownKernelError, match=r"cannot write torch\.float32"):
        tm.make_launch(a, b, _poisoned(4, 5, torch.float32))
    a8, b8 = _operands(4, 5, 6, FP8)
    with pytest.raises(UnknownKernelError, match="fp8 matmul cannot write"):
        tm.make_launch(a8, b8, torch.empty(4, 5, dtype=FP8, device=DEVICE))


# --- persistent rule, buckets, configs ------------------------------------------------------------


def test_persistent_rule() -> None:
    sms = 132
    waves = tm.PERSISTENT_MIN_WAVES
    assert not tm.use_persistent(1, 4096, sms)
    assert not tm.use_persistent(1024, 1024, sms)  # 64 tiles < 4 waves
    assert tm.use_persistent(128 * 4 * waves, 128 * sms // 4, sms)  # exactly 4 waves
    assert not tm.use_persistent(128 * 4 * waves - 128, 128 * sms // 4, sms)
    assert tm.use_persistent(8192, 8192, sms)


KERNELS = {
    "tiled": "_matmul_kernel",
    "persistent": "_matmul_persistent_kernel",
    "tma-persistent": "_matmul_tma_kernel",
    "split-k": "_matmul_split_kernel",
}


@pytest.mark.parametrize(
    ("shape", "tma", "interpreted"),
    [
        ((67, 45, 93), None, "tiled"),  # M > 64, 4 reference tiles: no split, not persistent
        ((400, 400, 8), None, "tma-persistent"),  # 16 tiles = 4 waves on 4 SMs; aligned
        ((400, 400, 8), False, "persistent"),
        ((400, 400, 7), None, "persistent"),  # A's rows are 14 bytes apart: no TMA
    ],
)
def test_the_launch_runs_the_kernel_its_variant_names(
    monkeypatch: pytest.MonkeyPatch,
    shape: tuple[int, int, int],
    tma: bool | None,
    interpreted: str,
) -> None:
    m, n, k = shape
    calls: list[str] = []
    for name in KERNELS.values():
        kernel = getattr(tm, name)
        original = kernel.run

        def spy(*args, _name=name, _run=original, **kwargs):
            calls.append(_name)
            return _run(*args, **kwargs)

        monkeypatch.setattr(kernel, "run", spy)
    a, b = _operands(m, n, k, torch.float16, seed=10)
    out = _poisoned(m, n, torch.float16)
    launch = tm.make_launch(a, b, out, tma=tma)
    launch()
    if tm._INTERPRET:  # 4 SMs
        assert launch.variant == interpreted
    assert calls == [KERNELS[launch.variant]]
    persistent = tm.use_persistent(m, n, tm.num_sms(a.device))
    assert launch.variant.endswith("persistent") == persistent
    assert (launch.tma_unavailable is None) == (launch.variant != "persistent")
    assert _rel_err(out, _reference(a, b)) < FP16_TOL


# --- TMA ------------------------------------------------------------------------------------------

#: (M, N, K) with 16-byte aligned rows for every dtype, several tiles per program (4 interpreter
#: SMs), edge tiles in M and N, K over several blocks and not a multiple of 32
TMA_SHAPES = [(100, 80, 48), (33, 160, 112), (1, 16, 16)]


@pytest.mark.parametrize("b_kmajor", [False, True], ids=["B-row-major", "B-K-major"])
@pytest.mark.parametrize("shape", TMA_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, FP8], ids=["fp16", "fp32", "fp8"])
def test_tma_persistent_matches_float64_reference(
    dtype: torch.dtype, shape: tuple[int, int, int], b_kmajor: bool
) -> None:
    """The flattened loop over (tile, K block) steps stores every tile once, scaled."""
    m, n, k = shape
    a, b = _operands(m, n, k, dtype, seed=30)
    if b_kmajor:
        b = b.t().contiguous().t()
    out_dtype = torch.bfloat16 if dtype == FP8 else dtype  # fp8 reaches TMA with bf16 C only
    scale = 0.5 if dtype == FP8 else None
    out = _poisoned(m, n, out_dtype)
    tf32 = dtype == torch.float32  # TMA serves fp32 with tensor-core (TF32) math only
    launch = tm.make_launch(a, b, out, tma=True, scale_a=scale, allow_tf32=tf32)
    assert launch.variant == "tma-persistent" and launch.tma_unavailable is None
    launch()
    first = out.clone()
    assert _rel_err(out, _reference(a, b, scale or 1.0)) < (TF32_TOL if tf32 else TOL[out_dtype])
    out.fill_(float("nan"))
    launch()
    assert torch.equal(out, first)


def test_tma_reason_names_what_tma_cannot_take(monkeypatch: pytest.MonkeyPatch) -> None:
    a8, b8 = _operands(64, 64, 64, FP8, seed=31)
    for out_dtype in (torch.float32, torch.float16):  # the TMA store's C tile: bf16 only
        reason = tm.tma_reason(a8, b8, _poisoned(64, 64, out_dtype))
        assert reason is not None and "TMA: bf16 only" in reason
    a, b = _operands(64, 64, 64, torch.float16, seed=31)
    out = _poisoned(64, 64, torch.float16)
    if tm._INTERPRET:
        assert tm.tma_reason(a, b, out) is None
    assert tm.tma_reason(a, b.t().contiguous().t(), out) in (None, tm.tma_reason(a, b, out))
    assert "A has no unit stride" in str(tm.tma_reason(a[:, ::2], b[::2], out))
    assert "C has no unit stride" in str(tm.tma_reason(a, b, out.t()))
    a60, b60 = _operands(64, 64, 60, torch.float16, seed=33)  # A's rows 120 bytes apart
    assert "A's base or leading stride" in str(tm.tma_reason(a60, b60, out))
    assert "B's base or leading stride" in str(tm.tma_reason(a, b[:, 1:], out[:, 1:]))  # offset
    a32, b32 = a.float(), b.float()
    assert "IEEE fp32" in str(tm.tma_reason(a32, b32, out.float()))
    assert tm.tma_reason(a32, b32, out.float(), allow_tf32=True) == tm.tma_reason(a, b, out)
    monkeypatch.setattr(tm, "_TENSOR_DESCRIPTOR", None)
    assert "has no host tensor descriptors" in str(tm.tma_reason(a, b, out))
    monkeypatch.setattr(tm, "_INTERPRET", False)  # a real launch on a CPU tensor
    monkeypatch.setattr(tm, "_TENSOR_DESCRIPTOR", object)
    if not torch.cuda.is_available():
        assert tm.tma_reason(a, b, out) == "TMA needs a CUDA device"


def test_tma_true_explains_why_it_cannot_run() -> None:
    a, b = _operands(64, 64, 63, torch.float16, seed=32)  # A's rows 126 bytes apart
    out = _poisoned(64, 64, torch.float16)
    with pytest.raises(WattbenchError, match="TMA kernel cannot run: A's base") as info:
        tm.make_launch(a, b, out, tma=True)
    assert "tma=False" in info.value.remedy
    with pytest.raises(WattbenchError, match="is persistent"):
        tm.make_launch(a, b, out, tma=True, persistent=False)
    with pytest.raises(WattbenchError, match="do not split K"):
        tm.make_launch(a, b, out, tma=True, split_k=2)
    fallback = tm.make_launch(a, b, out, persistent=True)
    assert fallback.variant == "persistent" and "A's base" in fallback.tma_unavailable
    assert tm.make_launch(a, b, out, persistent=True, tma=False).tma_unavailable == "tma=False"


def test_buckets_share_odd_sizes() -> None:
    assert [size_bucket(s) for s in (1, 16, 17, 45, 64, 1000, 1024, 10**6)] == [
        16, 16, 32, 64, 64, 1024, 1024, 16384,
    ]  # fmt: skip


def test_config_sets() -> None:
    for kind in ("16-bit", "fp32", "fp8", "fp8-fastacc"):  # a launch tunes over one kind's
        assert 4 <= len(tm.gpu_configs(kind)) <= 8
        assert 1 <= len(tm.split_gpu_configs(kind)) <= 4
    assert tm.config_kind("fp8", fast_acc=True) == "fp8-fastacc"
    assert tm.config_kind("fp16", fast_acc=True) == "16-bit"
    fastacc = [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in tm.gpu_configs("fp8-fastacc")]
    assert (128, 256) in fastacc  # the tile the partial accumulator of the precise path forbids
    assert {tm.config_kind(d) for d in (*tm.SUPPORTED_DTYPES, "tf32")} == {"16-bit", "fp32", "fp8"}
    assert all(c.kwargs["BLOCK_K"] >= 32 for c in tm._GPU_CONFIGS)  # fp8 needs BLOCK_K >= 32
    if tm._INTERPRET:
        assert tm._CONFIGS == [tm._INTERPRETER_CONFIG]
    else:
        assert tm._CONFIGS == tm._GPU_CONFIGS


# --- bad input ------------------------------------------------------------------------------------


def test_mismatched_inner_dimension() -> None:
    a, _ = _operands(4, 5, 6, torch.float16)
    b = _randn(7, 5, torch.float16, 11)
    with pytest.raises(ShapeError, match="A is 4x6, B is 7x5") as info:
        tm.matmul(a, b)
    assert "A.shape[1] == B.shape[0]" in str(info.value)


def test_one_dimensional_input() -> None:
    a = torch.randn(6, device=DEVICE, dtype=torch.float16)
    b = _randn(6, 5, torch.float16, 12)
    with pytest.raises(ShapeError, match=r"shape \(6,\), not 2-D") as info:
        tm.matmul(a, b)
    assert info.value.remedy


def test_integer_dtype() -> None:
    a = torch.randint(-3, 3, (4, 6), dtype=torch.int32, device=DEVICE)
    b = torch.randint(-3, 3, (6, 5), dtype=torch.int32, device=DEVICE)
    with pytest.raises(UnknownKernelError, match=r"no torch\.int32 path") as info:
        tm.matmul(a, b)
    assert all(name in info.value.remedy for name in tm.SUPPORTED_DTYPES)


def test_mixed_dtypes_and_bad_scales() -> None:
    a, _ = _operands(4, 5, 6, torch.float16)
    b = _randn(6, 5, torch.float32, 13)
    with pytest.raises(UnknownKernelError, match="differ in dtype"):
        tm.matmul(a, b)
    a8, b8 = _operands(4, 5, 6, FP8)
    with pytest.raises(ShapeError, match="2 elements"):
        tm.matmul(a8, b8, scale_a=torch.ones(2, device=DEVICE))
    with pytest.raises(UnknownKernelError, match="float32"):
        tm.matmul(a8, b8, scale_b=torch.ones((), dtype=torch.float64, device=DEVICE))
    with pytest.raises(WattbenchError, match="sizes must be >= 1"):
        tm.matmul(a8[:0], b8)


# --- GPU only -------------------------------------------------------------------------------------


def _gpu_operands(m: int, n: int, k: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator(device="cuda").manual_seed(m + n + k)
    a = torch.randn(m, k, device="cuda", generator=gen).to(dtype)
    b = torch.randn(k, n, device="cuda", generator=gen).to(dtype)
    return a, b, torch.full((m, n), float("nan"), device="cuda", dtype=dtype)


GPU_SHAPES = [(1024, 1024, 1024), (1000, 1000, 1000), (1, 4096, 4096), (8192, 8192, 512)]


@pytest.mark.gpu
@pytest.mark.parametrize("persistent", [None, False, True], ids=["auto", "tiled", "persistent"])
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gpu_bf16(shape: tuple[int, int, int], persistent: bool | None) -> None:
    a, b, out = _gpu_operands(*shape, torch.bfloat16)
    tm.matmul(a, b, out=out, persistent=persistent)
    assert _rel_err(out, _reference(a, b)) < BF16_TOL


@pytest.mark.gpu
@pytest.mark.parametrize("tma", [None, False], ids=["tma", "pointers"])
@pytest.mark.parametrize("shape", [(4096, 4096, 4096), (4100, 4104, 1000), (8192, 8192, 520)])
def test_gpu_persistent_tma_and_fallback(shape: tuple[int, int, int], tma: bool | None) -> None:
    """On sm_90 with this Triton's descriptors the persistent launch is the TMA kernel (its
    reason otherwise is recorded); tma=False runs the pointer kernel; both match float64."""
    a, b, out = _gpu_operands(*shape, torch.bfloat16)
    launch = tm.make_launch(a, b, out, persistent=True, tma=tma)
    reason = tm.tma_reason(a, b, out)
    if tma is None:
        assert launch.variant == ("tma-persistent" if reason is None else "persistent")
        if torch.cuda.get_device_capability() >= (9, 0) and tm.tma_descriptors_available():
            assert reason is None
    else:
        assert launch.variant == "persistent"
    launch()
    assert _rel_err(out, _reference(a, b)) < BF16_TOL


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1024, 1024, 1024), (1000, 1000, 1000)], ids=["1024", "1000"])
def test_gpu_fp32_ieee_and_tf32(shape: tuple[int, int, int]) -> None:
    a, b, out = _gpu_operands(*shape, torch.float32)
    ref = _reference(a, b)
    tm.matmul(a, b, out=out, allow_tf32=True)
    tf32_err = _rel_err(out, ref)
    assert tf32_err < TF32_TOL
    out.fill_(float("nan"))
    tm.matmul(a, b, out=out)  # allow_tf32=False: exact IEEE fp32 products
    assert _rel_err(out, ref) < FP32_IEEE_TOL < tf32_err


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1024, 1024, 1024), (1000, 1000, 1000)], ids=["1024", "1000"])
def test_gpu_fp8(shape: tuple[int, int, int]) -> None:
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs compute capability >= 8.9")
    m, n, k = shape
    a, b, _ = _gpu_operands(m, n, k, FP8)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    sa, sb = torch.tensor(0.5, device="cuda"), torch.tensor(3.0, device="cuda")
    tm.matmul(a, b, out=out, scale_a=sa, scale_b=sb)
    assert _rel_err(out, _reference(a, b, 1.5)) < BF16_TOL


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4096, 4096, 4096), (16, 6144, 4096)], ids=["4096", "16"])
def test_gpu_fp8_fast_accumulation(shape: tuple[int, int, int]) -> None:
    """Within triton-fastacc's (estimated) tolerance; on sm_90 its accumulation differs from the
    precise path's."""
    from wattbench.kernels.matmul.triton_impl import FASTACC_FP8_TOLERANCE

    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs compute capability >= 8.9")
    m, n, k = shape
    a, b, _ = _gpu_operands(m, n, k, FP8)
    b = b.t().contiguous().t()
    ref = _reference(a, b)
    fast = tm.matmul(a, b, out_dtype=torch.float32, fast_accum=True)
    precise = tm.matmul(a, b, out_dtype=torch.float32)
    assert _rel_err(precise, ref) < BF16_TOL
    assert _rel_err(fast, ref) < FASTACC_FP8_TOLERANCE
    if torch.cuda.get_device_capability() == (9, 0):
        assert not torch.equal(fast, precise)


@pytest.mark.gpu
def test_gpu_fp8_refused_below_sm89() -> None:
    if torch.cuda.get_device_capability() >= (8, 9):
        pytest.skip("this GPU supports fp8")
    a, b, _ = _gpu_operands(64, 64, 64, FP8)
    with pytest.raises(UnknownKernelError, match=r"compute capability >= 8\.9"):
        tm.matmul(a, b)


@pytest.mark.gpu
@pytest.mark.parametrize("split_k", [None, 1, 3, 8], ids=["rule", "1", "3", "8"])
@pytest.mark.parametrize("shape", [(16, 6144, 4096), (1, 4096, 14336), (64, 1000, 999)])
def test_gpu_split_k_bf16_deterministic(shape: tuple[int, int, int], split_k: int | None) -> None:
    a, b, out = _gpu_operands(*shape, torch.bfloat16)
    launch = tm.make_launch(a, b, out, split_k=split_k)
    launch()
    first = out.clone()
    assert _rel_err(out, _reference(a, b)) < BF16_TOL
    for _ in range(3):  # other arrival orders, the same sums: bitwise equal
        out.fill_(float("nan"))
        launch()
        assert torch.equal(out, first)
