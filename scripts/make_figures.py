"""Regenerate the README's figures from a real dropout sweep: `make figures`.

Runs (or resumes: finished cells are kept) the sweep of scenarios/dropout_study.yaml over
dropout rates 0, 0.2, 0.4, 0.6 and the four strategies, two seeds each, into
runs/figures/dropout/, then copies its figures into docs/figures/ and writes the
sensitivity figure's numbers to docs/figures/dropout_sensitivity.md.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.study_plots import plot_sweep, sensitivity_table
from sim.sweep import plan_sweep, run_sweep

SCENARIO = "scenarios/dropout_study.yaml"
SETS = ["failures.dropout_rate=0,0.2,0.4,0.6", "strategy.name=ppafl,fedasync,fedbuff,fedavg"]
SEEDS = 2
TIMELINE_CELL = "dropout_rate=0.4__name=ppafl__seed=0"
FIGURES = {
    "sensitivity.png": "dropout_sensitivity.png",
    "accuracy_bands.png": "dropout_accuracy_bands.png",
    "energy_by_class.png": "dropout_energy_by_class.png",
}


def _markdown(table, title: str) -> str:
    head = "| " + " | ".join([table.index.name or "", *map(str, table.columns)]) + " |"
    rule = "|" + " --- |" * (len(table.columns) + 1)
    rows = ["| " + " | ".join([str(i), *map(str, r)]) + " |" for i, r in zip(table.index, table.values)]
    return "\n".join([f"**{title}**", "", head, rule, *rows, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/figures/dropout", help="sweep directory (kept between runs)")
    parser.add_argument("--figures", default="docs/figures", help="where the README's pictures go")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: number of CPUs)")
    args = parser.parse_args(argv)

    cells, fields = plan_sweep(ROOT / SCENARIO, SETS, seeds=SEEDS)
    result = run_sweep(cells, fields, args.out, jobs=args.jobs)
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    for made in plot_sweep(result.out, result.table, fields):
        shutil.copyfile(made, figures / FIGURES[made.name])
    shutil.copyfile(result.out / "cells" / TIMELINE_CELL / "device_timeline.png", figures / "device_timeline.png")
    command = shlex.join(["ppafl", "sweep", SCENARIO, *(a for s in SETS for a in ("--set", s)), "--seeds", str(SEEDS),
                          "--out", args.out])
    notes = [
        "# Dropout sensitivity: the numbers behind dropout_sensitivity.png",
        "",
        f"Made by `make figures` (equivalently `{command}`); mean ± std over {SEEDS} seeds;",
        "`(k/n)`: only k of n seeds reached the target.",
        "",
        _markdown(sensitivity_table(result.table, fields, "final_accuracy"), "Final test accuracy (%)"),
        _markdown(sensitivity_table(result.table, fields, "time_to_target_s"),
                  f"Time to {100 * result.table['target_accuracy'].iloc[0]:g}% accuracy (simulated s)"),
        _markdown(sensitivity_table(result.table, fields, "updates_lost"), "Updates lost (count)"),
    ]
    (figures / "dropout_sensitivity.md").write_text("\n".join(notes))
    print("\n".join(notes))
    print(f"figures in {figures}/: {', '.join(sorted(FIGURES.values()))}, device_timeline.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
