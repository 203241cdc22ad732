"""Availability: permanent dropout, declined invitations and a daily working window.

The dropout time is drawn by the caller (the fleet draws every device's in one go, see
`draw_dropout_times`): with probability dropout_rate it is uniform in
[0, dropout_window_s) (the run's horizon when that is null), else inf. Hours are hours
of the simulated day (time 0 is midnight).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from devices.specs import DAY_S, AvailabilitySpec, spec_dict
from devices.streams import RandomStream

__all__ = ["Availability", "draw_dropout_times", "in_daily_window"]


def draw_dropout_times(spec: AvailabilitySpec, n: int, rng: np.random.Generator, horizon_s: float) -> np.ndarray:
    """Leaving times of `n` devices [s]: uniform in [0, window) with probability dropout_rate, else inf."""
    window = spec.dropout_window_s if spec.dropout_window_s is not None else horizon_s
    if spec.dropout_rate == 0.0:
        return np.full(n, math.inf)
    if not math.isfinite(window):
        raise ValueError(
            f"dropout_rate is {spec.dropout_rate} but no dropout window is known; "
            "set dropout_window_s or pass the run's horizon_s"
        )
    leaves, when = rng.random(n), rng.random(n)
    return np.where(leaves < spec.dropout_rate, when * window, math.inf)


def in_daily_window(window: tuple[float, float] | None, t: float) -> bool:
    """Whether time t falls in the daily [start_hour, end_hour) window (always, without one)."""
    if window is None:
        return True
    start, end = window[0] * 3600.0, window[1] * 3600.0
    s = t % DAY_S
    return start <= s < end if start < end else (s >= start or s < end)


class Availability:
    """Whether one device is around; declines invitations with draws from `rng`."""

    __slots__ = ("_rng", "declined", "dropout_time", "spec")

    def __init__(self, spec: AvailabilitySpec, rng: RandomStream, dropout_time: float = math.inf) -> None:
        self.spec = spec
        self._rng = rng
        self.dropout_time = float(dropout_time)
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
        return in_daily_window(self.spec.daily_window, t)

    def config(self) -> dict[str, Any]:
        """Static description (flattened spec and the drawn dropout time)."""
        return {**spec_dict(self.spec), "dropout_time_s": self.dropout_time}

    def state(self) -> dict[str, Any]:
        """Invitations declined so far."""
        return {"invitations_declined": self.declined}
