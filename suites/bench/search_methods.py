"""Steady vs fast measurement, side by side (``python suites/bench/search.py --study methods``).

For every simulated GPU (built-in specs and robustness variants of the H100 that the spec format
expresses), workload and seed, the adaptive sweep with the CLI's default objectives (``energy,
edp, slowdown:0.05``: what ``wattbench sweep`` does) runs once per measurement method. Per row:

* GPU time per sweep (the virtual time on the simulated GPU's clock: idle power, counter period,
  calibration, warm-up and every window), median and worst over seeds, and fast / steady;
* regret per objective against the noise-free model at thermal steady state (median, worst),
  slowdown-bound violations;
* point bias: the largest |figure / truth - 1| of energy per iteration over the points the
  sweep measured (the figures it decided on, after its corrections), median and worst.

Variants (H100 spec text edited, written to a scratch folder, selected as ``sim:<file>``):
``tau3`` every thermal time constant x3; ``leak2`` leakage temperature slope x2; ``noise5``
energy-counter noise x5; ``slowpole`` a third thermal pole that the fit does not model (time
constant 20 s, a quarter of the other poles' resistance). They are stress tests of the method,
not models of a published GPU.
"""

from __future__ import annotations

import re
import statistics
from importlib import resources
from pathlib import Path
from typing import Any

from wattbench.profiler.device.select import load_sim_selection
from wattbench.profiler.sim import spec as sim_spec

#: issue targets (simulated): GPU time per sweep and regret / bias
TARGET_MEDIAN_S = 120.0
TARGET_WORST_S = 240.0
TARGET_MEDIAN_REGRET = 0.005
TARGET_WORST_REGRET = 0.02
TARGET_BIAS = 0.01
VARIANTS = ("tau3", "leak2", "noise5", "slowpole")
VARIANT_BASE = "h100-sxm"


def _scale(text: str, key: str, factor: float) -> str:
    """Multiply every ``key = <number>`` in spec ``text`` by ``factor``."""

    def sub(m: re.Match[str]) -> str:
        return f"{m.group(1)}{float(m.group(2)) * factor:g}"

    out, n = re.subn(rf"^(\s*{re.escape(key)}\s*=\s*)([0-9.eE+-]+)", sub, text, flags=re.M)
    if not n:
        raise ValueError(f"{key} is not in the spec text")
    return out


def variant_text(name: str, base: str = VARIANT_BASE) -> str:
    """The spec text of robustness variant ``name`` of built-in ``base``."""
    text = (resources.files("wattbench.profiler.sim.specs") / f"{base}.toml").read_text()
    if name == "tau3":
        return _scale(text, "time_constant_s", 3.0)
    if name == "leak2":
        return _scale(text, "leakage_per_c", 2.0)
    if name == "noise5":
        return _scale(text, "energy_noise_rel", 5.0)
    if name == "slowpole":
        spec = sim_spec.parse_spec(text, source="variant")
        r = 0.25 * sum(p.resistance_c_per_w for p in spec.thermal.poles)
        pole = f"[[thermal.poles]]  # variant: unmodelled slow pole\nresistance_c_per_w = {r:.4f}\n"
        pole += "time_constant_s = 20.0\n\n"
        at = text.index("\n[sensors]") + 1
        return text[:at] + pole + text[at:]
    raise ValueError(f"unknown variant {name!r}; use one of {', '.join(VARIANTS)}")


def gpu_selections(gpus: list[str], variants: list[str], scratch: Path) -> dict[str, str]:
    """label -> what ``sim:`` selects: built-in keys, and variant spec files written under
    ``scratch``."""
    out = {g: g for g in gpus}
    for v in variants:
        path = scratch / f"{VARIANT_BASE}-{v}.toml"
        path.write_text(variant_text(v), encoding="utf-8")
        out[f"{VARIANT_BASE}+{v}"] = str(path)
    return out


def load_spec(selection: str) -> sim_spec.GpuSpec:
    """A built-in key or a spec file, as ``sim:<selection>`` selects it."""
    return load_sim_selection(f"sim:{selection}")[0]


