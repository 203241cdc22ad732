"""Per-job dropout: an invited device's job fails before its upload completes, and the device comes back.

This is what FL papers and simulators mostly mean by a dropout (a selected client that
does not return its update this round: the app was killed, the phone moved out of
coverage, it crashed), as opposed to `PermanentDropout` (the device leaves for good).
Two ways to say how often, each an `InterruptionSource`:

- `JobDropout(probability)`: each job fails with that probability, at a point drawn over
  its phases: the phase uniformly among the job's phases (download, decrypt, train,
  encrypt, upload; the crypto phases only when encryption is on), then the point
  uniformly within that phase's work;
- `WorkHazard(rate_per_s)`: a job fails at a constant hazard per second of work (time
  spent transferring or computing; waiting out a pause does not count), so a long job
  fails more often than a short one: P(fail) = 1 - exp(-rate x work seconds).

The time and energy spent until the failure are charged as for any interruption (the job
draws power only for the time it ran). After a failure the device is offline for
`offline_s` seconds, then back in the pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from devices.interruptions import Interruption, InterruptionSource, Segment
from devices.streams import RandomStream

__all__ = ["JOB_DROPOUT_EVENT", "JobDropout", "WorkHazard"]

JOB_DROPOUT_EVENT = "job_dropout"  # logged when a job fails this way


class _WorkBudget(InterruptionSource):
    """A job fails once it has done `budget` seconds of work (inf: it does not fail); subclasses set the budget."""

    __slots__ = ("_back_at", "_budget", "_strike", "offline_s")

    def __init__(self, offline_s: float) -> None:
        self.offline_s = offline_s
        self._budget = math.inf  # seconds of work left before this job fails
        self._strike = math.inf  # when the running segment is set to fail [s]
        self._back_at = -math.inf  # offline until then after a failure [s]

    def available(self, t: float) -> bool:
        return t >= self._back_at

    def first_interruption(self, segment: Segment) -> Interruption | None:
        if segment.waiting or segment.start + self._budget >= segment.end:
            self._strike = math.inf
            return None
        self._strike = segment.start + self._budget
        return Interruption(self._strike, JOB_DROPOUT_EVENT)

    def segment_ended(self, segment: Segment, stop: float) -> None:
        if segment.waiting:
            return
        if stop >= self._strike:  # this source ended the job
            self._budget, self._back_at = math.inf, stop + self.offline_s
        else:
            self._budget -= stop - segment.start
        self._strike = math.inf


class JobDropout(_WorkBudget):
    """Each job fails with `probability`, at a point drawn over its `phases` (see the module docstring)."""

    __slots__ = ("_doomed", "_fraction", "_phases", "_rng", "probability")

    def __init__(self, probability: float, phases: Sequence[str], rng: RandomStream, offline_s: float = 0.0) -> None:
        if not 0.0 <= probability <= 1.0 or not phases:
            raise ValueError(f"probability must be in [0, 1] (got {probability}) and the job needs phases")
        super().__init__(offline_s)
        self.probability, self._phases, self._rng = probability, tuple(phases), rng
        self._doomed: str | None = None  # the phase this job fails in
        self._fraction = 0.0  # how far into that phase's work [0, 1)

    def job_started(self, t: float) -> None:
        self._budget, self._doomed = math.inf, None
        if self._rng.random() < self.probability:
            self._doomed = self._phases[self._rng.integers(len(self._phases))]
            self._fraction = self._rng.random()

    def phase_started(self, phase: str, work_s: float) -> None:
        if phase == self._doomed:
            self._budget = self._fraction * work_s


class WorkHazard(_WorkBudget):
    """Jobs fail at `rate_per_s` per second of work (see the module docstring)."""

    __slots__ = ("_rng", "rate_per_s")

    def __init__(self, rate_per_s: float, rng: RandomStream, offline_s: float = 0.0) -> None:
        if not (0.0 < rate_per_s and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s must be positive and finite, got {rate_per_s}")
        super().__init__(offline_s)
        self.rate_per_s, self._rng = rate_per_s, rng

    def job_started(self, t: float) -> None:
        self._budget = self._rng.exponential(1.0 / self.rate_per_s)
