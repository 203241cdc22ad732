"""Battery: a lazily advanced energy store with idle drain, a running load, recharge and accounting.

Energy in J, power in W, time in s. The level stays in [0, capacity]. Every joule drawn
is attributed to a cause (`DRAW_CAUSES`); energy harvested into the battery is
attributed to "recharge", so at all times
``initial_j + recharge - sum(drawn) == level`` (to float rounding).

States: *on* (idle drain runs, plus the load of whatever the device is doing, recharge
charges, harvest beyond a full battery is wasted and not counted) and *depleted* (the
device is off: no drain, recharge still charges). A device becomes depleted when its
drain empties the battery, and comes back on once the level reaches
resume_fraction x capacity (never, without recharge). Energy is drawn as time passes:
`advance(t, load_w, cause)` integrates from the committed time to t, so a job that stops
part-way has drawn only what it used. A mains-powered battery (capacity None) never
depletes; its level is inf and draws are still accounted.
"""

from __future__ import annotations

import math
from typing import Any

from devices.recharge import PowerProfile, recharge_profile
from devices.specs import BatterySpec, spec_dict

__all__ = ["DRAW_CAUSES", "HARVEST_CAUSE", "Battery"]

DRAW_CAUSES = ("idle", "compute", "crypto", "tx", "rx")
HARVEST_CAUSE = "recharge"


