"""The `ray` executor: each training job is a Ray task, on this machine or a cluster.

Ray is optional (`pip install .[ray]`). The executor joins the Ray instance already
running in this process, or starts one with `ray.init()` (which connects to the
cluster named by the RAY_ADDRESS environment variable, else starts a local one). The
workload goes into the object store once; each Ray worker process unpickles it once and
keeps it for later tasks. Each task trains with one torch thread, so results are
bit-identical to the `sequential` executor's. The engine is unchanged: Ray only
computes payloads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fl.executors import TRAIN_THREADS, PrefetchingExecutor
from fl.jobs import ClientUpload, ClientWorkload, TrainingTask

__all__ = ["RayExecutor", "import_ray"]

_CACHE: dict[str, ClientWorkload] = {}  # per Ray worker process: object id -> workload


def import_ray() -> Any:
    """The `ray` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            "the 'ray' executor needs Ray, which is not installed; install it with `pip install .[ray]` "
            "(or `pip install 'ray>=2.9'`), or choose another executor (sequential, batched, process)"
        ) from None
    return ray


def _train_task(boxed_ref: list, task: TrainingTask, base_params: np.ndarray) -> ClientUpload:
    """The Ray task: fetch the workload (once per worker process) and train one job."""
    ray = import_ray()
    ref = boxed_ref[0]  # boxed so Ray hands over the reference, not a fresh copy per task
    key = ref.hex()
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = ray.get(ref)
    torch.set_num_threads(TRAIN_THREADS)
    return _CACHE[key].run(task, base_params)


class RayExecutor(PrefetchingExecutor):
    """Runs jobs as Ray tasks (one CPU each); keeps up to twice the cluster's CPUs busy."""

    name = "ray"

    def __init__(self, workload: ClientWorkload) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(include_dashboard=False, log_to_driver=False)  # RAY_ADDRESS names a cluster
        super().__init__(workload, int(ray.cluster_resources().get("CPU", 1)))
        self._workload_ref = ray.put(workload)
        self._remote = ray.remote(num_cpus=1)(_train_task)

    def _launch(self, task: TrainingTask, base_params: np.ndarray) -> Any:
        return self._remote.remote([self._workload_ref], task, base_params)

    def _collect(self, handles: list[Any]) -> list[ClientUpload]:
        return self._ray.get(handles)

    def close(self) -> None:
        """Drop running tasks' references; shut Ray down if this executor started it."""
        super().close()
        if self._owns_ray:
            self._ray.shutdown()
