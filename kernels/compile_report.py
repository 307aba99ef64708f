"""Compile reports for sm_90a: every GPU config of every Triton kernel, compiled on this machine.

No GPU is needed: each job compiles one (kernel, variant, config) with Triton's nvidia backend for
``GPUTarget("cuda", 90, 32)`` (sm_90a) and reads the result from the compiler itself -- registers
per thread and spill stores / loads (bytes) from the ptxas ``-v`` log Triton writes, parsed by
:func:`wattbench.kernels.cuda_build.parse_ptxas_report`, and shared memory (bytes) as the
kernel's dynamic shared memory (``metadata.shared``) plus ptxas' static shared memory. The
integer-to-float conversions in the PTX (``cvt.rn.f32.u32`` and kin, a static count) are
counted too: the W4A16 kernels dequantize without any.

Arguments are specialised exactly as a launch specialises them (Triton's own binder: dtypes,
16-byte divisibility, integers equal to 1 as constants) from representative arguments mirroring
each kernel's ``make_launch`` (tensors stand in as dtypes). The configs are each kernel's GPU
configs after its own pruning -- the ones the autotuner can choose -- whatever ``TRITON_INTERPRET``
says in the calling process: jobs run in fresh ``spawn`` processes with ``TRITON_INTERPRET``
removed and an empty Triton cache (a cached kernel would have no ptxas log), and each distinct
job is compiled once.

A config passes (``ok``) when it compiles, spills nothing and needs at most
:data:`SM90_MAX_SHARED_BYTES` of shared memory, the per-block opt-in limit of sm_90.

``python -m wattbench.kernels.compile_report [--jobs N] [--kernel NAME] [--half bf16 fp16]``
prints the table (exit status 1 when a row is not ok, 2 when sm_90a cannot be compiled here).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import io
import itertools
import multiprocessing
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: shared memory one block may use on sm_90 (H100 / H200), bytes: 227 KiB
SM90_MAX_SHARED_BYTES = 232448
#: the compile target, (backend, compute capability, warp size)
TARGET = ("cuda", 90, 32)

# representative sizes (elements): large enough that nothing specialises to 1 unless a real
# launch of that size does, multiples of 16 as the usual shapes are
_M = _N = _K = 4096


@dataclass(frozen=True)
class Tensor:
    """A tensor argument, by its torch dtype attribute name (``"bfloat16"``)."""

    dtype: str


@dataclass(frozen=True)
class Descriptor:
    """A host tensor-descriptor argument (TMA): its tensor's dtype, shape, strides and block
    shape (elements)."""

    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    block_shape: tuple[int, ...]


@dataclass(frozen=True)
class Job:
    """One compile: ``module.attr`` (a ``triton.jit`` function, autotuned or not) with ``args``
    (positional; :class:`Tensor` for tensors) and ``kwargs`` (constexprs and the config's
    ``num_warps`` / ``num_stages``). ``kernel``, ``variant`` and ``config`` label the row."""

    kernel: str
    variant: str
    config: str
    module: str
    attr: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Result:
    """What sm_90a compilation of ``job`` gives: registers per thread, spill bytes, shared memory
    bytes per block, integer-to-float conversion instructions in the PTX (static count), the
    compile's seconds; ``error`` (one line) when it did not compile."""

    job: Job
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    shared_bytes: int = 0
    int_to_float: int = 0  # integer-to-float conversions (cvt.rn.f*.{s,u}*) in the PTX
    seconds: float = 0.0  # wall time of the compile in its worker
    error: str | None = None

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.spills and self.shared_bytes <= SM90_MAX_SHARED_BYTES


def unavailable_reason() -> str | None:
    """Why sm_90a cannot be compiled here (no triton, or no nvidia backend / ptxas), else None."""
    try:
        import triton.backends
    except ImportError as exc:
        return f"triton is not importable: {exc}"
    if "nvidia" not in triton.backends.backends:
        return "this Triton has no nvidia backend (it cannot compile for sm_90a)"
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        get_ptxas(TARGET[1]).path  # noqa: B018  # raises when ptxas is missing
    except Exception as exc:
        return f"Triton's nvidia backend has no usable ptxas: {exc}"
    return None


# --- the jobs -------------------------------------------------------------------------------------


