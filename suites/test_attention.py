"""attention suite: prefill (causal and full) and split-KV decode, every implementation x shape x
dtype, checked, timed on the device and measured.

    pytest suites/test_attention.py -m quick --wattbench-device 0 --benchmark-json out.json
    pytest suites/ -m quick --wattbench-device sim:h100-sxm --wattbench-sweep sm=every:8

quick: bf16 causal prefill of Llama-3 8B at N = 4096 (compute-bound) and bf16 decode of Llama-3 8B
(batch 16) against an 8192-token cache (memory-bound), every implementation. full (every case):
every preset of the three families, every dtype. Ids read ``<family>-<impl>-<dtype>-<shape>``.
What an implementation cannot run on the selected GPU is skipped with the reason.
"""

from __future__ import annotations

import pytest

from wattbench.profiler.pytest_plugin.cases import cases, problems

QUICK = [
    *problems("prefill", ("llama3-8b@4096",), dtypes=("bf16",)),
    *problems("decode", ("llama3-8b@8192",), dtypes=("bf16",)),
]
FULL = [
    *problems("prefill", ("llama3-8b", "llama3-70b", "llama3.2-1b", "odd")),
    *problems("prefill-full", ("llama3-8b", "llama3.2-1b", "odd")),
    *problems("decode", ("llama3-8b", "llama3-70b", "llama3-8b-batch", "llama3.2-1b", "odd")),
]


@pytest.mark.parametrize("problem", cases(FULL, QUICK))
def test_attention(wattbench, problem):
    result = wattbench(problem)
    assert result.correctness.status in ("pass", "not-checked")
    assert result.run_record is None or result.run_record.is_file()
