"""Executors that run deferred training jobs.

`sequential` (the default) trains each job in this process when its result is first
needed. Every executor gives the same numbers for the same tasks.
"""

from __future__ import annotations

import numpy as np

from fl.jobs import ClientWorkload, Executor, Job, TrainingTask

__all__ = ["SequentialExecutor", "EXECUTORS", "make_executor"]


class SequentialExecutor:
    """Runs each job in this process, one after another, when its result is first needed."""

    name = "sequential"

    def __init__(self, workload: ClientWorkload) -> None:
        self.workload = workload

    def submit(self, task: TrainingTask, base_params: np.ndarray) -> Job:
        return Job(self, task, base_params)

    def resolve(self, jobs: list[Job]) -> None:
        for job in jobs:
            if not job.done:
                job.set_result(self.workload.run(job.task, job.base_params()))

    def close(self) -> None:
        """Release resources (nothing to release here)."""


EXECUTORS = {"sequential": SequentialExecutor}


def make_executor(name: str, workload: ClientWorkload) -> Executor:
    """Build the executor called `name` for `workload`."""
    try:
        cls = EXECUTORS[name]
    except KeyError:
        raise ValueError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}") from None
    return cls(workload)
