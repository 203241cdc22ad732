"""Validated, immutable specifications of the device models.

Every field has a default and states its unit in its description (the README's
scenario-field reference is generated from them). Unknown keys are rejected.
Simulated time 0 is 00:00 (midnight) of day 0; "hours" are hours of the simulated day.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.traces import read_bandwidth_trace, read_solar_trace

__all__ = [
    "CRYPTO_FLOPS_PER_PARAM",
    "DAY_S",
    "AvailabilitySpec",
    "BatterySpec",
    "ComputeSpec",
    "DeviceProfile",
    "LinkSpec",
    "MainsCharging",
    "SolarHarvest",
    "spec_dict",
]

DAY_S = 86400.0  # seconds in a simulated day

# Crypto cost of one parameter, in FLOP-equivalents of the device's training throughput:
# encrypting one parameter at the paper's SHE parameters (k0 = 2048, k2 = 160) took 2.0 us
# on the reference host (benchmarks/crypto_bench.py, one x86 core), which the `laptop`
# profile models at 3e10 FLOP/s; 2.0e-6 s x 3e10 FLOP/s = 6e4. The simulator scales this by
# the relative cost of the operation and parameter set (decrypting, high-throughput set).
CRYPTO_FLOPS_PER_PARAM = 6.0e4


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_hours(window: tuple[float, float], field: str) -> tuple[float, float]:
    """Validate a daily [start_hour, end_hour) window; end < start wraps past midnight."""
    start, end = window
    if not (0.0 <= start < 24.0 and 0.0 < end <= 24.0):
        raise ValueError(
            f"{field} {list(window)} is out of range: start_hour must be in [0, 24) and end_hour in (0, 24]"
        )
    if start == end:
        raise ValueError(
            f"{field} {list(window)} is empty: use start_hour != end_hour (end < start wraps past midnight)"
        )
    return window


class ComputeSpec(_Spec):
    """How fast a device trains and encrypts, and what that costs in energy."""

    flops_per_s: float = Field(1.0e9, gt=0, description="Effective training throughput [FLOP/s].")
    jitter_sigma: float = Field(
        0.1, ge=0, le=3, description="Sigma of the lognormal per-job time multiplier (median 1) [dimensionless]."
    )
    crypto_s_per_param: float | None = Field(
        None,
        ge=0,
        description="Device time to encrypt or decrypt one parameter [s/parameter]; "
        "null = CRYPTO_FLOPS_PER_PARAM / flops_per_s (calibrated on the reference host).",
    )
    energy_per_flop_j: float = Field(1.0e-9, ge=0, description="Training energy above idle [J/FLOP].")
    active_power_w: float = Field(1.0, ge=0, description="Power above idle while doing crypto [W].")

    @property
    def resolved_crypto_s_per_param(self) -> float:
        """crypto_s_per_param, or the calibrated figure derived from flops_per_s [s/parameter]."""
        if self.crypto_s_per_param is not None:
            return self.crypto_s_per_param
        return CRYPTO_FLOPS_PER_PARAM / self.flops_per_s


class MainsCharging(_Spec):
    """Recharge from mains power during daily windows."""

    kind: Literal["mains"] = Field("mains", description="Recharge kind tag.")
    windows: tuple[tuple[float, float], ...] = Field(
        ((22.0, 7.0),),
        min_length=1,
        description="Daily charging windows [start_hour, end_hour) [h]; end < start wraps past midnight.",
    )
    power_w: float = Field(10.0, gt=0, description="Charging power while plugged in [W].")

    @field_validator("windows")
    @classmethod
    def _windows_in_range(cls, windows: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for w in windows:
            _check_hours(w, "charging window")
        return windows


class SolarHarvest(_Spec):
    """Recharge from a solar panel: a user trace (normalised 0..1) or a clear-sky curve."""

    kind: Literal["solar"] = Field("solar", description="Recharge kind tag.")
    panel_w: float = Field(1.0, gt=0, description="Panel output at normalised value 1 (peak) [W].")
    trace_path: Path | None = Field(
        None,
        description="CSV of normalised solar output (see docs/devices.md); "
        "null = built-in clear-sky curve (sunrise 06:00, sunset 18:00) [path].",
    )
    column: str | None = Field(None, description="Trace column to use; null = the only value column [name].")
    step_s: float = Field(300.0, gt=0, description="Sample spacing of a trace without a time column [s].")
    random_start: bool = Field(
        False, description="Start each device at a random whole day of the trace (weather differs) [flag]."
    )

    @model_validator(mode="after")
    def _trace_readable(self) -> SolarHarvest:
        if self.trace_path is not None:
            read_solar_trace(self.trace_path, self.column, self.step_s)
        elif self.column is not None:
            raise ValueError(f"column {self.column!r} is set but trace_path is null; set trace_path or drop column")
        return self


Recharge = Annotated[MainsCharging | SolarHarvest, Field(discriminator="kind")]


class BatterySpec(_Spec):
    """Energy store: capacity, idle drain, recharge, and when a depleted device comes back."""

    capacity_j: float | None = Field(
        None, gt=0, description="Usable battery energy [J]; null = mains-powered (never depletes)."
    )
    initial_fraction: float = Field(1.0, ge=0, le=1, description="Charge at time 0 as a fraction of capacity [0..1].")
    idle_power_w: float = Field(0.0, ge=0, description="Drain while on and idle (always, unless depleted) [W].")
    resume_fraction: float = Field(
        0.2, gt=0, le=1, description="A depleted device comes back at this fraction of capacity [0..1]."
    )
    recharge: Recharge | None = Field(None, description="Recharge source (kind: mains | solar); null = none.")

    @model_validator(mode="after")
    def _recharge_needs_battery(self) -> BatterySpec:
        if self.recharge is not None and self.capacity_j is None:
            raise ValueError(
                "recharge is set but capacity_j is null (mains-powered, nothing to charge); "
                "set capacity_j or set recharge to null"
            )
        return self


class LinkSpec(_Spec):
    """Network link: bandwidth, latency, on/off outages and radio energy."""

    down_bps: float = Field(10.0e6, gt=0, description="Mean downlink bandwidth [bit/s].")
    up_bps: float = Field(5.0e6, gt=0, description="Mean uplink bandwidth [bit/s].")
    latency_s: float = Field(0.05, ge=0, description="Set-up latency added once per transfer attempt [s].")
    bandwidth_cv: float = Field(
        0.0,
        ge=0,
        le=10,
        description="Coefficient of variation of per-transfer lognormal bandwidth; 0 = fixed [dimensionless].",
    )
    bandwidth_trace: Path | None = Field(
        None,
        description="JSON/CSV of bandwidth samples in kbit/s (see docs/devices.md); when set it replaces "
        "down_bps, up_bps and bandwidth_cv [path].",
    )
    mean_up_s: float = Field(3600.0, gt=0, description="Mean duration of an up period (exponential) [s].")
    mean_down_s: float = Field(0.0, ge=0, description="Mean duration of an outage (exponential); 0 = none [s].")
    on_outage: Literal["resume", "restart"] = Field(
        "resume", description="A transfer cut by an outage resumes or restarts from zero after reconnection."
    )
    max_restarts: int = Field(
        1000, ge=0, description="Restarts after which a transfer is abandoned (end = inf) [count]."
    )
    tx_j_per_byte: float = Field(0.0, ge=0, description="Radio energy per byte sent [J/byte].")
    rx_j_per_byte: float = Field(0.0, ge=0, description="Radio energy per byte received [J/byte].")

    @model_validator(mode="after")
    def _trace_readable(self) -> LinkSpec:
        if self.bandwidth_trace is not None:
            read_bandwidth_trace(self.bandwidth_trace)
        return self


class AvailabilitySpec(_Spec):
    """Whether a device is around: permanent dropout, declined invitations, daily windows."""

    dropout_rate: float = Field(0.0, ge=0, le=1, description="Probability the device leaves for good [0..1].")
    dropout_window_s: float | None = Field(
        None, gt=0, description="Leaving time is uniform in [0, window) [s]; null = the run's horizon."
    )
    unavailability: float = Field(0.0, ge=0, le=1, description="Probability of declining an invitation [0..1].")
    daily_window: tuple[float, float] | None = Field(
        None, description="[start_hour, end_hour) when the device is willing to work [h]; null = always."
    )

    @field_validator("daily_window")
    @classmethod
    def _window_in_range(cls, window: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if window is None else _check_hours(window, "daily_window")


class DeviceProfile(_Spec):
    """Everything about a device class and its link (a device class sets compute and
    battery, a link class sets link)."""

    compute: ComputeSpec = Field(default_factory=ComputeSpec, description="Compute model.")
    battery: BatterySpec = Field(default_factory=BatterySpec, description="Battery model.")
    link: LinkSpec = Field(default_factory=LinkSpec, description="Link model.")


def spec_dict(spec: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Flatten a spec into {"dotted.name": value} with JSON-friendly values (for logs and CSV)."""
    out: dict[str, Any] = {}

    def _walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                _walk(v, f"{key}.{k}" if key else k)
        else:
            out[key] = node

    _walk(spec.model_dump(mode="json"), prefix)
    return out
