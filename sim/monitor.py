"""The monitor of a run: when the global model is evaluated, when the run stops, and its progress bar.

Evaluation happens at no simulated cost: every `eval_interval_s` simulated seconds and
every `eval_every_versions` global versions (either starts with the untrained model at
time 0, so curves start there), and once at the end (the only evaluation when neither is
set). A global version is evaluated at most once: a later row for the same version
repeats its numbers. The run
stops at `max_time_s`, at `max_versions` or once the accuracy reaches
`target_accuracy`, whichever comes first.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import simpy

if TYPE_CHECKING:
    from sim.engine import Simulation
    from sim.progress import RunProgress

__all__ = ["Monitor"]


class Monitor:
    """Evaluation schedule, stop conditions and progress of one run (see the module docstring)."""

    def __init__(
        self,
        max_time_s: float,
        *,
        max_versions: int | None = None,
        target_accuracy: float | None = None,
        eval_interval_s: float | None = None,
        eval_every_versions: int | None = None,
        progress: RunProgress | None = None,
        name: str = "run",
    ) -> None:
        if not (max_time_s > 0 and math.isfinite(max_time_s)):
            raise ValueError(f"max_time_s must be a finite number of seconds > 0, got {max_time_s!r}")
        self.max_time_s = max_time_s
        self.max_versions, self.target_accuracy = max_versions, target_accuracy
        self.eval_interval_s, self.eval_every_versions = eval_interval_s, eval_every_versions
        self.progress, self.name = progress, name  # the console bar (sim.progress), or None
        self.stop_reason = ""
        self.reached_target_at: float | None = None
        self.stopped: simpy.Event | None = None
        self._last: tuple[float, int, float, float] | None = None  # (time, version, accuracy, loss) evaluated

    def start(self, sim: Simulation) -> simpy.Event:
        """Schedule the evaluations, the time limit and the progress bar; the event that stops the run."""
        env = sim.env
        self.stopped = env.event()
        if self.eval_interval_s or self.eval_every_versions:  # time 0 and version 0 are due
            self.evaluate(sim)
        if self.eval_interval_s:
            env.process(self._every(sim, self.eval_interval_s))
        sim.call_at(self.max_time_s, lambda _net: self.finish(f"reached the time limit {self.max_time_s:g} s"))
        if self.progress is not None:
            self.progress.start(sim)
        return self.stopped

    def version_created(self, sim: Simulation, version: int) -> None:
        """A new global version exists: evaluate it if due, stop if it is the last."""
        if self.progress is not None:
            self.progress.version(sim, version)
        if self.eval_every_versions and version % self.eval_every_versions == 0:
            self.evaluate(sim)
        if self.max_versions is not None and version >= self.max_versions:
            self.finish(f"reached {self.max_versions} global versions")

    def evaluate(self, sim: Simulation) -> None:
        """Log one evaluation row now (the global model is evaluated unless this version already was)."""
        now, version = sim.now, sim.server.version
        last = self._last
        if last is not None and last[0] == now:
            return  # already evaluated at this instant
        if last is not None and last[1] == version:
            acc, loss = last[2], last[3]
        else:
            acc, loss = sim.evaluate_global_model()
        self._last = (now, version, acc, loss)
        stats = sim.server.stats
        sim.recorder.metric(
            time_s=now,
            version=version,
            accuracy=acc,
            loss=loss,
            updates_received=stats["updates_received"],
            updates_aggregated=stats["updates_aggregated"],
            agents_reused=stats["agents_reused"],
            updates_discarded=stats["updates_discarded"],
            jobs_failed=stats["jobs_failed"],
            aggregations=stats["aggregations"],
        )
        if self.progress is not None:
            self.progress.evaluated(sim, acc)
        target = self.target_accuracy
        if target is not None and acc >= target and self.reached_target_at is None:
            self.reached_target_at = now
            self.finish(f"reached target accuracy {target:g}")

    def finish(self, reason: str) -> None:
        """Stop the run now, for `reason` (the first reason given wins)."""
        if self.stopped is not None and not self.stopped.triggered:
            self.stop_reason = reason
            self.stopped.succeed()

    def close(self, sim: Simulation) -> None:
        """The run ended: evaluate once more (the final row) and close the progress bar."""
        if self.progress is not None:
            self.progress.close()
        self.evaluate(sim)

    def _every(self, sim: Simulation, interval: float) -> Generator[simpy.Event, Any, None]:
        while True:
            yield sim.env.timeout(interval)
            self.evaluate(sim)
