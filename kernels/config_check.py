"""Every config a Triton autotuner can choose for a problem, forced one at a time and checked
against float64.

Autotuning picks one config per problem and never shows that the others compute the right
thing; a config that is wrong at some shape would stay hidden until the autotuner chose it on
another GPU. Here, for each case (a :class:`~wattbench.kernels.costs.Problem`: family, Triton
implementation, shape, dtype):

1. **discover**: the implementation is launched once while every autotuner of the loaded
   ``wattbench.kernels`` modules is watched: each one the launch reaches records the configs its
   own early pruning leaves for that launch (all of its configs when it has no pruning, or a
   single one) and runs the first (no benchmarking);
2. **check**: each (autotuner, config) found is forced -- the autotuner's list becomes that one
   config, so it neither prunes nor benchmarks -- and the problem is checked by
   :func:`wattbench.kernels.verify.check_one` (fresh seeded inputs, output poisoned, float64
   reference, the family's tolerance). The autotuner's ``best_config`` after the launch must be
   the forced config, so a check never passes on a config that did not run.

A pair is checked once, at the case of least work that reaches it. On a GPU the checks of one
case run in one process and cases spread over a pool of fresh ``spawn`` processes (compiling is
the cost); under ``TRITON_INTERPRET`` each autotuner has its one interpreter config.
Autotuners are identified as ``module:attribute``; configs by their index in the autotuner's
list (the same module-level list in every process) and a readable label.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import multiprocessing
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from wattbench.kernels.costs import Problem
from wattbench.kernels.family import Family, Impl, ImplUnavailable

PACKAGE = "wattbench.kernels"


@dataclass(frozen=True)
class Found:
    """A config an autotuner (``tuner``: ``module:attribute``) can choose for ``case``:
    ``index`` in its config list, ``config`` its label."""

    case: Problem
    tuner: str
    index: int
    config: str


@dataclass(frozen=True)
class Outcome:
    """The check of one :class:`Found` config: ``status`` pass / FAIL / error, the relative
    Frobenius error against float64 and the tolerance; ``message`` (one line) on error."""

    found: Found
    status: str
    rel_error: float | None = None
    tolerance: float | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        f = self.found
        return {
            **asdict(f.case),
            "shape": f.case.shape_text,
            "tuner": f.tuner,
            "index": f.index,
            "config": f.config,
            "status": self.status,
            "rel_error": self.rel_error,
            "tolerance": self.tolerance,
            "message": self.message,
        }


def config_label(config: Any) -> str:
    """``BLOCK_M x BLOCK_N x ... w<warps> s<stages>`` and any other meta-parameter."""
    kw = dict(config.kwargs)
    blocks = [kw[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "BLOCK_R") if k in kw]
    extra = "".join(f" {k}={v}" for k, v in kw.items() if not k.startswith("BLOCK_"))
    return "x".join(map(str, blocks)) + f" w{config.num_warps} s{config.num_stages}" + extra


def autotuners() -> dict[str, Any]:
    """``module:attribute`` -> autotuner, over the loaded ``wattbench.kernels`` modules."""
    from triton.runtime.autotuner import Autotuner

    found: dict[str, Any] = {}
    ids: set[int] = set()
    for name, module in sorted(sys.modules.items()):
        if module is None or not name.startswith(PACKAGE + "."):
            continue
        for attr, value in vars(module).items():
            if isinstance(value, Autotuner) and id(value) not in ids:  # once, if re-exported
                ids.add(id(value))
                found[f"{name}:{attr}"] = value
    return found


def _tuner(key: str) -> Any:
    module, attr = key.split(":")
    return getattr(importlib.import_module(module), attr)


@contextlib.contextmanager
def _watching(tuners: dict[str, Any], seen: dict[str, list[int]]) -> Iterator[None]:
    """Each autotuner a launch reaches records the indices of the configs its pruning leaves
    (into ``seen``) and runs the first of them."""

    def watch(key: str, tuner: Any) -> Any:
        run = tuner.run

        def watched(*args: Any, **kwargs: Any) -> Any:
            configs = list(tuner.configs)
            prune = getattr(tuner, "early_config_prune", None)
            if prune is not None and len(configs) > 1:
                launch_kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
                named = dict(zip(tuner.arg_names, args, strict=False))
                chosen = prune(configs, named, **launch_kwargs)
            else:
                chosen = configs
            indices = [i for i, c in enumerate(configs) if any(c is k for k in chosen)]
            seen.setdefault(key, [])
            seen[key] += [i for i in indices if i not in seen[key]]
            tuner.configs = [configs[indices[0]]]
            try:
                return run(*args, **kwargs)
            finally:
                tuner.configs = configs

        return watched

    before = {key: vars(tuner).get("run") for key, tuner in tuners.items()}
    for key, tuner in tuners.items():
        tuner.run = watch(key, tuner)
    try:
        yield
    finally:
        for key, tuner in tuners.items():
            if before[key] is None:
                del tuner.run  # the class's run again
            else:
                tuner.run = before[key]


@contextlib.contextmanager
def forced(tuner: Any, index: int) -> Iterator[Any]:
    """``tuner`` runs its config ``index`` and nothing else while inside; yields the config."""
    configs, best = tuner.configs, getattr(tuner, "best_config", None)
    config = configs[index]
    tuner.configs = [config]
    tuner.best_config = None
    try:
        yield config
    finally:
        tuner.configs, tuner.best_config = configs, best


def _device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def discover(case: Problem, family: Family, impl: Impl) -> list[Found]:
    """The (autotuner, config) pairs one launch of ``case`` can choose from."""
    from wattbench.kernels.verify import check_one

    # building a launch imports the implementation's modules (and so its autotuners)
    impl.make_launch(family.make_inputs(case.shape, case.dtype, 0, _device()))
    seen: dict[str, list[int]] = {}
    with _watching(autotuners(), seen):
        check_one(family, impl, case.shape, case.dtype, _device())
    return [
        Found(case, key, i, config_label(_tuner(key).configs[i]))
        for key, indices in sorted(seen.items())
        for i in indices
    ]


def check_found(found: Found, family: Family, impl: Impl) -> Outcome:
    """Force ``found``'s config and check its case against float64."""
    from wattbench.kernels.verify import PASS, check_one

    tuner = _tuner(found.tuner)
    try:
        with forced(tuner, found.index) as config:
            one = check_one(family, impl, found.case.shape, found.case.dtype, _device())
            if tuner.best_config is not config:
                return Outcome(found, "error", message="the forced config did not run")
    except ImplUnavailable as exc:
        return Outcome(found, "unavailable", message=str(exc).splitlines()[0])
    except Exception as exc:  # the check's own verdict, in one line
        return Outcome(found, "error", message=f"{type(exc).__name__}: {exc}".splitlines()[0])
    status = "pass" if one.status == PASS else "FAIL"
    return Outcome(found, status, one.rel_error, one.tolerance_rel_fro)


