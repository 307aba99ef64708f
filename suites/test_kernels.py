"""The kernel suite: every family of the catalog, every implementation x shape x dtype, checked,
timed on the device and measured.

    pytest suites/test_kernels.py -m quick --wattbench-device 0 --benchmark-json out.json
    pytest suites/ -m quick --wattbench-device sim:h100-sxm --wattbench-sweep sm=every:8
    pytest suites/test_kernels.py -m quick -k "w8a8 or w4a16" --wattbench-device 0   # some families

The families come from the catalog (``wattbench kernels`` lists them), so a new family folder is
in this suite with no edit here. What runs of each is its declaration's ``suite``
(:class:`wattbench.kernels.family.Suite`): full (every case) is the named presets in every dtype,
quick the performance targets, e.g. bf16 matmul at 4096^3, 8192^3 and Llama-3 8B qkv at 16 tokens;
bf16 causal prefill of Llama-3 8B at N = 4096 and decode against an 8192-token cache; int8 W8A8
at 8192^3 and W4A16 with group size 128 at M = 1, K = N = 8192. Ids read
``<family>-<impl>-<dtype>-<shape>``; pytest-benchmark groups the implementations of one problem
together. What an implementation cannot run on the selected GPU is skipped with the reason.
"""

from __future__ import annotations

import pytest

from wattbench.profiler.pytest_plugin.cases import suite_cases


@pytest.mark.parametrize("problem", suite_cases())
def test_kernel(wattbench, problem):
    result = wattbench(problem)
    assert result.correctness.status in ("pass", "not-checked")
    assert result.run_record is None or result.run_record.is_file()
