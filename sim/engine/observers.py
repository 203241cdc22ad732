"""Observers of a run: hooks at its start, at each new global version, after each evaluation and at its end.

They reach the run through `RunView` (the clock, the global version, the server's counts,
an evaluation of the global model, a timer, stopping the run), never through the
simulation itself (Vessim's controllers are the model). The monitor (evaluation schedule
and stop conditions, `sim.engine.monitor`) and the console progress bar are observers;
so can a user's be (`Simulation(..., observers=[...])`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import simpy

from sim.engine.recorder import Recorder

__all__ = ["Observer", "RunView"]


class RunView(Protocol):
    """What an observer may read and do."""

    env: simpy.Environment
    recorder: Recorder

    @property
    def now(self) -> float: ...

    @property
    def version(self) -> int:
        """The current global version."""

    @property
    def stats(self) -> Mapping[str, int]:
        """The server's counts (updates received, aggregated, discarded, jobs failed, ...)."""

    def evaluate_global_model(self) -> tuple[float, float]:
        """Accuracy and loss of the current global model (NaN in time-only runs)."""

    def evaluated(self, accuracy: float) -> None:
        """Tell every observer that the global model was just evaluated."""

    def call_at(self, time: float, fn: Callable[[Any], None]) -> None:
        """Call `fn(...)` at simulated `time`."""

    def stop(self, reason: str) -> None:
        """End the run now, for `reason` (the first reason given wins)."""


class Observer:
    """Hooks of a run (each does nothing unless overridden)."""

    def start(self, run: RunView) -> None:
        """The run starts (simulated time 0)."""

    def version_created(self, run: RunView, version: int) -> None:
        """A new global version exists."""

    def evaluated(self, run: RunView, accuracy: float) -> None:
        """The global model was evaluated (accuracy NaN in time-only runs)."""

    def end(self, run: RunView) -> None:
        """The run ended."""
