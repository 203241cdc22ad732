"""Interruption sources: what can cut a running device job short, or pause it.

A device job (`sim.device_job`) runs as a SimPy process, one *segment* at a time: a
stretch at constant power (a transfer's set-up or its data, training, crypto, or waiting
while paused). Before each segment the job asks every source of its device for the
first moment that source would interrupt it; the earliest arms a timer that interrupts
the job's process (`process.interrupt(interruption)`, the pattern of SimPy's machine-shop
example). So an outage, a dropout or an empty battery is logged when it happens, and
energy is drawn only for the time actually spent.

A source is a small class. Required: `first_interruption(segment)`. Optional:
`available(t)` (may the device accept a job now?), and `job_started(t)`,
`phase_started(phase, work_s)` / `segment_ended(segment, stop)` to follow a job's work
(e.g. a failure hazard per second of work). Built in here: `PermanentDropout`,
`BatteryDepletion`, `LinkOutages`; per-job dropouts in `devices.job_dropout`, on/off
sessions (churn, availability traces) in `devices.sessions`. Add a kind
by subclassing `InterruptionSource` and attaching it to devices (`Device.add_source`, or
the fleet's source factories in `sim.fleet`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

from devices.battery import Battery
from devices.link import Link

__all__ = ["BatteryDepletion", "Interruption", "InterruptionSource", "LinkOutages", "PermanentDropout", "Segment"]


class Segment(NamedTuple):
    """A stretch of a job at constant power, as planned when it starts."""

    phase: str  # the job's phase: download, decrypt, train, encrypt, upload
    start: float  # [s]
    end: float  # when it ends if nothing interrupts it [s]
    load_w: float  # power drawn above idle [W]
    uses_link: bool  # a transfer's set-up or data: link outages apply
    waiting: bool = False  # the job is paused, waiting to go on (no work is done)


class Interruption(NamedTuple):
    """What happens to a job at `time`: it fails, or (with `resume_at`) it pauses."""

    time: float  # [s]
    event: str  # logged when it strikes, e.g. "dropped_out"
    resume_at: float | None = None  # a pause: the job may go on at this time [s]; None: the job fails
    resume_event: str = ""  # logged when the job goes on after a pause
    restart: bool = False  # when it goes on, the phase's work starts again from zero
    device_left: bool = False  # the device is gone for good
    reason: str = ""  # why, for the log (optional)


class InterruptionSource(ABC):
    """One way a device's running job can be cut short or paused (subclass it to add one)."""

    def available(self, t: float) -> bool:
        """Whether this source lets the device accept a job at time t."""
        return True

    def job_started(self, t: float) -> None:
        """A job of this device starts at time t."""

    def phase_started(self, phase: str, work_s: float) -> None:
        """The running job starts `phase`, which takes `work_s` seconds of work if nothing cuts it."""

    @abstractmethod
    def first_interruption(self, segment: Segment) -> Interruption | None:
        """The earliest interruption of `segment` (time in [start, end)), or None."""

    def segment_ended(self, segment: Segment, stop: float) -> None:
        """`segment` stopped at `stop` (its end, or earlier if something interrupted it)."""


class PermanentDropout(InterruptionSource):
    """The device leaves for good at `dropout_time` [s]: a job running then fails."""

    __slots__ = ("dropout_time",)

    def __init__(self, dropout_time: float) -> None:
        self.dropout_time = dropout_time

    def available(self, t: float) -> bool:
        return t < self.dropout_time

    def first_interruption(self, segment: Segment) -> Interruption | None:
        if self.dropout_time < segment.end:
            return Interruption(max(segment.start, self.dropout_time), "dropped_out", device_left=True)
        return None


class BatteryDepletion(InterruptionSource):
    """The battery runs empty under the segment's load: the job fails and the device is off until recharged.

    The job commits the battery up to each segment's start before asking (`Battery.advance`).
    """

    __slots__ = ("battery",)
    EVENT = "battery_depleted"

    def __init__(self, battery: Battery) -> None:
        self.battery = battery

    def available(self, t: float) -> bool:
        # Asked only of an idle device, at times that never decrease: committing its idle drain up to t keeps
        # every later question short (otherwise each integrates all the on/off cycles since the last job again).
        self.battery.advance(t)
        return not self.battery.depleted

    def first_interruption(self, segment: Segment) -> Interruption | None:
        t = self.battery.time_empty(segment.end, segment.load_w)
        return Interruption(t, self.EVENT) if t < segment.end else None


class LinkOutages(InterruptionSource):
    """An outage cuts a transfer: it pauses until the link is back, then resumes or restarts (`on_outage`)."""

    __slots__ = ("link", "restart")
    EVENT, RESUMED = "transfer_paused", "transfer_resumed"

    def __init__(self, link: Link) -> None:
        self.link = link
        self.restart = link.spec.on_outage == "restart"

    def first_interruption(self, segment: Segment) -> Interruption | None:
        if not segment.uses_link:
            return None
        down = self.link.next_down(segment.start)
        if down >= segment.end:
            return None
        return Interruption(
            down, self.EVENT, resume_at=self.link.next_up(down), resume_event=self.RESUMED, restart=self.restart,
        )
