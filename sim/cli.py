"""The `ppafl` command line: run a scenario, sweep a grid, compare strategies, overlay runs, attack SHE."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "EXECUTOR_NAMES",
    "add_backend_arguments",
    "build_parser",
    "console",
    "guarded",
    "main",
    "out_dir",
    "run_and_report",
    "seed",
]

T = TypeVar("T")
EXECUTOR_NAMES = ("sequential", "batched", "process", "ray")  # fl.executors.EXECUTORS (torch-free here)
EXIT_OK, EXIT_INTERNAL, EXIT_ERROR, EXIT_NO_MODEL = 0, 1, 2, 3
RUN_HINT = ("Point data.root at the folder that holds it (--set data.root=PATH), set data.download: true to fetch "
            "it, or run on the embedded data.dataset mnist5k")


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


def _exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's code for a run stopped by SIGTERM (143) or Ctrl-C / SIGINT (130)."""
    return 128 + int(signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)


def console(prog: str) -> None:
    """Show the `ppafl` logger's messages (resuming, cache size, warnings) on stderr as `PROG: message`.

    They show with --quiet too, which only hides the progress bar.
    """
    logger = logging.getLogger("ppafl")
    for old in [h for h in logger.handlers if getattr(h, "ppafl_console", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    handler.ppafl_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run_and_report(prog: str, scenario: Any, out: Path, resume_command: str, **run_options: Any) -> int:
    """Run `scenario` into `out` for a command line: one line if interrupted, the summary and warnings after.

    Returns the exit status: 0 finished, 3 finished without making a global version (nothing
    learned), 130 / 143 interrupted by Ctrl-C / SIGTERM (resumable with `resume_command`).
    """
    from sim.runner import OUTPUT_FILES, run_scenario

    try:
        with _sigterm_as_interrupt():
            result = run_scenario(scenario, out, **run_options)
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
        print(f"{prog}: {how}; {out} keeps every finished training job and no partial output. "
              f"Resume with the same command:\n  {resume_command}", file=sys.stderr)
        return _exit_code(exc)
    s = result.summary
    manifest = result.manifest or {}
    if manifest.get("attempts", 1) > 1:
        cache = manifest.get("training_cache")
        jobs = f": {cache['jobs_reused']} training jobs reused, {cache['jobs_trained']} trained now" if (
            isinstance(cache, dict) and "jobs_reused" in cache) else ""
        print(f"resumed (attempt {manifest['attempts']}){jobs}")
    if scenario.time_only:
        acc = "n/a (time-only)"
    elif s["final_accuracy"] is None:
        acc = "none (no global version was made)"
    else:
        acc = f"{100 * s['final_accuracy']:.2f}%"
    print(
        f"{scenario.name}: {s['versions']} global versions in {s['simulated_time_s']:.0f} simulated s "
        f"({s['stop_reason']}); final accuracy {acc}; wall clock {s['wall_clock_s']:.1f} s"
        + (f"; {len(s['warnings'])} warning(s) above and in summary.json" if s.get("warnings") else "")
    )
    print(f"outputs in {out}/: " + " ".join(name for name in OUTPUT_FILES if (out / name).exists()))
    return EXIT_NO_MODEL if s["versions"] == 0 else EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from sim.scenario import load_scenario

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    scenario = load_scenario(args.scenario, overrides)  # a bad scenario fails before torch loads
    limit = None if args.memory_limit_gb is None else int(args.memory_limit_gb * 2**30)
    resume = shlex.join(["ppafl", *(a for a in args.argv if a != "--overwrite")])
    return run_and_report(
        "ppafl", scenario, Path(args.out), resume, executor=args.executor, progress=not args.quiet,
        overwrite=args.overwrite, command=["ppafl", *args.argv], memory_limit=limit, cache=not args.no_cache,
    )


def _metrics(path: Path) -> Any:
    """A run's metrics.csv, or a ValueError naming the file."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is unreadable ({exc}); is it a metrics.csv written by `ppafl run`?") from None
    if not {"time_s", "accuracy"} <= set(table.columns):
        raise ValueError(f"{path} has no time_s and accuracy columns; is it a metrics.csv written by `ppafl run`?")
    return table


def _plot(args: argparse.Namespace) -> int:
    from sim.plots import image_path, plot_accuracy, run_labels

    dirs = [Path(d) for d in args.runs]
    for d in dirs:
        if not (d / "metrics.csv").is_file():
            raise FileNotFoundError(f"{d}: no metrics.csv here; pass run directories written by `ppafl run`")
    runs = {label: _metrics(d / "metrics.csv") for d, label in zip(dirs, run_labels(dirs))}
    empty = [label for label, m in runs.items() if not m["accuracy"].notna().any()]
    if len(empty) == len(runs):
        raise ValueError("none of these runs measured accuracy (time-only runs): there is no curve to draw")
    default = args.out is None
    out = image_path(Path.cwd() / "accuracy_vs_time.png" if default else Path(args.out))
    written = plot_accuracy({k: v for k, v in runs.items() if k not in empty}, out, title=args.title)
    for label in empty:
        print(f"ppafl: {label} has no accuracy (a time-only run): left out", file=sys.stderr)
    where = " (the working directory: choose another place with --out)" if default else ""
    print(f"wrote {written}{where}")
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from sim.study_plots import plot_sweep, sensitivity_table
    from sim.sweep import plan_sweep, run_sweep

    logging.getLogger("ppafl").setLevel(logging.WARNING)  # each cell's start-up notes would drown the bar
    cells, fields = plan_sweep(args.scenario, list(args.set or []), seeds=args.seeds)
    before = sum((Path(args.out) / "cells" / c.id / "summary.json").is_file() for c in cells)
    print(f"sweep: {len(cells)} cells ({before} finished before) into {args.out}/cells/", file=sys.stderr)
    result, code = _study(args, "sweep", "cells", lambda: run_sweep(
        cells, fields, args.out, jobs=args.jobs, executor=args.executor, progress=not args.quiet,
        backend=args.backend, address=args.address,
    ))
    if result is None:
        return code
    figures = plot_sweep(result.out, result.table, fields)
    n_nodes = len(set(result.nodes.values()))
    where = f" on {n_nodes} Ray node{'s' * (n_nodes != 1)}" if args.backend == "ray" and result.nodes else ""
    print(f"ran {len(result.ran)} cells{where}, {len(result.skipped)} were finished before")
    if fields and result.table["final_accuracy"].notna().any():
        print(sensitivity_table(result.table, fields, "final_accuracy").to_string())
    print(f"outputs in {result.out}/: sweep.csv " + " ".join(p.name for p in figures))
    return 0


def _study(args: argparse.Namespace, command: str, unit: str, run: Callable[[], T]) -> tuple[T | None, int]:
    """(what `run` returned, 0), or (None, exit code) after one line: a failed cell or a missing Ray (2), or an
    interrupt (130/143), which keeps the finished `unit` and prints the command that resumes."""
    from sim.sweep import SweepCellError

    try:
        with _sigterm_as_interrupt():
            return run(), 0
    except (SweepCellError, ImportError) as exc:  # a failed cell; Ray asked for but not installed
        print(f"ppafl: error: {exc}", file=sys.stderr)
        return None, 2
    except KeyboardInterrupt as exc:
        print(f"ppafl: {command} stopped; finished {unit} are kept. Resume with the same command:\n  "
              f"{shlex.join(['ppafl', *args.argv])}", file=sys.stderr)
        return None, _exit_code(exc)


def _compare(args: argparse.Namespace) -> int:
    from sim.compare import compare, markdown, parse_strategies

    strategies = parse_strategies(list(args.strategy or []))
    print(f"compare: {len(strategies)} strategies x {args.seeds} paired seeds into {args.out}/cells/", file=sys.stderr)
    done, code = _study(args, "compare", "runs", lambda: compare(
        args.scenario, strategies, args.out, seeds=args.seeds, sets=list(args.set or []),
        baseline=args.baseline, jobs=args.jobs, executor=args.executor, progress=not args.quiet,
        backend=args.backend, address=args.address,
        last_k=args.last_k, target=args.target, at_rounds=args.at_rounds, at_time_s=args.at_time,
    ))
    if done is None:
        return code
    comp, files, result = done
    print(f"ran {len(result.ran)} runs, {len(result.skipped)} were finished before")
    print(markdown(comp))
    print(f"outputs in {args.out}/: " + " ".join(p.name for p in files))
    return 0


def _print_attack(demo, source: str) -> None:
    """What the SHE key-recovery attack saw, recovered and how long each step took."""
    import numpy as np

    view, key = demo.view, demo.key
    prm, layout = view.public.params, view.layout
    print(f"SHE key recovery, parameter set {prm.name} (k0={prm.k0}, k2={prm.k2}, r_bits={prm.r_bits}): {source}")
    print(f"server's view: N ({view.public.n.bit_length()} bits), {len(view.ciphertexts):,} ciphertexts, slot layout "
          f"{layout.slots_per_ciphertext} x {layout.slot_bits} bits, value bound {view.max_quantized:,} "
          f"(= value_bound * 2^{layout.scale_bits})")
    print(f"factor N: p recovered ({key.p.bit_length()} bits) in {key.seconds['factor N']:.2f} s by {key.method}")
    if key.L is None:
        print(f"recover L: not recovered ({key.seconds['recover L']:.2f} s): at these parameters a packed plaintext "
              "is not small next to r, which this lattice needs")
    else:
        print(f"recover L: L recovered ({key.L.bit_length()} bits) in {key.seconds['recover L']:.2f} s")
    if demo.decrypted is not None:
        values = demo.decrypted
        shown = ", ".join(f"{v:+.5f}" for v in values[:4])
        line = f"decrypt the first client's update: {values.size:,} values ({shown}, ...) in {demo.decrypt_seconds:.2f} s"
        if demo.truth is not None:
            step = 2.0 ** -layout.scale_bits
            line += f"; max |error| {np.abs(values - demo.truth).max():.2e} (fixed-point step {step:.2e})"
        print(line)
    if demo.key_correct is not None:
        verdict = ", ".join(f"{k} {'correct' if ok else 'WRONG'}" for k, ok in demo.key_correct.items())
        print(f"checked against the real key after the attack returned: {verdict}")


def _attack(args: argparse.Namespace) -> int:
    from crypto import PARAM_SETS, PublicParams
    from crypto.attacks import attack_fresh_key, attack_payloads

    params = PARAM_SETS[args.params]
    if args.payload:
        if args.modulus is None:
            raise ValueError("--payload needs --modulus FILE: the public modulus N (hex 0x... or decimal) of that key")
        text = Path(args.modulus).read_text().strip()
        try:
            n = int(text, 0)
        except ValueError:
            raise ValueError(f"{args.modulus}: not an integer (write N as 0x... hex or decimal)") from None
        demo = attack_payloads([Path(f).read_bytes() for f in args.payload], PublicParams(params, n), args.value_bound)
        _print_attack(demo, f"{len(args.payload)} saved payload(s)")
        return 0
    origin = "the CSPRNG" if args.seed is None else f"seed {args.seed}, reproducible and insecure"
    demo = attack_fresh_key(params, args.clients, args.seed, args.values)
    _print_attack(demo, f"a fresh key ({origin}); {args.clients} clients sent {args.values:,}-value updates")
    return 0 if demo.key_correct and all(demo.key_correct.values()) else 1


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low:,} to {high:,}")
        return value

    return parse


def out_dir(text: str) -> str:
    """An --out value: a non-empty path (an empty one would write into the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name the output directory")
    if "\0" in text:
        raise argparse.ArgumentTypeError("holds a NUL character")
    return text


seed = _int_in(0, 2**32 - 1)
"""A --seed value: an integer in the scenario's range (32 bits)."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--jobs, --backend and --address: where a command's cells run (`sim.backends`; args for `run_sweep`)."""
    parser.add_argument(
        "--jobs", type=_int_in(1, 4096), default=None,
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
    parser = argparse.ArgumentParser(prog="ppafl", description=__doc__, epilog=_EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate one scenario file and write its outputs", epilog=_EXIT_CODES,
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
        "--memory-limit-gb", type=_positive_float, metavar="GB",
        help="refuse scenarios estimated to need more memory (default: this machine's memory)",
    )
    run.add_argument("--no-cache", action="store_true",
                     help="keep no resume cache of trained client models (an interrupted run then starts over)")
    run.set_defaults(func=_run)

    plot = sub.add_parser("plot", help="overlay the accuracy curves of several runs")
    plot.add_argument("runs", nargs="+", help="run directories")
    plot.add_argument("--out", default=None,
                      help="image file to write (.png, .pdf, .svg; default accuracy_vs_time.png in the working directory)")
    plot.add_argument("--title", default="", help="figure title")
    plot.set_defaults(func=_plot)

    sweep = sub.add_parser("sweep", help="run a scenario over a grid of values and seeds; plot the sensitivity")
    sweep.add_argument("scenario", help="scenario YAML file (see scenarios/)")
    sweep.add_argument("--out", required=True, type=out_dir, help="sweep directory (rerun it to resume: finished cells are kept)")
    sweep.add_argument(
        "--set", action="append", metavar="KEY.PATH=V1,V2,...",
        help="sweep a field over comma-separated values, or override it with a single value",
    )
    sweep.add_argument("--seeds", type=_int_in(1, 1000), default=1, help="seeds per grid point: scenario seed + 0..N-1 (default 1)")
    add_backend_arguments(sweep)
    sweep.add_argument(
        "--executor",
        default="sequential",
        help="how client training runs in each cell: sequential, batched, ray, or process (with --jobs 1)",
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_sweep)

    attack = sub.add_parser(
        "attack", help="recover an SHE key from what the server holds: why SHE does not protect updates",
        description="Key recovery against SHE from the server's view (N, ciphertexts, slot layout) with lattice "
        "reduction (python-flint: pip install .[attack]). See docs/threat-model.md.",
    )
    attack.add_argument("--params", choices=("paper", "high_throughput"), default="paper", help="SHE parameter set")
    attack.add_argument("--clients", type=_int_in(1, 1024), default=10,
                        help="K: clients that send an update, and the aggregate size the slots are sized for")
    attack.add_argument("--seed", type=seed, help="seed of the fresh key (reproducible, insecure); default: CSPRNG")
    attack.add_argument("--values", type=_int_in(1, 1_000_000), default=2000, help="values per client update")
    attack.add_argument("--payload", action="append", metavar="FILE",
                        help="attack encrypted vectors saved with EncryptedVector.to_bytes() instead (repeat)")
    attack.add_argument("--modulus", metavar="FILE", help="with --payload: a text file holding N (0x... or decimal)")
    attack.add_argument("--value-bound", type=_positive_float, default=8.0,
                        help="with --payload: the encoder's value bound (encryption.value_bound)")
    attack.set_defaults(func=_attack)

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
    comp.add_argument("--seeds", type=_int_in(1, 1000), default=5, help="paired seeds: scenario seed + 0..N-1 (default 5)")
    comp.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a scenario field (one value)")
    comp.add_argument("--last-k", type=_int_in(1, 100_000), default=5, help="average the last K evaluations (default 5)")
    comp.add_argument("--target", type=_fraction, help="target accuracy (default: evaluation.target_accuracy)")
    comp.add_argument("--at-rounds", type=_int_in(1, 10_000_000), help="equal-rounds cut-off (default: what every run reached)")
    comp.add_argument("--at-time", type=_positive_float, metavar="S",
                      help="equal-time cut-off in simulated s (default: what every run reached)")
    add_backend_arguments(comp)
    comp.add_argument("--executor", default="sequential",
                      help="how client training runs in each run: sequential, batched, ray, or process (with --jobs 1)")
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    comp.set_defaults(func=_compare)
    return parser


_EXIT_CODES = """exit status: 0 finished; 2 bad input or a refused run (the message says why and how to fix it);
3 finished without making a global version (nothing was learned: see the warnings); 130 / 143 stopped by
Ctrl-C / SIGTERM (run the same command again to resume); 1 an internal error (please report it)."""


def guarded(prog: str, body: Callable[[], int], data_hint: str = RUN_HINT) -> int:
    """Run a command's `body` so that no traceback reaches the user.

    A known problem (bad scenario, missing data, refused resources, an unusable output
    folder, an optional package such as Ray not installed) is one line and exit 2; Ctrl-C before the run took over is exit 130; anything
    else is an internal error, one line and exit 1 (PPAFL_DEBUG=1 shows the traceback).
    `data_hint` replaces the data loader's advice with this command line's flags.
    """
    from crypto import CryptoError
    from fl.errors import DataError
    from sim.scenario import ScenarioError

    try:
        return body()
    except (ScenarioError, DataError, CryptoError, OSError, ValueError, ImportError) as exc:  # ImportError: an extra
        message = str(exc)
        if isinstance(exc, DataError):
            from fl.data import FALLBACK_HINT

            message = message.replace(FALLBACK_HINT, data_hint.rstrip(".") + ".")
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        print(f"{prog}: {'terminated' if isinstance(exc, _Terminated) else 'interrupted'}", file=sys.stderr)
        return _exit_code(exc)
    except MemoryError:
        print(f"{prog}: error: ran out of memory; run a smaller scenario (fewer devices, a smaller model, "
              "encryption.mode modeled) or on a larger machine", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:
        if os.environ.get("PPAFL_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc}. Please report it; set PPAFL_DEBUG=1 to see "
              "the traceback", file=sys.stderr)
        return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ppafl` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    console("ppafl")
    return guarded("ppafl", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