#: torch dtype attribute names of the 16-bit dtype names
_TORCH_HALF = {"bf16": "bfloat16", "fp16": "float16"}


def _config_label(kw: dict[str, Any], warps: int, stages: int) -> str:
    blocks = [kw[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "BLOCK_R") if k in kw]
    extra = "".join(f" {k}={v}" for k, v in kw.items() if not k.startswith("BLOCK_"))
    return "x".join(map(str, blocks)) + f" w{warps} s{stages}" + extra


def _autotuned(
    kernel: str,
    variant: str,
    module: str,
    attr: str,
    configs: Iterable[Any],
    args: tuple[Any, ...],
    constexprs: dict[str, Any],
) -> list[Job]:
    """One job per ``triton.Config`` of an autotuned kernel."""
    jobs = []
    for c in configs:
        kw = dict(c.kwargs)
        label = _config_label(kw, c.num_warps, c.num_stages)
        meta = {**constexprs, **kw, "num_warps": c.num_warps, "num_stages": c.num_stages}
        jobs.append(Job(kernel, variant, label, module, attr, args, tuple(meta.items())))
    return jobs


def _matmul_jobs(half: Sequence[str]) -> list[Job]:
    import triton

    from wattbench.kernels.matmul import triton_matmul as tm

    jobs = []
    for dtype in (*half, "fp32", "tf32", "fp8", "fp8-fastacc"):
        fp8 = dtype.startswith("fp8")
        torch_in = "float8_e4m3fn" if fp8 else _TORCH_HALF.get(dtype, "float32")
        a = Tensor(torch_in)
        c = Tensor("bfloat16" if fp8 else torch_in)
        scale = Tensor("float32") if fp8 else None
        # fp8: B K-contiguous, as the impl passes it (strides (1, K)); others row-major (N, 1)
        b_strides = (1, _K) if fp8 else (_N, 1)
        args = (
            a, a, c, scale, scale, _M, _N, _K, _K, 1, *b_strides, _N, 1, _M, _N, _K,
        )  # fmt: skip
        constexprs = {
            "INPUT_PRECISION": "tf32" if dtype == "tf32" else "ieee",
            "HAS_SCALE": fp8,
            "IS_FP8": fp8,
            "FAST_ACC": dtype == "fp8-fastacc",
        }
        kind = tm.config_kind(dtype.removesuffix("-fastacc"), dtype == "fp8-fastacc")
        configs = tm.gpu_configs(kind)
        for name, attr in (
            ("matmul", "_matmul_kernel"),
            ("matmul-persistent", "_matmul_persistent_kernel"),
        ):
            jobs += _autotuned(name, dtype, tm.__name__, attr, configs, args, constexprs)
        torch_names = {"float8_e4m3fn": "fp8", "bfloat16": "bf16", "float16": "fp16",
                       "float32": "fp32"}  # fmt: skip  # as make_launch names A's dtype
        # TMA persistent (Triton with host tensor descriptors): descriptors with each config's
        # block shapes, B K-major for fp8 (as the impl passes it) and row-major otherwise
        if tm.tma_descriptors_available() and dtype != "fp32":  # IEEE fp32: tma_reason
            c_dtype = "bfloat16" if fp8 else torch_in
            for cfg in tm.tma_gpu_configs(kind):
                bm, bn, bk = (cfg.kwargs[x] for x in ("BLOCK_M", "BLOCK_N", "BLOCK_K"))
                b_desc = (
                    Descriptor(torch_in, (_N, _K), (_K, 1), (bn, bk))
                    if fp8
                    else Descriptor(torch_in, (_K, _N), (_N, 1), (bk, bn))
                )
                tma_args = (
                    Descriptor(torch_in, (_M, _K), (_K, 1), (bm, bk)),
                    b_desc,
                    Descriptor(c_dtype, (_M, _N), (_N, 1), (bm, bn)),
                    scale, scale, _M, _N, _K, _M, _N, _K,
                )  # fmt: skip
                jobs += _autotuned(
                    "matmul-tma", dtype, tm.__name__, "_matmul_tma_kernel", [cfg], tma_args,
                    {**constexprs, "B_KMAJOR": fp8,
                     "DTYPES": f"{torch_names[torch_in]}->{c_dtype}"},
                )  # fmt: skip
        # split-K: the host fixes the tile (BLOCK_M from M, BLOCK_N = GPU_SPLIT.block_n); every
        # tile height the plan gives, 4 splits of K, its workspace and counters; and M = 1, which
        # a launch specialises to a constant (the decode-like GEMV case split-K is for)
        f32, i32 = Tensor("float32"), Tensor("int32")
        for m in (1, 16, 32, 64):
            plan = tm.split_k_plan(m, _N, _K, 132, 4, tm.GPU_SPLIT)
            split_args = (
                a, a, c, scale, scale, f32, i32, m, _N, _K, _K, 1, *b_strides, _N, 1,
                plan.k_per_split, plan.splits, m, _N, _K,
            )  # fmt: skip
            tile = {"BLOCK_M": plan.block_m, "BLOCK_N": plan.block_n}
            split_configs = [
                triton.Config({**tile, **cfg.kwargs}, num_warps=cfg.num_warps,
                              num_stages=cfg.num_stages)
                for cfg in tm.split_gpu_configs(kind)
            ]  # fmt: skip
            jobs += _autotuned(
                "matmul-split-k", dtype + (" M=1" if m == 1 else ""), tm.__name__,
                "_matmul_split_kernel", split_configs, split_args, constexprs,
            )  # fmt: skip
    return jobs


