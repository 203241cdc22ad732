"""The paper's command line, unchanged, as a thin shim over the ppafl core.

    python main.py -nc 100 -cf 0.1 -E 5 -B 10 -mn mnist_cnn -ncomm 1000 -iid 0 -lr 0.01 -vf 20 -g 0

runs the paper's setting (a homogeneous fleet, a share of clients delayed by 1..N rounds,
the delay-compensated `ppafl` strategy, SHE-encrypted aggregation) through the same
scenario engine as `ppafl run`, with the same error handling, exit codes, resume and
manifest. Progress is in the paper's terms: rounds done of `-ncomm`, the test accuracy at
each `-vf`, the ETA. Extra flags choose the strategy, the delayed share, the data set and
where outputs go.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from fl.strategies import PRESETS
from sim.cli import EXECUTOR_NAMES, console, guarded, out_dir, run_and_report, seed

_MODEL_DATASET = {"mnist_2nn": "mnist", "mnist_cnn": "mnist", "cifar_cnn": "cifar10", "cifar_cnn3": "cifar10"}
_CHECKOUT = Path(__file__).resolve().parent
_DATA_LAYOUT = {
    "mnist": "ROOT/MNIST/raw/ holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (each plain or .gz)",
    "cifar10": "ROOT/cifar-10-batches-py/ holding data_batch_1 .. data_batch_5 and test_batch",
}
DATA_HINT = "Pass --data-root ROOT, or run on the embedded 5,000-image MNIST subset with --dataset mnist5k"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Privacy-preserving asynchronous FL (the paper's flags).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Exit status: 0 finished; 2 bad flags, missing data or a refused run; 3 finished without a single "
        "round aggregated; 130 / 143 stopped by Ctrl-C / SIGTERM (run the same command again to resume); "
        "1 an internal error.",
    )
    p.add_argument("-g", "--gpu", default="0", help="GPU id (training runs on the CPU where no GPU is present)")
    p.add_argument("-nc", "--num_of_clients", type=int, default=100, help="number of clients")
    p.add_argument("-cf", "--cfraction", type=float, default=0.1, help="fraction of clients per round")
    p.add_argument("-E", "--epoch", type=int, default=5, help="local epochs")
    p.add_argument("-B", "--batchsize", type=int, default=10, help="local batch size")
    p.add_argument("-mn", "--model_name", default="mnist_2nn", choices=sorted(_MODEL_DATASET), help="model")
    p.add_argument("-lr", "--learning_rate", type=float, default=0.01, help="learning rate")
    p.add_argument("-vf", "--val_freq", type=int, default=5, help="evaluate every this many rounds")
    p.add_argument("-sf", "--save_freq", type=int, default=20, help="accepted for compatibility (outputs go to --out)")
    p.add_argument("-ncomm", "--num_comm", type=int, default=1000, help="number of communication rounds")
    p.add_argument("-sp", "--save_path", default="./checkpoints", help="accepted for compatibility")
    p.add_argument("-iid", "--IID", type=int, default=0, choices=(0, 1), help="1 = IID, 0 = non-IID shards")
    p.add_argument("--mu", type=float, default=0.01, help="FedProx proximal term (the paper's local term)")
    p.add_argument(
        "--strategy", default="ppafl", choices=("ppafl", "fedavg", "fedasync", "fedbuff", *PRESETS),
        help="aggregation strategy, or a preset of the reference code's (see docs/reproduction.md)",
    )
    p.add_argument("--delayed", type=float, default=0.4, help="share of clients delayed by 1..--max-delay rounds")
    p.add_argument("--max-delay", type=int, default=8, help="largest injected delay in rounds")
    p.add_argument("--delay-threshold", type=int, default=6, help="ppafl: staler updates get weight 0 (presets fix theirs)")
    p.add_argument(
        "--encryption", default="modeled", choices=("off", "modeled", "real"),
        help="the paper's SHE at its parameters: modeled (its bytes and device time) or real; off = plaintext",
    )
    p.add_argument("--dataset", help="data set (default: mnist or cifar10 by model; mnist5k is embedded)")
    p.add_argument(
        "--data-root", default=None,
        help="data root in torchvision's layout (default: the first of $PPAFL_DATA_ROOT, ../shared/data beside "
        "this checkout, ./data and ~/.cache/ppafl/data that holds the data set)",
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of every random stream")
    p.add_argument("--out", type=out_dir, default="runs/paper", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--executor", default="sequential", choices=EXECUTOR_NAMES, help="how client training runs")
    p.add_argument("--no-cache", action="store_true",
                   help="keep no resume cache of trained client models (an interrupted run then starts over)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def data_roots() -> list[tuple[str, Path | None]]:
    """Where the data is looked for when --data-root is not given, in order: (how it is named, path)."""
    env = os.environ.get("PPAFL_DATA_ROOT")
    return [
        ("$PPAFL_DATA_ROOT", Path(env).expanduser() if env else None),
        ("../shared/data beside the checkout", _CHECKOUT.parent / "shared" / "data"),
        ("./data", Path.cwd() / "data"),
        ("~/.cache/ppafl/data", Path.home() / ".cache" / "ppafl" / "data"),
    ]


def find_data_root(dataset: str) -> Path:
    """The first default data root holding `dataset`; ValueError naming every place looked and the fix."""
    from fl.data import has_files

    for _, root in data_roots():
        if root is not None and has_files(dataset, root):
            return root
    looked = "; ".join(f"{what} ({root})" if root else f"{what} (not set)" for what, root in data_roots())
    raise ValueError(
        f"{dataset} not found; looked in: {looked}. Put it in {_DATA_LAYOUT[dataset]} and pass --data-root ROOT "
        "(or set PPAFL_DATA_ROOT=ROOT), or run on the embedded 5,000-image MNIST subset with --dataset mnist5k"
    )


def paper_scenario(args: argparse.Namespace) -> dict[str, Any]:
    """The scenario mapping for the paper's flags."""
    dataset = args.dataset or _MODEL_DATASET[args.model_name]
    return {
        "name": f"paper-{args.strategy}-{args.model_name}-{'iid' if args.IID else 'noniid'}",
        "seed": args.seed,
        "data": {"dataset": dataset, "root": args.data_root, "partition": "iid" if args.IID else "shards"},
        "training": {
            "model": args.model_name,
            "epochs": args.epoch,
            "batch_size": args.batchsize,
            "lr": args.learning_rate,
            "prox_mu": args.mu,
        },
        # A homogeneous, reliable fleet: delays come from the injected-staleness setting.
        "fleet": {"num_devices": args.num_of_clients, "groups": [{"device": "laptop", "link": "ethernet"}]},
        "strategy": {
            "name": args.strategy,
            "client_fraction": args.cfraction,
            "round_deadline_s": 3600.0,
            **({"delay_threshold": args.delay_threshold} if args.strategy == "ppafl" else {}),  # ppafl's own field
        },
        "injected_delay": {"fraction": args.delayed, "max_rounds": args.max_delay},
        # The paper's scheme and parameters (SHE, k0 2048, k2 160), so runs reproduce its costs. It does not
        # protect updates: the server recovers the key (`ppafl attack`); scenarios default to BFV instead.
        "encryption": {"scheme": "she", "params": "paper", "mode": args.encryption},
        "evaluation": {"interval_s": None, "every_versions": args.val_freq},
        "stop": {"max_time_s": 1e9, "max_versions": args.num_comm},
    }


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from sim.scenario import scenario_from_dict

    scenario = scenario_from_dict(paper_scenario(args), source="main.py flags")  # bad flags fail before torch loads
    if scenario.data.dataset != "mnist5k" and args.data_root is None:
        root = find_data_root(scenario.data.dataset)
        scenario = scenario.model_copy(update={"data": scenario.data.model_copy(update={"root": str(root)})})

    from sim.runner.progress import RunProgress

    progress = False if args.quiet else RunProgress.of(scenario, unit="rounds", announce_evaluations=True)
    resume = shlex.join(["python", "main.py", *(a for a in argv if a != "--overwrite")])
    return run_and_report(
        "main.py", scenario, Path(args.out), resume, executor=args.executor, progress=progress,
        overwrite=args.overwrite, command=["main.py", *argv], cache=not args.no_cache,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    console("main.py")
    return guarded("main.py", lambda: _run(args, argv), data_hint=DATA_HINT)


if __name__ == "__main__":
    sys.exit(main())
