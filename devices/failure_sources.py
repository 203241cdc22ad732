"""The built-in failure sources as plugins: each a settings class and a factory of per-device sources.

A factory takes the settings and a `SourceContext` (the fleet's size, a job's phases, the
source's own seed) and returns a function that gives one device its source (or None).
Each device draws from its own counter-based stream of that seed (`SourceContext.stream`),
so what a source does never depends on the other devices or sources. `sim.plugins`
registers these as the failure sources `job_dropout`, `job_hazard`, `churn` and
`availability_trace`; a user's source is written the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from pydantic import Field

from devices.availability import AvailabilitySpec
from devices.availability_traces import assign_clients, read_availability_trace
from devices.device import Device
from devices.interruptions import InterruptionSource
from devices.job_dropout import JobDropout, WorkHazard
from devices.sessions import CLASS_SESSION_MEANS, Churn, TraceSessions
from devices.specs import AvailabilityTraceSpec, ChurnSpec, Section
from devices.streams import CounterStream, stream_seed

__all__ = [
    "JobDropoutSpec",
    "PerDevice",
    "SourceContext",
    "WorkHazardSpec",
    "churn_sources",
    "job_dropout_sources",
    "session_means",
    "trace_sources",
    "work_hazard_sources",
]

PerDevice = Callable[[Device], InterruptionSource | None]  # a device's source of one kind (or None: it has none)
MAX_OFFLINE_S = 1.0e9  # the longest simulated time a scenario may ask for


@dataclass(frozen=True)
class SourceContext:
    """What a failure source's factory may know of the run.

    `num_devices`: the fleet's size; `phases`: a job's phases in order; `seed`: this
    source's own seed (its draws for the whole fleet, e.g. a trace's client mapping).
    """

    num_devices: int
    phases: tuple[str, ...]
    seed: np.random.SeedSequence

    @cached_property
    def _key(self) -> int:
        return int(self.seed.generate_state(1, np.uint64)[0])

    def stream(self, device: int) -> CounterStream:
        """Device `device`'s own stream for this source."""
        return CounterStream(stream_seed(self._key, device))


class JobDropoutSpec(Section):
    """Per-job dropout: each job fails with `probability` at a point drawn over its phases (`devices.job_dropout`)."""

    probability: float = Field(0.0, ge=0, le=1, description="Probability an invited device's job fails [0..1].")
    offline_s: float = Field(
        0.0, ge=0, le=MAX_OFFLINE_S, description="After a dropout the device is offline this long [s]."
    )


class WorkHazardSpec(Section):
    """Per-job dropout as a hazard per second of a job's work (`devices.job_dropout`)."""

    rate_per_s: float = Field(0.0, ge=0, le=1, description="Failure rate per second of work [1/s].")
    offline_s: float = Field(
        0.0, ge=0, le=MAX_OFFLINE_S, description="After a dropout the device is offline this long [s]."
    )


def job_dropout_sources(spec: JobDropoutSpec, ctx: SourceContext) -> PerDevice:
    """`JobDropout` on every device (none when the probability is 0)."""
    return lambda d: (JobDropout(spec.probability, ctx.phases, ctx.stream(d.id), spec.offline_s)
                      if spec.probability > 0 else None)


def work_hazard_sources(spec: WorkHazardSpec, ctx: SourceContext) -> PerDevice:
    """`WorkHazard` on every device (none when the rate is 0)."""
    return lambda d: WorkHazard(spec.rate_per_s, ctx.stream(d.id), spec.offline_s) if spec.rate_per_s > 0 else None


def session_means(spec: ChurnSpec, device_class: str, availability: AvailabilitySpec) -> tuple[float, float]:
    """Mean (online, offline) session lengths [s] of a device: its group's, else the churn's, else its class's."""
    own = availability.sessions
    on = own.mean_on_s if own.mean_on_s is not None else spec.mean_on_s
    off = own.mean_off_s if own.mean_off_s is not None else spec.mean_off_s
    default = CLASS_SESSION_MEANS.get(device_class)
    if default is None:
        if on is None or off is None:
            raise ValueError(f"device class {device_class!r} has no default session lengths; set "
                             "failures.churn.mean_on_s and mean_off_s or its fleet group's sessions")
        return on, off
    return (default[0] if on is None else on), (default[1] if off is None else off)


def churn_sources(spec: ChurnSpec, ctx: SourceContext) -> PerDevice:
    """`Churn` sessions on every device (none when churn is not enabled)."""
    return lambda d: (Churn(spec, *session_means(spec, d.device_class, d.availability.spec), ctx.stream(d.id))
                      if spec.enabled else None)


def trace_sources(spec: AvailabilityTraceSpec, ctx: SourceContext) -> PerDevice:
    """Sessions replayed from the trace file, one trace client per device drawn with the source's seed."""
    if spec.path is None:
        return lambda _d: None
    trace = read_availability_trace(spec.path)
    client_of = assign_clients(trace, ctx.num_devices, ctx.seed)
    grace = spec.grace_s if spec.on_offline == "pause" else None
    return lambda d: TraceSessions(trace.intervals[client_of[d.id]], trace.periods[client_of[d.id]], grace)
