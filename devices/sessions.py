"""On/off availability sessions of a device: churn drawn from a distribution, or replayed from a trace.

A device is online and offline in turns. It accepts a job only while online; going
offline interrupts a running job (the engine's interrupt-based failures): with no grace
period the job fails then (`went_offline`); with a grace period it pauses, and resumes
where it stopped if the device is back within the grace period (`came_online`), else it
fails when the grace period is over (`offline_too_long`). The time and energy spent are
charged as for any interruption (a paused job draws nothing above idle).

- `Churn`: session lengths drawn from the device's own stream, exponential, lognormal or
  Weibull with the given means, optionally modulated over the day (`ChurnSpec`). The
  first session starts at time 0, online with the long-run share of online time
  mean_on / (mean_on + mean_off). Sessions are drawn lazily, only as far as they are
  asked about, and forgotten once in the past, so an idle device costs nothing and a
  busy one keeps a few.
- `TraceSessions`: given online intervals, repeating with a period (FedScale's
  `finish_time`) or not; see `devices.availability_traces`.
"""

from __future__ import annotations

import bisect
import itertools
import math
from abc import abstractmethod
from collections import deque
from collections.abc import Sequence

from devices.interruptions import Interruption, InterruptionSource, Segment
from devices.specs import DAY_S, ChurnSpec
from devices.streams import RandomStream

__all__ = [
    "CAME_ONLINE", "CLASS_SESSION_MEANS", "OFFLINE_TOO_LONG", "WENT_OFFLINE", "Churn", "SessionSource",
    "TraceSessions",
]

WENT_OFFLINE, CAME_ONLINE, OFFLINE_TOO_LONG = "went_offline", "came_online", "offline_too_long"

# Mean (online, offline) session lengths per device class [s]. All assumed (no single published
# figure; override them per scenario or fleet group, or replay a real trace): mains-powered boards
# are up for hours between short network or power blips; a battery MCU node sleeps between duty
# cycles and loses its gateway now and then; a phone is eligible only while idle, charging and on
# an unmetered network, in short spells, mostly at night (FedScale's client_behave_trace records
# real phones: replay it for that).
CLASS_SESSION_MEANS: dict[str, tuple[float, float]] = {
    "mcu": (6 * 3600.0, 1800.0),
    "rpi3": (12 * 3600.0, 600.0),
    "rpi4": (12 * 3600.0, 600.0),
    "jetson_nano": (12 * 3600.0, 600.0),
    "smartphone": (3600.0, 3 * 3600.0),
    "laptop": (4 * 3600.0, 2 * 3600.0),
}


class SessionSource(InterruptionSource):
    """Online/offline sessions that interrupt jobs; `grace_s` None: going offline fails the job, else it pauses."""

    __slots__ = ("grace_s",)

    def __init__(self, grace_s: float | None) -> None:
        if grace_s is not None and not (grace_s >= 0.0 and math.isfinite(grace_s)):
            raise ValueError(f"grace_s must be finite and >= 0 or None, got {grace_s}")
        self.grace_s = grace_s

    @abstractmethod
    def state(self, t: float) -> tuple[bool, float]:
        """(online at time t, when that state next changes [s], inf if never)."""

    def available(self, t: float) -> bool:
        return self.state(t)[0]

    def first_interruption(self, segment: Segment) -> Interruption | None:
        online, change = self.state(segment.start)
        if not online:
            if segment.waiting:  # the job is paused: waiting offline is what a pause is for
                return None
            reason = f"offline for more than the {self.grace_s:g} s grace period" if self.grace_s is not None else ""
            return Interruption(segment.start, OFFLINE_TOO_LONG, reason=reason)
        if change >= segment.end:
            return None
        if self.grace_s is None:
            return Interruption(change, WENT_OFFLINE)
        back = self.state(change)[1]
        if back - change <= self.grace_s:
            return Interruption(change, WENT_OFFLINE, resume_at=back, resume_event=CAME_ONLINE)
        return Interruption(change, WENT_OFFLINE, resume_at=change + self.grace_s)  # then offline_too_long


