"""The plugin's command-line options, parsed once per pytest run into :class:`Options`.

``--wattbench-sweep`` takes ``KNOB=SPEC`` parts joined by ``;`` (or given as repeated options):
``sm=every:4``, ``power=200:700:50``, ``sm=every:4;power=200:700:50``, ``mem=all;sm=all``. Each
SPEC is a ``wattbench sweep`` spec (``profiler/sweep/space.py``: ``--sm-clocks``,
``--mem-clocks``, ``--power-limits``) and is checked against the GPU when it is opened. No sweep
(the default, or ``none``) measures the GPU as it is, as one point, changing nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wattbench.profiler.errors import UsageError
from wattbench.profiler.select.objectives import Objective, parse_objective
from wattbench.profiler.store import default_results_dir

#: knob names of --wattbench-sweep -> what they sweep
SWEEP_KNOBS = {"sm": "SM clocks (MHz)", "mem": "memory clocks (MHz)", "power": "power limits (W)"}
SWEEP_FORMS = "KNOB=SPEC parts joined by ';', e.g. sm=every:4 or 'sm=every:4;power=200:700:50'"
#: where run records go without --wattbench-out (``store.default_results_dir``)
DEFAULT_OUT = "$WATTBENCH_RESULTS_DIR or ~/.local/share/wattbench/runs"


@dataclass(frozen=True)
class Options:
    """What the user asked for. ``sweep`` maps knob (sm / mem / power) to its spec; None means
    measure the GPU as it is. ``objectives`` None means the sweep session's defaults."""

    device: str | None = None
    sweep: dict[str, str] | None = None
    objectives: tuple[Objective, ...] | None = None
    out_dir: Path = field(default_factory=default_results_dir)
    observe_only: bool = False
    allow_shared: bool = False
    #: measurement method (``MeasureSettings.method``); None: the default
    measurement: str | None = None

    @property
    def given(self) -> bool:
        """True when any wattbench option was given on the command line."""
        return self != Options()

    def describe(self) -> str:
        sweep = ";".join(f"{k}={v}" for k, v in (self.sweep or {}).items()) or "none"
        return f"device={self.device or 'first real GPU'} sweep={sweep} out={self.out_dir}" + (
            " observe-only" if self.observe_only else ""
        )


def parse_sweep(values: str | Sequence[str] | None) -> dict[str, str] | None:
    """``"sm=every:4;power=200:700:50"`` (or a list of such parts) -> ``{"sm": "every:4",
    "power": "200:700:50"}``; None, ``""`` and ``"none"`` -> None (no sweep)."""
    if values is None:
        return None
    texts = [values] if isinstance(values, str) else list(values)
    parts = [p.strip() for t in texts for p in t.split(";") if p.strip()]
    if not parts or [p.lower() for p in parts] == ["none"]:
        return None
    out: dict[str, str] = {}
    for part in parts:
        knob, eq, spec = (s.strip() for s in part.partition("="))
        knob = knob.lower()
        if not eq or knob not in SWEEP_KNOBS or not spec:
            raise UsageError(
                f"bad --wattbench-sweep part {part!r}",
                f"write {SWEEP_FORMS}; knobs: {', '.join(SWEEP_KNOBS)}",
            )
        if knob in out:
            raise UsageError(
                f"--wattbench-sweep gives {knob} twice ({out[knob]!r} and {spec!r})",
                "give each knob once",
            )
        out[knob] = spec
    return out


def parse_objectives(values: Sequence[str] | None) -> tuple[Objective, ...] | None:
    """Objective names as ``wattbench sweep --objective`` takes them; None for the defaults."""
    if not values:
        return None
    return tuple(parse_objective(v) for v in values)


def from_values(
    *,
    device: str | None,
    sweep: Sequence[str] | None,
    objectives: Sequence[str] | None,
    out_dir: str | None,
    observe_only: bool,
    allow_shared: bool,
    measurement: str | None = None,
) -> Options:
    """Options from raw option values (raises UsageError for malformed ones)."""
    return Options(
        device=device.strip() if device and device.strip() else None,
        sweep=parse_sweep(sweep),
        objectives=parse_objectives(objectives),
        out_dir=Path(out_dir) if out_dir else default_results_dir(),
        observe_only=bool(observe_only),
        allow_shared=bool(allow_shared),
        measurement=measurement or None,
    )
