"""Heterogeneous IoT device models: compute, battery, link and availability.

Units: seconds, joules, watts, bytes, FLOPs, bit/s. Everything is computed lazily or
in closed form (no background processes), so an idle device costs nothing; what can
stop a running job is a pluggable interruption source (`devices.interruptions`).
`devices` imports nothing from sim, fl or crypto.
"""

from devices.availability import Availability, draw_dropout_times, in_daily_window
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
from devices.link import Link
from devices.profiles import DEVICE_CLASSES, LINK_CLASSES, ProfileError, resolve_profile
from devices.recharge import PowerProfile, recharge_profile, start_days
from devices.specs import (
    CRYPTO_FLOPS_PER_PARAM,
    DAY_S,
    AvailabilitySpec,
    BatterySpec,
    ComputeSpec,
    DeviceProfile,
    LinkSpec,
    MainsCharging,
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
    "BANDWIDTH_FORMAT",
    "CRYPTO_FLOPS_PER_PARAM",
    "DAY_S",
    "DEVICE_CLASSES",
    "DRAW_CAUSES",
    "HARVEST_CAUSE",
    "LINK_CLASSES",
    "SOLAR_FORMAT",
    "Availability",
    "AvailabilitySpec",
    "BandwidthTrace",
    "Battery",
    "BatteryDepletion",
    "BatterySpec",
    "Compute",
    "ComputeSpec",
    "CounterStream",
    "Device",
    "DeviceProfile",
    "Interruption",
    "InterruptionSource",
    "Link",
    "LinkOutages",
    "LinkSpec",
    "MainsCharging",
    "PermanentDropout",
    "PowerProfile",
    "ProfileError",
    "RandomStream",
    "Segment",
    "SolarHarvest",
    "SolarTrace",
    "TraceError",
    "TraceNotFoundError",
    "draw_dropout_times",
    "in_daily_window",
    "read_bandwidth_trace",
    "read_solar_trace",
    "recharge_profile",
    "resolve_profile",
    "spec_dict",
    "start_days",
    "stream_seed",
]
