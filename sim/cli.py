"""The `ppafl` command line: run a scenario, overlay runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _run(args: argparse.Namespace) -> int:
    from sim.runner import run_scenario
    from sim.scenario import load_scenario

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    scenario = load_scenario(args.scenario, overrides)
    out = Path(args.out)
    if (out / "summary.json").exists() and not args.overwrite:
        raise FileExistsError(f"{out} already holds a finished run; pass --overwrite or choose another --out")
    result = run_scenario(scenario, out, executor=args.executor, progress=not args.quiet)
    s = result.summary
    acc = "n/a (time-only)" if s["final_accuracy"] is None else f"{100 * s['final_accuracy']:.2f}%"
    print(
        f"{scenario.name}: {s['versions']} global versions in {s['simulated_time_s']:.0f} simulated s "
        f"({s['stop_reason']}); final accuracy {acc}; wall clock {s['wall_clock_s']:.1f} s"
    )
    print(f"outputs in {out}/: metrics.csv events.csv devices.csv summary.json accuracy_vs_time.png device_timeline.png")
    return 0


def _plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from sim.plots import plot_accuracy

    runs = {}
    for d in map(Path, args.runs):
        metrics, summary = d / "metrics.csv", d / "summary.json"
        if not metrics.is_file():
            raise FileNotFoundError(f"{d}: no metrics.csv here; pass run directories written by `ppafl run`")
        label = json.loads(summary.read_text())["scenario"]["name"] if summary.is_file() else d.name
        runs[f"{label} ({d.name})" if label in runs else label] = pd.read_csv(metrics)
    out = plot_accuracy(runs, args.out, title=args.title)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppafl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate one scenario file and write its outputs")
    run.add_argument("scenario", help="scenario YAML file (see scenarios/)")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a scenario field")
    run.add_argument("--executor", default="sequential", help="how client training runs (default: sequential)")
    run.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    plot = sub.add_parser("plot", help="overlay the accuracy curves of several runs")
    plot.add_argument("runs", nargs="+", help="run directories")
    plot.add_argument("--out", default="accuracy_vs_time.png", help="image file to write")
    plot.add_argument("--title", default="", help="figure title")
    plot.set_defaults(func=_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ppafl` console script."""
    from crypto import CryptoError
    from fl.data import DataError
    from sim.scenario import ScenarioError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ScenarioError, DataError, CryptoError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"ppafl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppafl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
