"""quantized GEMM suite: W8A8 (int8, fp8) and W4A16, every implementation x shape x dtype,
checked, timed on the device and measured.

    pytest suites/test_qgemm.py -m quick --wattbench-device 0 --benchmark-json out.json
    pytest suites/ -m quick --wattbench-device sim:h100-sxm --wattbench-sweep sm=every:8

quick: the two performance-target problems, int8 W8A8 at 8192^3 (compute-bound) and W4A16 with
group size 128 at M = 1, K = N = 8192 (memory-bound), every implementation. full (every case): the
decode (M = 1..16), prefill (M = 512..8192), square and small presets, every dtype. Ids read
``<family>-<impl>-<dtype>-<MxNxK>``. What an implementation cannot run on the selected GPU (fp8
before sm_89, for one) is skipped with the reason.
"""

from __future__ import annotations

import pytest

from wattbench.profiler.pytest_plugin.cases import cases, problems

QUICK = [
    *problems("w8a8", ("8192x8192x8192",), dtypes=("int8",)),
    *problems("w4a16", ("1x8192x8192",), dtypes=("bf16-g128",)),
]
FULL = [
    *problems("w8a8", ("decode", "prefill", "square", "small")),
    *problems("w4a16", ("decode", "prefill", "square", "small")),
]


@pytest.mark.parametrize("problem", cases(FULL, QUICK))
def test_qgemm(wattbench, problem):
    result = wattbench(problem)
    assert result.correctness.status in ("pass", "not-checked")
    assert result.run_record is None or result.run_record.is_file()
