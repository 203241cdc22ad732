"""Deferred client training: tasks, their results and the futures that hold them.

Simulated time never depends on how fast this machine computes, so a device that
starts training only submits a `TrainingTask` and gets a `Job` (a future). The work
runs when the server first needs the payload. Each task carries its own seed, so the
result is the same whichever executor runs it and in whatever order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from crypto import CryptoError
from fl.models import ModelSpec
from fl.result_cache import ResultCache
from fl.secure import ClientCodec
from fl.training import LocalResult, TrainConfig, local_update

__all__ = ["ClientUpload", "ClientWorkload", "Executor", "Job", "TrainingTask", "task_seed"]


def task_seed(run_seed: int, client: int, job_number: int) -> int:
    """A 63-bit seed for one training job, independent of event order."""
    return int(np.random.SeedSequence([run_seed, client, job_number]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class TrainingTask:
    client: int
    base_version: int
    seed: int


@dataclass(frozen=True)
class ClientUpload:
    """What a client sends: its encrypted (or plain) model, or nothing if training failed."""

    payload: Any | None
    num_samples: int
    train_loss: float
    problem: str | None = None  # why there is no payload (e.g. non-finite parameters)


class ClientWorkload:
    """Everything the clients need to train: their data shards, the model (a built-in's name or a spec), settings,
    the codec."""

    def __init__(
        self,
        model: str | ModelSpec,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        shards: list[np.ndarray],
        train: TrainConfig,
        codec: ClientCodec,
        cache: ResultCache | None = None,
    ) -> None:
        self.model, self.train, self.codec = model, train, codec
        self.x_train, self.y_train, self.shards = x_train, y_train, shards
        self.cache = cache  # finished jobs survive a restart (a resumable run's cache)

    def num_samples(self, client: int) -> int:
        return len(self.shards[client])

    def client_data(self, client: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.shards[client])
        return self.x_train[idx], self.y_train[idx]

    def run(self, task: TrainingTask, base_params: np.ndarray) -> ClientUpload:
        """Train one client from `base_params` (or take the cached result) and encrypt its new model."""
        res = self.train_cached(task, base_params)
        return self.seal(res.params, res.num_samples, res.train_loss)

    def train_cached(self, task: TrainingTask, base_params: np.ndarray) -> LocalResult:
        """The client's local update, from `self.cache` when this exact job already ran."""
        key = self.cache_key(task, base_params)
        res = self.cached(key, base_params)
        if res is None:
            x, y = self.client_data(task.client)
            res = local_update(self.model, base_params, x, y, self.train, task.seed)
            self.store(key, res)
        return res

    def cache_key(self, task: TrainingTask, base_params: np.ndarray) -> str | None:
        """The cache entry of this job: a digest of everything its result depends on (None: no cache)."""
        if self.cache is None:
            return None
        return self.cache.key(
            model=self.model if isinstance(self.model, str) else self.model.key,
            train=self.train,
            data_digest=self.cache.data_digest(self.x_train, self.y_train),
            shard=self.shards[task.client],
            seed=task.seed,
            base_params=base_params,
        )

    def cached(self, key: str | None, base_params: np.ndarray) -> LocalResult | None:
        """The stored result under `key`, or None (no cache, or not stored)."""
        if key is None or self.cache is None:
            return None
        return self.cache.get(key, int(np.asarray(base_params).size))

    def store(self, key: str | None, result: LocalResult) -> None:
        """Keep a finished result under `key` (nothing without a cache)."""
        if key is not None and self.cache is not None:
            self.cache.put(key, result)

    def seal(self, params: np.ndarray, num_samples: int, train_loss: float) -> ClientUpload:
        """Check a trained model and encrypt it; a diverged or out-of-range model is not sent."""
        if not np.all(np.isfinite(params)):
            return ClientUpload(None, num_samples, train_loss, "non-finite parameters (local training diverged)")
        try:
            payload = self.codec.encrypt(params)
        except CryptoError as exc:
            return ClientUpload(None, num_samples, train_loss, f"not encodable: {exc}")
        return ClientUpload(payload, num_samples, train_loss)


class Executor(Protocol):
    """Runs training tasks; every executor gives the same results for the same tasks."""

    name: str

    def submit(self, task: TrainingTask, base_params: np.ndarray) -> Job: ...

    def resolve(self, jobs: list[Job]) -> None: ...

    def close(self) -> None: ...


class Job:
    """A future for one training task; `result()` runs it (through its executor) if not done."""

    def __init__(self, executor: Executor, task: TrainingTask, base_params: np.ndarray) -> None:
        self.task = task
        self._executor: Executor | None = executor
        self._base_params: np.ndarray | None = base_params
        self._result: ClientUpload | None = None

    @property
    def executor(self) -> Executor | None:
        """The executor that will run this job; None once it is resolved."""
        return self._executor

    @property
    def done(self) -> bool:
        return self._result is not None

    def base_params(self) -> np.ndarray:
        assert self._base_params is not None, "job already resolved"
        return self._base_params

    def set_result(self, result: ClientUpload) -> None:
        """Store the result and drop the inputs: a resolved job holds only what the client sent."""
        self._result, self._base_params, self._executor = result, None, None

    def result(self) -> ClientUpload:
        if self._result is None:
            assert self._executor is not None
            self._executor.resolve([self])
        assert self._result is not None
        return self._result
