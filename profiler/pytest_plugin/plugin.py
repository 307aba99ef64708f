"""The wattbench pytest plugin (entry point ``pytest11``: ``wattbench``): options, markers, the
``wattbench`` fixture and pytest-benchmark hooks.

Inert unless used: without a wattbench option and without a test that uses the fixture, it adds
its options and the ``quick`` / ``full`` markers and does nothing else (no GPU is opened). Options
are checked when pytest starts (a malformed one is a usage error); the GPU is opened by the first
case that needs it and released, its settings restored, when pytest ends.
"""

from __future__ import annotations

import pytest

from wattbench.profiler.errors import WattbenchError
from wattbench.profiler.measure.measure import METHODS
from wattbench.profiler.pytest_plugin import bench_json, options
from wattbench.profiler.pytest_plugin.state import PluginState

STATE = pytest.StashKey[PluginState]()

MARKERS = (
    "quick: wattbench suite case in the quick subset (pytest suites/ -m quick)",
    "full: wattbench suite case in the full set (every case of a suite)",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("wattbench", "wattbench GPU kernel energy benchmarks")
    g.addoption(
        "--wattbench-device",
        metavar="DEV",
        help="GPU to measure: 0, GPU-<uuid>, sim:h100-sxm, sim:path/to/spec.toml "
        "(default: the first real GPU)",
    )
    g.addoption(
        "--wattbench-sweep",
        action="append",
        metavar="SPEC",
        help="operating points to sweep, KNOB=SPEC joined by ';': sm=every:4, power=200:700:50, "
        "'sm=every:4;power=200:700:50' (knobs sm, mem, power; specs as `wattbench sweep` takes "
        "them). Default: none, measure the GPU as it is, changing nothing",
    )
    g.addoption(
        "--wattbench-objective",
        action="append",
        metavar="OBJ",
        help="energy | edp | ed2p | zeus:<eta> | slowdown:<s> (repeatable; default: energy, "
        "edp, slowdown:0.05)",
    )
    g.addoption(
        "--wattbench-out",
        metavar="DIR",
        help=f"folder for every case's run record (default: {options.DEFAULT_OUT})",
    )
    g.addoption(
        "--wattbench-observe-only",
        action="store_true",
        default=False,
        help="change no GPU setting: measure each case at the GPU's current state "
        "(WATTBENCH_NO_ACTUATE=1 does the same)",
    )
    g.addoption(
        "--wattbench-measurement",
        choices=METHODS,
        help="fast: short asynchronous windows, each point carried to its steady temperature "
        "by the sweep's thermal model (default); steady: warm each point up until its power is "
        "steady (the old method, for comparison)",
    )
    g.addoption(
        "--wattbench-allow-shared",
        action="store_true",
        default=False,
        help="measure even while other processes use the GPU",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    try:
        opts = options.from_values(
            device=config.getoption("wattbench_device"),
            sweep=config.getoption("wattbench_sweep"),
            objectives=config.getoption("wattbench_objective"),
            out_dir=config.getoption("wattbench_out"),
            observe_only=config.getoption("wattbench_observe_only"),
            allow_shared=config.getoption("wattbench_allow_shared"),
            measurement=config.getoption("wattbench_measurement"),
        )
    except WattbenchError as exc:
        raise pytest.UsageError(f"wattbench: {exc}") from None
    config.stash[STATE] = PluginState(opts)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.close()


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE, None)
    if state is None or not state.options.given:
        return None
    return f"wattbench: {state.options.describe()}"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.run_records:
        return
    tr = terminalreporter
    folders = sorted({str(p.parent) for p in state.run_records})
    tr.write_sep("-", "wattbench")
    tr.write_line(f"{len(state.run_records)} run record(s) in {', '.join(folders)}")
    if state.simulated_cases:
        tr.write_line(
            "SIMULATED GPU: no kernel was executed; times and energies are model outputs, "
            "not measurements"
        )


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        bench_json.machine_info_update(machine_info, state.machine_info())


@pytest.fixture
def wattbench(request: pytest.FixtureRequest, benchmark):
    """``wattbench(problem)`` or ``wattbench(family, impl, shape, dtype)``: check, time and
    measure one problem on the selected GPU; returns a ``CaseResult``. Once per test."""
    from wattbench.profiler.pytest_plugin.fixture import WattbenchFixture

    return WattbenchFixture(request.config.stash[STATE], benchmark)