def _w8a8_jobs(half: Sequence[str]) -> list[Job]:
    from wattbench.kernels.qgemm import triton_w8a8 as w8

    jobs = []
    for dtype in ("int8", "fp8"):
        fp8 = dtype == "fp8"
        a = Tensor("float8_e4m3fn" if fp8 else "int8")
        s = Tensor("float32")
        stride_s = 0 if fp8 else 1  # fp8: per-tensor scales (stride 0); int8: per row / column
        args = (
            a, a, Tensor("bfloat16"), s, s, _M, _N, _K, _K, 1, 1, _K, _N, 1, stride_s, stride_s,
            _M, _N, _K,
        )  # fmt: skip
        for fast in (False, True) if fp8 else (False,):
            jobs += _autotuned(
                "w8a8", f"{dtype} fast-acc" if fast else dtype, w8.__name__, "_w8a8_kernel",
                w8.gpu_configs(fp8, fast), args, {"IS_FP8": fp8, "FAST_ACC": fast},
            )  # fmt: skip
    return jobs


def _w4a16_jobs(half: Sequence[str]) -> list[Job]:
    from wattbench.kernels.qgemm import triton_w4a16 as w4

    jobs = []
    group = 128
    for act in half:
        x = Tensor(_TORCH_HALF[act])
        qw, z, ws, cnt = Tensor("int32"), Tensor("uint8"), Tensor("float32"), Tensor("int32")
        m = 64  # the tiled GEMM serves M > GEMV_MAX_M
        args: tuple[Any, ...] = (x, qw, x, z, x, m, _N, _K, group, _K, _N, m, _N, _K)
        jobs += _autotuned(
            "w4a16-gemm", act, w4.__name__, "_gemm_kernel", w4.gpu_configs(), args, {}
        )
        # the GEMV's paths: register FMAs (M <= FMA_MAX_M; M = 1 specialised to a constant, as a
        # real M = 1 launch is) and tl.dot (M = 16); 4 splits of K, and M = 1 without a split
        for m, split in ((1, True), (1, False), (2, True), (w4.FMA_MAX_M, True), (16, True)):
            fma = m <= w4.FMA_MAX_M
            block_m, block_n, block_r = w4.gemv_block(m, interpret=False)
            args = (x, qw, x, z, x, ws, cnt, m, _N, _K, group, _K, _N, _K // 32, 4)
            meta = {
                "SPLIT": split, "FMA": fma, "MAGIC": w4.MAGIC_16[_TORCH_HALF[act]],
                "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_R": block_r,
            }  # fmt: skip
            stages = w4.FMA_GPU_STAGES if fma else w4.GEMV_GPU_STAGES
            label = _config_label(meta, w4.GEMV_WARPS, stages)
            meta |= {"num_warps": w4.GEMV_WARPS, "num_stages": stages}
            variant = f"{act} M={m} {'split' if split else 'no split'}"
            jobs.append(
                Job(
                    "w4a16-gemv",
                    variant,
                    label,
                    w4.__name__,
                    "_gemv_kernel",
                    args,
                    tuple(meta.items()),
                )
            )
    return jobs


def _prefill_jobs(half: Sequence[str]) -> list[Job]:
    from wattbench.kernels.attention import triton_prefill as tp

    jobs = []
    heads, n = 32, 4096
    for dtype, d, causal in itertools.product(half, (64, 128), (True, False)):
        q = Tensor(_TORCH_HALF[dtype])
        strides = (heads * n * d, n * d, d)
        args = (
            q, q, q, q, q, n, heads, 1, 0.125, *strides, *strides, *strides, *strides, n,
        )  # fmt: skip
        constexprs = {"HEAD_DIM": d, "CAUSAL": causal, "HAS_LSE": False}
        variant = f"{dtype} D={d} {'causal' if causal else 'full'}"
        jobs += _autotuned(
            "prefill", variant, tp.__name__, "_prefill_kernel", tp.gpu_configs(d), args, constexprs
        )
    return jobs


def _decode_jobs(half: Sequence[str]) -> list[Job]:
    from wattbench.kernels.attention import triton_decode as td

    jobs = []
    hkv, group, length = 8, 4, 8192
    # one split (SPLITS specialised to 1: its own partial is the merge) and 16; with lse
    for dtype, d, chunk in itertools.product(half, (64, 128), (length, 512)):
        q, f32, i32 = Tensor(_TORCH_HALF[dtype]), Tensor("float32"), Tensor("int32")
        splits = length // chunk
        kv = (hkv * length * d, length * d, d)
        qo = (hkv * group * d, d)
        args: tuple[Any, ...] = (
            q, q, q, q, f32, f32, f32, i32, length, chunk, hkv, group, splits, 0.125,
            *qo, *kv, *kv, *qo,
        )  # fmt: skip
        jobs += _autotuned(
            "decode", f"{dtype} D={d} G_PAD=16 splits={splits}", td.__name__, "_decode_kernel",
            td.gpu_configs(), args, {"HEAD_DIM": d, "G_PAD": 16, "HAS_LSE": True},
        )  # fmt: skip
    return jobs


_JOB_LISTS = {
    "matmul": _matmul_jobs,
    "w8a8": _w8a8_jobs,
    "w4a16": _w4a16_jobs,
    "prefill": _prefill_jobs,
    "decode": _decode_jobs,
}
KERNEL_GROUPS: tuple[str, ...] = tuple(_JOB_LISTS)
#: the 16-bit dtypes the kernels take (each compiled by default)
HALF_DTYPES: tuple[str, ...] = ("bf16", "fp16")


def jobs(groups: Sequence[str] = KERNEL_GROUPS, half: Sequence[str] = HALF_DTYPES) -> list[Job]:
    """Every distinct compile of the kernel ``groups`` (names of :data:`KERNEL_GROUPS`), with
    the 16-bit dtypes ``half`` (of :data:`HALF_DTYPES`)."""
    out: dict[Job, None] = {}
    for g in groups:
        for job in _JOB_LISTS[g](half):
            out.setdefault(job)
    return list(out)


# --- compiling ------------------------------------------------------------------------------------


_INT_TO_FLOAT = re.compile(r"\bcvt\.rn\.(?:f16|bf16|f32|f64)\.[su](?:8|16|32|64)\b")


def _init_worker(cache_root: str) -> None:
    """A fresh process compiles for the GPU (never interprets) into an empty cache of its own."""
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(dir=cache_root)
    warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")


def _argument(arg: Any, mock_tensor: type) -> Any:
    """A job's argument as the binder takes it: tensors as Triton's mock tensors, descriptors as
    host tensor descriptors over them."""
    import torch

    if isinstance(arg, Tensor):
        return mock_tensor(getattr(torch, arg.dtype))
    if isinstance(arg, Descriptor):
        from triton.tools.tensor_descriptor import TensorDescriptor

        base = mock_tensor(getattr(torch, arg.dtype), list(arg.shape))
        return TensorDescriptor(base, list(arg.shape), list(arg.strides), list(arg.block_shape))
    return arg


def compile_job(job: Job) -> Result:
    """Compile ``job`` for sm_90a in this process (which must not be interpreting Triton)."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, MockTensor, create_function_from_signature

    from wattbench.kernels.cuda_build import parse_ptxas_report

    start = time.perf_counter()
    try:
        fn = getattr(importlib.import_module(job.module), job.attr)
        while not isinstance(fn, JITFunction):  # autotuner / heuristics wrappers
            fn = fn.fn
        target = GPUTarget(*TARGET)
        backend = make_backend(target)
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        args = [_argument(a, MockTensor) for a in job.args]
        kwargs = dict(job.kwargs)
        bound, spec, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, spec, options)
        knobs.nvidia.dump_ptxas_log = True
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(
                ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__
            )
        name = compiled.metadata.name
        entries = [e for e in parse_ptxas_report(log.getvalue()) if e.name == name]
        if len(entries) != 1:
            raise RuntimeError(f"no ptxas report for {name} (a cached kernel?)")
        e = entries[0]
        return Result(
            job,
            registers=e.registers,
            spill_stores=e.spill_stores,
            spill_loads=e.spill_loads,
            shared_bytes=int(compiled.metadata.shared) + e.shared_bytes,
            int_to_float=len(_INT_TO_FLOAT.findall(compiled.asm["ptx"])),
            seconds=time.perf_counter() - start,
        )
    except Exception as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        error = f"{type(exc).__name__}: {lines[0]}"
        return Result(job, seconds=time.perf_counter() - start, error=error)


def run(job_list: Sequence[Job], processes: int | None = None) -> list[Result]:
    """Compile ``job_list`` in ``processes`` fresh processes (default: the CPUs); results in the
    order of ``job_list``."""
    processes = max(1, min(processes or os.cpu_count() or 1, len(job_list)))
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="wattbench-sm90-") as cache_root,
        concurrent.futures.ProcessPoolExecutor(
            processes, mp_context=context, initializer=_init_worker, initargs=(cache_root,)
        ) as pool,
    ):
        return list(pool.map(compile_job, job_list, chunksize=1))


# --- the table ------------------------------------------------------------------------------------


def format_table(results: Sequence[Result]) -> str:
    """One row per result: kernel, variant, config, registers, spill bytes (stores/loads),
    shared memory in KiB, integer-to-float conversions in the PTX, ok (or the error)."""
    head = ("kernel", "variant", "config", "regs", "spills", "smem KiB", "i2f", "ok")
    rows = [head]
    for r in results:
        if r.error:
            rows.append((r.job.kernel, r.job.variant, r.job.config, "-", "-", "-", "-", r.error))
            continue
        rows.append(
            (
                r.job.kernel,
                r.job.variant,
                r.job.config,
                str(r.registers),
                f"{r.spill_stores}/{r.spill_loads}",
                f"{r.shared_bytes / 1024:.1f}",
                str(r.int_to_float),
                "ok" if r.ok else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wattbench.kernels.compile_report",
        description="Compile every GPU config of wattbench's Triton kernels for sm_90a and "
        f"report registers, spills and shared memory (limit {SM90_MAX_SHARED_BYTES} bytes).",
    )
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: CPUs)")
    parser.add_argument(
        "--kernel", action="append", choices=KERNEL_GROUPS, help="only these (repeatable)"
    )
    parser.add_argument(
        "--half",
        nargs="+",
        choices=HALF_DTYPES,
        default=list(HALF_DTYPES),
        help="16-bit dtypes to compile (default: both)",
    )
    opts = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cannot compile for sm_90a here: {reason}", file=sys.stderr)
        return 2
    job_list = jobs(opts.kernel or KERNEL_GROUPS, opts.half)
    start = time.perf_counter()
    results = run(job_list, opts.jobs)
    elapsed = time.perf_counter() - start
    print(format_table(results))
    bad = sum(not r.ok for r in results)
    busy = sum(r.seconds for r in results)
    print(
        f"\n{len(results)} compiles for sm_90a in {elapsed:.1f} s ({busy:.1f} s of compiling in "
        f"{min(opts.jobs or os.cpu_count() or 1, len(results))} processes); {bad} not ok"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
