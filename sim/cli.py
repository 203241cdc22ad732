"""The `ppafl` command line: run a scenario, sweep a grid of scenarios, compare strategies, overlay runs."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["build_parser", "main"]


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def _raise(_signum: int, _frame: object) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _resume_command(argv: list[str]) -> str:
    """The command that resumes this run: the same one, without --overwrite (which would start over)."""
    return shlex.join(["ppafl", *(a for a in argv if a != "--overwrite")])


def _exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's code for a run stopped by SIGTERM (143) or Ctrl-C / SIGINT (130)."""
    return 128 + int(signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)


def _run(args: argparse.Namespace) -> int:
    from sim.scenario import load_scenario

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    scenario = load_scenario(args.scenario, overrides)  # a bad scenario fails before torch loads

    from sim.runner import OUTPUT_FILES, run_scenario

    out = Path(args.out)
    limit = None if args.memory_limit_gb is None else int(args.memory_limit_gb * 2**30)
    try:
        with _sigterm_as_interrupt():
            result = run_scenario(
                scenario, out, executor=args.executor, progress=not args.quiet,
                overwrite=args.overwrite, command=["ppafl", *args.argv], memory_limit=limit,
            )
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
        print(
            f"ppafl: {how}; {out} keeps every finished training job and no partial output. "
            f"Resume with the same command:\n  {_resume_command(args.argv)}",
            file=sys.stderr,
        )
        return _exit_code(exc)
    s = result.summary
    manifest = result.manifest or {}
    if manifest.get("attempts", 1) > 1:
        cache = manifest.get("training_cache")
        jobs = f": {cache['jobs_reused']} training jobs reused, {cache['jobs_trained']} trained now" if cache else ""
        print(f"resumed (attempt {manifest['attempts']}){jobs}")
    acc = "n/a (time-only)" if s["final_accuracy"] is None else f"{100 * s['final_accuracy']:.2f}%"
    print(
        f"{scenario.name}: {s['versions']} global versions in {s['simulated_time_s']:.0f} simulated s "
        f"({s['stop_reason']}); final accuracy {acc}; wall clock {s['wall_clock_s']:.1f} s"
    )
    print(f"outputs in {out}/: " + " ".join(name for name in OUTPUT_FILES if (out / name).exists()))
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


