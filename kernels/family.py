"""The kernel framework: what a family and an implementation declare, as small frozen dataclasses.

A **family** (matmul; attention and qgemm later) is one declaration (:class:`Family`): how its
shapes are written, named shape presets, dtypes with their tolerances, how to make seeded random
inputs, a float64 reference, the :class:`~wattbench.kernels.work.Work` of a problem, and its
implementations, the baseline (the vendor library) first. An **implementation** is one
declaration (:class:`Impl`): its dtypes with the minimum CUDA compute capability of each, the
modules it needs, whether it has a CPU path, and a function that turns allocated
:class:`Inputs` into a launch callable. Nothing registers itself on import: the catalog
(``wattbench.kernels.catalog``) reads the ``FAMILY`` / ``FAMILIES`` of every family folder's
``family`` module, and each family lists its implementations.

Invariants (checked when a declaration is built): names are unique, the baseline comes first,
every implementation's dtypes are family dtypes, every dtype has a tolerance > 0, every preset
shape has one size per dimension. Errors a user can cause are ``UnknownKernelError`` and
``ShapeError``, each listing the valid choices.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wattbench.kernels.env import Environment
from wattbench.kernels.errors import ShapeError, UnknownKernelError, WattbenchError
from wattbench.kernels.work import Work

Shape = tuple[int, ...]
#: one launch of a kernel on allocated inputs; it writes ``Inputs.out`` and allocates nothing
Launch = Callable[[], Any]


def launch_choice(launch: Launch) -> dict[str, Any] | None:
    """Which kernel ``launch`` runs, where its implementation chooses among variants for the
    problem (a split-K or a TMA matmul, a number of splits): its ``choice`` attribute, a small
    JSON-able dict that records and reports keep beside every figure; None when it has none."""
    choice = getattr(launch, "choice", None)
    return dict(choice) if isinstance(choice, dict) else None


def choice_text(choice: dict[str, Any] | None) -> str:
    """``key=value`` of a :func:`launch_choice` (values that are None left out), for tables."""
    return " ".join(f"{k}={v}" for k, v in (choice or {}).items() if v is not None)


#: how an implementation runs where torch sees no CUDA device
CPU_PATHS = ("torch", "triton-interpreter")


def shape_text(shape: Shape) -> str:
    """``(4096, 4096, 8192)`` -> ``"4096x4096x8192"``."""
    return "x".join(map(str, shape))


def compute_capability_text(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def _choices(names: Iterable[str]) -> str:
    return ", ".join(names)


class ImplUnavailable(WattbenchError):
    """Raised by a launch builder that finds, only once it runs, that it cannot run here (e.g. a
    CuPy without bfloat16); a check lists the implementation as unavailable, not as failed."""


@dataclass(frozen=True)
class DtypeSpec:
    """A dtype of a family: the accepted relative Frobenius error ``||C - C_ref|| / ||C_ref||``
    against the float64 reference on the same (already rounded) inputs, and what it means."""

    tolerance_rel_fro: float
    note: str = ""


@dataclass(frozen=True)
class Preset:
    """Named shapes. With ``sweep_dim`` set, ``NAME@V`` gives the same shapes with that
    dimension set to ``V`` (e.g. ``llama3-8b-qkv@128``: M = 128 tokens)."""

    name: str
    description: str
    shapes: tuple[Shape, ...]
    sweep_dim: int | None = None

    def at(self, value: int) -> tuple[Shape, ...]:
        """The preset's shapes with dimension ``sweep_dim`` set to ``value`` (deduplicated)."""
        if self.sweep_dim is None:
            raise ShapeError(
                f"preset {self.name!r} has no swept dimension to set to {value}",
                f"write {self.name} alone",
            )
        d = self.sweep_dim
        out = ((*s[:d], value, *s[d + 1 :]) for s in self.shapes)
        return tuple(dict.fromkeys(out))


