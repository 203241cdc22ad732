"""The `ppafl` command line: run a scenario, sweep a grid, compare strategies, overlay runs, attack SHE.

`sim.cli.parser` builds the arguments, `sim.cli.commands` runs each command, and
`sim.cli.common` holds what every command line shares (main.py uses it too).
"""

from __future__ import annotations

import sys

from sim.cli.commands import run_and_report
from sim.cli.common import EXECUTOR_NAMES, console, guarded, out_dir, seed
from sim.cli.parser import add_backend_arguments, build_parser

__all__ = [
    "EXECUTOR_NAMES", "add_backend_arguments", "build_parser", "console", "guarded", "main", "out_dir",
    "run_and_report", "seed",
]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ppafl` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    console("ppafl")
    return guarded("ppafl", lambda: args.func(args))
