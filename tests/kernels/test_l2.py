"""The L2 policy (``wattbench.kernels.l2``): how many input sets, the memory bounds, the
round-robin launch, and how check / bench / gpu_launch / the timing take the policy.

Everything here runs on the CPU with real tensors and the real matmul / w8a8 families; the
device queries (L2 size, free memory) are CUDA-only, so the sizes are given as the caller may.
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from wattbench.kernels import catalog, l2
from wattbench.kernels.l2 import (
    COVER_FACTOR,
    FREE_FRACTION,
    MEMORY_FLOOR_BYTES,
    L2Plan,
    RotatingLaunch,
    inputs_bytes,
    memory_cap_bytes,
    plan_of,
    plan_sets,
    rotating_launch,
    sets_to_cover,
    whole_rounds,
)
from wattbench.kernels.timing import TimingSettings, time_launches
from wattbench.kernels.verify import l2_lines
from wattbench.profiler.cli import check as check_cli
from wattbench.profiler.cli.args import add_l2_arguments
from wattbench.profiler.errors import UsageError

MiB = 2**20
MATMUL = catalog.family("matmul")
VENDOR = MATMUL.impl("vendor")


def test_the_policies_and_their_names():
    assert l2.POLICIES == ("rotate", "warm") and l2.DEFAULT_POLICY == "rotate"
    assert l2.check_policy("warm") == "warm"
    with pytest.raises(UsageError, match="choose one of: rotate, warm"):
        l2.check_policy("flush")


# --- pure planning -------------------------------------------------------------------------------


def test_sets_to_cover_is_the_fewest_that_hold_twice_the_l2():
    assert sets_to_cover(10 * MiB, 50 * MiB) == 10
    assert sets_to_cover(11 * MiB, 50 * MiB) == 10  # 10 x 11 = 110 >= 100
    assert sets_to_cover(100 * MiB, 50 * MiB) == 1  # one set is twice the L2 already
    assert sets_to_cover(400 * MiB, 50 * MiB) == 1
    assert sets_to_cover(1, 0) == 1
    for set_bytes in (1, 7, 4096, 3 * MiB + 5, 99 * MiB, 101 * MiB):
        for l2_bytes in (1, 40 * MiB, 50 * MiB, 126 * MiB):
            k = sets_to_cover(set_bytes, l2_bytes)
            assert k * set_bytes >= COVER_FACTOR * l2_bytes  # enough ...
            assert k == 1 or (k - 1) * set_bytes < COVER_FACTOR * l2_bytes  # ... and no more
    with pytest.raises(ValueError):
        sets_to_cover(0, 50 * MiB)


def test_memory_cap_is_the_larger_of_the_floor_and_the_target_within_free_memory():
    assert memory_cap_bytes(50 * MiB) == MEMORY_FLOOR_BYTES == 2**30
    assert memory_cap_bytes(1024 * MiB) == 2048 * MiB  # 2 x L2 above the floor
    assert memory_cap_bytes(50 * MiB, free_bytes=80 * 2**30) == 2**30
    assert memory_cap_bytes(50 * MiB, free_bytes=600 * MiB) == int(FREE_FRACTION * 600 * MiB)


def test_plan_rotate_covers_the_l2():
    plan = plan_sets(3 * MiB, 50 * MiB)
    assert (plan.policy, plan.sets, plan.limited_by) == ("rotate", 34, None)
    assert plan.covered and plan.rotated_bytes == 102 * MiB >= plan.cover_bytes == 100 * MiB
    assert plan.cap_bytes == 2**30 and plan.footprint_bytes == plan.set_bytes
    assert plan.text() == "rotate: 34 input sets of 3.0 MiB (102.0 MiB >= 2 x the 50.0 MiB L2)"
    big = plan_sets(200 * MiB, 50 * MiB)  # one set is larger than twice the L2
    assert (big.sets, big.covered, big.limited_by) == (1, True, None)
    assert big.text().startswith("rotate: 1 input set of 200.0 MiB (200.0 MiB >= 2 x")


def test_plan_rotate_within_the_memory_bounds():
    # little free memory: at most half of it, whole sets only
    plan = plan_sets(30 * MiB, 50 * MiB, free_bytes=150 * MiB)
    assert plan.cap_bytes == 75 * MiB and plan.sets == 2 and plan.limited_by == "memory"
    assert not plan.covered and "limited by memory, 75.0 MiB" in plan.text()
    # the memory a set takes with its launch's workspace bounds the sets, not the cover target
    plan = plan_sets(30 * MiB, 50 * MiB, footprint_bytes=60 * MiB, free_bytes=300 * MiB)
    assert plan.sets == 2 and plan.sets * plan.footprint_bytes <= plan.cap_bytes
    assert plan_sets(30 * MiB, 50 * MiB, footprint_bytes=60 * MiB).sets == 4  # 1 GiB allows it
    # even one more set does not fit: no rotation, and the plan says why
    assert plan_sets(30 * MiB, 50 * MiB, free_bytes=50 * MiB).sets == 1
    # tiny problems: the count is bounded
    tiny = plan_sets(512, 50 * MiB)
    assert tiny.sets == l2.MAX_SETS and tiny.limited_by == "count" and not tiny.covered
    assert "limited by the number of sets" in tiny.text()
    assert plan_sets(512, 50 * MiB, max_sets=8).sets == 8
    # invariant over a grid: within the cap, never more than needed, at least one
    for set_bytes in (512, 64 * 1024, 3 * MiB, 70 * MiB, 300 * MiB):
        for free in (None, 10 * MiB, 400 * MiB, 80 * 2**30):
            p = plan_sets(set_bytes, 60 * MiB, free_bytes=free)
            assert 1 <= p.sets <= sets_to_cover(set_bytes, 60 * MiB)
            assert p.sets == 1 or p.sets * p.footprint_bytes <= p.cap_bytes
            assert p.covered == (p.limited_by is None)


def test_plan_warm_and_unknown_l2():
    warm = plan_sets(3 * MiB, 50 * MiB, policy="warm")
    assert (warm.sets, warm.covered, warm.cover_bytes) == (1, False, None)
    assert warm.text() == "warm: the same inputs (3.0 MiB) every launch"
    unknown = plan_sets(3 * MiB, None)
    assert (unknown.sets, unknown.limited_by, unknown.covered) == (1, "l2-unknown", False)
    assert "L2 size unknown" in unknown.text()
    with pytest.raises(ValueError):
        L2Plan("warm", 2, 1, 1)


def test_plan_json_round_trip():
    plan = plan_sets(30 * MiB, 50 * MiB, footprint_bytes=31 * MiB, free_bytes=300 * MiB)
    doc = plan.to_json()
    assert doc["covered"] is plan.covered and doc["rotated_bytes"] == plan.rotated_bytes
    assert L2Plan.from_json(doc) == plan


def test_whole_rounds():
    assert whole_rounds(16, 3) == 18 and whole_rounds(16, 16) == 16 and whole_rounds(1, 5) == 5
    with pytest.raises(ValueError):
        whole_rounds(0, 3)


# --- bytes of real input sets ------------------------------------------------------------------


def test_inputs_bytes_counts_operands_and_output_once():
    m, n, k = 67, 45, 93
    inputs = MATMUL.make_inputs((m, n, k), "fp32", 0, "cpu")
    assert inputs_bytes(inputs) == (m * k + k * n + m * n) * 4
    w8a8 = catalog.family("w8a8")
    q = w8a8.make_inputs((3, 72, 256), "int8-fp16", 0, "cpu")
    assert q["b"]._base is not None  # b is a view (the transpose of the stored B_q)
    expected = sum(t.untyped_storage().nbytes() for t in (*q.tensors.values(), q.out))
    assert inputs_bytes(q) == expected  # one storage per tensor here
    assert inputs_bytes(q) >= 3 * 256 + 256 * 72 + 3 * 72 * 2


# --- the round-robin launch on real CPU tensors --------------------------------------------------


def test_a_rotating_launch_has_one_launch_per_planned_set():
    launches = [lambda: None] * 3
    with pytest.raises(ValueError, match="3 launches for a plan of 2 sets"):
        RotatingLaunch(launches, plan_sets(1000, 1000))  # 2 sets of 1000 hold 2 x 1000


def test_round_robin_order():
    calls = []
    plan = plan_sets(1000, 1500)  # 3 sets of 1000 bytes hold 2 x 1500
    assert plan.sets == 3
    rl = RotatingLaunch([lambda i=i: calls.append(i) for i in range(3)], plan)
    for _ in range(7):
        rl()
    assert calls == [0, 1, 2, 0, 1, 2, 0] and rl.next_set == 1
    rl.reset()
    rl()
    assert calls[-1] == 0 and plan_of(rl) is plan and plan_of(lambda: None) is None
    assert rl.describe() == rl.describe_l2() == plan.to_json()


def _poison_all(rl: RotatingLaunch) -> None:
    for inputs in rl.inputs:
        inputs.poison()


def test_rotating_launch_runs_each_seeded_set_in_turn():
    shape = (64, 48, 32)  # fp32: (64*32 + 32*48 + 64*48) * 4 = 26,624 bytes per set
    set_bytes = (64 * 32 + 32 * 48 + 64 * 48) * 4
    l2_bytes = 2 * set_bytes  # 4 sets hold twice that
    rl = rotating_launch(MATMUL, VENDOR, shape, "fp32", device="cpu", seed=7, l2_bytes=l2_bytes)
    assert rl.sets == 4 and rl.plan.covered and rl.plan.set_bytes == set_bytes
    assert [i.seed for i in rl.inputs] == [7, 8, 9, 10]
    assert not torch.equal(rl.inputs[0]["a"], rl.inputs[1]["a"])  # fresh data per set
    assert torch.equal(rl.inputs[1]["a"], MATMUL.make_inputs(shape, "fp32", 8, "cpu")["a"])
    _poison_all(rl)
    rl()  # set 0 only
    written = [not torch.isnan(i.out).any().item() for i in rl.inputs]
    assert written == [True, False, False, False]
    for _ in range(3):
        rl()
    for inputs in rl.inputs:  # each set's own output is its own product
        torch.testing.assert_close(inputs.out, inputs["a"] @ inputs["b"])


def test_rotating_launch_reuses_the_checked_set_and_bounds_memory():
    shape = (64, 48, 32)
    inputs0 = MATMUL.make_inputs(shape, "fp32", 0, "cpu")
    launch0 = VENDOR.make_launch(inputs0)
    set_bytes = inputs_bytes(inputs0)
    # 2 x L2 would need 10 sets; half of the free memory takes 3
    rl = rotating_launch(
        MATMUL,
        VENDOR,
        shape,
        "fp32",
        device="cpu",
        first=(inputs0, launch0),
        l2_bytes=5 * set_bytes,
        free_bytes=7 * set_bytes,
    )
    assert rl.inputs[0] is inputs0 and rl.sets == 3 and rl.plan.limited_by == "memory"
    assert [i.seed for i in rl.inputs] == [0, 1, 2]
    warm = rotating_launch(
        MATMUL, VENDOR, shape, "fp32", device="cpu", policy="warm", first=(inputs0, launch0)
    )
    assert warm.sets == 1 and warm.inputs == (inputs0,) and warm.policy == "warm"
    # on the CPU the L2 size is not asked for: unknown unless given, so one set
    alone = rotating_launch(MATMUL, VENDOR, shape, "fp32", device="cpu")
    assert alone.sets == 1 and alone.plan.limited_by == "l2-unknown"


# --- the policy at the callers ------------------------------------------------------------------


def test_timing_settings_take_a_policy_and_refuse_a_launch_built_for_another():
    assert TimingSettings().l2 == "rotate"
    with pytest.raises(UsageError):
        TimingSettings(l2="flush")
    warm = rotating_launch(MATMUL, VENDOR, (8, 8, 8), "fp32", device="cpu", policy="warm")
    with pytest.raises(ValueError, match="built for L2 policy 'warm' timed as 'rotate'"):
        time_launches(warm, TimingSettings())  # refused before anything is launched


def test_gpu_launch_refuses_an_unknown_policy():
    with pytest.raises(UsageError, match="unknown L2 policy 'flush'"):
        catalog.gpu_launch("matmul", "vendor", (64, 64, 64), "bf16", l2="flush")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wattbench")
    add_l2_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_l2_flag_and_its_old_name():
    assert _parse().l2 == "rotate"
    assert _parse("--l2", "warm").l2 == "warm"
    assert _parse("--flush-l2").l2 == "rotate"  # the old flag means rotation now
    with pytest.raises(SystemExit) as exc:
        _parse("--flush-l2", "--l2", "warm")  # one meaning at a time
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        _parse("--l2", "flush")


def test_check_l2_lines():
    from test_framework import CPU_ENV

    from wattbench.kernels.verify import check

    rep = check(MATMUL, (16, 16, 16), "fp32", CPU_ENV, impls=["vendor"])
    assert l2_lines(rep) == []  # nothing timed on the CPU
    plan = plan_sets(3 * MiB, 50 * MiB)
    timed = dataclasses.replace(
        rep, results=tuple(dataclasses.replace(r, l2=plan.to_json()) for r in rep.results)
    )
    assert l2_lines(timed) == [f"  L2: {plan.text()}"]
    assert check_cli.render(timed).endswith(f"  L2: {plan.text()}")
    assert timed.to_json()["results"][0]["l2"]["sets"] == 34
