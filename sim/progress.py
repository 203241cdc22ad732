"""Console progress of one run: a tqdm bar on stderr, in the run's own terms.

A run that stops at a number of global versions (`stop.max_versions`, the paper's `-ncomm`
rounds) counts versions done of that number; any other run counts simulated seconds of
`stop.max_time_s`. The bar shows the rate and the ETA (tqdm's, from the wall-clock rate so
far) and the last test accuracy; `announce_evaluations` also prints a line per evaluation,
as the paper's code does at each `-vf`.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

from sim.scenario import Scenario

__all__ = ["RunProgress"]

_TICKS = 200  # updates of a time bar per run


class RunProgress:
    """The progress bar of one simulation; the engine calls `start`, `version`, `evaluated`, `close`."""

    def __init__(self, scenario: Scenario, unit: str = "versions", announce_evaluations: bool = False) -> None:
        self.scenario = scenario
        self.by_versions = scenario.stop.max_versions is not None
        self.unit = unit if self.by_versions else "sim-s"
        self.announce = announce_evaluations
        self._bar: Any = None
        self._accuracy: tuple[float, int] | None = None  # the last test accuracy and the version it tested

    def start(self, sim: Any) -> None:
        """Open the bar; a time bar also gets a SimPy process that advances it."""
        from tqdm import tqdm

        stop = self.scenario.stop
        total = stop.max_versions if self.by_versions else math.ceil(stop.max_time_s)
        self._bar = tqdm(total=total, unit=self.unit, desc=self.scenario.name, leave=False, dynamic_ncols=True)
        if not self.by_versions:
            sim.env.process(self._tick(sim, stop.max_time_s / _TICKS))

    def _tick(self, sim: Any, step: float) -> Generator:
        while True:
            yield sim.env.timeout(step)
            self._bar.update(min(self._bar.total, math.floor(sim.now)) - self._bar.n)
            self._postfix(sim)

    def _postfix(self, sim: Any) -> None:
        fields = {"version": sim.server.version} if not self.by_versions else {"sim": f"{sim.now:.0f}s"}
        if self._accuracy is not None:
            acc, version = self._accuracy
            fields["acc"] = f"{100 * acc:.1f}% (v{version})"
        self._bar.set_postfix(fields, refresh=False)

    def version(self, sim: Any, version: int) -> None:
        """A global version was made."""
        if self._bar is not None and self.by_versions:
            self._bar.update(min(version, self._bar.total) - self._bar.n)
            self._postfix(sim)

    def evaluated(self, sim: Any, accuracy: float) -> None:
        """The global model was tested (accuracy NaN in time-only runs)."""
        if math.isnan(accuracy):
            return
        self._accuracy = (accuracy, sim.server.version)
        if self._bar is None:
            return
        self._postfix(sim)
        if self.announce:
            done = f"{sim.server.version}/{self.scenario.stop.max_versions} {self.unit}" if self.by_versions else (
                f"{sim.server.version} versions")
            self._bar.write(f"{done}: test accuracy {100 * accuracy:.2f}% at {sim.now:.0f} simulated s")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
