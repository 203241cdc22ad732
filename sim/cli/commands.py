"""The `ppafl` commands: run a scenario, sweep a grid, compare strategies, overlay runs, attack SHE."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sim.cli.common import EXIT_NO_MODEL, EXIT_OK, Terminated, exit_code, sigterm_as_interrupt

__all__ = ["attack", "compare", "plot", "run", "run_and_report", "sweep"]

T = TypeVar("T")


def run_and_report(prog: str, scenario: Any, out: Path, resume_command: str, **run_options: Any) -> int:
    """Run `scenario` into `out` for a command line: one line if interrupted, the summary and warnings after.

    Returns the exit status: 0 finished, 3 finished without making a global version (nothing
    learned), 130 / 143 interrupted by Ctrl-C / SIGTERM (resumable with `resume_command`).
    """
    from sim.runner.run import OUTPUT_FILES, run_scenario

    try:
        with sigterm_as_interrupt():
            result = run_scenario(scenario, out, **run_options)
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{prog}: {how}; {out} keeps every finished training job and no partial output. "
              f"Resume with the same command:\n  {resume_command}", file=sys.stderr)
        return exit_code(exc)
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


def run(args: argparse.Namespace) -> int:
    """`ppafl run`: one scenario into --out."""
    from sim.scenario import load_scenario

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    scenario = load_scenario(args.scenario, overrides, plugins=args.plugin or [])  # fails before torch loads
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


def plot(args: argparse.Namespace) -> int:
    """`ppafl plot`: overlay the accuracy curves of run directories."""
    from sim.cli.labels import run_labels
    from sim.plots.runs import image_path, plot_accuracy

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


def sweep(args: argparse.Namespace) -> int:
    """`ppafl sweep`: a grid of values and seeds, in parallel, resumably."""
    from sim.plots.studies import sensitivity_table
    from sim.plugins import load_plugins
    from sim.studies.sweep import plan_sweep, run_sweep, sweep_figures

    logging.getLogger("ppafl").setLevel(logging.WARNING)  # each cell's start-up notes would drown the bar
    load_plugins(args.plugin or [])
    cells, fields = plan_sweep(args.scenario, list(args.set or []), seeds=args.seeds)
    before = sum((Path(args.out) / "cells" / c.id / "summary.json").is_file() for c in cells)
    print(f"sweep: {len(cells)} cells ({before} finished before) into {args.out}/cells/", file=sys.stderr)
    result, code = _study(args, "sweep", "cells", lambda: run_sweep(
        cells, fields, args.out, jobs=args.jobs, executor=args.executor, progress=not args.quiet,
        backend=args.backend, address=args.address,
    ))
    if result is None:
        return code
    figures = sweep_figures(result.out, result.table, fields)
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
    from sim.studies.sweep import SweepCellError

    try:
        with sigterm_as_interrupt():
            return run(), 0
    except (SweepCellError, ImportError) as exc:  # a failed cell; Ray asked for but not installed
        print(f"ppafl: error: {exc}", file=sys.stderr)
        return None, 2
    except KeyboardInterrupt as exc:
        print(f"ppafl: {command} stopped; finished {unit} are kept. Resume with the same command:\n  "
              f"{shlex.join(['ppafl', *args.argv])}", file=sys.stderr)
        return None, exit_code(exc)


def compare(args: argparse.Namespace) -> int:
    """`ppafl compare`: strategies on paired seeds, with intervals."""
    from sim.plugins import load_plugins
    from sim.studies.compare import compare, markdown, parse_strategies

    load_plugins(args.plugin or [])
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


def attack(args: argparse.Namespace) -> int:
    """`ppafl attack`: recover an SHE key from the server's view."""
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


