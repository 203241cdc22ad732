"""Regenerate the README's dropout figures from a real study run: `make figures` (or this script with --jobs 2).

Runs (or resumes: finished runs are kept) the study of scenarios/dropout_study.yaml
(`sim.studies.dropout_study`): ppafl, the paper's 'FedAvg & straggler' baseline (preset
fedavg_straggler), FedAsync and FedBuff, on 5 paired seeds, under per-job dropout at
rates 0, 0.1, 0.2, 0.4, 0.6, 0.8 and permanent departure at 0, 0.3, 0.6 (rate 0 shared),
into runs/figures/dropout/. Then it copies the study's figure to
docs/figures/dropout_study.png, one run's device timeline to docs/figures/device_timeline.png,
and writes the tables (means and 95% intervals) to docs/figures/dropout_study.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd

from sim.plots.runs import plot_device_timeline
from sim.studies.compare import parse_strategies
from sim.studies.dropout_study import run_study

SCENARIO = "scenarios/dropout_study.yaml"
STRATEGIES = "ppafl,fedavg_straggler,fedasync,fedbuff"
RATES = {"job": [0.0, 0.1, 0.2, 0.4, 0.6, 0.8], "permanent": [0.0, 0.3, 0.6]}
SEEDS = 5
TIMELINE_CELL = "variant=ppafl__job0.4__seed=0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/figures/dropout", help="study directory (kept between runs)")
    parser.add_argument("--figures", default="docs/figures", help="where the README's pictures go")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: number of CPUs)")
    args = parser.parse_args(argv)

    _study, files, cells = run_study(ROOT / SCENARIO, parse_strategies([STRATEGIES]), RATES, args.out, seeds=SEEDS,
                                    jobs=args.jobs)
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files[3], figures / "dropout_study.png")
    cell = Path(args.out) / "cells" / TIMELINE_CELL  # its timeline drawn again, with today's markers
    end_s = json.loads((cell / "summary.json").read_text())["simulated_time_s"]
    plot_device_timeline(pd.read_parquet(cell / "events.parquet"), figures / "device_timeline.png", end_s=end_s)
    command = f"python scripts/make_figures.py --jobs {args.jobs}" if args.jobs else "python scripts/make_figures.py"
    text = files[2].read_text()
    note = (f"Made by `{command}` (`make figures`): {len(cells)} runs of {SCENARIO}, strategies {STRATEGIES}, "
            f"per-job dropout rates {RATES['job']}, permanent departure rates {RATES['permanent']}, {SEEDS} seeds.\n\n")
    (figures / "dropout_study.md").write_text(text.replace("\n\n", "\n\n" + note, 1))
    print(text)
    print(f"figures in {figures}/: dropout_study.png, dropout_study.md, device_timeline.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
