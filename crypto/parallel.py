"""Ciphertext-chunk parallelism: one operation split into contiguous ciphertext ranges over cores.

Encrypting an update, summing the server's ciphertexts and decrypting an aggregate are each
independent per ciphertext. `split` cuts the ciphertext index range into one contiguous range
per worker; `run_split` runs the first range here and the others in a `WorkerPool`, whose
processes are started once, fresh (forkserver where available), and receive each range's
inputs and the scheme's key material pickled. Results come back pickled, in range order, so
joined they are the serial result (tests check that they are bit-identical).

Fresh processes, not forks of this one: a forked worker shares this process's memory
copy-on-write, and with the many small objects of a simulation (Python ints as SHE
ciphertexts, freed blocks that new objects reuse) nearly every write then copies a page; both
processes ran the same encryption code 1.5-2.5x slower per operation while sharing.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["WorkerPool", "run_split", "split"]

T = TypeVar("T")


def split(count: int, workers: int, min_chunk: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges covering range(count), one per worker (fewer if the work is small)."""
    parts = max(1, min(int(workers), count // max(1, min_chunk)))
    bounds = [count * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


class WorkerPool:
    """`workers - 1` helper processes (this process is the first worker), started on first use.

    The processes hold nothing between calls but the modules they imported; they stop when the
    pool is garbage-collected, closed, or the interpreter exits.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: cf.ProcessPoolExecutor | None = None
        self._stop: weakref.finalize | None = None

    def submit(self, fn: Callable[..., T], *args: Any) -> cf.Future[T]:
        if self._executor is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self._executor = cf.ProcessPoolExecutor(self.workers - 1, mp_context=multiprocessing.get_context(method))
            self._stop = weakref.finalize(self, self._executor.shutdown, wait=False, cancel_futures=True)
        return self._executor.submit(fn, *args)

    def close(self) -> None:
        """Stop the helper processes and wait for them to exit (a later call starts new ones)."""
        if self._stop is not None:
            self._stop.detach()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._stop = None


def run_split(pool: WorkerPool | None, fn: Callable[..., T], args: Sequence[tuple[Any, ...]]) -> list[T]:
    """[fn(*a) for a in args], in order: the first here, the others in `pool`'s processes."""
    if len(args) == 1 or pool is None:
        return [fn(*a) for a in args]
    futures = [pool.submit(fn, *a) for a in args[1:]]
    first = fn(*args[0])
    return [first, *(f.result() for f in futures)]
