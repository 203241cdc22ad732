"""Network link: per-transfer bandwidth, latency, radio power, and Gilbert-Elliott on/off outages.

The outage schedule alternates exponential up and down periods (means mean_up_s,
mean_down_s), starting up at time 0. It is drawn lazily, in batches, from a private
stream seeded by one draw from the device's stream at construction, so it does not
depend on the order of queries and costs nothing for a device that never transfers.

A transfer attempt is the set-up `latency_s` (no radio energy) followed by
``8 * nbytes / bandwidth`` seconds of data at `power_w(direction, bandwidth)`. The
link only answers questions; the engine's device job simulates the transfer itself:
an outage interrupts it (`devices.interruptions.LinkOutages`), and it resumes or starts
again from zero when the link is back (`on_outage`), up to `max_restarts` restarts.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Literal

from devices.specs import LinkSpec, spec_dict
from devices.streams import CounterStream, RandomStream
from devices.traces import read_bandwidth_trace

__all__ = ["Link"]

_FIRST_BATCH, _MAX_BATCH = 2, 64  # up/down pairs drawn per schedule extension: few at first, doubling


class Link:
    """One device's link: a lazily extended on/off schedule plus bandwidth draws from `rng`."""

    __slots__ = ("_mean_down", "_mean_up", "_outages", "_rng", "_sched", "_sigma", "_sw", "_trace", "_trace_row",
                 "spec")

    def __init__(self, spec: LinkSpec, rng: RandomStream) -> None:
        self.spec = spec
        self._rng = rng
        self._trace = read_bandwidth_trace(spec.bandwidth_trace) if spec.bandwidth_trace is not None else None
        self._trace_row = int(rng.integers(len(self._trace.down_bps))) if self._trace is not None else 0
        self._sigma = _log_sigma(spec.bandwidth_cv)
        self._outages = spec.mean_down_s > 0.0
        self._mean_up, self._mean_down = spec.mean_up_s, spec.mean_down_s
        # The schedule has a stream of its own, seeded now: it does not depend on the order of queries.
        self._sched = CounterStream(int(rng.integers(1 << 63))) if self._outages else None
        self._sw = [0.0]  # switch times; [sw[i], sw[i+1]) is up for even i, down for odd i

    @property
    def has_outages(self) -> bool:
        return self._outages

    # ------------------------------------------------------------------ schedule
    def _extend(self) -> None:
        """Append up/down pairs to the schedule: as many again as it holds, from 2 up to 64."""
        assert self._sched is not None
        draw, sw = self._sched.exponential, self._sw
        t = sw[-1]
        for _ in range(min(_MAX_BATCH, max(_FIRST_BATCH, len(sw) // 2))):
            t += draw(self._mean_up)
            sw.append(t)
            t += draw(self._mean_down)
            sw.append(t)

    def _index(self, t: float) -> int:
        """Index i of the schedule interval [sw[i], sw[i+1]) holding t (extends as needed)."""
        if not 0.0 <= t < math.inf:
            raise ValueError(f"link time must be finite and >= 0 s, got {t!r}")
        while self._sw[-1] <= t:
            self._extend()
        return bisect_right(self._sw, t) - 1

    def is_up(self, t: float) -> bool:
        """Whether the link is up at time t."""
        return not self._outages or self._index(t) % 2 == 0

    def next_up(self, t: float) -> float:
        """Earliest time >= t at which the link is up [s]."""
        if not self._outages:
            return t
        i = self._index(t)
        return t if i % 2 == 0 else self._sw[i + 1]

    def next_down(self, t: float) -> float:
        """Start of the first outage holding or following time t [s] (t itself if the link is down); inf without
        outages."""
        if not self._outages:
            return math.inf
        i = self._index(t)
        if i % 2:
            return t
        if i + 1 >= len(self._sw):
            self._extend()
        return self._sw[i + 1]

    # ------------------------------------------------------------------ transfers
    def bandwidth(self, direction: Literal["up", "down"]) -> float:
        """Draw the bandwidth of one transfer [bit/s]."""
        if direction not in ("up", "down"):
            raise ValueError(f"transfer direction must be 'up' or 'down', got {direction!r}")
        trace = self._trace
        if trace is not None:
            if trace.kind == "samples":
                row = int(self._rng.integers(len(trace.down_bps)))
                return float((trace.down_bps if direction == "down" else trace.up_bps)[row])
            r = self._trace_row
            if direction == "down":
                mean, sd = trace.down_bps[r], trace.down_sd_bps[r]
            else:
                mean, sd = trace.up_bps[r], trace.up_sd_bps[r]
            return _lognormal(self._rng, float(mean), _log_sigma(sd / mean))
        return _lognormal(self._rng, self.spec.down_bps if direction == "down" else self.spec.up_bps, self._sigma)

    def power_w(self, direction: Literal["up", "down"], bandwidth_bps: float) -> float:
        """Radio power while data flows at `bandwidth_bps` (energy per byte x bytes per second) [W]."""
        per_byte = self.spec.tx_j_per_byte if direction == "up" else self.spec.rx_j_per_byte
        return per_byte * bandwidth_bps / 8.0

    # ------------------------------------------------------------------ logging
    def config(self) -> dict[str, Any]:
        """Static description (flattened spec)."""
        return spec_dict(self.spec)


def _log_sigma(cv: float) -> float:
    """Log-space sigma of a lognormal with coefficient of variation `cv`."""
    return math.sqrt(math.log1p(cv * cv))


def _lognormal(rng: RandomStream, mean: float, sigma: float) -> float:
    """A lognormal draw with the given mean and log-sigma (the mean itself when sigma is 0)."""
    if sigma == 0.0:
        return mean
    return mean * math.exp(rng.normal(-0.5 * sigma * sigma, sigma))
