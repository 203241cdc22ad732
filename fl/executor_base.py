"""What every executor shares: the torch thread count of a training job, resolving jobs by executor, and the
base of executors that run jobs elsewhere (worker processes, Ray)."""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from fl.jobs import ClientUpload, ClientWorkload, Executor, Job, TrainingTask

__all__ = ["TRAIN_THREADS", "PrefetchingExecutor", "RunFirst", "resolve_all", "torch_threads"]

TRAIN_THREADS = 1  # torch threads per training job, in every executor (bit-identical results)


class RunFirst:
    """Calls `setup` in the process that unpickles it, before what is pickled after it in the same message.

    Put first among a worker's start arguments: a function that loads code the rest needs
    (e.g. a run's plugins, whose classes the workload refers to) runs before the rest is
    rebuilt. Unpickles to None.
    """

    def __init__(self, setup: Callable[[], None] | None) -> None:
        self.setup = setup

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_call, (self.setup,))


def _call(setup: Callable[[], None] | None) -> None:
    if setup is not None:
        setup()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_all(jobs: list[Job | None]) -> None:
    """Resolve every unfinished job, handing each executor all of its jobs in one call."""
    by_executor: dict[Executor, list[Job]] = {}  # executors hash by identity
    for job in jobs:
        if job is not None and job.executor is not None:  # set while the job is unresolved
            by_executor.setdefault(job.executor, []).append(job)
    for ex, group in by_executor.items():
        ex.resolve(group)


class PrefetchingExecutor(ABC):
    """Base of executors that run jobs elsewhere (processes, Ray): dispatch, prefetch, collect.

    `resolve` dispatches the needed jobs, then tops up the workers with other submitted
    jobs (oldest first) so they keep training while the engine simulates on; a job whose
    device failed is dropped by the engine and never dispatched after that. Subclasses
    provide `_launch(task, base_params) -> handle` and `_collect(handles) -> uploads`.
    """

    name: str

    def __init__(self, workload: ClientWorkload, workers: int) -> None:
        self.workload = workload
        self.workers = max(1, int(workers))
        self._waiting: weakref.WeakKeyDictionary[Job, None] = weakref.WeakKeyDictionary()
        self._running: weakref.WeakKeyDictionary[Job, Any] = weakref.WeakKeyDictionary()

    def submit(self, task: TrainingTask, base_params: np.ndarray) -> Job:
        job = Job(self, task, base_params)
        self._waiting[job] = None
        return job

    def resolve(self, jobs: list[Job]) -> None:
        needed = [j for j in jobs if not j.done]
        for job in needed:
            self._dispatch(job)
        for job in list(self._waiting.keys()):
            if len(self._running) >= 2 * self.workers:
                break
            self._dispatch(job)
        uploads = self._collect([self._running[j] for j in needed])
        for job, upload in zip(needed, uploads, strict=True):
            del self._running[job]
            job.set_result(upload)

    def _dispatch(self, job: Job) -> None:
        if job in self._running:
            return
        self._waiting.pop(job, None)
        self._running[job] = self._launch(job.task, job.base_params())

    @abstractmethod
    def _launch(self, task: TrainingTask, base_params: np.ndarray) -> Any:
        """Start one job elsewhere; return a handle for `_collect`."""

    @abstractmethod
    def _collect(self, handles: list[Any]) -> list[ClientUpload]:
        """Wait for the jobs behind `handles`; their uploads in the same order."""

    def close(self) -> None:
        """Forget waiting and running jobs."""
        self._waiting.clear()
        self._running.clear()
