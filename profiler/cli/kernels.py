"""``wattbench kernels``: the kernel families, their implementations, dtypes and shape presets.

For each implementation it says per dtype the minimum compute capability and whether it runs on
this machine (torch / triton / cupy importable, a CUDA device of that capability, or a CPU path),
with the reason when not. Reads only. ``--json`` prints a document with stable keys (``schema:
wattbench.kernels/1``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wattbench.kernels import catalog
from wattbench.kernels.env import Environment, probe
from wattbench.kernels.family import Family, compute_capability_text, shape_text

SCHEMA = "wattbench.kernels/1"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kernels",
        help="list kernel families, implementations, dtypes and shape presets",
        description="List the kernel families with their implementations (dtypes, minimum "
        "compute capability, whether each runs on this machine and why not), dtypes with "
        "tolerances, and named shape presets. Changes nothing.",
    )
    p.add_argument("--kernel", help="show only this family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--shapes", action="store_true", help="print every shape of each preset")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    families = (catalog.family(args.kernel),) if args.kernel else catalog.FAMILIES
    doc = collect(families, probe(catalog.required_modules()))
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(render(doc, all_shapes=args.shapes))
    return 0


def collect(families: tuple[Family, ...], env: Environment) -> dict[str, Any]:
    """Everything `kernels` shows, as a JSON-ready dict with stable keys."""
    return {
        "schema": SCHEMA,
        "environment": env.to_json(),
        "families": [describe(f, env) for f in families],
    }


def describe(fam: Family, env: Environment) -> dict[str, Any]:
    impls = []
    for impl in fam.impls:
        dtypes = {}
        for dtype, cc in impl.min_compute_capability.items():
            reason = impl.why_unavailable(dtype, env)
            dtypes[dtype] = {
                "min_compute_capability": compute_capability_text(cc),
                "cpu": impl.runs_on_cpu(dtype),
                "math": impl.math.get(dtype),
                "available": reason is None,
                "reason": reason,
            }
        impls.append(
            {
                "name": impl.name,
                "baseline": impl is fam.baseline,
                "description": impl.description,
                "requires": list(impl.requires),
                "cpu_path": impl.cpu_path,
                "available": any(d["available"] for d in dtypes.values()),
                "dtypes": dtypes,
            }
        )
    return {
        "name": fam.name,
        "description": fam.description,
        "shape_form": fam.shape_form,
        "dims": list(fam.dims),
        "dtypes": {
            name: {"tolerance_rel_fro": spec.tolerance_rel_fro, "note": spec.note}
            for name, spec in fam.dtypes.items()
        },
        "baseline": fam.baseline.name,
        "impls": impls,
        "presets": [
            {
                "name": p.name,
                "description": p.description,
                "sweep_dim": None if p.sweep_dim is None else fam.dims[p.sweep_dim],
                "shapes": [list(s) for s in p.shapes],
            }
            for p in fam.presets
        ],
    }


def render(doc: dict[str, Any], all_shapes: bool = False) -> str:
    env = doc["environment"]
    stack = ", ".join(f"{m} {v or 'not installed'}" for m, v in env["modules"].items())
    if env["cuda"]:
        where = (
            f"CUDA device 0: {env['device_name']} (compute capability {env['compute_capability']})"
        )
    else:
        where = f"no CUDA device ({env['cuda_error']})"
    lines = [f"This machine: {where}; {stack}"]
    for fam in doc["families"]:
        lines += ["", f"{fam['name']}: {fam['description']}", "  dtypes:"]
        for name, d in fam["dtypes"].items():
            lines.append(f"    {name:<6} tolerance {d['tolerance_rel_fro']:.0e}  {d['note']}")
        lines.append("  implementations (dtype:min compute capability; * = runs here):")
        width = max(len(impl["name"]) for impl in fam["impls"]) + 2  # names never touch dtypes
        for impl in fam["impls"]:
            tag = " [baseline]" if impl["baseline"] else ""
            dts = " ".join(
                f"{n}:{d['min_compute_capability']}{'*' if d['available'] else ''}"
                for n, d in impl["dtypes"].items()
            )
            lines.append(f"    {impl['name']:<{width}}{dts}{tag}")
            lines.append(f"      {impl['description']}")
            reasons = sorted({d["reason"] for d in impl["dtypes"].values() if d["reason"]})
            if reasons:
                lines.append(f"      not here: {'; '.join(reasons)}")
        lines.append(f"  presets (shapes {fam['shape_form']}; PRESET@V sets the swept dimension):")
        for p in fam["presets"]:
            shapes = [shape_text(tuple(s)) for s in p["shapes"]]
            listed = shapes if all_shapes or len(shapes) <= 3 else [*shapes[:2], "..."]
            lines.append(f"    {p['name']:<18}{len(shapes):>3} shapes  {p['description']}")
            lines.append(f"      {', '.join(listed)}")
    return "\n".join(lines)
