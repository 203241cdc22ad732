"""Battery: a lazily advanced energy store with idle drain, recharge and per-cause accounting.

Energy in J, power in W, time in s. The level stays in [0, capacity]. Every joule drawn
is attributed to a cause (`DRAW_CAUSES`); energy harvested into the battery is
attributed to "recharge", so at all times
``initial_j + recharge - sum(drawn) == level`` (to float rounding).

States: *on* (idle drain runs, recharge charges, harvest beyond a full battery is
wasted and not counted) and *depleted* (the device is off: no idle drain, recharge
still charges). A device becomes depleted when idle drain empties the battery, when a
draw empties it, or when a draw is refused for lack of energy; it comes back on once
the level reaches max(resume_fraction x capacity, the refused draw) — never, without
recharge or when that exceeds the capacity. A mains-powered battery (capacity None)
never depletes; its level is inf and draws are still accounted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from devices.recharge import PowerProfile, recharge_profile
from devices.specs import BatterySpec, spec_dict

__all__ = ["DRAW_CAUSES", "HARVEST_CAUSE", "Battery"]

DRAW_CAUSES = ("idle", "compute", "crypto", "tx", "rx")
HARVEST_CAUSE = "recharge"


class Battery:
    """Energy store of one device; queries are pure, `advance` and `try_draw` commit."""

    __slots__ = (
        "_cap",
        "_depleted",
        "_drawn",
        "_harvested",
        "_idle_w",
        "_level",
        "_profile",
        "_resume_j",
        "_t",
        "_target",
        "depletions",
        "initial_j",
        "spec",
    )

    def __init__(self, spec: BatterySpec, rng: np.random.Generator | None = None) -> None:
        """`rng` is used only by a solar trace with random_start (a whole-day offset)."""
        self.spec = spec
        self._cap = spec.capacity_j
        self._idle_w = spec.idle_power_w
        self._profile: PowerProfile | None = recharge_profile(spec.recharge, rng) if spec.recharge else None
        self._resume_j = spec.resume_fraction * self._cap if self._cap is not None else 0.0
        self._t = 0.0
        self._level = math.inf if self._cap is None else spec.initial_fraction * self._cap
        self.initial_j = self._level
        self._depleted = self._cap is not None and self._level <= 0.0
        self._target = self._resume_j
        self.depletions = int(self._depleted)
        self._drawn = dict.fromkeys(DRAW_CAUSES, 0.0)
        self._harvested = 0.0

    # ------------------------------------------------------------------ queries
    @property
    def depleted(self) -> bool:
        """Whether the device was off for lack of energy at the last committed time."""
        return self._depleted

    @property
    def time_s(self) -> float:
        """Time up to which the state is committed [s]."""
        return self._t

    def level_j(self, t: float) -> float:
        """Stored energy at time t >= time_s [J] (inf when mains-powered)."""
        return self._integrate(t)[0]

    def depleted_at(self, t: float) -> bool:
        """Whether the device is off for lack of energy at time t >= time_s."""
        return self._integrate(t)[1]

    def time_recharged(self, t: float) -> float:
        """Earliest time >= t at which the device is not depleted [s]; inf if never."""
        level, depleted, target, *_ = self._integrate(t)
        if not depleted:
            return t
        if self._profile is None or target > self._cap:
            return math.inf
        return self._profile.time_to_harvest(t, target - level)

    def energy_by_cause(self) -> dict[str, float]:
        """Joules drawn per cause plus joules harvested ("recharge"), up to time_s."""
        return {**self._drawn, HARVEST_CAUSE: self._harvested}

    def config(self) -> dict[str, Any]:
        """Static description (flattened spec)."""
        return spec_dict(self.spec)

    def state(self) -> dict[str, Any]:
        """Dynamic state at time_s: level, depletion and energy per cause."""
        out: dict[str, Any] = {"t_s": self._t, "level_j": self._level, "depleted": self._depleted}
        out["depletions"] = self.depletions
        out.update({f"energy_{k}_j": v for k, v in self.energy_by_cause().items()})
        return out

    # ------------------------------------------------------------------ commits
    def advance(self, t: float) -> None:
        """Integrate idle drain and recharge from time_s to t and commit."""
        level, depleted, target, harvested, idle, depletions = self._integrate(t)
        self._t, self._level, self._depleted, self._target = float(t), level, depleted, target
        self._harvested += harvested
        self._drawn["idle"] += idle
        self.depletions += depletions

    def try_draw(self, t: float, joules: float, cause: str) -> bool:
        """Draw `joules` at time t for `cause`; False (nothing drawn, device depleted) if
        the device is depleted or the draw would take the level below zero."""
        if cause not in DRAW_CAUSES:
            raise ValueError(f"unknown energy cause {cause!r}; use one of: {', '.join(DRAW_CAUSES)}")
        if not (joules >= 0.0 and math.isfinite(joules)):
            raise ValueError(f"energy to draw must be finite and >= 0 J, got {joules!r}")
        self.advance(t)
        if self._cap is None:
            self._drawn[cause] += joules
            return True
        if self._depleted:
            return False
        if joules > self._level:
            self._deplete(max(self._resume_j, joules))
            return False
        self._level -= joules
        self._drawn[cause] += joules
        if self._level <= 0.0:
            self._level = 0.0
            self._deplete(self._resume_j)
        return True

    def _deplete(self, target_j: float) -> None:
        self._depleted, self._target = True, target_j
        self.depletions += 1

    # ------------------------------------------------------------------ integration
    def _integrate(self, t1: float) -> tuple[float, bool, float, float, float, int]:
        """(level, depleted, resume target, harvested, idle drawn, new depletions) at t1."""
        t, level, depleted, target = self._t, self._level, self._depleted, self._target
        if not t <= t1 < math.inf:
            if t1 < t:
                raise ValueError(
                    f"time went backwards: the battery is at t={t} s and was asked about t={t1} s; "
                    "query and draw times must not decrease"
                )
            raise ValueError(f"battery time must be finite, got {t1!r}")
        if self._cap is None:
            return level, False, target, 0.0, self._idle_w * (t1 - t), 0
        if t1 == t:
            return level, depleted, target, 0.0, 0.0, 0
        harvested = idle = 0.0
        depletions = 0
        prof, cap = self._profile, self._cap
        while t < t1:
            if depleted:
                if prof is None:
                    break
                if target <= cap:
                    t_back = prof.time_to_harvest(t, target - level)
                    if t_back <= t1:
                        harvested += target - level
                        t, level, depleted = t_back, target, False
                        continue
                gain = min(prof.energy(t, t1), cap - level)
                harvested += gain
                level += gain
                break
            t, level, h, d, depleted = self._run_on(t, level, t1)
            harvested += h
            idle += d
            if depleted:
                target = self._resume_j
                depletions += 1
        return level, depleted, target, harvested, idle, depletions

    def _run_on(self, t: float, level: float, t1: float) -> tuple[float, float, float, float, bool]:
        """Run switched on from t until t1 or until empty: (time, level, harvested, idle, empty)."""
        idle_w, prof = self._idle_w, self._profile
        if prof is None:
            if idle_w == 0.0:
                return t1, level, 0.0, 0.0, False
            if t + level / idle_w <= t1:
                return t + level / idle_w, 0.0, 0.0, level, True
            return t1, level - idle_w * (t1 - t), 0.0, idle_w * (t1 - t), False
        cap = self._cap
        drain = idle_w * (t1 - t)
        if level - drain > 0.0:  # cannot empty: if it cannot fill up either, no piece is clamped
            gain = prof.energy(t, t1)
            if level + gain < cap:
                return t1, level + gain - drain, gain, drain, False
        harvested = idle = 0.0
        while t < t1:
            end, p = prof.segment_at(t)
            b = min(end, t1)
            net, dt = p - idle_w, b - t
            if net >= 0.0 and level >= cap:  # full: harvest covers the idle drain, the rest is wasted
                harvested += idle_w * dt
                idle += idle_w * dt
            else:
                new = level + net * dt
                if net > 0.0 and new >= cap:
                    u = t + (cap - level) / net
                    harvested += p * (u - t) + idle_w * (b - u)
                    idle += idle_w * dt
                    level = cap
                elif net < 0.0 and new <= 0.0:
                    z = min(b, t + level / -net)
                    harvested += p * (z - t)
                    idle += idle_w * (z - t)
                    return z, 0.0, harvested, idle, True
                else:
                    harvested += p * dt
                    idle += idle_w * dt
                    level = new
            t = b
        return t1, level, harvested, idle, False