@dataclass
class Inputs:
    """Allocated operands of one problem: ``tensors`` are read by a launch and never written;
    ``out`` is the one output every launch writes. Tensors are torch tensors on ``device``."""

    family: str
    shape: Shape
    dtype: str
    seed: int
    device: str  # torch device string: "cpu" or "cuda"
    tensors: dict[str, Any]
    out: Any

    def __getitem__(self, name: str) -> Any:
        return self.tensors[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.tensors.get(name, default)

    def poison(self) -> None:
        """Fill ``out`` with NaN (the largest value for integer outputs), so that a launch that
        writes nothing cannot pass a check on a stale result."""
        if self.out.dtype.is_floating_point:
            self.out.fill_(float("nan"))
        else:
            import torch

            self.out.fill_(torch.iinfo(self.out.dtype).max)

    def zero_operands(self) -> None:
        """Set every operand to all-zero bits except per-tensor scales (names ``scale*``): the
        same launch on data that toggles no bits, for measuring how much power data costs."""
        for name, t in self.tensors.items():
            if not name.startswith("scale"):
                t.zero_()


@dataclass(frozen=True, eq=False)  # a declaration is equal only to itself
class Impl:
    """One implementation of a family.

    ``min_compute_capability`` maps each dtype it supports to the minimum (major, minor) CUDA
    compute capability; ``math`` says per dtype what it computes where that is not obvious
    (e.g. IEEE fp32 vs TF32). ``make_launch(inputs)`` allocates what it needs once and returns a
    :data:`Launch` that holds what it uses and allocates nothing per call; it may raise
    :class:`ImplUnavailable` when it finds only then that it cannot run here. Without CUDA it
    runs only if ``cpu_path`` is set ("torch": on CPU tensors; "triton-interpreter": with
    ``TRITON_INTERPRET=1``), for ``cpu_dtypes`` (default: all) and up to ``cpu_max_flops`` per
    launch. ``limits(shape, dtype, on_cuda)`` returns why a problem
    cannot run (e.g. alignment), or None. ``tolerance_rel_fro`` maps a dtype whose math is
    looser than the family's (e.g. fp8 fast accumulation) to the error this implementation is
    held to instead (the basis belongs in ``math``); other dtypes use the family's.
    """

    name: str
    description: str
    min_compute_capability: Mapping[str, tuple[int, int]]
    make_launch: Callable[[Inputs], Launch] = field(repr=False)
    requires: tuple[str, ...] = ("torch",)
    math: Mapping[str, str] = field(default_factory=dict)
    cpu_path: str | None = None
    cpu_dtypes: tuple[str, ...] | None = None
    cpu_max_flops: float = 2.0**32
    limits: Callable[[Shape, str, bool], str | None] | None = field(default=None, repr=False)
    tolerance_rel_fro: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.min_compute_capability:
            raise ValueError(f"impl {self.name!r} declares no dtype")
        for dtype, tol in self.tolerance_rel_fro.items():
            if dtype not in self.min_compute_capability or not tol > 0:
                raise ValueError(
                    f"impl {self.name!r}: tolerance for {dtype!r} must be > 0 "
                    "and for one of its dtypes"
                )
        if self.cpu_path is not None and self.cpu_path not in CPU_PATHS:
            raise ValueError(f"impl {self.name!r}: cpu_path must be one of {CPU_PATHS}")
        if self.cpu_dtypes is not None and not set(self.cpu_dtypes) <= set(self.dtypes):
            raise ValueError(f"impl {self.name!r}: cpu_dtypes must be among its dtypes")

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.min_compute_capability)

    def runs_on_cpu(self, dtype: str) -> bool:
        return self.cpu_path is not None and dtype in (self.cpu_dtypes or self.dtypes)

    def why_unavailable(
        self, dtype: str, env: Environment, shape: Shape | None = None, flops: float | None = None
    ) -> str | None:
        """Why this implementation cannot run ``dtype`` (and ``shape``, costing ``flops``) in
        ``env``, or None if it can. Reasons are short phrases, e.g. "cupy not installed"."""
        if dtype not in self.min_compute_capability:
            return f"no {dtype} path (it has {_choices(self.dtypes)})"
        for module in self.requires:
            if env.modules.get(module) is None:
                return f"{module} not installed"
        if env.cuda:
            need = self.min_compute_capability[dtype]
            have = env.compute_capability
            if have is not None and tuple(have) < need:
                return (
                    f"{dtype} needs compute capability >= {compute_capability_text(need)} "
                    f"(this GPU: {compute_capability_text(have)})"
                )
        else:
            if self.cpu_path is None:
                return "no CUDA device"
            if not self.runs_on_cpu(dtype):
                return f"no CUDA device, and {dtype} has no CPU path"
            if self.cpu_path == "triton-interpreter" and not env.triton_interpret:
                return (
                    "no CUDA device (with TRITON_INTERPRET=1, which `wattbench check` sets, "
                    "Triton's interpreter runs it on the CPU)"
                )
            if flops is not None and flops > self.cpu_max_flops:
                return (
                    f"no CUDA device, and {flops / 1e9:.3g} GFLOP is too much for its CPU path "
                    f"(limit {self.cpu_max_flops / 1e9:.3g} GFLOP)"
                )
        if shape is not None and self.limits is not None:
            return self.limits(shape, dtype, env.cuda)
        return None


