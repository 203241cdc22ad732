"""The learning side of a run: data, partition, model, codec, executor and global models, built from parts.

`learning_workload` trains for real; `time_only_workload` does no gradient work: the
model is built only for its size and cost, every client holds an equal share of the data
set's nominal size, and payloads are synthetic updates of the model's true byte size.
Neither needs a scenario (`sim.assembly` builds them from one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fl.secure import Aggregator, ClientCodec, PlainAggregator, Scheme, describe_encryption, make_codec

__all__ = ["Encryption", "Workload", "learning_workload", "time_only_workload"]


@dataclass(frozen=True)
class Encryption:
    """How the clients protect their updates: the key holders' codec, the server's aggregator, and the scheme and
    parameter set behind them (None: encryption off)."""

    codec: ClientCodec = field(default_factory=lambda: ClientCodec("off"))
    aggregator: Aggregator = field(default_factory=PlainAggregator)
    scheme: Scheme | None = None
    params: str | None = None

    @classmethod
    def of(cls, scheme: Scheme, params: str, mode: str, num_values: int, max_clients: int, *, weight_bits: int = 8,
           scale_bits: int = 16, value_bound: float = 8.0, workers: int = 1) -> Encryption:
        """`scheme` at parameter set `params` in `mode` (modeled or real; off: no encryption) for sums of
        `max_clients` updates of `num_values` values."""
        if mode == "off":
            return cls()
        codec, aggregator = make_codec(mode, num_values, max_clients, params, weight_bits, scale_bits, value_bound,
                                       workers=workers, scheme=scheme)
        return cls(codec, aggregator, scheme, params)

    @property
    def encrypted(self) -> bool:
        return self.params is not None

    def crypto_params(self, num_params: int) -> dict[str, int]:
        """Device crypto work per job, in paper-SHE-encryption-equivalent parameters, per operation."""
        if self.scheme is None or self.params is None:
            return {"encrypt": 0, "decrypt": 0}
        return {op: round(num_params * self.scheme.cost(self.params, op)) for op in ("encrypt", "decrypt")}

    def describe(self) -> dict[str, Any]:
        """What it is and protects, for the summary."""
        return describe_encryption(self.scheme, self.params, self.aggregator)


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
    aggregator: Aggregator | None  # the server's public aggregator (None in time-only runs built in code)
    models: Any  # the key holders' global models (`fl.global_model.GlobalModels`); None: time-only
    executor: Any  # the clients' trainer (`fl.jobs.Executor`); None: time-only
    evaluate: Callable[[np.ndarray], tuple[float, float]]
    encryption_params: str | None = None  # the parameter set the run encrypts with (None: encryption off)
    privacy: dict[str, Any] = field(default_factory=lambda: describe_encryption(None, None, None))

    def num_samples(self, client: int) -> int:
        return int(self.samples[client])


def _sizes(model: Any, init_seed: int, input_shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """The initial flat parameters of `model` (a `fl.models.ModelSpec`) and its forward FLOPs per sample."""
    from fl.models import build_model, flops_per_sample
    from fl.params import get_flat

    net = build_model(model, seed=init_seed)
    return get_flat(net), float(flops_per_sample(net, input_shape))


def _common(encryption: Encryption, num_params: int, flops: float, epochs: int) -> dict[str, Any]:
    nbytes = encryption.codec.payload_nbytes(num_params)
    return {
        "num_params": num_params, "flops_per_sample": flops, "epochs": epochs, "encrypted": encryption.encrypted,
        "encryption_params": encryption.params, "crypto_params": encryption.crypto_params(num_params),
        "download_nbytes": nbytes, "upload_nbytes": nbytes, "aggregator": encryption.aggregator,
        "privacy": encryption.describe(),
    }


EncryptionFor = Encryption | Callable[[int], Encryption] | None  # an Encryption, or one made for the model's size


def _encryption(encryption: EncryptionFor, num_params: int) -> Encryption:
    if encryption is None:
        return Encryption()
    return encryption if isinstance(encryption, Encryption) else encryption(num_params)


def time_only_workload(
    num_clients: int,
    model: Any,
    input_shape: tuple[int, ...],
    train_samples: int,
    *,
    epochs: int = 1,
    encryption: EncryptionFor = None,
    init_seed: int = 0,
) -> Workload:
    """A workload without learning: `model`'s size and cost, `train_samples` split equally over the clients;
    `encryption` an `Encryption` or a function of the model's parameter count that makes one."""
    initial, flops = _sizes(model, init_seed, input_shape)
    encryption = _encryption(encryption, int(initial.size))
    samples = np.full(num_clients, max(1, train_samples // num_clients), dtype=np.int64)
    return Workload(samples=samples, models=None, executor=None, evaluate=lambda _p: (np.nan, np.nan),
                    **_common(encryption, int(initial.size), flops, epochs))


def learning_workload(
    dataset: Any,
    model: Any,
    shards: list[np.ndarray],
    train: Any,
    *,
    encryption: EncryptionFor = None,
    executor: str = "sequential",
    init_seed: int = 0,
    cache: Any = None,
    max_test_samples: int | None = None,
    worker_setup: Callable[[], None] | None = None,
) -> Workload:
    """A workload that trains `model` (a `fl.models.ModelSpec` or a built-in's name) on `dataset`
    (`fl.data.Dataset`) split into `shards` (one index array per client, e.g. `fl.partition.partition`) with
    `train` (`fl.training.TrainConfig`); `encryption` an `Encryption` or a function of the model's parameter count
    that makes one; `cache` keeps finished training jobs (`fl.result_cache.ResultCache`);
    `worker_setup` runs first in every worker process of the executor (e.g. loading plugins)."""
    from fl import training
    from fl.executors import TRAIN_THREADS, make_executor, torch_threads
    from fl.global_model import GlobalModels
    from fl.jobs import ClientWorkload
    from fl.models import builtin_spec

    spec = builtin_spec(model) if isinstance(model, str) else model
    initial, flops = _sizes(spec, init_seed, tuple(dataset.input_shape))
    encryption = _encryption(encryption, int(initial.size))
    client_work = ClientWorkload(model, dataset.x_train, dataset.y_train, shards, train, encryption.codec, cache)
    x_test, y_test = dataset.x_test, dataset.y_test
    if max_test_samples is not None:
        x_test, y_test = x_test[:max_test_samples], y_test[:max_test_samples]

    def _evaluate(params: np.ndarray) -> tuple[float, float]:
        with torch_threads(TRAIN_THREADS):  # as training: no oversubscribed cores (process workers train meanwhile)
            return training.evaluate(model, params, x_test, y_test)

    return Workload(
        samples=np.array([len(s) for s in shards], dtype=np.int64),
        models=GlobalModels(encryption.codec, initial),
        executor=make_executor(executor, client_work, worker_setup),
        evaluate=_evaluate,
        **_common(encryption, int(initial.size), flops, train.epochs),
    )