class Churn(SessionSource):
    """Sessions drawn from `spec` with means `mean_on_s` / `mean_off_s` (see the module docstring)."""

    __slots__ = ("_draw", "_means", "_online", "_rng", "_starts", "spec")

    def __init__(self, spec: ChurnSpec, mean_on_s: float, mean_off_s: float, rng: RandomStream) -> None:
        super().__init__(spec.grace_s if spec.on_offline == "pause" else None)
        if not (mean_on_s > 0 and mean_off_s > 0 and math.isfinite(mean_on_s + mean_off_s)):
            raise ValueError(f"session means must be positive and finite, got {mean_on_s}, {mean_off_s}")
        self.spec, self._rng, self._means = spec, rng, (mean_off_s, mean_on_s)
        self._draw = _DRAWS[spec.distribution]
        online = rng.random() < mean_on_s / (mean_on_s + mean_off_s)
        self._online = online  # the state of the first kept session
        self._starts: deque[float] = deque([0.0, self._length(0.0, online)])  # kept sessions' starts, then an end

    def _length(self, start: float, online: bool) -> float:
        """A session's length [s], drawn for a session of state `online` starting at `start`."""
        mean = self._means[online]
        a = self.spec.diurnal_amplitude
        if a:
            swing = a * math.cos(2.0 * math.pi * ((start % DAY_S) / 3600.0 - self.spec.peak_hour) / 24.0)
            mean *= 1.0 + swing if online else 1.0 - swing
        return max(self._draw(self._rng, mean, self.spec.shape), 1e-9)

    def state(self, t: float) -> tuple[bool, float]:
        starts = self._starts
        while starts[-1] <= t:  # draw sessions up to t
            online = self._online != (len(starts) % 2 == 0)  # the state of the session starting at starts[-1]
            starts.append(starts[-1] + self._length(starts[-1], online))
        k = bisect.bisect_right(starts, t) - 1  # t is in session k: [starts[k], starts[k + 1])
        online, end = self._online != (k % 2 == 1), starts[k + 1]
        return online, end

    def available(self, t: float) -> bool:
        self._forget(t)
        return super().available(t)

    def first_interruption(self, segment: Segment) -> Interruption | None:
        self._forget(segment.start)
        return super().first_interruption(segment)

    def _forget(self, t: float) -> None:
        """Forget the sessions that ended by t, the simulation's now (nothing earlier is asked about again)."""
        starts = self._starts
        while len(starts) > 2 and starts[1] <= t:
            starts.popleft()
            self._online = not self._online

    def sessions(self, until: float) -> list[tuple[bool, float, float]]:
        """(online, start, end) of each session up to `until` that is still kept (for inspection and tests)."""
        self.state(until)
        s = list(self._starts)
        return [(self._online != (k % 2 == 1), s[k], s[k + 1]) for k in range(len(s) - 1) if s[k] <= until]


def _exponential(rng: RandomStream, mean: float, _shape: float) -> float:
    return rng.exponential(mean)


def _lognormal(rng: RandomStream, mean: float, sigma: float) -> float:
    return rng.lognormal(math.log(mean) - 0.5 * sigma * sigma, sigma)


def _weibull(rng: RandomStream, mean: float, k: float) -> float:
    return mean / math.gamma(1.0 + 1.0 / k) * (-math.log(1.0 - rng.random())) ** (1.0 / k)


_DRAWS = {"exponential": _exponential, "lognormal": _lognormal, "weibull": _weibull}


class TraceSessions(SessionSource):
    """Replays online intervals [start, end) [s], sorted and disjoint, repeating every `period_s` (None: once).

    Outside the intervals (and after the last one of a trace that does not repeat) the device is offline.
    """

    __slots__ = ("_bounds", "period_s")

    def __init__(self, intervals: Sequence[tuple[float, float]], period_s: float | None, grace_s: float | None) -> None:
        super().__init__(grace_s)
        bounds = [x for interval in intervals for x in interval]
        if any(b <= a for a, b in itertools.pairwise(bounds)) or (bounds and bounds[0] < 0):
            raise ValueError("online intervals must be sorted, disjoint, non-empty and start at or after 0")
        if period_s is not None and not (0 < period_s < math.inf and (not bounds or bounds[-1] <= period_s)):
            raise ValueError(f"the period {period_s} s must be positive, finite and hold every interval")
        self._bounds, self.period_s = bounds, period_s  # online on [bounds[2i], bounds[2i + 1])

    def state(self, t: float) -> tuple[bool, float]:
        bounds, period = self._bounds, self.period_s
        if not bounds:
            return False, math.inf
        base = 0.0
        if period is not None:
            base = math.floor(t / period) * period
            t -= base
        k = bisect.bisect_right(bounds, t)
        if k < len(bounds):
            if k == len(bounds) - 1 and bounds[0] == 0.0 and bounds[-1] == period:  # online across the wrap
                return True, base + period + bounds[1]
            return k % 2 == 1, base + bounds[k]
        if period is None:
            return False, math.inf
        return False, base + period + bounds[0]  # offline until the next period's first interval