@dataclass(frozen=True)
class Comparison:
    """A problem of another family whose time a family's timings are also compared with:
    ``label`` heads the column (e.g. "bf16 cuBLAS"); ``family`` / ``impl`` / ``dtype`` name the
    problem; ``shape`` maps a shape of this family to one of that family (default: the same)."""

    label: str
    family: str
    impl: str
    dtype: str
    shape: Callable[[Shape], Shape] | None = field(default=None, repr=False)

    def problem_shape(self, shape: Shape) -> Shape:
        """The compared problem's shape for ``shape`` of the declaring family."""
        return tuple(self.shape(shape)) if self.shape is not None else tuple(shape)


@dataclass(frozen=True)
class Suite:
    """What the pytest suites (``suites/test_kernels.py``) run of a family, as the family writes
    shapes (``MxNxK``, a preset name, ``PRESET@V``). ``full``: every dtype of these shapes
    (None: every preset, in order). ``quick``: the quick subset, in ``quick_dtypes`` (None:
    every dtype); None: the first shape of the first preset in the first dtype; ``()``: none."""

    full: tuple[str, ...] | None = None
    quick: tuple[str, ...] | None = None
    quick_dtypes: tuple[str, ...] | None = None


@dataclass(frozen=True, eq=False)
class Family:
    """A kernel family. ``dims`` names the sizes of a shape in the order it is written (matmul:
    ``("M", "N", "K")`` -> ``MxNxK``). ``make_inputs(shape, dtype, seed, device)`` returns
    seeded random :class:`Inputs` (same seed and device -> same data; never all zeros);
    ``reference(inputs, device)`` the float64 result computed on ``device``; ``work(shape,
    dtype)`` the Work of one launch. ``impls[0]`` is the baseline speedups are reported against.
    ``comparison`` (optional) names a problem of another family that timings are also compared
    with, e.g. the same (M, N, K) in bf16 on cuBLAS for a quantized GEMM. ``suite`` says what
    the pytest suites run of it (default: every preset; quick: the first shape in one dtype).
    """

    name: str
    description: str
    dims: tuple[str, ...]
    dtypes: Mapping[str, DtypeSpec]
    presets: tuple[Preset, ...]
    impls: tuple[Impl, ...]
    make_inputs: Callable[[Shape, str, int, str], Inputs] = field(repr=False)
    reference: Callable[[Inputs, str], Any] = field(repr=False)
    work: Callable[[Shape, str], Work] = field(repr=False)
    comparison: Comparison | None = None
    suite: Suite = Suite()

    def __post_init__(self) -> None:
        problems = []
        for kind, names in (
            ("impl", [i.name for i in self.impls]),
            ("preset", [p.name for p in self.presets]),
        ):
            if len(set(names)) != len(names):
                problems.append(f"duplicate {kind} names in {names}")
        if not self.impls:
            problems.append("no implementation (the baseline comes first)")
        for impl in self.impls:
            extra = set(impl.dtypes) - set(self.dtypes)
            if extra:
                problems.append(f"impl {impl.name!r} has dtypes {sorted(extra)} the family lacks")
        for name, spec in self.dtypes.items():
            if not spec.tolerance_rel_fro > 0:
                problems.append(f"dtype {name!r} has no tolerance > 0")
        for p in self.presets:
            if not p.shapes or any(len(s) != len(self.dims) or min(s) < 1 for s in p.shapes):
                problems.append(f"preset {p.name!r} has a shape that is not {self.shape_form}")
        if not problems:  # the suite's shapes parse only against a consistent declaration
            problems.extend(self._suite_problems())
        if problems:
            raise ValueError(f"family {self.name!r}: " + "; ".join(problems))

    def _suite_problems(self) -> list[str]:
        out = []
        extra = set(self.suite.quick_dtypes or ()) - set(self.dtypes)
        if extra:
            out.append(f"suite quick_dtypes {sorted(extra)} are not family dtypes")
        for text in (*(self.suite.full or ()), *(self.suite.quick or ())):
            try:
                self.shapes(text)
            except WattbenchError as e:
                out.append(f"suite shape {text!r}: {e}")
        return out

    def suite_shapes(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """``(full, quick, quick_dtypes)`` of the suite with the defaults filled in (a family
        without presets has no default cases)."""
        full = self.suite.full
        if full is None:
            full = tuple(p.name for p in self.presets)
        quick, dtypes = self.suite.quick, self.suite.quick_dtypes
        if quick is None:
            quick = (shape_text(self.presets[0].shapes[0]),) if self.presets else ()
            dtypes = dtypes or (next(iter(self.dtypes)),)
        return full, quick, dtypes or tuple(self.dtypes)

    # --- lookups (UnknownKernelError lists the valid choices) ------------------------------------

    @property
    def shape_form(self) -> str:
        return "x".join(self.dims)

    @property
    def baseline(self) -> Impl:
        return self.impls[0]

    def impl(self, name: str) -> Impl:
        for impl in self.impls:
            if impl.name == name:
                return impl
        raise UnknownKernelError(
            f"{self.name} has no implementation {name!r}",
            f"choose one of: {_choices(i.name for i in self.impls)} (`wattbench kernels` lists "
            "them)",
        )

    def dtype(self, name: str) -> DtypeSpec:
        try:
            return self.dtypes[name]
        except KeyError:
            raise UnknownKernelError(
                f"{self.name} has no dtype {name!r}", f"choose one of: {_choices(self.dtypes)}"
            ) from None

    def tolerance(self, dtype: str, impl: Impl | None = None) -> float:
        """The accepted relative Frobenius error of ``dtype`` (for implementation ``impl``: its
        own, where it declares one)."""
        family_tolerance = self.dtype(dtype).tolerance_rel_fro
        if impl is None:
            return family_tolerance
        return impl.tolerance_rel_fro.get(dtype, family_tolerance)

    def preset(self, name: str) -> Preset:
        for p in self.presets:
            if p.name == name:
                return p
        raise ShapeError(
            f"{self.name} has no preset {name!r}",
            f"choose one of: {_choices(p.name for p in self.presets)}, or write a shape as "
            f"{self._example()}",
        )

    # --- shapes ----------------------------------------------------------------------------------

    def _example(self) -> str:
        return f"{self.shape_form} with positive integers, e.g. " + "x".join(
            ["4096"] * len(self.dims)
        )

    def shapes(self, text: str) -> tuple[Shape, ...]:
        """Shapes written as ``MxNxK`` (also ``M,N,K``), a preset name, or ``PRESET@V``."""
        text = text.strip()
        if re.fullmatch(r"[A-Za-z][\w.-]*(@.*)?", text):
            name, at, value = text.partition("@")
            preset = self.preset(name)
            if not at:
                return preset.shapes
            if not value.strip().isdigit() or int(value) < 1:
                raise ShapeError(
                    f"malformed preset parameter in {text!r}",
                    f"write {name}@V with a positive integer V, e.g. {name}@128",
                )
            return preset.at(int(value))
        parts = re.split(r"[xX×,]", text)
        if len(parts) != len(self.dims) or not all(p.strip().isdigit() for p in parts):
            raise ShapeError(
                f"malformed {self.name} shape {text!r}",
                f"write it as {self._example()}, or name a preset: "
                f"{_choices(p.name for p in self.presets)}",
            )
        shape = tuple(int(p) for p in parts)
        if min(shape) < 1:
            raise ShapeError(f"{self.name} shape {text!r} has a zero dimension", "use sizes >= 1")
        return (shape,)

    def parse_shape(self, text: str) -> Shape:
        """Exactly one shape: ``MxNxK``, or a preset (or ``PRESET@V``) that names one shape."""
        shapes = self.shapes(text)
        if len(shapes) != 1:
            raise ShapeError(
                f"{text!r} names {len(shapes)} {self.name} shapes where one is needed",
                f"give one shape as {self.shape_form}"
                + (
                    f", or {text.partition('@')[0]}@V to fix the swept dimension"
                    if "@" not in text and self.preset(text.strip()).sweep_dim is not None
                    else ""
                ),
            )
        return shapes[0]
