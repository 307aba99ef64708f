"""What a fleet's operating points are worth in a year: energy, GPU-hours, money and carbon.

From an aggregate (:mod:`wattbench.profiler.fleet.aggregate`) and a stated use of the fleet:

* ``gpus``: GPUs of each model (default: the units the run measured);
* ``utilisation``: the share of the year each GPU is busy (0-1);
* ``mix``: the share of busy GPU-hours each problem takes (default: equal shares);
* electricity ``price_per_kwh``, ``pue`` (facility energy / IT energy), grid carbon
  ``intensity_g_per_kwh`` (a number, or the mean of an hourly CSV: load is spread evenly over the
  year), ``renewable_share`` (0-1).

For model ``m`` and problem ``p`` at the default settings, busy GPU-hours are
``H = 8760 * utilisation * gpus_m * mix_p`` and energy ``E_def = H * P_base`` (the median unit's
baseline power). The same work at the model point takes ``H * (1 + slowdown)`` GPU-hours and
``E_pt = E_def * (1 - saving)`` (median unit's saving and slowdown at the model point). Facility
energy is ``E * PUE``; cost ``E * PUE * price``; carbon ``C = E * PUE * intensity * (1 -
renewable_share)``. Idle hours are left out: they cost the same either way.
Stable keys: ``wattbench.fleet-report/1``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattbench.profiler.errors import UsageError

SCHEMA = "wattbench.fleet-report/1"
HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class FleetUse:
    objective: str = "slowdown:0.05"
    utilisation: float = 0.5
    gpus: dict[str, int] = field(default_factory=dict)  # GPU name -> count (default: measured)
    mix: dict[str, float] = field(default_factory=dict)  # problem label -> share (default: equal)
    price_per_kwh: float = 0.10
    pue: float = 1.3
    intensity_g_per_kwh: float = 400.0
    intensity_source: str = "given"
    renewable_share: float = 0.0

    def check(self) -> None:
        def bad(what: str, remedy: str) -> UsageError:
            return UsageError(what, remedy)

        if not 0 < self.utilisation <= 1:
            raise bad(f"utilisation {self.utilisation:g}", "give a share in (0, 1]")
        if not self.pue >= 1:
            raise bad(f"PUE {self.pue:g} is below 1", "PUE is facility / IT energy, >= 1")
        if not 0 <= self.renewable_share <= 1:
            raise bad(f"renewable share {self.renewable_share:g}", "give a share in [0, 1]")
        if not (self.price_per_kwh >= 0 and self.intensity_g_per_kwh >= 0):
            raise bad("price and carbon intensity must be >= 0", "check the numbers")
        if self.mix and not math.isclose(sum(self.mix.values()), 1.0, abs_tol=1e-6):
            raise bad(f"the mix adds up to {sum(self.mix.values()):g}", "make the shares sum to 1")


def mean_intensity(path: str | Path) -> float:
    """The mean of an hourly carbon-intensity CSV: its last numeric column, gCO2e/kWh, one row
    per hour (a header row is skipped)."""
    values = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                try:
                    values.append(float(row[-1]))
                except (ValueError, IndexError):
                    continue
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", "check the path") from None
    if not values or any(v < 0 or not math.isfinite(v) for v in values):
        raise UsageError(f"{path} has no hourly intensities >= 0", "one number per row, g/kWh")
    return sum(values) / len(values)


def report(aggregate: dict[str, Any], use: FleetUse) -> dict[str, Any]:
    use.check()
    groups = [g for g in aggregate["groups"] if g["objective"] == use.objective]
    if not groups:
        have = sorted({g["objective"] for g in aggregate["groups"]})
        raise UsageError(f"the aggregate has no objective {use.objective}", f"use one of {have}")
    problems = sorted({g["problem"] for g in groups})
    mix = use.mix or {p: 1.0 / len(problems) for p in problems}
    unknown = sorted(set(mix) - set(problems))
    if unknown:
        raise UsageError(f"mix names {unknown[0]}, not in the run", f"problems: {problems}")
    rows = []
    for g in groups:
        share = mix.get(g["problem"], 0.0)
        base, s, d = g.get("baseline") or {}, g["saving_rel"], g["slowdown_rel"]
        if not share or not base.get("power_w") or s is None or d is None:
            continue
        n = use.gpus.get(g["gpu_name"], g["units_total"])
        hours = HOURS_PER_YEAR * use.utilisation * n * share
        e_def_kwh = hours * base["power_w"] / 1000.0
        e_pt_kwh = e_def_kwh * (1.0 - s["median"])
        rows.append(
            {
                "gpu_name": g["gpu_name"],
                "simulated": g["simulated"],
                "problem": g["problem"],
                "gpus": n,
                "share": share,
                "model_point": (g["model_point"] or {}).get("key"),
                "gpu_hours_default": hours,
                "gpu_hours_extra": hours * d["median"],
                "energy_kwh_default": e_def_kwh,
                "energy_kwh_points": e_pt_kwh,
                **_money_and_carbon(e_def_kwh, e_pt_kwh, use),
            }
        )
    totals = {k: sum(r[k] for r in rows) for k in _SUMMED}
    return {
        "schema": SCHEMA,
        "run_id": aggregate["run_id"],
        "policy": aggregate["policy"],
        "simulated": any(r["simulated"] for r in rows),
        "use": {
            "objective": use.objective,
            "utilisation": use.utilisation,
            "mix": mix,
            "price_per_kwh": use.price_per_kwh,
            "pue": use.pue,
            "intensity_g_per_kwh": use.intensity_g_per_kwh,
            "intensity_source": use.intensity_source,
            "renewable_share": use.renewable_share,
        },
        "rows": rows,
        "totals": totals,
    }


_SUMMED = (
    "gpu_hours_default", "gpu_hours_extra", "energy_kwh_default", "energy_kwh_points",
    "facility_kwh_saved", "cost_saved", "carbon_kg_saved",
)  # fmt: skip


def _money_and_carbon(e_def_kwh: float, e_pt_kwh: float, use: FleetUse) -> dict[str, float]:
    saved = (e_def_kwh - e_pt_kwh) * use.pue  # facility energy
    return {
        "facility_kwh_saved": saved,
        "cost_saved": saved * use.price_per_kwh,
        "carbon_kg_saved": saved * use.intensity_g_per_kwh * (1.0 - use.renewable_share) / 1000.0,
    }


def render(doc: dict[str, Any]) -> str:
    u = doc["use"]
    sim = " (SIMULATED GPUs: model outputs)" if doc["simulated"] else ""
    lines = [
        f"fleet run {doc['run_id']}: a year at {u['utilisation']:.0%} utilisation, objective "
        f"{u['objective']}, policy {doc['policy']}{sim}",
        f"PUE {u['pue']:g}, {u['price_per_kwh']:g}/kWh, {u['intensity_g_per_kwh']:.0f} gCO2e/kWh "
        f"({u['intensity_source']}), renewable share {u['renewable_share']:.0%}",
        f"  {'GPU':<24}{'problem':<36}{'GPUs':>6}{'MWh default':>13}{'MWh points':>12}"
        f"{'extra GPU-h':>13}{'cost saved':>12}{'tCO2e saved':>13}",
    ]
    for r in doc["rows"]:
        lines.append(
            f"  {r['gpu_name'][:23]:<24}{r['problem'][:35]:<36}{r['gpus']:>6}"
            f"{r['energy_kwh_default'] / 1e3:>13,.1f}{r['energy_kwh_points'] / 1e3:>12,.1f}"
            f"{r['gpu_hours_extra']:>13,.0f}{r['cost_saved']:>12,.0f}"
            f"{r['carbon_kg_saved'] / 1e3:>13,.2f}"
        )
    t = doc["totals"]
    lines.append(
        f"  {'total':<66}{t['energy_kwh_default'] / 1e3:>13,.1f}"
        f"{t['energy_kwh_points'] / 1e3:>12,.1f}{t['gpu_hours_extra']:>13,.0f}"
        f"{t['cost_saved']:>12,.0f}{t['carbon_kg_saved'] / 1e3:>13,.2f}"
    )
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: str | Path) -> None:
    """Energy per year at defaults and at the points, per model and problem (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    labels = [f"{r['gpu_name']}\n{r['problem']}" for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(rows)), 4))
    ax.bar([i - 0.2 for i in x], [r["energy_kwh_default"] / 1e3 for r in rows], 0.4,
           label="driver defaults")  # fmt: skip
    ax.bar([i + 0.2 for i in x], [r["energy_kwh_points"] / 1e3 for r in rows], 0.4,
           label=f"operating points ({doc['use']['objective']})")  # fmt: skip
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("GPU energy per year, MWh")
    title = f"fleet run {doc['run_id']}"
    ax.set_title(title + (" -- SIMULATED GPUs" if doc["simulated"] else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
