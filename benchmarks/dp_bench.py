"""What client-level DP costs per update, against the local training job it follows.

The update: mnist_2nn (199,210 parameters). The job it is compared with: one
`fl.training.local_update` on 200 samples of the embedded mnist5k (the quickstart's
20 IID devices), E = 2, B = 10, lr 0.05, prox_mu 0.01, one torch thread (as every executor
trains). Measured, interleaved over the repeats (medians):
- device side, per job: `privatize` central (clip + grid), distributed (+ its noise share),
  distributed with adaptive clipping (+ the count coordinate);
- key holders' side, per aggregate of 6 updates: `plan_noise` + `finish_average` (central noise)
  + `PrivacyAccountant.record`;
- for scale, one real BFV encryption of the update at the quickstart's parameters ("compact").

Target (issue 25): DP adds at most 5% wall time to a quickstart run; the per-job ratio to
training alone is the strict reading of it (a run also evaluates, encrypts and simulates).
The machine may be shared: the load average is printed. The last line is one line of JSON.

Usage: python benchmarks/dp_bench.py [--repeats N] [--figure PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--figure", type=Path, default=None, help="write a bar chart of the medians here")
    args = parser.parse_args()

    import numpy as np
    import torch

    from fl.data import load_dataset
    from fl.models import build_model
    from fl.params import get_flat
    from fl.privacy import DPConfig, PrivacyAccountant, finish_average, noise_rng, plan_noise, privatize
    from fl.secure import make_codec
    from fl.training import TrainConfig, local_update

    torch.set_num_threads(1)
    data = load_dataset("mnist5k")
    x, y = data.x_train[:200], data.y_train[:200]
    base = get_flat(build_model("mnist_2nn"))
    n = base.size
    train = TrainConfig(epochs=2, batch_size=10, lr=0.05, prox_mu=0.01)
    params = local_update("mnist_2nn", base, x, y, train, 0).params
    configs = {
        "central": DPConfig(1.0, 1.0, "central"),
        "distributed": DPConfig(1.0, 1.0, "distributed", min_cohort=6),
        "distributed+adaptive": DPConfig(1.0, 1.0, "distributed", min_cohort=6, count_noise_multiplier=5.0,
                                         max_clip_norm=4.0),
    }
    central = configs["central"]
    accountant = PrivacyAccountant(20, 1e-5)
    codec, _ = make_codec("real", n, 20, params="compact", seed=0)

    def aggregate_side() -> None:
        noise = plan_noise(central, [0, 3, 5, 8, 11, 19], [255, 255, 128, 255, 64, 200], [1.0] * 6, n, [True] * 6)
        finish_average(central, params.astype(np.float64), noise, noise_rng("central", 0, 1))
        accountant.record(noise)

    tasks: dict[str, Callable[[], object]] = {
        "training job": lambda: local_update("mnist_2nn", base, x, y, train, 1),
        **{f"privatize {name}": (lambda cfg=cfg: privatize(cfg, params, base, 1.0, noise_rng("device", 1)))
           for name, cfg in configs.items()},
        "aggregate (6 updates)": aggregate_side,
        "BFV encrypt (compact)": lambda: codec.encrypt(params),
    }
    for fn in tasks.values():  # warm-up
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in tasks}
    for _ in range(args.repeats):
        for name, fn in tasks.items():
            times[name].append(_timed(fn))
    wall = {name: statistics.median(w for w, _ in t) * 1e3 for name, t in times.items()}
    cpu = {name: statistics.median(c for _, c in t) * 1e3 for name, t in times.items()}
    print(f"load average {os.getloadavg()[0]:.2f}; {args.repeats} repeats; medians in ms (share of a training job); "
          "on a shared machine CPU time is the steadier measure")
    print(f"  {'':28s} {'CPU ms':>9s} {'share':>7s} {'wall ms':>9s} {'share':>7s}")
    for name in tasks:
        print(f"  {name:28s} {cpu[name]:9.3f} {cpu[name] / cpu['training job']:7.1%} "
              f"{wall[name]:9.3f} {wall[name] / wall['training job']:7.1%}")
    if args.figure is not None:
        _figure(cpu, args.figure)
    print(json.dumps({"cpu_ms": cpu, "wall_ms": wall, "load_average": os.getloadavg()[0]}))


def _figure(median: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(median)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.barh(names, [median[k] for k in names], color=["0.5"] + ["tab:blue"] * (len(names) - 2) + ["0.75"])
    ax.bar_label(bars, [f"{median[k]:.2f} ms" for k in names], padding=3, fontsize=8)
    ax.axvline(0.05 * median["training job"], color="tab:red", ls="--", lw=1, label="5% of a training job")
    ax.set_xlim(0, 1.25 * max(median.values()))
    ax.set_xlabel("median CPU time per call [ms]")
    ax.set_title("Client-level DP per update, mnist_2nn (199,210 parameters)", fontsize=10)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
