"""Availability: permanent dropout, declined invitations and a daily working window.

The dropout time is drawn once at construction: with probability dropout_rate it is
uniform in [0, dropout_window_s) (the run's horizon when that is null), else inf.
Hours are hours of the simulated day (time 0 is midnight).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from devices.specs import DAY_S, AvailabilitySpec, spec_dict

__all__ = ["Availability"]


class Availability:
    """Whether one device is around; draws from `rng`."""

    __slots__ = ("_rng", "_window", "declined", "dropout_time", "spec")

    def __init__(self, spec: AvailabilitySpec, rng: np.random.Generator, horizon_s: float = math.inf) -> None:
        self.spec = spec
        self._rng = rng
        window = spec.dropout_window_s if spec.dropout_window_s is not None else horizon_s
        self.dropout_time = math.inf
        if spec.dropout_rate > 0.0:
            if not math.isfinite(window):
                raise ValueError(
                    f"dropout_rate is {spec.dropout_rate} but no dropout window is known; "
                    "set dropout_window_s or pass the run's horizon_s"
                )
            leaves, when = rng.random(), rng.random()
            if leaves < spec.dropout_rate:
                self.dropout_time = when * window
        self._window = (
            None if spec.daily_window is None else (spec.daily_window[0] * 3600.0, spec.daily_window[1] * 3600.0)
        )
        self.declined = 0

    def dropped(self, t: float) -> bool:
        """Whether the device has left for good by time t."""
        return t >= self.dropout_time

    def declines_invitation(self) -> bool:
        """Draw whether the device declines one invitation (probability `unavailability`)."""
        p = self.spec.unavailability
        declines = p > 0.0 and self._rng.random() < p
        self.declined += declines
        return declines

    def in_window(self, t: float) -> bool:
        """Whether time t falls in the daily working window (always, without one)."""
        if self._window is None:
            return True
        start, end = self._window
        s = t % DAY_S
        return start <= s < end if start < end else (s >= start or s < end)

    def next_window_start(self, t: float) -> float:
        """Earliest time >= t inside the daily window [s]."""
        if self.in_window(t):
            return t
        start = self._window[0]
        day = math.floor(t / DAY_S) * DAY_S
        return day + start if day + start >= t else day + DAY_S + start

    def config(self) -> dict[str, Any]:
        """Static description (flattened spec and the drawn dropout time)."""
        return {**spec_dict(self.spec), "dropout_time_s": self.dropout_time}

    def state(self) -> dict[str, Any]:
        """Invitations declined so far."""
        return {"invitations_declined": self.declined}
