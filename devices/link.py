"""Network link: per-transfer bandwidth, latency, and Gilbert-Elliott on/off outages.

The outage schedule alternates exponential up and down periods (means mean_up_s,
mean_down_s), starting up at time 0. It is drawn lazily in batches from a private
stream (stdlib `random`, seeded by one draw from the device's generator at
construction), so it does not depend on the order of queries.

A transfer needs ``latency_s + 8 * nbytes / bandwidth`` seconds of up time:
- resume: the up time is accumulated across outages (a transfer that spans an outage
  ends later by exactly that outage);
- restart: an outage discards the attempt; after reconnection it begins again from
  zero (latency included), so it needs one up period long enough for the whole
  transfer. After `max_restarts` restarts the transfer is abandoned: `end` is inf,
  `completed` False and `reason` says why (the bytes and energy spent are reported).
A transfer that starts while the link is down first waits for it to come up. It never
ends earlier than start + the no-outage time.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import numpy as np

from devices.specs import LinkSpec, spec_dict
from devices.traces import BandwidthTrace, read_bandwidth_trace

__all__ = ["Link", "Transfer"]

_BATCH = 8  # up/down pairs drawn per schedule extension
_NO_OUTAGES: tuple[tuple[float, float], ...] = ()


class Transfer(NamedTuple):
    """One transfer's timing, retries, bytes and energy (times in s, energy in J).

    outages: the (start, end) spans it waited through; restarts: attempts discarded by
    an outage; bytes_on_air: bytes actually sent, counting restarted attempts.
    """

    direction: Literal["up", "down"]
    nbytes: int
    start: float
    end: float
    bandwidth_bps: float
    outages: tuple[tuple[float, float], ...]
    restarts: int
    bytes_on_air: int
    energy_j: float
    completed: bool = True
    reason: str = ""

    @property
    def duration_s(self) -> float:
        """end - start [s] (inf when abandoned)."""
        return self.end - self.start


class Link:
    """One device's link: a lazily extended on/off schedule plus bandwidth draws from `rng`."""

    __slots__ = (
        "_cum",
        "_down_bps",
        "_latency",
        "_mean_down",
        "_mean_up",
        "_outages",
        "_rng",
        "_sched",
        "_seed",
        "_sigma",
        "_sw",
        "_trace",
        "_trace_row",
        "_up_bps",
        "bytes_down",
        "bytes_up",
        "outage_wait_s",
        "restarts",
        "spec",
        "transfers",
    )

    def __init__(self, spec: LinkSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self._rng = rng
        self._latency = spec.latency_s
        self._down_bps, self._up_bps = spec.down_bps, spec.up_bps
        self._trace = _trace_of(spec)
        self._trace_row = int(rng.integers(len(self._trace.down_bps))) if self._trace is not None else 0
        self._sigma = _log_sigma(spec.bandwidth_cv)
        self._outages = spec.mean_down_s > 0.0
        self._mean_up, self._mean_down = spec.mean_up_s, spec.mean_down_s
        # The schedule comes from a private stream seeded now, so it does not depend on
        # the order of queries; stdlib `random` keeps creating it cheap (~5 us).
        self._seed = int(rng.bit_generator.random_raw()) if self._outages else 0
        self._sched: random.Random | None = None
        self._sw = [0.0]  # switch times; [sw[i], sw[i+1]) is up for even i, down for odd i
        self._cum = [0.0]  # up time accumulated before sw[i]
        self.transfers = 0
        self.restarts = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.outage_wait_s = 0.0

    # ------------------------------------------------------------------ schedule
    def _extend(self) -> None:
        """Append _BATCH more up/down pairs to the schedule."""
        if self._sched is None:
            self._sched = random.Random(self._seed)
        draw, sw, cum = self._sched.expovariate, self._sw, self._cum
        t, c = sw[-1], cum[-1]
        for _ in range(_BATCH):
            up = draw(1.0 / self._mean_up)
            t += up
            c += up
            sw.append(t)
            cum.append(c)
            t += draw(1.0 / self._mean_down)
            sw.append(t)
            cum.append(c)

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

    def outages_between(self, t0: float, t1: float) -> tuple[tuple[float, float], ...]:
        """Outages overlapping [t0, t1), as (start, end) clipped to that span."""
        if not self._outages or t1 <= t0:
            return _NO_OUTAGES
        i = self._index(t0)
        self._index(t1)
        i += i % 2 == 0  # first down interval at or after t0
        out = []
        sw = self._sw  # sw[-1] > t1, so every down interval starting before t1 has its end in sw
        while i < len(sw) and sw[i] < t1:
            out.append((max(sw[i], t0), min(sw[i + 1], t1)))
            i += 2
        return tuple(out)

    # ------------------------------------------------------------------ transfers
    def _bandwidth(self, direction: str) -> float:
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
        return _lognormal(self._rng, self._down_bps if direction == "down" else self._up_bps, self._sigma)

    def transfer(self, start: float, nbytes: int, direction: Literal["up", "down"]) -> Transfer:
        """Send (up) or receive (down) `nbytes` starting at `start`; see the module docstring."""
        if direction not in ("up", "down"):
            raise ValueError(f"transfer direction must be 'up' or 'down', got {direction!r}")
        if nbytes < 0:
            raise ValueError(f"transfer size must be >= 0 bytes, got {nbytes!r}")
        bps = self._bandwidth(direction)
        need = self._latency + 8.0 * nbytes / bps
        end = last = start + need
        restarts, air, reason, outages = 0, nbytes, "", _NO_OUTAGES
        if self._outages and need > 0.0:
            i = self._index(start)
            if i % 2 or end > self._sw[i + 1]:  # not inside one up period: walk the schedule
                if self.spec.on_outage == "resume":
                    end = last = self._resume_end(start, need)
                else:
                    end, last, restarts, wasted, reason = self._restart_end(start, need, bps, nbytes)
                    air = wasted + (nbytes if not reason else 0)
                outages = self.outages_between(start, last)
                self.restarts += restarts
                self.outage_wait_s += sum(e - s for s, e in outages)
        self.transfers += 1
        if direction == "up":
            self.bytes_up += air
            energy = air * self.spec.tx_j_per_byte
        else:
            self.bytes_down += air
            energy = air * self.spec.rx_j_per_byte
        return Transfer(direction, nbytes, start, end, bps, outages, restarts, air, energy, not reason, reason)

    def _resume_end(self, start: float, need: float) -> float:
        i = self._index(start)
        target = self._cum[i] + (start - self._sw[i] if i % 2 == 0 else 0.0) + need
        while self._cum[-1] < target:
            self._extend()
        j = bisect_left(self._cum, target)  # cum[j-1] < target <= cum[j]; [sw[j-1], sw[j]) is up
        return max(start + need, self._sw[j - 1] + (target - self._cum[j - 1]))

    def _restart_end(self, start: float, need: float, bps: float, nbytes: int) -> tuple[float, float, int, int, str]:
        """(end, time of the last event, restarts, bytes wasted on failed attempts, reason if abandoned)."""
        t, restarts, wasted = start, 0, 0
        while True:
            i = self._index(t)
            if i % 2:
                i += 1
                t = self._sw[i]
                if i + 1 >= len(self._sw):
                    self._extend()
            up_end = self._sw[i + 1]
            if up_end - t >= need:
                return t + need, t + need, restarts, wasted, ""
            wasted += min(nbytes, int(max(0.0, up_end - t - self._latency) * bps / 8.0))
            if restarts == self.spec.max_restarts:
                reason = (
                    f"abandoned after {restarts} restarts: it needs {need:.3g} s of unbroken up time but up "
                    f"periods average {self.spec.mean_up_s:g} s; use on_outage='resume', a faster link or "
                    f"fewer bytes"
                )
                return math.inf, up_end, restarts, wasted, reason
            restarts += 1
            t = up_end

    # ------------------------------------------------------------------ logging
    def config(self) -> dict[str, Any]:
        """Static description (flattened spec)."""
        return spec_dict(self.spec)

    def state(self) -> dict[str, Any]:
        """Transfers, restarts, bytes on air per direction and seconds spent waiting on outages."""
        return {
            "transfers": self.transfers,
            "restarts": self.restarts,
            "bytes_up_on_air": self.bytes_up,
            "bytes_down_on_air": self.bytes_down,
            "outage_wait_s": self.outage_wait_s,
        }


@lru_cache(maxsize=256)
def _trace_of(spec: LinkSpec) -> BandwidthTrace | None:
    """The spec's bandwidth trace, read once per spec (the spec validated the file)."""
    return read_bandwidth_trace(spec.bandwidth_trace) if spec.bandwidth_trace is not None else None


def _log_sigma(cv: float) -> float:
    """Log-space sigma of a lognormal with coefficient of variation `cv`."""
    return math.sqrt(math.log1p(cv * cv))


def _lognormal(rng: np.random.Generator, mean: float, sigma: float) -> float:
    """A lognormal draw with the given mean and log-sigma (the mean itself when sigma is 0)."""
    if sigma == 0.0:
        return mean
    return mean * math.exp(rng.normal(-0.5 * sigma * sigma, sigma))
