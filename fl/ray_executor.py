"""The `ray` executor: each training job is a Ray task, on this machine or a cluster.

Ray is optional (`pip install .[ray]`). The executor joins the Ray instance already
running in this process (e.g. inside a sweep cell that runs as a Ray task), or connects
to the cluster named by the RAY_ADDRESS environment variable (`auto`: the one `ray start`
began on this machine), or else starts a Ray on this machine for the run. The workload
goes into the object store once; each Ray worker process unpickles it once and keeps it
for later tasks. Each task trains with one torch thread, so results are bit-identical to
the `sequential` executor's. The engine is unchanged: Ray only computes payloads.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fl.executor_base import TRAIN_THREADS, PrefetchingExecutor, RunFirst
from fl.jobs import ClientUpload, ClientWorkload, TrainingTask

__all__ = ["RayExecutor", "connect_ray", "import_ray"]

_CACHE: dict[str, ClientWorkload] = {}  # per Ray worker process: object id -> workload
_PROBE_TIMEOUT_S = 10.0


def import_ray() -> Any:
    """The `ray` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            "Ray is not installed, and the 'ray' executor and sweep backend need it: install it with "
            "`pip install .[ray]` (or `pip install 'ray>=2.9'`), or choose another executor "
            "(sequential, batched, process) or the local backend"
        ) from None
    return ray


def _probe(address: str) -> None:
    """Fail fast where nothing listens at a HOST:PORT address (`ray.init` would wait there forever)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray looks them up and fails fast itself
    try:
        socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(
            f"no Ray cluster answers at {address} ({exc}); start one with `ray start --head` and pass the "
            "address it prints (or `auto` on the head machine), or leave the address out to start a Ray here"
        ) from None


def connect_ray(address: str | None = None) -> bool:
    """Make sure this process is connected to Ray; True if this call connected it (the caller shuts it down).

    Joins the Ray this process already has; else connects to `address`, or RAY_ADDRESS
    when that is None; else starts a Ray on this machine (never silently joining another
    user's cluster). Raises ConnectionError naming the address when no cluster answers.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    _probe(target)
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if target == "local":
        options["include_dashboard"] = False
    ray.init(address=target, **options)
    return True


def _train_task(boxed_ref: list, task: TrainingTask, base_params: np.ndarray) -> tuple[str, ClientUpload]:
    """The Ray task: fetch the workload (once per worker process; its setup runs first), train one job; (node id,
    upload)."""
    ray = import_ray()
    ref = boxed_ref[0]  # boxed so Ray hands over the reference, not a fresh copy per task
    key = ref.hex()
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = ray.get(ref)[1]  # (RunFirst(setup), workload): setup (e.g. the run's plugins) runs first
    torch.set_num_threads(TRAIN_THREADS)
    return ray.get_runtime_context().get_node_id(), _CACHE[key].run(task, base_params)


class RayExecutor(PrefetchingExecutor):
    """Runs jobs as Ray tasks (one CPU each); keeps up to twice the cluster's CPUs busy.

    `jobs_per_node` counts the jobs each Ray node (by node id) has trained.
    """

    name = "ray"

    def __init__(self, workload: ClientWorkload, setup: Callable[[], None] | None = None) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = connect_ray()
        super().__init__(workload, int(ray.cluster_resources().get("CPU", 1)))
        self._workload_ref = ray.put((RunFirst(setup), workload))
        self._remote = ray.remote(num_cpus=1)(_train_task)
        self.jobs_per_node: Counter[str] = Counter()

    def _launch(self, task: TrainingTask, base_params: np.ndarray) -> Any:
        return self._remote.remote([self._workload_ref], task, base_params)

    def _collect(self, handles: list[Any]) -> list[ClientUpload]:
        results = self._ray.get(handles)
        self.jobs_per_node.update(node for node, _ in results)
        return [upload for _, upload in results]

    def close(self) -> None:
        """Drop running tasks' references; shut Ray down if this executor started it."""
        super().close()
        if self._owns_ray:
            self._ray.shutdown()
