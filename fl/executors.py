"""Executors that run deferred training jobs.

- `sequential` (the default) trains each job in this process when its result is first
  needed: no work is wasted on jobs whose device later fails.
- `batched` trains the jobs the server needs together (plus other submitted jobs of the
  same size) with `torch.func.vmap`; on a GPU when torch sees one. On CPU it batches only
  the models in `fl.batched.BATCHED_MODELS_CPU` (where that is faster) and otherwise
  trains one job after another.
- `process` trains (and encrypts) jobs in a pool of worker processes (one per core, one
  torch thread each), forked from a fork server that imported torch once; the workers
  start while the simulation builds, keep busy with jobs submitted ahead while the engine
  goes on, take large uploads back through files in /dev/shm rather than the pipe, and
  end with the process that started them (even if it is killed).
- `ray` runs each job as a Ray task, on a local Ray or the cluster named by RAY_ADDRESS
  (`pip install .[ray]`); see `fl.ray_executor`.

Every job trains from its own seed, so the result does not depend on the executor, the
grouping or the order. Kernels add in a thread-count-dependent order, so every executor
trains with `TRAIN_THREADS` (1) torch thread per job: `sequential`, `process` and `ray`
then give bit-identical models; `batched` agrees to float rounding (see `fl.batched`).
Use `process` or `ray` to put more cores to work.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from fl.batched import batchable, batched_local_update
from fl.executor_base import TRAIN_THREADS, PrefetchingExecutor, RunFirst, resolve_all, torch_threads
from fl.jobs import ClientUpload, ClientWorkload, Executor, Job, TrainingTask
from fl.spool import Spooled, ship, spool_directory, unship
from fl.training import LocalResult

__all__ = [
    "EXECUTORS",
    "TRAIN_THREADS",
    "BatchedExecutor",
    "PrefetchingExecutor",
    "ProcessExecutor",
    "SequentialExecutor",
    "make_executor",
    "prepare",
    "resolve_all",
    "torch_threads",
]

class SequentialExecutor:
    """Runs each job in this process, one after another, when its result is first needed."""

    name = "sequential"

    def __init__(self, workload: ClientWorkload) -> None:
        self.workload = workload

    def submit(self, task: TrainingTask, base_params: np.ndarray) -> Job:
        return Job(self, task, base_params)

    def resolve(self, jobs: list[Job]) -> None:
        with torch_threads(TRAIN_THREADS):
            for job in jobs:
                if not job.done:
                    job.set_result(self.workload.run(job.task, job.base_params()))

    def close(self) -> None:
        """Release resources (nothing to release here)."""


class BatchedExecutor(SequentialExecutor):
    """Trains the needed jobs, and other submitted jobs of the same size, in vmapped batches
    (or, where it does not batch, one after another as `SequentialExecutor`)."""

    name = "batched"

    def __init__(
        self,
        workload: ClientWorkload,
        device: str | None = None,
        max_batch: int = 64,
        force: bool = False,
    ) -> None:
        """`device`: torch device (default: cuda when available, else cpu); `force`: batch on CPU too."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.workload = workload
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.max_batch = max_batch
        self.batching = force or batchable(workload.model, self.device)
        self._waiting: weakref.WeakKeyDictionary[Job, None] = weakref.WeakKeyDictionary()

    def submit(self, task: TrainingTask, base_params: np.ndarray) -> Job:
        job = Job(self, task, base_params)
        if self.batching:
            self._waiting[job] = None
        return job

    def resolve(self, jobs: list[Job]) -> None:
        if not self.batching:
            super().resolve(jobs)
            return
        with torch_threads(TRAIN_THREADS):
            for group in self._groups([j for j in jobs if not j.done]):
                self._train(group)

    def _groups(self, needed: list[Job]) -> list[list[Job]]:
        """Batches of equal-sized jobs: the needed ones first, topped up with other waiting ones."""
        size = self.workload.num_samples
        by_size: dict[int, list[Job]] = defaultdict(list)
        for job in needed:
            by_size[size(job.task.client)].append(job)
        chosen = set(needed)
        for job in list(self._waiting.keys()):
            n = size(job.task.client)
            if not job.done and job not in chosen and n in by_size:
                by_size[n].append(job)
        batches = []
        for group in by_size.values():  # needed jobs first: only batches holding one of them run
            n_needed = sum(j in chosen for j in group)
            limit = -(-n_needed // self.max_batch) * self.max_batch
            batches += [group[i : i + self.max_batch] for i in range(0, min(len(group), limit), self.max_batch)]
        return batches

    def _train(self, group: list[Job]) -> None:
        """Train one batch (jobs already in the run's result cache are taken from it), then seal."""
        w = self.workload
        keys = [w.cache_key(j.task, j.base_params()) for j in group]
        results: list[LocalResult | None] = [w.cached(key, j.base_params()) for key, j in zip(keys, group)]
        todo = [i for i, res in enumerate(results) if res is None]
        if todo:
            trained = batched_local_update(
                w.model,
                [group[i].base_params() for i in todo],
                [w.client_data(group[i].task.client) for i in todo],
                w.train,
                [group[i].task.seed for i in todo],
                self.device,
            )
            for i, res in zip(todo, trained, strict=True):
                w.store(keys[i], res)
                results[i] = res
        for job, done in zip(group, results, strict=True):
            assert done is not None
            self._waiting.pop(job, None)
            job.set_result(w.seal(done.params, done.num_samples, done.train_loss))

    def close(self) -> None:
        """Forget waiting jobs."""
        self._waiting.clear()


_WORKER_WORKLOAD: ClientWorkload | None = None
_DRIVER_POLL_S = 0.5  # how often a worker checks that the process that started it is still alive
_PRELOAD = ["fl.executors"]  # imported once by the fork server, so that workers start as forks of it


WorkerSetup = Callable[[], None] | None
"""Run first in every worker process, before the workload is unpickled (e.g. loading the run's plugins)."""


def _init_worker(_setup_done: object, workload: ClientWorkload, driver_pid: int) -> None:
    global _WORKER_WORKLOAD
    torch.set_num_threads(TRAIN_THREADS)
    _WORKER_WORKLOAD = workload
    threading.Thread(target=_exit_with_driver, args=(driver_pid,), name="ppafl-driver-watch", daemon=True).start()


def _exit_with_driver(driver_pid: int) -> None:
    """End this worker as soon as the driver is gone (e.g. killed with SIGKILL, which no handler sees)."""
    while _process_alive(driver_pid):
        time.sleep(_DRIVER_POLL_S)
    os._exit(1)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (the pid was reused): our driver is gone
        return False
    return True


def _worker_ready() -> bool:
    return _WORKER_WORKLOAD is not None


def _train_in_worker(task: TrainingTask, base_params: np.ndarray, spool: str) -> ClientUpload | Spooled:
    assert _WORKER_WORKLOAD is not None, "worker was not initialised"
    return ship(_WORKER_WORKLOAD.run(task, base_params), spool)


def _pool_context() -> multiprocessing.context.BaseContext:
    """The start method of worker pools: a fork server (torch imported once, workers forked from it), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)  # effective until the fork server first starts
    return ctx


def prepare(name: str) -> None:
    """Start what executor `name` can start before its workload exists: the process pool's fork server, which
    then imports torch while this process goes on (e.g. loads the data)."""
    if name == "process" and "forkserver" in multiprocessing.get_all_start_methods():
        _pool_context()
        from multiprocessing import forkserver

        forkserver.ensure_running()


class ProcessExecutor(PrefetchingExecutor):
    """Trains jobs in `workers` local processes (default: one per usable core), one torch thread each.

    The workers start in the background (the first job waits for them); each ends as soon as the process
    that started it is gone, even if that was killed with SIGKILL.
    """

    name = "process"

    def __init__(self, workload: ClientWorkload, workers: int | None = None, setup: WorkerSetup = None) -> None:
        super().__init__(workload, workers or len(os.sched_getaffinity(0)))
        import torch.multiprocessing  # noqa: F401  (registers shared-memory pickling of tensors)

        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_pool_context(),
            initializer=_init_worker,
            initargs=(RunFirst(setup), workload, os.getpid()),  # setup runs before the workload is unpickled
        )
        self._spool = spool_directory()
        self._remove_spool = weakref.finalize(self, shutil.rmtree, self._spool, True)
        # Start every worker now, without waiting: a workload that cannot be sent fails at the first job.
        self._starting: list[cf.Future] | None = [self._pool.submit(_worker_ready) for _ in range(self.workers)]

    def _launch(self, task: TrainingTask, base_params: np.ndarray) -> cf.Future:
        if self._starting is not None:
            try:
                for ready in self._starting:
                    ready.result()
            except Exception as exc:
                raise RuntimeError(
                    f"the process executor's {self.workers} worker processes did not start ({type(exc).__name__}: "
                    f"{exc}); run with --executor sequential, or check that the workload can be sent to a process"
                ) from exc
            self._starting = None
        return self._pool.submit(_train_in_worker, task, base_params, self._spool)

    def _collect(self, handles: list[cf.Future]) -> list[ClientUpload]:
        return [unship(h.result()) for h in handles]

    def close(self) -> None:
        """Stop the worker processes (running jobs are abandoned) and remove uploads in flight."""
        super().close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._remove_spool()


def _ray_executor(workload: ClientWorkload, setup: WorkerSetup) -> Executor:
    from fl.ray_executor import RayExecutor  # optional dependency: imported only when asked for

    return RayExecutor(workload, setup)


EXECUTORS: dict[str, Callable[[ClientWorkload, WorkerSetup], Executor]] = {
    "sequential": lambda workload, _setup: SequentialExecutor(workload),
    "batched": lambda workload, _setup: BatchedExecutor(workload),
    "process": lambda workload, setup: ProcessExecutor(workload, setup=setup),
    "ray": _ray_executor,
}


def make_executor(name: str, workload: ClientWorkload, setup: WorkerSetup = None) -> Executor:
    """Build the executor called `name` for `workload`; `setup` runs first in each of its worker processes."""
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise ValueError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}") from None
    return factory(workload, setup)
