"""Heterogeneous IoT device models: compute, battery, link and availability.

Units: seconds, joules, watts, bytes, FLOPs, bit/s. Everything is computed lazily or
in closed form (no background processes), so an idle device costs nothing; what can
stop a running job is a pluggable interruption source (`devices.interruptions`).
`devices` imports nothing from sim, fl or crypto.
"""

from devices.availability import Availability, draw_dropout_times, in_daily_window
from devices.availability_traces import AVAILABILITY_FORMAT, AvailabilityTrace, assign_clients, read_availability_trace
from devices.battery import DRAW_CAUSES, HARVEST_CAUSE, Battery
from devices.compute import Compute
from devices.device import Device
from devices.interruptions import (
    BatteryDepletion,
    Interruption,
    InterruptionSource,
    LinkOutages,
    PermanentDropout,
    Segment,
)
from devices.job_dropout import JOB_DROPOUT_EVENT, JobDropout, WorkHazard
from devices.link import Link
from devices.profiles import DEVICE_CLASSES, LINK_CLASSES, ProfileError, resolve_profile
from devices.recharge import PowerProfile, recharge_profile, start_days
from devices.sessions import (
    CAME_ONLINE,
    CLASS_SESSION_MEANS,
    OFFLINE_TOO_LONG,
    WENT_OFFLINE,
    Churn,
    SessionSource,
    TraceSessions,
)
from devices.specs import (
    CRYPTO_FLOPS_PER_PARAM,
    DAY_S,
    AvailabilitySpec,
    AvailabilityTraceSpec,
    BatterySpec,
    ChurnSpec,
    ComputeSpec,
    DeviceProfile,
    LinkSpec,
    MainsCharging,
    SessionMeans,
    SolarHarvest,
    spec_dict,
)
from devices.streams import CounterStream, RandomStream, stream_seed
from devices.traces import (
    BANDWIDTH_FORMAT,
    SOLAR_FORMAT,
    BandwidthTrace,
    SolarTrace,
    TraceError,
    TraceNotFoundError,
    read_bandwidth_trace,
    read_solar_trace,
)

__all__ = [
    "AVAILABILITY_FORMAT",
    "BANDWIDTH_FORMAT",
    "CAME_ONLINE",
    "CLASS_SESSION_MEANS",
    "CRYPTO_FLOPS_PER_PARAM",
    "DAY_S",
    "DEVICE_CLASSES",
    "DRAW_CAUSES",
    "HARVEST_CAUSE",
    "JOB_DROPOUT_EVENT",
    "LINK_CLASSES",
    "OFFLINE_TOO_LONG",
    "SOLAR_FORMAT",
    "WENT_OFFLINE",
    "Availability",
    "AvailabilitySpec",
    "AvailabilityTrace",
    "AvailabilityTraceSpec",
    "BandwidthTrace",
    "Battery",
    "BatteryDepletion",
    "BatterySpec",
    "Churn",
    "ChurnSpec",
    "Compute",
    "ComputeSpec",
    "CounterStream",
    "Device",
    "DeviceProfile",
    "Interruption",
    "InterruptionSource",
    "JobDropout",
    "Link",
    "LinkOutages",
    "LinkSpec",
    "MainsCharging",
    "PermanentDropout",
    "PowerProfile",
    "ProfileError",
    "RandomStream",
    "Segment",
    "SessionMeans",
    "SessionSource",
    "SolarHarvest",
    "SolarTrace",
    "TraceError",
    "TraceNotFoundError",
    "TraceSessions",
    "WorkHazard",
    "assign_clients",
    "draw_dropout_times",
    "in_daily_window",
    "read_availability_trace",
    "read_bandwidth_trace",
    "read_solar_trace",
    "recharge_profile",
    "resolve_profile",
    "spec_dict",
    "start_days",
    "stream_seed",
]
