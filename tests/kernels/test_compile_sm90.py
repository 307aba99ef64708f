"""Compile reports for sm_90a, here without a GPU: every config the autotuners of wattbench's
Triton kernels can choose (bf16 for the 16-bit dtypes; ``python -m
wattbench.kernels.compile_report`` adds fp16) compiles without spills and within 227 KiB of
shared memory per block; the autotuners offer each launch only the configs of its kind."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from types import SimpleNamespace

import pytest
import torch
import triton

from wattbench import kernels
from wattbench.kernels import compile_report as cr
from wattbench.kernels.attention import triton_prefill
from wattbench.kernels.matmul import triton_matmul
from wattbench.kernels.qgemm import triton_w8a8
from wattbench.kernels.triton_support import gemm_config

FP8 = torch.float8_e4m3fn
REASON = cr.unavailable_reason()
needs_nvidia = pytest.mark.skipif(REASON is not None, reason=f"no sm_90a compiler: {REASON}")


#: the negative control: tf32 128x256x64 (8 warps, 3 stages) needs 3 * (128 + 256) * 64 * 4
#: bytes of operand buffers (over 227 KiB) and spills, so a check that passes it is broken
CONTROL = gemm_config(128, 256, 64, 8, 8, 3)


def _control_job() -> cr.Job:
    job = next(j for j in cr.jobs(["matmul"]) if j.kernel == "matmul" and j.variant == "tf32")
    meta = {**dict(job.kwargs), **CONTROL.kwargs, "num_warps": 8, "num_stages": 3}
    return dataclasses.replace(job, variant="tf32 (control)", kwargs=tuple(meta.items()))


@pytest.fixture(scope="module")
def compiled() -> tuple[list[cr.Result], cr.Result]:
    """(the report of every choosable config, bf16 for the 16-bit dtypes; the control), compiled
    in one pool."""
    *report, control = cr.run([*cr.jobs(half=("bf16",)), _control_job()])
    return report, control


@pytest.fixture(scope="module")
def report(compiled: tuple[list[cr.Result], cr.Result]) -> list[cr.Result]:
    return compiled[0]


@needs_nvidia
def test_every_config_that_can_be_chosen_fits_sm90(report: list[cr.Result]) -> None:
    bad = [r for r in report if not r.ok]
    assert not bad, "configs that do not fit sm_90a:\n" + cr.format_table(bad)


@needs_nvidia
def test_w4a16_dequantizes_without_integer_to_float_conversions(
    report: list[cr.Result],
) -> None:
    w4a16 = [r for r in report if r.job.kernel.startswith("w4a16")]
    gemv = {r.job.variant for r in w4a16 if r.job.kernel == "w4a16-gemv"}
    assert {"bf16 M=1 split", "bf16 M=4 split", "bf16 M=16 split"} <= gemv  # both GEMV paths
    assert len(w4a16) >= 4
    assert all(r.int_to_float == 0 for r in w4a16), cr.format_table(w4a16)
    # the count sees conversions where there are some: fp32 scaling of int8 accumulators
    assert all(r.int_to_float > 0 for r in report if r.job.variant == "int8")


@needs_nvidia
def test_fp8_fast_accumulation_is_reported_under_its_own_label(report: list[cr.Result]) -> None:
    fast = [r for r in report if r.job.kernel == "w8a8" and r.job.variant == "fp8 fast-acc"]
    assert any(r.job.config.startswith("128x256x128") for r in fast)
    assert len(fast) == len(triton_w8a8.gpu_configs(True, fast_acc=True))


@needs_nvidia
def test_a_config_that_does_not_fit_is_seen(compiled: tuple[list[cr.Result], cr.Result]) -> None:
    control = compiled[1]
    assert control.error is None
    assert control.shared_bytes >= 3 * (128 + 256) * 64 * 4 > cr.SM90_MAX_SHARED_BYTES
    assert control.spills and not control.ok
    assert "NO" in cr.format_table([control])


def _autotuned_kernels() -> set[tuple[str, str]]:
    """(module, name) of every autotuned kernel of wattbench.kernels."""
    found = set()
    for info in pkgutil.walk_packages(kernels.__path__, kernels.__name__ + "."):
        if not info.name.rsplit(".", 1)[-1].startswith("triton_"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, triton.runtime.Autotuner):
                found.add((info.name, name))
    return found


def test_the_report_covers_every_autotuned_kernel() -> None:
    """(The TMA matmul where this Triton has tensor descriptors, as the launches choose it.)"""
    autotuned = _autotuned_kernels()
    if not triton_matmul.tma_descriptors_available():
        autotuned.discard((triton_matmul.__name__, "_matmul_tma_kernel"))
    assert len(autotuned) >= 5  # matmul (2), w8a8, w4a16, prefill, decode
    reported = {(j.module, j.attr) for j in cr.jobs(half=("bf16",))}
    assert autotuned <= reported


def test_decode_is_compiled_with_one_split_and_with_several() -> None:
    """A launch with one split specialises SPLITS to the constant 1 (another compile than 16
    splits, with its own registers): the report compiles both, at each head dimension."""
    variants = {j.variant for j in cr.jobs(["decode"], half=("bf16",))}
    for d in (64, 128):
        assert {f"bf16 D={d} G_PAD=16 splits={s}" for s in (1, 16)} <= variants


def _labels(configs: list[triton.Config]) -> list[str]:
    return [str(c) for c in configs]


def test_autotuners_offer_each_launch_only_its_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The early pruning the autotuners run on a GPU (not in the interpreter) keeps exactly the
    configs the report compiles for that launch."""
    for module in (triton_matmul, triton_w8a8, triton_prefill):
        monkeypatch.setattr(module, "_INTERPRET", False)
    every = triton_matmul._GPU_CONFIGS
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        a = torch.empty(0, dtype=dtype)
        kept = triton_matmul._prune(every, {"a_ptr": a}, IS_FP8=False)
        want = triton_matmul.gpu_configs(triton_matmul.config_kind(name))
        assert _labels(kept) == _labels(want)
    fp8 = triton_matmul._prune(every, {"a_ptr": torch.empty(0, dtype=FP8)}, IS_FP8=True)
    assert _labels(fp8) == _labels(triton_matmul.gpu_configs("fp8"))
    assert "BLOCK_M: 128, BLOCK_N: 128, BLOCK_K: 128" in " ".join(_labels(fp8))
    fastacc = triton_matmul._prune(every, {"a_ptr": torch.empty(0, dtype=FP8)}, FAST_ACC=True)
    assert _labels(fastacc) == _labels(triton_matmul.gpu_configs("fp8-fastacc"))
    assert "BLOCK_M: 128, BLOCK_N: 256, BLOCK_K: 128" in " ".join(_labels(fastacc))
    every_tma = triton_matmul._TMA_GPU_CONFIGS
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "tf32"), (FP8, "fp8")):
        a_desc = SimpleNamespace(base=torch.empty(0, dtype=dtype))  # a descriptor's base
        kept = triton_matmul._prune_tma(every_tma, {"a_desc": a_desc})
        want = triton_matmul.tma_gpu_configs(triton_matmul.config_kind(name))
        assert _labels(kept) == _labels(want)
        assert all(c.pre_hook is not None for c in kept)  # the descriptors get the config's tiles
    every_split = triton_matmul._SPLIT_GPU_CONFIGS
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32"), (FP8, "fp8")):
        kept = triton_matmul._prune_split(every_split, {"a_ptr": torch.empty(0, dtype=dtype)})
        want = triton_matmul.split_gpu_configs(triton_matmul.config_kind(name))
        assert _labels(kept) == _labels(want)
    for fp8_operands, fast in ((False, False), (True, False), (True, True)):
        kept = triton_w8a8._prune(triton_w8a8._GPU_CONFIGS, {}, IS_FP8=fp8_operands, FAST_ACC=fast)
        assert _labels(kept) == _labels(triton_w8a8.gpu_configs(fp8_operands, fast))
    fast = triton_w8a8.gpu_configs(True, fast_acc=True)
    assert "BLOCK_M: 128, BLOCK_N: 256, BLOCK_K: 128" in " ".join(_labels(fast))
    assert "BLOCK_M: 128, BLOCK_N: 128, BLOCK_K: 128" in " ".join(
        _labels(triton_w8a8.gpu_configs(True))
    )
    for d in (64, 128):
        kept = triton_prefill._prune(triton_prefill._GPU_CONFIGS, {}, HEAD_DIM=d)
        assert _labels(kept) == _labels(triton_prefill.gpu_configs(d))
    d128 = triton_prefill.gpu_configs(128)
    assert all(c.num_warps == 8 for c in d128 if c.kwargs["BLOCK_M"] == 128)
    assert len(triton_prefill.gpu_configs(64)) > len(d128)
    kernels = (
        triton_matmul._matmul_kernel,
        triton_matmul._matmul_split_kernel,
        triton_matmul._matmul_tma_kernel,
    )
    for kernel in (*kernels, triton_w8a8._w8a8_kernel):
        assert kernel.early_config_prune is not None


def test_without_the_nvidia_backend_the_reason_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    import triton.backends

    monkeypatch.setattr(triton.backends, "backends", {})
    reason = cr.unavailable_reason()
    assert reason is not None and "no nvidia backend" in reason
    assert cr.main([]) == 2  # the table is not printed as if it had been compiled
