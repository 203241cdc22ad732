"""The paper's command line, unchanged, as a thin shim over the ppafl core.

    python main.py -nc 100 -cf 0.1 -E 5 -B 10 -mn mnist_cnn -ncomm 1000 -iid 0 -lr 0.01 -vf 20 -g 0

runs the paper's setting (a homogeneous fleet, a share of clients delayed by 1..N rounds,
the delay-compensated `ppafl` strategy, SHE-encrypted aggregation) through the same
scenario engine as `ppafl run`. Extra flags choose the strategy, the delayed share,
the data set and where outputs go.
"""

from __future__ import annotations

import argparse
import sys

from sim.runner import run_scenario
from sim.scenario import PRESETS, ScenarioError, scenario_from_dict

_MODEL_DATASET = {"mnist_2nn": "mnist", "mnist_cnn": "mnist", "cifar_cnn": "cifar10", "cifar_cnn3": "cifar10"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Privacy-preserving asynchronous FL (the paper's flags).")
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
    p.add_argument("--encryption", default="modeled", choices=("off", "modeled", "real"))
    p.add_argument("--dataset", help="data set (default: mnist or cifar10 by model; mnist5k is embedded)")
    p.add_argument("--data-root", default=None, help="data root in torchvision's layout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/paper", help="output directory")
    return p


def paper_scenario(args: argparse.Namespace) -> dict:
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
        "encryption": {"mode": args.encryption},
        "evaluation": {"interval_s": None, "every_versions": args.val_freq},
        "stop": {"max_time_s": 1e9, "max_versions": args.num_comm},
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scenario = scenario_from_dict(paper_scenario(args), source="main.py flags")
    except ScenarioError as exc:
        print(f"main.py: error: {exc}", file=sys.stderr)
        return 2
    result = run_scenario(scenario, args.out, progress=True)
    s = result.summary
    print(f"{scenario.name}: {s['versions']} rounds, final accuracy {100 * (s['final_accuracy'] or 0):.2f}%; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