def summarise(runs: list[dict[str, Any]], truths: dict, regret_fn, objectives) -> list[dict]:
    """One row per (GPU, workload, method, objective); ``truths[(gpu, workload, seed)]``."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["gpu"], r["workload"], r["method"]), []).append(r)
    steady_time = {
        (g, w): statistics.median(x["sweep"]["virtual_s"] for x in rs)
        for (g, w, m), rs in groups.items()
        if m == "steady"
    }
    rows = []
    for (gpu, wl, method), rs in groups.items():
        times = [r["sweep"]["virtual_s"] for r in rs]
        bias = []
        for r in rs:
            truth = truths[(gpu, wl, r["seed"])]
            e = r["sweep"]["energy_by_key"]
            bias.append(max(abs(v / truth[k][0] - 1) for k, v in e.items()))
        base = steady_time.get((gpu, wl))
        for o in objectives:
            reg = [
                regret_fn(o, r["sweep"]["chosen"][o.name], truths[(gpu, wl, r["seed"])],
                          r["sweep"]["max_power_w"])
                for r in rs
            ]  # fmt: skip
            rows.append(
                {
                    "gpu": f"sim:{gpu}",
                    "workload": wl,
                    "measurement": method,
                    "objective": o.name,
                    "seeds": len(rs),
                    "gpu_time_s_median": statistics.median(times),
                    "gpu_time_s_max": max(times),
                    "time_vs_steady": statistics.median(times) / base if base else None,
                    "measurements_median": statistics.median(
                        r["sweep"]["measurements"] for r in rs
                    ),
                    "regret_median": statistics.median(x for x, _ in reg),
                    "regret_max": max(x for x, _ in reg),
                    "violations": sum(v for _, v in reg),
                    "point_bias_median": statistics.median(bias),
                    "point_bias_max": max(bias),
                }
            )
    return rows


def meets(row: dict[str, Any]) -> bool:
    """The issue's per-row targets (time per sweep, regret, violations, bias)."""
    return (
        row["gpu_time_s_max"] <= TARGET_WORST_S
        and row["regret_median"] <= TARGET_MEDIAN_REGRET
        and row["regret_max"] <= TARGET_WORST_REGRET
        and row["violations"] == 0
        and row["point_bias_max"] <= TARGET_BIAS
    )


def render(rows: list[dict[str, Any]], header: list[str]) -> str:
    lines = [*header, ""]
    lines += [
        "| GPU | workload | meas. | objective | n med | GPU time med/max | vs steady "
        "| regret med/max | viol. | point bias med/max | targets |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        ratio = f"{r['time_vs_steady']:.2f}x" if r["time_vs_steady"] is not None else "-"
        verdict = ("met" if meets(r) else "MISSED") if r["measurement"] == "fast" else "(old)"
        lines.append(
            f"| {r['gpu']} | {r['workload']} | {r['measurement']} | {r['objective']} "
            f"| {r['measurements_median']:g} "
            f"| {r['gpu_time_s_median']:.0f} s/{r['gpu_time_s_max']:.0f} s | {ratio} "
            f"| {r['regret_median']:.2%}/{r['regret_max']:.2%} | {r['violations']} "
            f"| {r['point_bias_median']:.2%}/{r['point_bias_max']:.2%} | {verdict} |"
        )
    fast = [r for r in rows if r["measurement"] == "fast"]
    if fast:
        per_sweep = {(r["gpu"], r["workload"]): r["gpu_time_s_median"] for r in fast}
        med = statistics.median(per_sweep.values())
        lines += [
            "",
            f"Fast: median GPU time per sweep over all rows {med:.0f} s (target <= "
            f"{TARGET_MEDIAN_S:.0f} s); worst {max(r['gpu_time_s_max'] for r in fast):.0f} s "
            f"(target <= {TARGET_WORST_S:.0f} s); rows meeting every target: "
            f"{sum(meets(r) for r in fast)}/{len(fast)}.",
        ]
    return "\n".join(lines) + "\n"
