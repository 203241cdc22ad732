"""A device: compute, battery, link and availability models composed, with one random stream,
and the interruption sources that can stop its jobs."""

from __future__ import annotations

import math
from typing import Any

from devices.availability import Availability
from devices.battery import Battery
from devices.compute import Compute
from devices.interruptions import BatteryDepletion, InterruptionSource, LinkOutages, PermanentDropout
from devices.link import Link
from devices.specs import AvailabilitySpec, DeviceProfile, spec_dict
from devices.streams import RandomStream

__all__ = ["Device"]


class Device:
    """One simulated device.

    Its models draw from `rng` (one independent stream per device, a `devices.streams`
    stream or a numpy Generator): the link draws its trace row and outage-schedule seed at
    construction; later draws (training jitter,
    bandwidth, declined invitations) follow the order of calls. The dropout time and the
    solar start day are drawn by the fleet for all devices at once and passed in.
    `sources` hold what can interrupt its jobs: its dropout (if it ever leaves), its
    battery (unless mains-powered) and its link's outages (if any), then any added.
    """

    __slots__ = ("availability", "battery", "compute", "device_class", "id", "link", "link_class", "profile",
                 "sources")

    def __init__(
        self,
        id: int,
        device_class: str,
        link_class: str,
        profile: DeviceProfile,
        availability: AvailabilitySpec,
        rng: RandomStream,
        dropout_time: float = math.inf,
        start_day: int = 0,
    ) -> None:
        self.id = id
        self.device_class = device_class
        self.link_class = link_class
        self.profile = profile
        self.availability = Availability(availability, rng, dropout_time)
        self.battery = Battery(profile.battery, start_day)
        self.link = Link(profile.link, rng)
        self.compute = Compute(profile.compute, rng)
        self.sources: list[InterruptionSource] = []
        if math.isfinite(dropout_time):
            self.sources.append(PermanentDropout(dropout_time))
        if profile.battery.capacity_j is not None:
            self.sources.append(BatteryDepletion(self.battery))
        if self.link.has_outages:
            self.sources.append(LinkOutages(self.link))

    def add_source(self, source: InterruptionSource) -> None:
        """Attach another interruption source to this device's jobs."""
        self.sources.append(source)

    def online(self, t: float) -> bool:
        """Inside the daily window at time t and every source lets it work (not left, battery not empty, ...)."""
        return self.availability.in_window(t) and all(s.available(t) for s in self.sources)

    def config(self) -> dict[str, Any]:
        """Static description: id, classes and every model's settings (dotted keys)."""
        out: dict[str, Any] = {"id": self.id, "device_class": self.device_class, "link_class": self.link_class}
        out.update(spec_dict(self.profile))
        out.update({f"availability.{k}": v for k, v in self.availability.config().items()})
        out["compute.crypto_s_per_param"] = self.compute.config()["crypto_s_per_param"]
        return out

    def state(self) -> dict[str, Any]:
        """Dynamic state of the models that keep some (dotted keys)."""
        out: dict[str, Any] = {"id": self.id}
        for name in ("compute", "battery", "availability"):
            out.update({f"{name}.{k}": v for k, v in getattr(self, name).state().items()})
        return out
