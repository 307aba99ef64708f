"""The layers at run time (import-linter checks them statically in .ci/run): the kernels package
works with the profiler unimportable, and its errors are the one hierarchy's."""

from __future__ import annotations

import subprocess
import sys

from wattbench.kernels import errors as kernel_errors
from wattbench.profiler import errors

CHILD = """
import sys

class NoProfiler:
    def find_spec(self, name, path=None, target=None):
        if name == "wattbench.profiler" or name.startswith("wattbench.profiler."):
            raise ImportError(f"the layers forbid {name} here")
        return None

sys.meta_path.insert(0, NoProfiler())
from wattbench.kernels import catalog, costs
from wattbench.kernels.errors import UnknownKernelError

print(costs.work_of(costs.make_problem("matmul", "64x32x16", "bf16")).flops)
try:
    catalog.family("no-such-family")
except UnknownKernelError as exc:
    print(exc.exit_code, exc)
assert not [m for m in sys.modules if m.startswith("wattbench.profiler")]
"""


def test_the_kernels_run_without_the_profiler():
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    flops, error = out.stdout.splitlines()
    assert float(flops) == 2 * 64 * 32 * 16
    assert error.startswith("2 ") and "matmul" in error  # a usage error naming the families


def test_kernel_errors_are_the_one_hierarchy():
    assert errors.WattbenchError is kernel_errors.WattbenchError
    assert errors.UsageError is kernel_errors.UsageError
    assert issubclass(errors.ShapeError, errors.UsageError)
    assert issubclass(errors.UnknownKernelError, errors.WattbenchError)
    exc = errors.ShapeError("bad shape 0x1", "use sizes >= 1")
    assert (exc.exit_code, str(exc)) == (2, "bad shape 0x1 -- use sizes >= 1")
