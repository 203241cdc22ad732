"""Heterogeneous IoT device models: compute, battery, link and availability.

Units: seconds, joules, watts, bytes, FLOPs, bit/s. Everything is computed lazily or
in closed form (no background processes), so fleets of 100,000 devices stay cheap.
`devices` imports nothing from sim, fl or crypto.
"""

from devices.availability import Availability
from devices.battery import DRAW_CAUSES, HARVEST_CAUSE, Battery
from devices.compute import Compute
from devices.device import Device
from devices.link import Link, Transfer
from devices.profiles import DEVICE_CLASSES, LINK_CLASSES, ProfileError, resolve_profile
from devices.recharge import PowerProfile, recharge_profile
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
    "BatterySpec",
    "Compute",
    "ComputeSpec",
    "Device",
    "DeviceProfile",
    "Link",
    "LinkSpec",
    "MainsCharging",
    "PowerProfile",
    "ProfileError",
    "SolarHarvest",
    "SolarTrace",
    "TraceError",
    "TraceNotFoundError",
    "Transfer",
    "read_bandwidth_trace",
    "read_solar_trace",
    "recharge_profile",
    "resolve_profile",
    "spec_dict",
]
