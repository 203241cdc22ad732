"""One invited device's job, simulated as a SimPy process that failures interrupt.

download the global model -> decrypt -> train -> encrypt -> upload. Each phase runs in
*segments* of constant power (a transfer is its set-up latency, at no radio power, then
its data at the radio's power). Before a segment starts, every interruption source of
the device (`devices.interruptions`) says when it would first interrupt it; the earliest
arms a timer that interrupts this process (`process.interrupt(interruption)`, SimPy's
machine-shop pattern). Then:

- energy is drawn for the time the segment actually ran (power x duration);
- a fatal interruption (dropout, empty battery, ...) ends the job there: the phase's
  `*_end` event carries the cause, and nothing more of the job is logged;
- a pause (a link outage, ...) waits until the source lets the job go on, still
  interruptible by the other sources; a cut transfer then resumes where it stopped or,
  with `on_outage: restart`, starts again from zero; after `max_restarts` restarts it is
  abandoned.

Every event is logged at the simulated time it happens, never ahead. The job reaches its
run only through a `JobHost` (the simulation is one); phase durations follow
`sim.engine.jobtime`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal, Protocol

import simpy

from devices import Device, Interruption, LinkOutages, Segment
from sim.engine.fleet import Fleet
from sim.engine.jobtime import data_s, train_flops
from sim.engine.workload import Workload

if TYPE_CHECKING:
    from fl.server import PayloadRef

__all__ = ["DeviceJob", "JobHost", "JobStopped"]


class JobStopped(Exception):
    """A job ended early: `interruption` says by what, `phase` where."""

    def __init__(self, interruption: Interruption, phase: str) -> None:
        super().__init__(interruption.event)
        self.interruption, self.phase = interruption, phase


class JobHost(Protocol):
    """What a `DeviceJob` needs from its run."""

    env: simpy.Environment
    fleet: Fleet
    workload: Workload

    def log(self, event: str, device: int = -1, **info: Any) -> None:
        """Log an event now (at the current global version unless `version=` is given)."""

    def note(self, event: str, device: int) -> None:
        """Log a detail-free event of a device now (the hot path: phase starts and ends)."""

    def start_training(self, client: int, version: int, job_number: int) -> PayloadRef | None:
        """Submit the training a device starts now; the handle its upload will carry (None: time-only)."""

    def job_finished(self, job: DeviceJob, ref: PayloadRef | None) -> None:
        """The job's upload completed."""

    def job_stopped(self, job: DeviceJob, stop: JobStopped) -> None:
        """The job ended early."""