def _sweep(args: argparse.Namespace) -> int:
    from sim.study_plots import plot_sweep, sensitivity_table
    from sim.sweep import SweepCellError, plan_sweep, run_sweep

    cells, fields = plan_sweep(args.scenario, list(args.set or []), seeds=args.seeds)
    before = sum((Path(args.out) / "cells" / c.id / "summary.json").is_file() for c in cells)
    print(f"sweep: {len(cells)} cells ({before} finished before) into {args.out}/cells/", file=sys.stderr)
    try:
        with _sigterm_as_interrupt():
            result = run_sweep(cells, fields, args.out, jobs=args.jobs, executor=args.executor, progress=not args.quiet)
    except SweepCellError as exc:
        print(f"ppafl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"ppafl: sweep stopped; finished cells are kept. Resume with the same command:\n  "
              f"{_resume_command(args.argv)}", file=sys.stderr)
        return _exit_code(exc)
    figures = plot_sweep(result.out, result.table, fields)
    print(f"ran {len(result.ran)} cells, {len(result.skipped)} were finished before")
    if fields and result.table["final_accuracy"].notna().any():
        print(sensitivity_table(result.table, fields, "final_accuracy").to_string())
    print(f"outputs in {result.out}/: sweep.csv " + " ".join(p.name for p in figures))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from sim.compare import compare, markdown, parse_strategies
    from sim.sweep import SweepCellError

    strategies = parse_strategies(list(args.strategy or []))
    print(f"compare: {len(strategies)} strategies x {args.seeds} paired seeds into {args.out}/cells/", file=sys.stderr)
    try:
        with _sigterm_as_interrupt():
            comp, files, result = compare(
                args.scenario, strategies, args.out, seeds=args.seeds, sets=list(args.set or []),
                baseline=args.baseline, jobs=args.jobs, executor=args.executor, progress=not args.quiet,
                last_k=args.last_k, target=args.target, at_rounds=args.at_rounds, at_time_s=args.at_time,
            )
    except SweepCellError as exc:
        print(f"ppafl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"ppafl: compare stopped; finished runs are kept. Resume with the same command:\n  "
              f"{_resume_command(args.argv)}", file=sys.stderr)
        return _exit_code(exc)
    print(f"ran {len(result.ran)} runs, {len(result.skipped)} were finished before")
    print(markdown(comp))
    print(f"outputs in {args.out}/: " + " ".join(p.name for p in files))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppafl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate one scenario file and write its outputs")
    run.add_argument("scenario", help="scenario YAML file (see scenarios/)")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a scenario field")
    run.add_argument(
        "--executor", default="sequential", help="how client training runs: sequential (default), batched, process, ray"
    )
    run.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--memory-limit-gb", type=_positive_float, metavar="GB",
        help="refuse scenarios estimated to need more memory (default: this machine's memory)",
    )
    run.set_defaults(func=_run)

    plot = sub.add_parser("plot", help="overlay the accuracy curves of several runs")
    plot.add_argument("runs", nargs="+", help="run directories")
    plot.add_argument("--out", default="accuracy_vs_time.png", help="image file to write")
    plot.add_argument("--title", default="", help="figure title")
    plot.set_defaults(func=_plot)

    sweep = sub.add_parser("sweep", help="run a scenario over a grid of values and seeds; plot the sensitivity")
    sweep.add_argument("scenario", help="scenario YAML file (see scenarios/)")
    sweep.add_argument("--out", required=True, help="sweep directory (rerun it to resume: finished cells are kept)")
    sweep.add_argument(
        "--set", action="append", metavar="KEY.PATH=V1,V2,...",
        help="sweep a field over comma-separated values, or override it with a single value",
    )
    sweep.add_argument("--seeds", type=int, default=1, help="seeds per grid point: scenario seed + 0..N-1 (default 1)")
    sweep.add_argument("--jobs", type=int, default=None, help="worker processes (default: number of CPUs)")
    sweep.add_argument(
        "--executor",
        default="sequential",
        help="how client training runs in each cell: sequential, batched, ray, or process (with --jobs 1)",
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_sweep)

    comp = sub.add_parser(
        "compare", help="strategies x paired seeds: accuracy at equal rounds and equal time, with 95%% intervals"
    )
    comp.add_argument("scenario", help="scenario YAML file (see scenarios/)")
    comp.add_argument("--out", required=True, help="comparison directory (rerun it to resume: finished runs are kept)")
    comp.add_argument(
        "--strategy", action="append", required=True, metavar="NAME|{LABEL: {name: ..., FIELD: VALUE}}",
        help="compared strategies, comma-separated or repeated: names or presets, or labelled settings",
    )
    comp.add_argument("--baseline", help="the strategy the paired differences are taken to (default: the first)")
    comp.add_argument("--seeds", type=_positive_int, default=5, help="paired seeds: scenario seed + 0..N-1 (default 5)")
    comp.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a scenario field (one value)")
    comp.add_argument("--last-k", type=_positive_int, default=5, help="average the last K evaluations (default 5)")
    comp.add_argument("--target", type=_fraction, help="target accuracy (default: evaluation.target_accuracy)")
    comp.add_argument("--at-rounds", type=_positive_int, help="equal-rounds cut-off (default: what every run reached)")
    comp.add_argument("--at-time", type=_positive_float, metavar="S",
                      help="equal-time cut-off in simulated s (default: what every run reached)")
    comp.add_argument("--jobs", type=int, default=None, help="worker processes (default: number of CPUs)")
    comp.add_argument("--executor", default="sequential",
                      help="how client training runs in each run: sequential, batched, ray, or process (with --jobs 1)")
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    comp.set_defaults(func=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ppafl` console script."""
    from crypto import CryptoError
    from fl.errors import DataError
    from sim.scenario import ScenarioError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ScenarioError, DataError, CryptoError, OSError, ValueError) as exc:
        print(f"ppafl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppafl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