def cases(
    families: Sequence[Family],
    env: Any,
    *,
    max_flops: float | None = None,
    per_dtype: int | None = None,
) -> list[Problem]:
    """Every shape of each family's presets that a Triton implementation can run here, per
    dtype, least work first; ``max_flops`` bounds one launch (the implementation's own CPU
    bound applies without CUDA), ``per_dtype`` the shapes of one (implementation, dtype)."""
    out = []
    for fam in families:
        shapes = list(dict.fromkeys(tuple(s) for p in fam.presets for s in p.shapes))
        for impl in fam.impls:
            if "triton" not in impl.requires:
                continue
            for dtype in impl.min_compute_capability:
                if dtype not in fam.dtypes:
                    continue
                taken = 0
                by_work = sorted((fam.work(s, dtype).flops, s) for s in shapes)
                for flops, shape in by_work:
                    if (max_flops is not None and flops > max_flops) or taken == per_dtype:
                        break
                    if impl.why_unavailable(dtype, env, shape, flops) is None:
                        out.append(Problem(fam.name, impl.name, shape, dtype))
                        taken += 1
    return out


def _lookup(case: Problem) -> tuple[Family, Impl]:
    from wattbench.kernels import catalog

    fam = catalog.family(case.family)
    return fam, fam.impl(case.impl)


def _discover_and_check(case_list: Sequence[Problem]) -> tuple[list[Found], list[Outcome]]:
    """In one process: discover every case, then check each pair not checked before (at the
    first case, of least work, that reaches it)."""
    found: list[Found] = []
    keys: set[tuple[str, str, str, int]] = set()
    for case in case_list:
        fam, impl = _lookup(case)
        try:
            pairs = discover(case, fam, impl)
        except Exception as exc:  # reported as the case's outcome below
            line = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return found, [Outcome(Found(case, "-", -1, "-"), "error", message=line)]
        for f in pairs:
            key = (case.impl, case.dtype, f.tuner, f.index)
            if key not in keys:
                keys.add(key)
                found.append(f)
    outcomes = []
    for f in found:
        fam, impl = _lookup(f.case)
        outcomes.append(check_found(f, fam, impl))
    return found, outcomes


def run(case_list: Sequence[Problem], processes: int | None = None) -> list[Outcome]:
    """Check every config of ``case_list``: one worker per (family, impl, dtype), in
    ``processes`` fresh spawn processes (default: the CPU count, at most 16); ``processes=0``
    runs here, in this process."""
    groups: dict[tuple[str, str, str], list[Problem]] = {}
    for c in case_list:
        groups.setdefault((c.family, c.impl, c.dtype), []).append(c)
    if processes == 0:
        return [o for g in groups.values() for o in _discover_and_check(g)[1]]
    n = processes or min(16, multiprocessing.cpu_count())
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        results = list(pool.map(_discover_and_check, groups.values()))
    return [o for _, outcomes in results for o in outcomes]