class DeviceJob:
    """One job of one device for its `host` (the run), started as a SimPy process on construction."""

    __slots__ = ("_air", "_bps", "_cause", "_paused_at", "_restarts", "_seg", "_seg_no", "client", "device", "host", "process",
                 "version")

    def __init__(self, host: JobHost, client: int, version: int) -> None:
        self.host, self.client, self.version = host, client, version
        self.device: Device = host.fleet.device(client)
        self._seg: Segment | None = None  # the segment running now
        self._seg_no = 0
        self._cause = "idle"  # energy cause of the running segment
        self._bps = 0.0  # bandwidth of the running transfer's data segment (0: not sending)
        self._air = 0.0  # bytes sent by the running transfer so far
        self._restarts = 0  # restarts of the running transfer so far
        self._paused_at: float | None = None  # when the running transfer began waiting out a link outage
        self.process = host.env.process(self._run())

    # ------------------------------------------------------------------ the job
    def _run(self) -> Generator[Any, Any, None]:
        host, dev, w, c = self.host, self.device, self.host.workload, self.client
        job_number = host.fleet.add(c, "jobs")
        now = host.env.now
        for source in dev.sources:
            source.job_started(now)
        ref: PayloadRef | None = None
        try:
            yield from self._transfer("download", "down", w.download_nbytes)
            if w.encrypted:
                secs = dev.compute.crypto_seconds(w.crypto_params["decrypt"])
                yield from self._work("decrypt", secs, dev.compute.crypto_energy_j(secs), "crypto")
            ref = host.start_training(c, self.version, job_number)
            flops = train_flops(w.flops_per_sample, w.num_samples(c), w.epochs)
            yield from self._work("train", dev.compute.train_seconds(flops), dev.compute.train_energy_j(flops), "compute")
            if w.encrypted:
                secs = dev.compute.crypto_seconds(w.crypto_params["encrypt"])
                yield from self._work("encrypt", secs, dev.compute.crypto_energy_j(secs), "crypto")
            yield from self._transfer("upload", "up", w.upload_nbytes)
        except JobStopped as stop:
            host.job_stopped(self, stop)
            return
        host.job_finished(self, ref)

    def _note(self, event: str) -> None:
        """Log a detail-free event of this device now (the hot path: phase starts and ends)."""
        self.host.note(event, self.client)

    def _started(self, phase: str, work_s: float) -> None:
        """Log a phase's start and tell the device's sources how much work it holds [s]."""
        self._note(f"{phase}_start")
        for source in self.device.sources:
            source.phase_started(phase, work_s)

    def _work(self, phase: str, seconds: float, joules: float, cause: str) -> Generator[Any, Any, None]:
        """Compute for `seconds` drawing `joules` in all (crypto or training)."""
        self._started(phase, seconds)
        load = joules / seconds if seconds > 0.0 else 0.0
        left = seconds
        while left > 0.0:
            t0 = self.host.env.now
            hit = yield from self._segment(phase, left, load, cause, uses_link=False)
            if hit is None:
                break
            left = seconds if hit.restart else left - (self.host.env.now - t0)
            yield from self._handle(hit, phase)
        self._note(f"{phase}_end")

    def _transfer(self, phase: str, direction: Literal["up", "down"], nbytes: int) -> Generator[Any, Any, None]:
        """Send or receive `nbytes`: latency, then data; outages pause it (resume or restart)."""
        host, c, link = self.host, self.client, self.device.link
        env = host.env
        bps = link.bandwidth(direction)
        latency, data_time, power = link.spec.latency_s, data_s(nbytes, bps), link.power_w(direction, bps)
        cause = "tx" if direction == "up" else "rx"
        self._started(phase, latency + data_time)
        lat_left, data_left = latency, data_time
        self._air, self._restarts = 0.0, 0
        try:
            while True:
                hit = None
                if lat_left > 0.0:
                    t0 = env.now
                    hit = yield from self._segment(phase, lat_left, 0.0, cause, uses_link=True)
                    lat_left -= env.now - t0
                if hit is None and data_left > 0.0:
                    t0, self._bps = env.now, bps
                    hit = yield from self._segment(phase, data_left, power, cause, uses_link=True)
                    self._bps = 0.0
                    data_left -= env.now - t0
                    self._air += (env.now - t0) * bps / 8.0
                if hit is None:
                    break
                if hit.restart and (lat_left < latency or data_left < data_time):  # the attempt got somewhere: lost
                    if self._restarts == link.spec.max_restarts:
                        reason = (
                            f"abandoned after {self._restarts} restarts: it needs {latency + data_time:.3g} s of unbroken up "
                            f"time but up periods average {link.spec.mean_up_s:g} s; use on_outage='resume', a "
                            "faster link or fewer bytes"
                        )
                        host.log(f"{phase}_abandoned", c, reason=reason)
                        self._end_phase(phase, "abandoned")
                        raise JobStopped(hit._replace(event="abandoned", reason=reason), phase)
                    self._restarts += 1
                    lat_left, data_left = latency, data_time
                if hit.event == LinkOutages.EVENT:  # an outage the transfer waits out
                    self._paused_at = env.now
                yield from self._handle(hit, phase)
                self._count_outage(env.now)
        except JobStopped:
            self._count_outage(env.now)
            self._commit_bytes(direction)
            raise
        self._commit_bytes(direction)
        self._note(f"{phase}_end")

    # ------------------------------------------------------------------ segments and interruptions
    def _segment(
        self, phase: str, seconds: float, load_w: float, cause: str, uses_link: bool, waiting: bool = False
    ) -> Generator[Any, Any, Interruption | None]:
        """Run one segment of `seconds` at `load_w` above idle; the interruption that cut it, or None."""
        env, dev = self.host.env, self.device
        start = env.now
        dev.battery.advance(start)  # idle until now
        sources = dev.sources
        seg = Segment(phase, start, start + seconds, load_w, uses_link, waiting)
        self._seg_no += 1
        self._seg, self._cause = seg, cause
        if sources:
            first: Interruption | None = None
            for source in sources:
                hit = source.first_interruption(seg)
                if hit is not None and (first is None or hit.time < first.time):
                    first = hit
            if first is not None:
                self._arm(first, self._seg_no)
        hit = None
        try:
            yield env.timeout(seconds)
        except simpy.Interrupt as exc:
            hit = exc.cause
        stop = env.now
        if load_w:
            dev.battery.advance(stop, load_w, cause)
        self._seg = None
        for source in sources:
            source.segment_ended(seg, stop)
        return hit

    def _arm(self, hit: Interruption, seg_no: int) -> None:
        """Interrupt this job's process at `hit.time`, if segment `seg_no` is still running then."""

        def strike(_event: simpy.Event) -> None:
            if self._seg_no == seg_no and self._seg is not None:
                self.process.interrupt(hit)

        self.host.env.timeout(hit.time - self.host.env.now).callbacks.append(strike)

    def _handle(self, hit: Interruption, phase: str) -> Generator[Any, Any, None]:
        """Log an interruption; end the job (JobStopped), or wait until it may go on (still interruptible)."""
        host, c = self.host, self.client
        host.log(hit.event, c, phase=phase, reason=hit.reason or None)
        host.fleet.interrupted(c, hit.event)
        if hit.resume_at is None:
            self._end_phase(phase, hit.event)
            raise JobStopped(hit, phase)
        while host.env.now < hit.resume_at:
            inner = yield from self._segment(phase, hit.resume_at - host.env.now, 0.0, "idle", False, waiting=True)
            if inner is not None:
                yield from self._handle(inner, phase)
        if hit.resume_event:
            host.log(hit.resume_event, c, phase=phase)
            host.fleet.interrupted(c, hit.resume_event)

    def _count_outage(self, t: float) -> None:
        """A link outage the running transfer waited through ends (or stops waiting) at `t`."""
        if self._paused_at is not None:
            self.host.fleet.add(self.client, "outages")
            self.host.fleet.outage_s[self.client] += t - self._paused_at
            self._paused_at = None

    def _end_phase(self, phase: str, cause: str) -> None:
        self.host.log(f"{phase}_end", self.client, cause=cause)

    def _commit_bytes(self, direction: str) -> None:
        """Count the running transfer's bytes on air and restarts."""
        fleet, c = self.host.fleet, self.client
        fleet.add(c, "bytes_sent" if direction == "up" else "bytes_received", round(self._air))
        if self._restarts:
            fleet.add(c, "transfer_restarts", self._restarts)
        self._air, self._restarts = 0.0, 0

    # ------------------------------------------------------------------ the run's end
    def settle(self, t: float) -> None:
        """The run ends at `t` with this job running: draw the running segment's energy and count its bytes."""
        self._count_outage(t)
        seg = self._seg
        if seg is None:
            return
        if seg.load_w:
            self.device.battery.advance(t, seg.load_w, self._cause)
        if self._bps:
            self._air += (t - seg.start) * self._bps / 8.0
        if seg.phase in ("download", "upload"):
            self._commit_bytes("up" if seg.phase == "upload" else "down")
        self._seg = None
