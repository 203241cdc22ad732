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

from sim.engine import Observer, RunView
from sim.scenario import Scenario

__all__ = ["RunProgress"]

_TICKS = 200  # updates of a time bar per run


class RunProgress(Observer):
    """The progress bar of one run (`name`, stopping at `max_time_s` or `max_versions`): an observer of the run."""

    def __init__(self, name: str, max_time_s: float, max_versions: int | None = None, unit: str = "versions",
                 announce_evaluations: bool = False) -> None:
        self.name, self.max_time_s, self.max_versions = name, max_time_s, max_versions
        self.by_versions = max_versions is not None
        self.unit = unit if self.by_versions else "sim-s"
        self.announce = announce_evaluations
        self._bar: Any = None
        self._accuracy: tuple[float, int] | None = None  # the last test accuracy and the version it tested

    @classmethod
    def of(cls, scenario: Scenario, **options: Any) -> RunProgress:
        """The progress bar of a run of `scenario` (options: unit, announce_evaluations)."""
        return cls(scenario.name, scenario.stop.max_time_s, scenario.stop.max_versions, **options)

    def start(self, run: RunView) -> None:
        """Open the bar; a time bar also gets a SimPy process that advances it."""
        from tqdm import tqdm

        total = self.max_versions if self.by_versions else math.ceil(self.max_time_s)
        self._bar = tqdm(total=total, unit=self.unit, desc=self.name, leave=False, dynamic_ncols=True)
        if not self.by_versions:
            run.env.process(self._tick(run, self.max_time_s / _TICKS))

    def _tick(self, run: RunView, step: float) -> Generator:
        while True:
            yield run.env.timeout(step)
            self._bar.update(min(self._bar.total, math.floor(run.now)) - self._bar.n)
            self._postfix(run)

    def _postfix(self, run: RunView) -> None:
        fields: dict[str, Any] = {"version": run.version} if not self.by_versions else {"sim": f"{run.now:.0f}s"}
        if self._accuracy is not None:
            acc, version = self._accuracy
            fields["acc"] = f"{100 * acc:.1f}% (v{version})"
        self._bar.set_postfix(fields, refresh=False)

    def version_created(self, run: RunView, version: int) -> None:
        """A global version was made."""
        if self._bar is not None and self.by_versions:
            self._bar.update(min(version, self._bar.total) - self._bar.n)
            self._postfix(run)

    def evaluated(self, run: RunView, accuracy: float) -> None:
        """The global model was tested (accuracy NaN in time-only runs)."""
        if math.isnan(accuracy):
            return
        self._accuracy = (accuracy, run.version)
        if self._bar is None:
            return
        self._postfix(run)
        if self.announce:
            done = f"{run.version}/{self.max_versions} {self.unit}" if self.by_versions else f"{run.version} versions"
            self._bar.write(f"{done}: test accuracy {100 * accuracy:.2f}% at {run.now:.0f} simulated s")

    def end(self, run: RunView) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
