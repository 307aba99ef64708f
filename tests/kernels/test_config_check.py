"""Every autotune config forced and checked against float64 (kernels/config_check.py), in
Triton's interpreter: real kernels, real autotuners. The interpreter's autotuners hold one config
each; a second config is given to the matmul's here to show discovery finds what the pruning
leaves and that each config is forced (its own label, its own run)."""

from __future__ import annotations

import pytest

from wattbench.kernels import catalog
from wattbench.kernels import config_check as cc
from wattbench.kernels.costs import Problem
from wattbench.kernels.env import probe

pytest.importorskip("triton")

MATMUL_FP16 = Problem("matmul", "triton", (67, 45, 93), "fp16")


def test_cases_take_the_least_work_first_within_the_bounds():
    env = probe(("torch", "triton"))
    one = cc.cases([catalog.family("matmul")], env, per_dtype=1)
    # bf16: not in the interpreter
    assert [(c.impl, c.dtype) for c in one] == [
        ("triton", "fp16"), ("triton", "fp32"), ("triton", "tf32"), ("triton", "fp8"),
        ("triton-fastacc", "fp8"),
    ]  # fmt: skip
    assert all(c.shape == (67, 45, 93) for c in one)
    # without CUDA the implementation's interpreter bound (2^24 FLOP) leaves only 67x45x93
    assert cc.cases([catalog.family("matmul")], env) == one
    w4 = cc.cases([catalog.family("w4a16")], env, per_dtype=2)
    fp16_g32 = [c for c in w4 if c.dtype == "fp16-g32"]
    fam = catalog.family("w4a16")
    assert len(fp16_g32) == 2
    assert (
        fam.work(fp16_g32[0].shape, "fp16-g32").flops
        <= fam.work(fp16_g32[1].shape, "fp16-g32").flops
    )
    assert cc.cases([catalog.family("matmul")], env, max_flops=1.0) == []


def test_each_autotuner_config_is_discovered_forced_and_checked(monkeypatch):
    from triton import Config

    from wattbench.kernels.matmul import triton_matmul as tm

    tuner = tm._matmul_kernel
    second = Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 2}, num_warps=1)
    monkeypatch.setattr(tuner, "configs", [*tuner.configs, second])
    out = cc.run([MATMUL_FP16], processes=0)
    assert [o.found.config for o in out] == ["32x32x32 w4 s1 GROUP_M=4", "16x16x16 w1 s3 GROUP_M=2"]
    assert {o.found.tuner for o in out} == {f"{tm.__name__}:_matmul_kernel"}
    for o in out:
        assert o.status == "pass", o
        assert 0 < o.rel_error <= o.tolerance
    assert tuner.configs[-1] is second and "run" not in vars(tuner)  # put back


def test_a_config_that_the_case_never_reaches_does_not_pass():
    from wattbench.kernels.attention import triton_prefill

    fam = catalog.family("matmul")
    tuner = f"{triton_prefill.__name__}:_prefill_kernel"
    o = cc.check_found(cc.Found(MATMUL_FP16, tuner, 0, "-"), fam, fam.impl("triton"))
    assert o.status == "error" and o.message == "the forced config did not run"


def test_the_outcome_json_has_stable_keys():
    (o,) = cc.run([MATMUL_FP16], processes=0)
    assert set(o.to_json()) == {
        "family", "impl", "dtype", "shape", "tuner", "index", "config",
        "status", "rel_error", "tolerance", "message",
    }  # fmt: skip
    assert o.to_json()["shape"] == "67x45x93"
