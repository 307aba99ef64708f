"""matmul suite: every implementation x shape x dtype, checked, timed on the device and measured.

    pytest suites/test_matmul.py -m quick --wattbench-device 0 --benchmark-json out.json
    pytest suites/ -m quick --wattbench-device sim:h100-sxm --wattbench-sweep sm=every:8

quick: bf16 at 4096^3, 8192^3 and one Llama-3 8B decode projection (16 tokens x qkv), every
implementation. full (every case): the square, odd and Llama-3 8B / 70B presets, every dtype each
implementation declares. Ids read ``matmul-<impl>-<dtype>-<MxNxK>``; pytest-benchmark groups the
implementations of one problem together. What an implementation cannot run on the selected GPU is
skipped with the reason.
"""

from __future__ import annotations

import pytest

from wattbench.profiler.pytest_plugin.cases import cases, problems

QUICK = problems(
    "matmul", ("4096x4096x4096", "8192x8192x8192", "llama3-8b-qkv@16"), dtypes=("bf16",)
)
FULL = problems("matmul", ("square", "odd", "llama3-8b", "llama3-70b"))


@pytest.mark.parametrize("problem", cases(FULL, QUICK))
def test_matmul(wattbench, problem):
    result = wattbench(problem)
    assert result.correctness.status in ("pass", "not-checked")
    assert result.run_record is None or result.run_record.is_file()
