"""The monitor of a run: when the global model is evaluated and when the run stops; an observer of the run.

Evaluation happens at no simulated cost: every `eval_interval_s` simulated seconds and
every `eval_every_versions` global versions (either starts with the untrained model at
time 0, so curves start there), and once at the end (the only evaluation when neither is
set). A global version is evaluated at most once: a later row for the same version
repeats its numbers. The run stops at `max_time_s`, at `max_versions` or once the accuracy
reaches `target_accuracy`, whichever comes first. `target_to_report` is the accuracy whose
first-reached time the summary reports (it does not stop the run).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import simpy

from sim.engine.observers import Observer, RunView

__all__ = ["Monitor"]


class Monitor(Observer):
    """Evaluation schedule and stop conditions of one run (see the module docstring)."""

    def __init__(
        self,
        max_time_s: float,
        *,
        max_versions: int | None = None,
        target_accuracy: float | None = None,
        eval_interval_s: float | None = None,
        eval_every_versions: int | None = None,
        target_to_report: float = 0.9,
    ) -> None:
        if not (max_time_s > 0 and math.isfinite(max_time_s)):
            raise ValueError(f"max_time_s must be a finite number of seconds > 0, got {max_time_s!r}")
        self.max_time_s = max_time_s
        self.max_versions, self.target_accuracy = max_versions, target_accuracy
        self.eval_interval_s, self.eval_every_versions = eval_interval_s, eval_every_versions
        self.target_to_report = target_to_report
        self.reached_target_at: float | None = None
        self._last: tuple[float, int, float, float] | None = None  # (time, version, accuracy, loss) evaluated

    def start(self, run: RunView) -> None:
        """Evaluate at time 0 if evaluations are scheduled, schedule them and the time limit."""
        if self.eval_interval_s or self.eval_every_versions:  # time 0 and version 0 are due
            self.evaluate(run)
        if self.eval_interval_s:
            run.env.process(self._every(run, self.eval_interval_s))
        run.call_at(self.max_time_s, lambda _net: run.stop(f"reached the time limit {self.max_time_s:g} s"))

    def version_created(self, run: RunView, version: int) -> None:
        """A new global version exists: evaluate it if due, stop if it is the last."""
        if self.eval_every_versions and version % self.eval_every_versions == 0:
            self.evaluate(run)
        if self.max_versions is not None and version >= self.max_versions:
            run.stop(f"reached {self.max_versions} global versions")

    def evaluate(self, run: RunView) -> None:
        """Log one evaluation row now (the global model is evaluated unless this version already was)."""
        now, version = run.now, run.version
        last = self._last
        if last is not None and last[0] == now:
            return  # already evaluated at this instant
        if last is not None and last[1] == version:
            acc, loss = last[2], last[3]
        else:
            acc, loss = run.evaluate_global_model()
        self._last = (now, version, acc, loss)
        stats = run.stats
        run.recorder.metric(
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
        run.evaluated(acc)
        target = self.target_accuracy
        if target is not None and acc >= target and self.reached_target_at is None:
            self.reached_target_at = now
            run.stop(f"reached target accuracy {target:g}")

    def end(self, run: RunView) -> None:
        """The run ended: evaluate once more (the final row)."""
        self.evaluate(run)

    def _every(self, run: RunView, interval: float) -> Generator[simpy.Event, Any, None]:
        while True:
            yield run.env.timeout(interval)
            self.evaluate(run)
