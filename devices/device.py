"""A device: compute, battery, link and availability models composed, with one random stream."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from devices.availability import Availability
from devices.battery import Battery
from devices.compute import Compute
from devices.link import Link
from devices.specs import AvailabilitySpec, DeviceProfile, spec_dict

__all__ = ["Device"]

_MAX_ONLINE_STEPS = 10_000


class Device:
    """One simulated device.

    All four models draw from `rng` (one independent stream per device): the
    availability draws its dropout time first, then the battery its solar start day (if
    any), then the link its trace row and outage-schedule seed; later draws (training
    jitter, bandwidth, declined invitations) follow the order of calls.
    """

    def __init__(
        self,
        id: int,
        device_class: str,
        link_class: str,
        profile: DeviceProfile,
        availability: AvailabilitySpec,
        rng: np.random.Generator,
        horizon_s: float = math.inf,
    ) -> None:
        self.id = id
        self.device_class = device_class
        self.link_class = link_class
        self.profile = profile
        self.availability = Availability(availability, rng, horizon_s)
        self.battery = Battery(profile.battery, rng)
        self.link = Link(profile.link, rng)
        self.compute = Compute(profile.compute, rng)

    def online(self, t: float) -> bool:
        """Not dropped out, battery not depleted and inside the daily window at time t."""
        return (
            t < self.availability.dropout_time
            and self.availability.in_window(t)
            and not self.battery.depleted_at(t)
        )

    def next_online(self, t: float) -> float:
        """Earliest time >= t at which the device is online [s]; inf if never.

        Stepping between recharge and window openings stops after a bounded number of
        steps (a battery that always empties before its window opens): inf then too.
        """
        dropout = self.availability.dropout_time
        for _ in range(_MAX_ONLINE_STEPS):
            if t >= dropout:
                return math.inf
            t_back = self.battery.time_recharged(t)
            if t_back == math.inf:
                return math.inf
            t_next = self.availability.next_window_start(t_back)
            if t_next == t:
                return t
            t = t_next
        return math.inf

    def config(self) -> dict[str, Any]:
        """Static description: id, classes and every model's settings (dotted keys)."""
        out: dict[str, Any] = {"id": self.id, "device_class": self.device_class, "link_class": self.link_class}
        out.update(spec_dict(self.profile))
        out.update({f"availability.{k}": v for k, v in self.availability.config().items()})
        out["compute.crypto_s_per_param"] = self.compute.config()["crypto_s_per_param"]
        return out

    def state(self) -> dict[str, Any]:
        """Dynamic state of every model (dotted keys)."""
        out: dict[str, Any] = {"id": self.id}
        for name in ("compute", "battery", "link", "availability"):
            out.update({f"{name}.{k}": v for k, v in getattr(self, name).state().items()})
        return out
