"""The fleet: every device of a run as passive state, a `Device` object only for those touched.

Per-device arrays hold what each device has from the start (its group, its leaving time,
its solar start day) and its counters (jobs, bytes, ...). A `Device` with its models is
built the first time the device is touched (invited, or asked whether it is online when
the answer depends on its state, e.g. its battery), from its own seeded stream (a
counter-based `devices.CounterStream`, seeded from the run's key and the device's id), so
what a device does never depends on which devices were touched before it. An idle device costs nothing: no process, no
per-device work at build or at the end of the run. Building a fleet of 1,000,000
devices takes a fraction of a second.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from devices import (
    CAME_ONLINE,
    DRAW_CAUSES,
    HARVEST_CAUSE,
    JOB_DROPOUT_EVENT,
    OFFLINE_TOO_LONG,
    WENT_OFFLINE,
    AvailabilitySpec,
    Battery,
    CounterStream,
    Device,
    DeviceProfile,
    InterruptionSource,
    draw_dropout_times,
    in_daily_window,
    start_days,
    stream_seed,
)
from devices.profiles import group_sizes

__all__ = ["COUNTERS", "INTERRUPTION_COUNTERS", "JOB_PHASES", "DeviceGroup", "Fleet", "SourceFactory", "build_fleet"]

SourceFactory = Callable[[Device], InterruptionSource | None]  # an extra interruption source for a device (or None)
JOB_PHASES = {False: ("download", "train", "upload"), True: ("download", "decrypt", "train", "encrypt", "upload")}

# Per-device counters the engine keeps (integers; outage_s is seconds).
COUNTERS = ("jobs", "updates_sent", "jobs_failed", "bytes_sent", "bytes_received", "transfer_restarts",
            "outages", "invitations_declined")
# Interruptions counted per device, kept sparse (only devices they struck have an entry): counter -> the event
# that marks one.
INTERRUPTION_COUNTERS = {
    "job_dropouts": JOB_DROPOUT_EVENT,  # per-job dropout (failures.job_dropout, job_hazard_per_s)
    "went_offline": WENT_OFFLINE,  # churn or a trace took the device offline during a job
    "offline_resumes": CAME_ONLINE,  # ... and the paused job went on (on_offline: pause)
    "offline_timeouts": OFFLINE_TOO_LONG,  # ... and the device stayed offline past the grace period: the job failed
}
_INTERRUPTION_OF_EVENT = {event: name for name, event in INTERRUPTION_COUNTERS.items()}
_COUNTER_INDEX = {name: k for k, name in enumerate(COUNTERS)}
_NUM_COUNTERS = len(COUNTERS)


@dataclass(frozen=True)
class DeviceGroup:
    """Devices of one class on one link class, with their availability settings."""

    device_class: str
    link_class: str
    profile: DeviceProfile
    availability: AvailabilitySpec = field(default_factory=AvailabilitySpec)


class Fleet:
    """The devices of a run (see the module docstring).

    `group_of[i]` is device i's index in `groups`. `seed` seeds the devices' streams and
    draws the leaving times and solar start days.
    `horizon_s` is the window of dropouts without their own (the run's time limit).
    `source_factories` add interruption sources to every device when it is built.
    """

    def __init__(
        self,
        groups: Sequence[DeviceGroup],
        group_of: np.ndarray,
        seed: np.random.SeedSequence,
        horizon_s: float = math.inf,
        source_factories: Sequence[SourceFactory] = (),
    ) -> None:
        n = len(group_of)
        if not groups or n == 0 or int(np.min(group_of)) < 0 or int(np.max(group_of)) >= len(groups):
            raise ValueError(f"a fleet needs at least one device and group; group_of must index the {len(groups)} groups")
        self.groups = tuple(groups)
        self.group_of = np.asarray(group_of, dtype=np.int32)
        self._group = array("i", self.group_of.tobytes())
        draws_seq, device_seq = seed.spawn(2)
        draws = np.random.default_rng(draws_seq)
        self._key = int(device_seq.generate_state(1, np.uint64)[0])  # seeds every device's stream
        dropout = np.full(n, math.inf)
        start_day = np.zeros(n, dtype=np.int64)
        for g, group in enumerate(self.groups):
            members = np.flatnonzero(self.group_of == g)
            dropout[members] = draw_dropout_times(group.availability, len(members), draws, horizon_s)
            recharge = group.profile.battery.recharge
            days = start_days(recharge) if recharge is not None else 1
            if days > 1:
                start_day[members] = draws.integers(days, size=len(members))
        self.dropout_s = dropout
        self._dropout = array("d", dropout.tobytes())
        self.start_day = start_day
        self._factories = tuple(source_factories)
        # A device of a mains-powered group without extra sources is online unless busy, left or outside its
        # window: that needs no Device object.
        self._passive = [g.profile.battery.capacity_j is None and not self._factories for g in self.groups]
        self._windows = [g.availability.daily_window for g in self.groups]
        self._devices: dict[int, Device] = {}
        self.busy = bytearray(n)
        self._counts = array("q", bytes(8 * n * len(COUNTERS)))  # one row of counters per device: one cache line
        self.outage_s = array("d", bytes(8 * n))
        self._struck: dict[str, dict[int, int]] = {name: {} for name in INTERRUPTION_COUNTERS}

    def __len__(self) -> int:
        return len(self._group)

    @property
    def touched(self) -> dict[int, Device]:
        """The devices built so far, by id."""
        return self._devices

    def device(self, i: int) -> Device:
        """Device i, built on first use from its own stream."""
        dev = self._devices.get(i)
        if dev is None:
            g = self.groups[self._group[i]]
            dev = Device(
                i, g.device_class, g.link_class, g.profile, g.availability, CounterStream(stream_seed(self._key, i)),
                dropout_time=self._dropout[i], start_day=int(self.start_day[i]),
            )
            for make in self._factories:
                source = make(dev)
                if source is not None:
                    dev.add_source(source)
            self._devices[i] = dev
        return dev

    def online(self, i: int, t: float) -> bool:
        """Whether device i could accept a job at time t (idle or not); builds it only if the answer needs it."""
        if t >= self._dropout[i]:
            return False
        g = self._group[i]
        if not in_daily_window(self._windows[g], t):
            return False
        dev = self._devices.get(i)
        if dev is None:
            if self._passive[g]:
                return True
            dev = self.device(i)
        return all(s.available(t) for s in dev.sources)

    def left_by(self, t: float) -> np.ndarray:
        """Ids of the devices that left for good at or before time t."""
        return np.flatnonzero(self.dropout_s <= t)

    def energy_by_cause(self, t: float) -> dict[str, np.ndarray]:
        """Joules per cause (and harvested) of every device up to time t, plus their battery depletions.

        A device never built has done nothing but idle: it shares its battery's history with every
        untouched device of its group and start day, so that history is computed once per group and day.
        """
        n = len(self)
        out = {cause: np.zeros(n) for cause in (*DRAW_CAUSES, HARVEST_CAUSE)}
        depletions = np.zeros(n, dtype=np.int64)
        untouched = np.ones(n, dtype=bool)
        untouched[list(self._devices)] = False
        keys = self.group_of.astype(np.int64) * (int(self.start_day.max()) + 1) + self.start_day
        for key in np.unique(keys[untouched]):
            members = np.flatnonzero(untouched & (keys == key))
            i = int(members[0])
            reference = Battery(self.groups[self._group[i]].profile.battery, int(self.start_day[i]))
            reference.advance(t)
            for cause, joules in reference.energy_by_cause().items():
                out[cause][members] = joules
            depletions[members] = reference.depletions
        for i, dev in self._devices.items():
            dev.battery.advance(t)
            for cause, joules in dev.battery.energy_by_cause().items():
                out[cause][i] = joules
            depletions[i] = dev.battery.depletions
        return {**out, "depletions": depletions}

    def add(self, i: int, counter: str, amount: int = 1) -> int:
        """Add `amount` to device i's `counter` (one of COUNTERS); its new value."""
        k = i * _NUM_COUNTERS + _COUNTER_INDEX[counter]
        self._counts[k] += amount
        return self._counts[k]

    def interrupted(self, i: int, event: str) -> None:
        """Device i's job met an interruption logged as `event`: count it if it is one of INTERRUPTION_COUNTERS."""
        name = _INTERRUPTION_OF_EVENT.get(event)
        if name is not None:
            counts = self._struck[name]
            counts[i] = counts.get(i, 0) + 1

    def counter(self, name: str) -> np.ndarray:
        """One per-device counter (COUNTERS, INTERRUPTION_COUNTERS, or "outage_s": seconds transfers waited out
        outages) as an array."""
        if name == "outage_s":
            return np.frombuffer(self.outage_s, dtype=np.float64)
        if name in self._struck:
            out = np.zeros(len(self), dtype=np.int64)
            struck = self._struck[name]
            out[list(struck)] = list(struck.values())
            return out
        table = np.frombuffer(self._counts, dtype=np.int64).reshape(len(self), _NUM_COUNTERS)
        return table[:, _COUNTER_INDEX[name]]


def build_fleet(
    groups: Sequence[DeviceGroup],
    shares: Sequence[float],
    num_devices: int,
    seed: np.random.SeedSequence,
    horizon_s: float = math.inf,
    source_factories: Sequence[SourceFactory] = (),
) -> Fleet:
    """A fleet of `num_devices` split over `groups` by `shares`, assigned in a seeded random order."""
    if len(groups) != len(shares):
        raise ValueError(f"{len(groups)} groups but {len(shares)} shares; give one share per group")
    order_seq, devices_seq = seed.spawn(2)
    group_of = np.repeat(np.arange(len(groups), dtype=np.int32), group_sizes(shares, num_devices))
    np.random.default_rng(order_seq).shuffle(group_of)
    return Fleet(groups, group_of, devices_seq, horizon_s, source_factories)
