"""The `ppafl` command line's arguments: run, plot, sweep, compare, attack."""

from __future__ import annotations

import argparse

from sim.cli import commands
from sim.cli.common import EXECUTOR_NAMES, EXIT_CODES, fraction, int_in, out_dir, positive_float, seed

__all__ = ["add_backend_arguments", "add_plugin_argument", "build_parser"]


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """--plugin: a user's plugin file or module, loaded before the scenario is read (repeatable)."""
    parser.add_argument(
        "--plugin", action="append", metavar="FILE_OR_MODULE",
        help="load a plugin (a .py file or a module) that registers strategies, models, data sets, ... before the "
        "scenario is read; repeat for several (docs/extending.md)",
    )


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--jobs, --backend and --address: where a command's cells run (`sim.studies.backends`; args for `run_sweep`)."""
    parser.add_argument(
        "--jobs", type=int_in(1, 4096), default=None,
        help="local: worker processes (default: number of CPUs); ray: most cells at once (default: no limit)",
    )
    parser.add_argument(
        "--backend", choices=["local", "ray"], default="local",
        help="where cells run: local worker processes (default) or Ray tasks on a cluster (--out on shared storage)",
    )
    parser.add_argument(
        "--address", default=None, metavar="ADDR",
        help="with --backend ray: the cluster (HOST:PORT, auto, ray://...); default RAY_ADDRESS, else a Ray started here",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppafl", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate one scenario file and write its outputs", epilog=EXIT_CODES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("scenario", help="scenario YAML file (see scenarios/)")
    run.add_argument("--out", required=True, type=out_dir, help="output directory")
    run.add_argument("--seed", type=seed, help="override the scenario's seed")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a scenario field")
    run.add_argument(
        "--executor", default="sequential", choices=EXECUTOR_NAMES,
        help="how client training runs: sequential (default), batched, process, ray",
    )
    run.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--memory-limit-gb", type=positive_float, metavar="GB",
        help="refuse scenarios estimated to need more memory (default: this machine's memory)",
    )
    run.add_argument("--no-cache", action="store_true",
                     help="keep no resume cache of trained client models (an interrupted run then starts over)")
    add_plugin_argument(run)
    run.set_defaults(func=commands.run)

    plot = sub.add_parser("plot", help="overlay the accuracy curves of several runs")
    plot.add_argument("runs", nargs="+", help="run directories")
    plot.add_argument("--out", default=None,
                      help="image file to write (.png, .pdf, .svg; default accuracy_vs_time.png in the working directory)")
    plot.add_argument("--title", default="", help="figure title")
    plot.set_defaults(func=commands.plot)

    sweep = sub.add_parser("sweep", help="run a scenario over a grid of values and seeds; plot the sensitivity")
    sweep.add_argument("scenario", help="scenario YAML file (see scenarios/)")
    sweep.add_argument("--out", required=True, type=out_dir, help="sweep directory (rerun it to resume: finished cells are kept)")
    sweep.add_argument(
        "--set", action="append", metavar="KEY.PATH=V1,V2,...",
        help="sweep a field over comma-separated values, or override it with a single value",
    )
    sweep.add_argument("--seeds", type=int_in(1, 1000), default=1, help="seeds per grid point: scenario seed + 0..N-1 (default 1)")
    add_backend_arguments(sweep)
    sweep.add_argument(
        "--executor",
        default="sequential",
        help="how client training runs in each cell: sequential, batched, ray, or process (with --jobs 1)",
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    add_plugin_argument(sweep)
    sweep.set_defaults(func=commands.sweep)

    attack = sub.add_parser(
        "attack", help="recover an SHE key from what the server holds: why SHE does not protect updates",
        description="Key recovery against SHE from the server's view (N, ciphertexts, slot layout) with lattice "
        "reduction (python-flint: pip install .[attack]). See docs/threat-model.md.",
    )
    attack.add_argument("--params", choices=("paper", "high_throughput"), default="paper", help="SHE parameter set")
    attack.add_argument("--clients", type=int_in(1, 1024), default=10,
                        help="K: clients that send an update, and the aggregate size the slots are sized for")
    attack.add_argument("--seed", type=seed, help="seed of the fresh key (reproducible, insecure); default: CSPRNG")
    attack.add_argument("--values", type=int_in(1, 1_000_000), default=2000, help="values per client update")
    attack.add_argument("--payload", action="append", metavar="FILE",
                        help="attack encrypted vectors saved with EncryptedVector.to_bytes() instead (repeat)")
    attack.add_argument("--modulus", metavar="FILE", help="with --payload: a text file holding N (0x... or decimal)")
    attack.add_argument("--value-bound", type=positive_float, default=8.0,
                        help="with --payload: the encoder's value bound (encryption.value_bound)")
    attack.set_defaults(func=commands.attack)

    comp = sub.add_parser(
        "compare", help="strategies x paired seeds: accuracy at equal rounds and equal time, with 95%% intervals"
    )
    comp.add_argument("scenario", help="scenario YAML file (see scenarios/)")
    comp.add_argument("--out", required=True, type=out_dir, help="comparison directory (rerun it to resume: finished runs are kept)")
    comp.add_argument(
        "--strategy", action="append", required=True, metavar="NAME|{LABEL: {name: ..., FIELD: VALUE}}",
        help="compared strategies, comma-separated or repeated: names or presets, or labelled settings",
    )
    comp.add_argument("--baseline", help="the strategy the paired differences are taken to (default: the first)")
    comp.add_argument("--seeds", type=int_in(1, 1000), default=5, help="paired seeds: scenario seed + 0..N-1 (default 5)")
    comp.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a scenario field (one value)")
    comp.add_argument("--last-k", type=int_in(1, 100_000), default=5, help="average the last K evaluations (default 5)")
    comp.add_argument("--target", type=fraction, help="target accuracy (default: evaluation.target_accuracy)")
    comp.add_argument("--at-rounds", type=int_in(1, 10_000_000), help="equal-rounds cut-off (default: what every run reached)")
    comp.add_argument("--at-time", type=positive_float, metavar="S",
                      help="equal-time cut-off in simulated s (default: what every run reached)")
    add_backend_arguments(comp)
    comp.add_argument("--executor", default="sequential",
                      help="how client training runs in each run: sequential, batched, ray, or process (with --jobs 1)")
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    add_plugin_argument(comp)
    comp.set_defaults(func=commands.compare)
    return parser


