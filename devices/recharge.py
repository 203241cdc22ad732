"""Recharge power as a periodic piecewise-constant signal, with exact energy integrals.

Mains windows, the clear-sky solar curve and solar traces all become a `PowerProfile`:
power[k] watts on [edges[k], edges[k+1]) of every period, shifted by an offset. Energy
over an interval and the time to harvest a given energy are computed in closed form
(bisection over cumulative sums), so battery state can advance lazily.
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_left, bisect_right
from functools import lru_cache

import numpy as np

from devices.specs import DAY_S, MainsCharging, SolarHarvest
from devices.traces import read_solar_trace

__all__ = ["PowerProfile", "clear_sky_fraction", "recharge_profile", "start_days"]

_SUNRISE_H, _SUNSET_H = 6.0, 18.0
_CURVE_STEP_S = 300.0


class PowerProfile:
    """Periodic piecewise-constant power [W]; sim time t maps to profile time t + offset_s."""

    __slots__ = ("cum", "edges", "offset_s", "period", "power", "total")

    def __init__(self, edges: np.ndarray, power: np.ndarray, offset_s: float = 0.0) -> None:
        edges = np.asarray(edges, dtype=float)
        power = np.asarray(power, dtype=float)
        if edges[0] != 0.0 or len(edges) != len(power) + 1 or not np.all(np.diff(edges) > 0):
            raise ValueError("edges must start at 0, be strictly increasing and have len(power) + 1 entries")
        if np.any(power < 0) or not np.all(np.isfinite(power)):
            raise ValueError("power must be finite and >= 0")
        cum = np.concatenate(([0.0], np.cumsum(power * np.diff(edges))))
        self.edges: list[float] = edges.tolist()
        self.power: list[float] = power.tolist()
        self.cum: list[float] = cum.tolist()
        self.period = float(edges[-1])
        self.total = float(cum[-1])
        self.offset_s = float(offset_s)

    def shifted(self, offset_s: float) -> PowerProfile:
        """The same profile with another offset (shares the arrays)."""
        other = copy.copy(self)
        other.offset_s = float(offset_s)
        return other

    def _cumulative(self, x: float) -> float:
        """Energy from profile time 0 to x [J]."""
        cycles = math.floor(x / self.period)
        r = x - cycles * self.period
        k = min(bisect_right(self.edges, r) - 1, len(self.power) - 1)
        return cycles * self.total + self.cum[k] + self.power[k] * (r - self.edges[k])

    def power_at(self, t: float) -> float:
        """Power at sim time t [W]."""
        x = t + self.offset_s
        r = x - math.floor(x / self.period) * self.period
        return self.power[min(bisect_right(self.edges, r) - 1, len(self.power) - 1)]

    def energy(self, t0: float, t1: float) -> float:
        """Energy delivered over sim time [t0, t1] [J] (never negative: a difference of cumulative sums can round below 0)."""
        return max(0.0, self._cumulative(t1 + self.offset_s) - self._cumulative(t0 + self.offset_s))

    def time_to_harvest(self, t0: float, joules: float) -> float:
        """Earliest sim time t >= t0 by which `joules` have been delivered (inf if never)."""
        if joules <= 0.0:
            return t0
        if self.total <= 0.0:
            return math.inf
        target = self._cumulative(t0 + self.offset_s) + joules
        cycles = math.floor(target / self.total)
        rem = target - cycles * self.total
        if rem <= 0.0 and cycles > 0:  # reached at the end of the previous cycle's last sunny segment
            cycles, rem = cycles - 1, self.total
        k = min(bisect_left(self.cum, rem), len(self.cum) - 1)
        if k == 0:
            x = 0.0
        elif self.cum[k] == rem:
            x = self.edges[k]
        else:
            x = self.edges[k - 1] + (rem - self.cum[k - 1]) / self.power[k - 1]
        return max(t0, cycles * self.period + x - self.offset_s)

    def segment_at(self, t: float) -> tuple[float, float]:
        """(end, power) of the constant-power piece holding sim time t (end > t)."""
        x = t + self.offset_s
        cycles = math.floor(x / self.period)
        k = min(bisect_right(self.edges, x - cycles * self.period) - 1, len(self.power) - 1)
        end = cycles * self.period + self.edges[k + 1] - self.offset_s
        if end <= t:  # t sits on a boundary up to rounding: take the next piece
            k += 1
            if k == len(self.power):
                k, cycles = 0, cycles + 1
            end = cycles * self.period + self.edges[k + 1] - self.offset_s
        return end, self.power[k]


def clear_sky_fraction(edges_s: np.ndarray) -> np.ndarray:
    """Mean of the clear-sky curve sin(pi (h - 6) / 12) (0 at night) over each [edges[i], edges[i+1])."""
    h = np.clip(np.asarray(edges_s, dtype=float) / 3600.0, _SUNRISE_H, _SUNSET_H)
    day = _SUNSET_H - _SUNRISE_H
    antiderivative = -day / math.pi * np.cos(math.pi * (h - _SUNRISE_H) / day)
    return np.diff(antiderivative) / (np.diff(edges_s) / 3600.0)


@lru_cache(maxsize=64)
def _base_profile(spec: MainsCharging | SolarHarvest) -> PowerProfile:
    if isinstance(spec, MainsCharging):
        cuts = {0.0, DAY_S}
        for start, end in spec.windows:
            cuts.update((start * 3600.0, end * 3600.0))
        edges = np.array(sorted(cuts))
        mids = (edges[:-1] + edges[1:]) / 7200.0
        on = np.zeros(len(mids), dtype=bool)
        for start, end in spec.windows:
            on |= ((mids >= start) & (mids < end)) if start < end else ((mids >= start) | (mids < end))
        return PowerProfile(edges, np.where(on, spec.power_w, 0.0))
    if spec.trace_path is None:
        edges = np.arange(0.0, DAY_S + _CURVE_STEP_S / 2, _CURVE_STEP_S)
        return PowerProfile(edges, spec.panel_w * clear_sky_fraction(edges))
    trace = read_solar_trace(spec.trace_path, spec.column, spec.step_s)
    return PowerProfile(trace.times_s, spec.panel_w * trace.values)


def start_days(spec: MainsCharging | SolarHarvest) -> int:
    """How many whole-day start offsets a device may draw from (`random_start` solar traces; else 1)."""
    if isinstance(spec, SolarHarvest) and spec.random_start and spec.trace_path is not None:
        return max(1, int(_base_profile(spec).period // DAY_S))
    return 1


def recharge_profile(spec: MainsCharging | SolarHarvest, start_day: int = 0) -> PowerProfile:
    """The power profile of a recharge spec; a `random_start` trace begins at whole day `start_day`."""
    profile = _base_profile(spec)
    days = start_days(spec)
    if days > 1:
        if not 0 <= start_day < days:
            raise ValueError(f"start_day must be in [0, {days}) (whole days of the trace), got {start_day!r}")
        return profile.shifted(float(start_day) * DAY_S)
    return profile
