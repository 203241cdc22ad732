"""Ciphertext-chunk parallelism: one operation split into contiguous ciphertext ranges over cores.

Encrypting an update, summing the server's ciphertexts and decrypting an aggregate are each
independent per ciphertext, so `run_ranges` cuts the ciphertext index range into one
contiguous range per worker and runs the ranges after the first in forked processes while
this process does the first. Forked workers read this process's memory as it is (the
update, the clients' ciphertexts, the keys) without pickling it; only each range's result
comes back, pickled, in range order, so joined they are the serial result (tests check that
they are bit-identical).

Forking is used only where the platform offers it (Linux, macOS); elsewhere, and for work
below `min_chunk` items per worker, everything runs here, serially.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

__all__ = ["can_fork", "run_ranges", "split"]

_TASK: Callable[[int, int, int], Any] | None = None  # what forked workers run (inherited, not pickled)
_RANGES: list[tuple[int, int]] = []


def can_fork() -> bool:
    """True where worker processes can be forked (they then share this process's memory)."""
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


def split(count: int, workers: int, min_chunk: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges covering range(count), one per worker (fewer if the work is small)."""
    parts = max(1, min(int(workers), count // max(1, min_chunk)))
    if parts > 1 and not can_fork():
        parts = 1
    bounds = [count * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def _run_forked(index: int) -> Any:
    assert _TASK is not None, "forked worker without a task"
    start, stop = _RANGES[index]
    return _TASK(index, start, stop)


def run_ranges(task: Callable[[int, int, int], Any], ranges: list[tuple[int, int]]) -> list[Any]:
    """[task(i, start, stop) for each range i], in order; ranges[1:] run in forked workers."""
    global _TASK, _RANGES
    if len(ranges) == 1:
        return [task(0, *ranges[0])]
    _TASK, _RANGES = task, ranges
    try:
        with multiprocessing.get_context("fork").Pool(len(ranges) - 1) as pool:
            rest = pool.map_async(_run_forked, range(1, len(ranges)), chunksize=1)
            first = task(0, *ranges[0])
            return [first, *rest.get()]
    finally:
        _TASK, _RANGES = None, []
