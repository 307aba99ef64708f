"""The ``wattbench`` command: argument parsing and the one place errors become exit codes.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
A :class:`WattbenchError` prints one line (message and remedy) and exits with its code: 2 for
usage errors, 1 for runtime errors. No traceback reaches the user unless ``WATTBENCH_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from wattbench.profiler import __version__
from wattbench.profiler.cli import (
    apply,
    check,
    compare,
    devices,
    export,
    fleet,
    kernels,
    plot,
    reset,
    sim,
    sweep,
    validate,
)
from wattbench.profiler.device.nvml import shutdown_all
from wattbench.profiler.errors import WattbenchError
from wattbench.profiler.signals import Terminated
from wattbench.profiler.sim import env as sim_env
from wattbench.profiler.store.record import fleet_run_id_from_env

COMMANDS = (
    devices, kernels, check, sweep, apply, reset, export, compare, plot, sim, fleet, validate,
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: one line, exit 2
        print(f"wattbench: error: {message} -- see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wattbench",
        description="GPU kernel benchmarking and power profiling: find each kernel's "
        "energy-optimal clock / power-limit operating point through NVML.",
    )
    parser.add_argument("--version", action="version", version=f"wattbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        sim_env.check_all()  # a bad WATTBENCH_SIM_* value is a usage error before anything runs
        fleet_run_id_from_env()  # so is a bad WATTBENCH_FLEET_RUN_ID
        return int(args.run(args) or 0)
    except WattbenchError as exc:
        if os.environ.get("WATTBENCH_DEBUG"):
            raise
        print(f"wattbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wattbench: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:  # SIGTERM / SIGHUP during an actuation session (GPU restored)
        print(f"wattbench: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:  # output piped into `head` and the like
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        shutdown_all()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