class Battery:
    """Energy store of one device; queries are pure, `advance` commits."""

    __slots__ = (
        "_cap",
        "_depleted",
        "_drawn",
        "_eps",
        "_harvested",
        "_idle_w",
        "_level",
        "_profile",
        "_resume_j",
        "_t",
        "depletions",
        "initial_j",
        "spec",
    )

    def __init__(self, spec: BatterySpec, start_day: int = 0) -> None:
        """`start_day`: the whole day of a solar trace this device starts on (random_start only)."""
        self.spec = spec
        self._cap = spec.capacity_j
        self._idle_w = spec.idle_power_w
        self._profile: PowerProfile | None = recharge_profile(spec.recharge, start_day) if spec.recharge else None
        self._resume_j = spec.resume_fraction * self._cap if self._cap is not None else 0.0
        self._eps = 1e-12 * self._cap if self._cap is not None else 0.0  # float dust: this much left is empty
        self._t = 0.0
        self._level = math.inf if self._cap is None else spec.initial_fraction * self._cap
        self.initial_j = self._level
        self._depleted = self._cap is not None and self._level <= self._eps  # a few ulps of charge is empty
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
        """Stored energy at time t >= time_s, idle from time_s on [J] (inf when mains-powered)."""
        return self._integrate(t, 0.0)[0]

    def depleted_at(self, t: float) -> bool:
        """Whether the device is off for lack of energy at time t >= time_s (idle from time_s on)."""
        return self._integrate(t, 0.0)[1]

    def time_recharged(self, t: float) -> float:
        """Earliest time >= t at which the device is not depleted [s]; inf if never."""
        level, depleted, *_ = self._integrate(t, 0.0)
        if not depleted:
            return t
        if self._profile is None or self._resume_j > self._cap:  # type: ignore[operator]
            return math.inf
        return self._profile.time_to_harvest(t, self._resume_j - level)

    def time_empty(self, t_end: float, load_w: float) -> float:
        """When the battery runs empty if the device draws `load_w` above idle from time_s on [s];
        inf if not before `t_end` (or never: mains power). time_s if it is depleted already."""
        if self._cap is None:
            return math.inf
        if self._depleted:
            return self._t
        t, _level, _harvested, empty = self._run_on(self._t, self._level, t_end, self._idle_w + load_w)
        return t if empty else math.inf

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
    def advance(self, t: float, load_w: float = 0.0, cause: str = "idle") -> None:
        """Integrate from time_s to t and commit: idle drain, plus `load_w` above idle drawn for
        `cause` while the device is on, and recharge."""
        if load_w:
            if cause not in DRAW_CAUSES:
                raise ValueError(f"unknown energy cause {cause!r}; use one of: {', '.join(DRAW_CAUSES)}")
            if not (load_w > 0.0 and math.isfinite(load_w)):
                raise ValueError(f"load must be finite and >= 0 W, got {load_w!r}")
        dt = t - self._t
        if self._cap is None and 0.0 <= dt < math.inf:  # mains power: only accounting (the engine's hot path)
            self._t = float(t)
            self._drawn["idle"] += self._idle_w * dt
            if load_w:
                self._drawn[cause] += load_w * dt
            return
        level, depleted, harvested, on_s, depletions = self._integrate(t, load_w)
        self._t, self._level, self._depleted = float(t), level, depleted
        self._harvested += harvested
        self._drawn["idle"] += self._idle_w * on_s
        if load_w:
            self._drawn[cause] += load_w * on_s
        self.depletions += depletions

    # ------------------------------------------------------------------ integration
    def _integrate(self, t1: float, load_w: float) -> tuple[float, bool, float, float, int]:
        """(level, depleted, harvested, seconds on, new depletions) at t1, drawing idle + load_w while on."""
        t, level, depleted = self._t, self._level, self._depleted
        if not t <= t1 < math.inf:
            if t1 < t:
                raise ValueError(
                    f"time went backwards: the battery is at t={t} s and was asked about t={t1} s; "
                    "query and draw times must not decrease"
                )
            raise ValueError(f"battery time must be finite, got {t1!r}")
        if self._cap is None:
            return level, False, 0.0, t1 - t, 0
        if t1 == t:
            drain_w = self._idle_w + load_w
            if not depleted and self._profile is None and drain_w > 0.0 and t + level / drain_w <= t1:
                return 0.0, True, 0.0, 0.0, 1  # so little charge that it is gone at once (as `time_empty` says)
            return level, depleted, 0.0, 0.0, 0
        harvested = on_s = 0.0
        depletions = 0
        prof, cap, target, drain = self._profile, self._cap, self._resume_j, self._idle_w + load_w
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
            t_off, level, h, depleted = self._run_on(t, level, t1, drain)
            on_s += t_off - t
            harvested += h
            t = t_off
            depletions += depleted
        return level, depleted, harvested, on_s, depletions

    def _run_on(self, t: float, level: float, t1: float, drain_w: float) -> tuple[float, float, float, bool]:
        """Run switched on, drawing `drain_w`, from t until t1 or until empty: (time, level, harvested, empty)."""
        prof = self._profile
        if prof is None:
            if drain_w == 0.0:
                return t1, level, 0.0, False
            if t + level / drain_w <= t1:
                return t + level / drain_w, 0.0, 0.0, True
            return t1, level - drain_w * (t1 - t), 0.0, False
        cap = self._cap
        assert cap is not None
        # Float dust: what is left below this is empty (the joules of a few ulps of t1 at this drain), so that
        # advancing to the time `time_empty` gave empties the battery however the span is cut.
        dust = self._eps + 1e-15 * drain_w * t1
        drain = drain_w * (t1 - t)
        if level - drain > dust:  # cannot empty: if it cannot fill up either, no piece is clamped
            gain = prof.energy(t, t1)
            if level + gain < cap:
                return t1, level + gain - drain, gain, False
        harvested = 0.0
        period = prof.period
        while t1 - t > 2 * period:  # a long span: a period at a time, skipping those that repeat or drift linearly
            t2, level2, h, empty, low, high, clamped = self._pieces(t, level, t + period, drain_w, dust)
            if empty:
                return t2, 0.0, harvested + h, True
            left = int((t1 - t2) // period) - 1  # whole periods after this one that may be skipped
            delta = level2 - level
            if clamped:  # full at some point: it repeats once a period ends where it started
                k = left if abs(delta) <= dust else 0
                delta = 0.0
            elif delta == 0.0:
                k = left
            elif delta < 0.0:  # each later period runs |delta| lower: skip while its lowest stays above empty
                k = min(left, int((low - dust) / -delta) - 1)
            else:  # each later period runs delta higher: skip while its highest stays below full
                k = min(left, int((cap - high) / delta) - 1)
            k = max(k, 0)
            t, level, harvested = t2 + k * period, level2 + k * delta, harvested + (k + 1) * h
        t, level, h, empty, *_ = self._pieces(t, level, t1, drain_w, dust)
        return t, level, harvested + h, empty

    def _pieces(
        self, t: float, level: float, t1: float, drain_w: float, dust: float
    ) -> tuple[float, float, float, bool, float, float, bool]:
        """Switched on from t to t1 (or empty), piece by piece of the recharge profile:
        (time, level, harvested, empty, lowest level, highest level, reached full)."""
        prof, cap = self._profile, self._cap
        assert prof is not None and cap is not None
        harvested, low, high, clamped = 0.0, level, level, False
        while t < t1:
            end, p = prof.segment_at(t)
            b = min(end, t1)
            net, dt = p - drain_w, b - t
            if net >= 0.0 and level >= cap:  # full: harvest covers the drain, the rest is wasted
                harvested += drain_w * dt
                clamped = True
            else:
                new = level + net * dt
                if net > 0.0 and new >= cap:
                    u = t + (cap - level) / net
                    harvested += p * (u - t) + drain_w * (b - u)
                    level, clamped = cap, True
                elif net < 0.0 and new <= dust:
                    z = min(b, t + level / -net)
                    harvested += p * (z - t)
                    return z, 0.0, harvested, True, 0.0, high, clamped
                else:
                    harvested += p * dt
                    level = new
            low, high = min(low, level), max(high, level)
            t = b
        return t1, level, harvested, False, low, high, clamped
