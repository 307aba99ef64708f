"""Runs a real launch callable on a real GPU, synchronising the device after each batch.

With ``cuda_graph=True`` (torch only) a batch of launches is captured once into a CUDA graph and
replayed, which removes the CPU launch gaps between iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wattbench.kernels.work import Work
from wattbench.profiler.errors import LaunchError, UsageError, WattbenchError


class GpuRunner:
    simulated = False

    def __init__(
        self,
        launch: Callable[[], Any],
        work: Work,
        *,
        synchronize: Callable[[], None] | None = None,
        cuda_graph: bool = False,
        graph_batch: int = 16,
    ) -> None:
        self.launch = launch
        self.work = work
        self.cuda_graph = cuda_graph
        self._graph = None
        self._graph_batch = graph_batch
        if synchronize is None:
            synchronize = _torch_synchronize()
        self.synchronize = synchronize
        if cuda_graph:
            self._graph = _capture(launch, graph_batch)

    def run(self, iterations: int) -> None:
        """Launch ``iterations`` times and wait for them; a failure (a CUDA fault, out of
        memory) is a :class:`LaunchError` saying what to do, not a framework traceback."""
        try:
            if self._graph is not None:
                full, rest = divmod(iterations, self._graph_batch)
                for _ in range(full):
                    self._graph.replay()
                for _ in range(rest):
                    self.launch()
            else:
                for _ in range(iterations):
                    self.launch()
            self.synchronize()
        except WattbenchError:
            raise
        except Exception as exc:  # torch / CuPy / Triton raise their own RuntimeErrors
            first = (str(exc).splitlines() or [""])[0]
            raise LaunchError(
                f"kernel launch failed: {type(exc).__name__}: {first}",
                "a CUDA fault can leave the GPU unusable for this process; check `nvidia-smi`, "
                "then resume the run",
            ) from exc

    def describe(self) -> dict:
        return {
            "runner": "gpu",
            "executes_kernels": True,
            "cuda_graph": self.cuda_graph,
            "graph_batch": self._graph_batch if self.cuda_graph else None,
        }


def _torch_synchronize() -> Callable[[], None]:
    try:
        import torch
    except ImportError:
        raise UsageError(
            "a real-GPU runner needs a synchronize function, and torch is not installed",
            'install the GPU stack (pip install "wattbench[gpu]") or pass synchronize=',
        ) from None
    return torch.cuda.synchronize


def _capture(launch: Callable[[], Any], batch: int):
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up outside the graph, as torch requires
        for _ in range(3):
            launch()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(batch):
            launch()
    torch.cuda.synchronize()
    return graph
