"""wattbench.profiler: how kernels are measured, searched, stored and exported.

Subpackages: ``device`` (NVML mechanism), ``sim`` (simulated GPUs beneath pynvml), ``cli``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("wattbench")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
