"""The learning side of a run: data, partition, model, codec, executor and global models.

In time-only mode no data is loaded and no gradient work is done: the model is built
only for its size and cost, every client holds an equal share of the data set's
nominal size, and payloads are synthetic updates of the model's true byte size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fl.data import load_dataset
from fl.executors import TRAIN_THREADS, make_executor, prepare, torch_threads
from fl.global_model import GlobalModels
from fl.jobs import ClientWorkload, Executor
from fl.models import build_model, flops_per_sample
from fl.params import get_flat
from fl.partition import partition
from fl.result_cache import ResultCache
from fl.secure import CRYPTO_COST, choose_params, make_codec
from fl.strategies import make_strategy
from fl.training import TrainConfig, evaluate
from sim.scenario import Scenario

__all__ = ["INPUT_SHAPES", "NOMINAL_TRAIN_SIZE", "Workload", "build_workload", "clients_per_round", "max_contributions"]

NOMINAL_TRAIN_SIZE = {"mnist5k": 4000, "mnist": 60000, "cifar10": 50000}
INPUT_SHAPES = {"mnist5k": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@dataclass
class Workload:
    """Sizes, costs and the learning machinery the engine needs."""

    num_params: int
    flops_per_sample: float
    epochs: int  # local epochs per job
    samples: np.ndarray
    encrypted: bool
    crypto_params: dict[str, int]  # paper-encryption-equivalent parameter counts per operation
    download_nbytes: int
    upload_nbytes: int
    aggregator: Any  # the server's public aggregator (None in time-only runs built in code)
    models: GlobalModels | None
    executor: Executor | None
    evaluate: Callable[[np.ndarray], tuple[float, float]]
    encryption_params: str | None = None  # the parameter set the run encrypts with (None: encryption off)

    def num_samples(self, client: int) -> int:
        return int(self.samples[client])


def clients_per_round(scenario: Scenario, num_clients: int) -> int:
    """Devices invited per round: the strategy's client fraction of the fleet, at least one."""
    return max(1, round(scenario.strategy.client_fraction * num_clients))


def max_contributions(scenario: Scenario, num_clients: int) -> int:
    """The most updates one aggregate can hold: what the encrypted slots are sized for."""
    return make_strategy(scenario.strategy).max_contributions(num_clients, clients_per_round(scenario, num_clients))


def encryption_params(scenario: Scenario, num_params: int, num_clients: int) -> str:
    """The parameter set a run encrypts with: `encryption.params`, or the cheapest default set of
    its scheme that holds the run's largest aggregate (`fl.secure.choose_params`)."""
    enc = scenario.encryption
    return choose_params(
        enc.scheme, enc.params, num_params, max_contributions(scenario, num_clients), enc.weight_bits, enc.scale_bits,
        enc.value_bound,
    )


def build_workload(
    scenario: Scenario,
    num_clients: int,
    init_seed: int,
    executor: str = "sequential",
    cache: ResultCache | None = None,
) -> Workload:
    """Build the learning side of `scenario` for `num_clients` devices; `cache` keeps finished training jobs."""
    data_cfg, enc = scenario.data, scenario.encryption
    model = build_model(scenario.training.model, seed=init_seed)
    initial = get_flat(model)
    num_params = int(initial.size)
    flops = float(flops_per_sample(model, INPUT_SHAPES[data_cfg.dataset]))
    max_clients = max_contributions(scenario, num_clients)
    mode = "modeled" if scenario.time_only and enc.mode == "real" else enc.mode
    params = encryption_params(scenario, num_params, num_clients) if enc.mode != "off" else None
    codec, aggregator = make_codec(
        mode,
        num_values=num_params,
        max_clients=max_clients,
        params=params or "",
        weight_bits=enc.weight_bits,
        scale_bits=enc.scale_bits,
        value_bound=enc.value_bound,
        workers=enc.workers,
    )
    nbytes = codec.payload_nbytes(num_params)
    encrypted = enc.mode != "off"
    common: dict[str, Any] = {
        "num_params": num_params,
        "flops_per_sample": flops,
        "epochs": scenario.training.epochs,
        "encrypted": encrypted,
        "encryption_params": params,
        "crypto_params": {
            op: round(num_params * CRYPTO_COST[(params, op)]) if params else 0 for op in ("encrypt", "decrypt")
        },
        "download_nbytes": nbytes,
        "upload_nbytes": nbytes,
        "aggregator": aggregator,
    }
    if scenario.time_only:
        size = NOMINAL_TRAIN_SIZE[data_cfg.dataset]
        samples = np.full(num_clients, max(1, size // num_clients), dtype=np.int64)
        return Workload(samples=samples, models=None, executor=None, evaluate=lambda _p: (np.nan, np.nan), **common)

    prepare(executor)  # e.g. process workers start while the data loads
    ds = load_dataset(data_cfg.dataset, root=data_cfg.root, download=data_cfg.download)
    shards = partition(
        ds.y_train.numpy(), num_clients, data_cfg.partition, seed=scenario.seed, alpha=data_cfg.alpha
    )
    t = scenario.training
    lr, prox_mu = scenario.strategy.local_lr(t), scenario.strategy.local_prox_mu(t)  # a strategy may set its own
    train_cfg = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=lr, prox_mu=prox_mu)
    client_work = ClientWorkload(t.model, ds.x_train, ds.y_train, shards, train_cfg, codec, cache)
    x_test, y_test = ds.x_test, ds.y_test
    if data_cfg.max_test_samples is not None:
        x_test, y_test = x_test[: data_cfg.max_test_samples], y_test[: data_cfg.max_test_samples]

    def _evaluate(params: np.ndarray) -> tuple[float, float]:
        with torch_threads(TRAIN_THREADS):  # as training: no oversubscribed cores (process workers train meanwhile)
            return evaluate(t.model, params, x_test, y_test)

    return Workload(
        samples=np.array([len(s) for s in shards], dtype=np.int64),
        models=GlobalModels(codec, initial),
        executor=make_executor(executor, client_work),
        evaluate=_evaluate,
        **common,
    )
