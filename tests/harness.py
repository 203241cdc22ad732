"""Helpers shared by several test modules: a wall-clock limit for fuzzing, and a whole simulated run."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from sim.engine import Simulation
from sim.scenario import scenario_from_dict


class Hang(BaseException):
    """A call ran past its `time_limit` (a BaseException, so the code under test cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Hang` in the block once `seconds` of wall clock have passed (SIGALRM; main thread only)."""

    def _raise(_sig: int, _frame: object) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def simulate(scenario: dict[str, Any], executor: str) -> Simulation:
    """Run `scenario` to its end on `executor` and return the finished simulation."""
    sim = Simulation.from_scenario(scenario_from_dict(scenario), executor=executor)
    try:
        sim.run()
    finally:
        sim.workload.executor.close()
    return sim
