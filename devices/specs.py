"""Validated, immutable specifications of the device models.

Every field has a default and states its unit in its description (the README's
scenario-field reference is generated from them). Unknown keys are rejected.
Simulated time 0 is 00:00 (midnight) of day 0; "hours" are hours of the simulated day.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.traces import read_bandwidth_trace, read_solar_trace

__all__ = [
    "CRYPTO_FLOPS_PER_PARAM",
    "DAY_S",
    "AvailabilitySpec",
    "AvailabilityTraceSpec",
    "BatterySpec",
    "BooleanNumberError",
    "ChurnSpec",
    "ComputeSpec",
    "DeviceProfile",
    "LinkSpec",
    "MainsCharging",
    "Section",
    "SessionMeans",
    "SolarHarvest",
    "check_hours",
    "error_text",
    "field_at",
    "models_in",
    "reject_boolean_numbers",
    "spec_dict",
]

DAY_S = 86400.0  # seconds in a simulated day

# Crypto cost of one parameter, in FLOP-equivalents of the device's training throughput:
# encrypting one parameter at the paper's SHE parameters (k0 = 2048, k2 = 160) took 2.0 us
# on the reference host (benchmarks/crypto_bench.py, one x86 core), which the `laptop`
# profile models at 3e10 FLOP/s; 2.0e-6 s x 3e10 FLOP/s = 6e4. The simulator scales this by
# the relative cost of the operation and parameter set (decrypting, high-throughput set).
CRYPTO_FLOPS_PER_PARAM = 6.0e4


def _holds_numbers(annotation: Any) -> bool:
    """True when a field's type is built from int/float only (no bool anywhere in it)."""
    leaves, todo = set(), [annotation]
    while todo:
        t = todo.pop()
        args = typing.get_args(t)
        if args:
            todo.extend(args)
        else:
            leaves.add(t)
    return bool(leaves & {int, float}) and bool not in leaves


def _has_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, list | tuple) and any(_has_bool(v) for v in value))


class BooleanNumberError(ValueError):
    """`true`/`false` given for a number field (pydantic alone would read them as 1 and 0)."""

    def __init__(self, field: str, value: Any) -> None:
        super().__init__(f"{field} = {value!r}: a boolean where a number belongs; write a number")
        self.field, self.value = field, value


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation can hold (through Optional, unions, tuples, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, Any]:
    """(the model holding the last key of an error location `loc`, that key's FieldInfo or None).

    Walks nested sections, tuple indices and discriminated unions (whose tag, e.g. "solar",
    is part of pydantic's error locations). An unknown last key gives (its model, None);
    a location that leaves the schema gives (None, None).
    """
    holder: type[BaseModel] | None = model
    field = None
    choices = [model]
    for part in loc:
        if isinstance(part, int):
            continue  # an index into a tuple of sections
        tagged = [m for m in choices if _tag(m) == part]
        if len(choices) > 1 and tagged:
            choices = tagged
            continue
        owner = next((m for m in choices if part in m.model_fields), None)
        if owner is None:
            return (choices[0] if len(choices) == 1 else None), None
        holder, field = owner, owner.model_fields[part]
        choices = models_in(field.annotation)
    return holder, field


_RANGE_ERRORS = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number", "too_long", "too_short"}
)


def error_text(err: Any, field: Any) -> str:
    """A pydantic error's message; for a value out of range, followed by the field's description (its unit and range)."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in _RANGE_ERRORS and field is not None and field.description:
        msg += f" ({field.description.rstrip('.')})"
    return msg


def _tag(model: type[BaseModel]) -> Any:
    """A union member's tag: the default of its `kind` or `name` field."""
    key = next((k for k in ("kind", "name") if k in model.model_fields), None)
    return model.model_fields[key].default if key else None


class Section(BaseModel):
    """Base of every configuration section: immutable, unknown keys rejected, numbers finite.

    A boolean in a number field is an error (pydantic alone would read `true` as 1): it is
    a slip, such as a missing value or a shifted line.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            reject_boolean_numbers(cls, raw)
        return raw


def reject_boolean_numbers(model: type[BaseModel], raw: dict[str, Any]) -> None:
    """BooleanNumberError if `raw` gives `true`/`false` for one of `model`'s number fields."""
    for name, value in raw.items():
        field = model.model_fields.get(name) if isinstance(name, str) else None
        if field is not None and _has_bool(value) and _holds_numbers(field.annotation):
            raise BooleanNumberError(name, value)


def check_hours(window: tuple[float, float], field: str) -> tuple[float, float]:
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


class ComputeSpec(Section):
    """How fast a device trains and encrypts, and what that costs in energy."""

    flops_per_s: float = Field(
        1.0e9,
        ge=1.0e3,
        le=1.0e16,
        description="Effective training throughput [FLOP/s]; 1e3 (a bare 8-bit microcontroller) to 1e16 "
        "(above any single accelerator).",
    )
    jitter_sigma: float = Field(
        0.1, ge=0, le=3, description="Sigma of the lognormal per-job time multiplier (median 1) [dimensionless]."
    )
    crypto_s_per_param: float | None = Field(
        None,
        ge=0,
        le=1.0,
        description="Device time to encrypt or decrypt one parameter [s/parameter], at most 1 s; "
        "null = CRYPTO_FLOPS_PER_PARAM / flops_per_s (calibrated on the reference host).",
    )
    energy_per_flop_j: float = Field(
        1.0e-9, ge=0, le=1.0e-3, description="Training energy above idle [J/FLOP]; microcontrollers spend ~1e-8."
    )
    active_power_w: float = Field(
        1.0, ge=0, le=1.0e4, description="Power above idle while doing crypto [W]; at most 10 kW."
    )

    @property
    def resolved_crypto_s_per_param(self) -> float:
        """crypto_s_per_param, or the calibrated figure derived from flops_per_s [s/parameter]."""
        if self.crypto_s_per_param is not None:
            return self.crypto_s_per_param
        return CRYPTO_FLOPS_PER_PARAM / self.flops_per_s


class MainsCharging(Section):
    """Recharge from mains power during daily windows."""

    kind: Literal["mains"] = Field("mains", description="Recharge kind tag.")
    windows: tuple[tuple[float, float], ...] = Field(
        ((22.0, 7.0),),
        min_length=1,
        max_length=24,
        description="Daily charging windows [start_hour, end_hour) [h]; end < start wraps past midnight.",
    )
    power_w: float = Field(10.0, gt=0, le=1.0e4, description="Charging power while plugged in [W]; at most 10 kW.")

    @field_validator("windows")
    @classmethod
    def _windows_in_range(cls, windows: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for w in windows:
            check_hours(w, "charging window")
        return windows


class SolarHarvest(Section):
    """Recharge from a solar panel: a user trace (normalised 0..1) or a clear-sky curve."""

    kind: Literal["solar"] = Field("solar", description="Recharge kind tag.")
    panel_w: float = Field(
        1.0, gt=0, le=1.0e4, description="Panel output at normalised value 1 (peak) [W]; at most 10 kW."
    )
    trace_path: Path | None = Field(
        None,
        description="CSV of normalised solar output (see docs/devices.md); "
        "null = built-in clear-sky curve (sunrise 06:00, sunset 18:00) [path].",
    )
    column: str | None = Field(
        None, max_length=200, description="Trace column to use; null = the only value column [name]."
    )
    step_s: float = Field(
        300.0,
        ge=1.0,
        le=DAY_S,
        description="Sample spacing of a trace without a time column [s]; 1 s to a day (the battery model "
        "walks the trace piece by piece).",
    )
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


class BatterySpec(Section):
    """Energy store: capacity, idle drain, recharge, and when a depleted device comes back."""

    capacity_j: float | None = Field(
        None,
        ge=1.0,
        le=1.0e10,
        description="Usable battery energy [J], 1 J (a small supercapacitor) to 1e10 J; null = mains-powered "
        "(never depletes).",
    )
    initial_fraction: float = Field(1.0, ge=0, le=1, description="Charge at time 0 as a fraction of capacity [0..1].")
    idle_power_w: float = Field(
        0.0, ge=0, le=1.0e4, description="Drain while on and idle (always, unless depleted) [W]; at most 10 kW."
    )
    resume_fraction: float = Field(
        0.2, ge=0.001, le=1, description="A depleted device comes back at this fraction of capacity [0.001..1]."
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


class LinkSpec(Section):
    """Network link: bandwidth, latency, on/off outages and radio energy."""

    down_bps: float = Field(
        10.0e6,
        ge=1.0,
        le=1.0e12,
        description="Mean downlink bandwidth [bit/s]; 1 bit/s (below any real radio: LoRa's 1% duty cycle "
        "leaves ~50) to 1 Tbit/s.",
    )
    up_bps: float = Field(5.0e6, ge=1.0, le=1.0e12, description="Mean uplink bandwidth [bit/s]; 1 bit/s to 1 Tbit/s.")
    latency_s: float = Field(
        0.05, ge=0, le=3600.0, description="Set-up latency added once per transfer attempt [s]; at most an hour."
    )
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
    mean_up_s: float = Field(
        3600.0,
        ge=1.0,
        le=1.0e9,
        description="Mean duration of an up period (exponential) [s]; 1 s (a link that drops every second) "
        "to 1e9 s.",
    )
    mean_down_s: float = Field(
        0.0, ge=0, le=1.0e7, description="Mean duration of an outage (exponential); 0 = none [s]; at most ~4 months."
    )
    on_outage: Literal["resume", "restart"] = Field(
        "resume", description="A transfer cut by an outage resumes or restarts from zero after reconnection."
    )
    max_restarts: int = Field(
        1000, ge=0, le=10_000, description="Restarts after which a transfer is abandoned (end = inf) [count]."
    )
    tx_j_per_byte: float = Field(
        0.0, ge=0, le=1.0, description="Radio energy per byte sent [J/byte]; LoRa spends ~1e-4, at most 1."
    )
    rx_j_per_byte: float = Field(0.0, ge=0, le=1.0, description="Radio energy per byte received [J/byte]; at most 1.")

    @model_validator(mode="after")
    def _trace_readable(self) -> LinkSpec:
        if self.bandwidth_trace is not None:
            read_bandwidth_trace(self.bandwidth_trace)
        return self


class SessionMeans(Section):
    """A fleet group's own mean session lengths (overriding its device class's)."""

    mean_on_s: float | None = Field(None, ge=1.0, le=1.0e7, description="Mean online session [s]; null = keep.")
    mean_off_s: float | None = Field(None, ge=1.0, le=1.0e7, description="Mean offline session [s]; null = keep.")


class AvailabilitySpec(Section):
    """Whether a device is around: permanent dropout, declined invitations, daily windows."""

    dropout_rate: float = Field(0.0, ge=0, le=1, description="Probability the device leaves for good [0..1].")
    dropout_window_s: float | None = Field(
        None, gt=0, le=1.0e9, description="Leaving time is uniform in [0, window) [s]; null = the run's horizon."
    )
    unavailability: float = Field(0.0, ge=0, le=1, description="Probability of declining an invitation [0..1].")
    daily_window: tuple[float, float] | None = Field(
        None, description="[start_hour, end_hour) when the device is willing to work [h]; null = always."
    )
    sessions: SessionMeans = Field(
        default_factory=SessionMeans,
        description="Mean online/offline session lengths under churn (null: the churn's or the class's) [s].",
    )

    @field_validator("daily_window")
    @classmethod
    def _window_in_range(cls, window: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if window is None else check_hours(window, "daily_window")


class ChurnSpec(Section):
    """On/off availability sessions (churn): how long a device stays online and offline, and what going
    offline does to a running job (`devices.sessions`)."""

    enabled: bool = Field(False, description="Devices go online and offline in sessions drawn as below.")
    distribution: Literal["exponential", "lognormal", "weibull"] = Field(
        "exponential", description="Distribution of session lengths (online and offline alike)."
    )
    shape: float = Field(
        1.0, ge=0.1, le=10.0,
        description="lognormal: sigma of log(length); weibull: shape k (1 = exponential, < 1 heavy-tailed); "
        "exponential: unused [dimensionless].",
    )
    mean_on_s: float | None = Field(
        None, ge=1.0, le=1.0e7,
        description="Mean online session [s]; null = the device class's (docs/devices.md), or the fleet group's.",
    )
    mean_off_s: float | None = Field(
        None, ge=1.0, le=1.0e7,
        description="Mean offline session [s]; null = the device class's (docs/devices.md), or the fleet group's.",
    )
    diurnal_amplitude: float = Field(
        0.0, ge=0.0, le=0.9,
        description="Daily modulation a: a session starting at hour h has mean x (1 +/- a cos(2 pi (h - "
        "peak_hour) / 24)), online sessions longer and offline ones shorter near peak_hour [dimensionless].",
    )
    peak_hour: float = Field(20.0, ge=0.0, lt=24.0, description="Hour of the day when devices are most online [h].")
    on_offline: Literal["fail", "pause"] = Field(
        "fail", description="Going offline fails a running job, or pauses it (it resumes if back within grace_s)."
    )
    grace_s: float = Field(
        300.0, ge=0.0, le=1.0e7,
        description="on_offline: pause: longest offline spell a paused job waits out before it fails [s].",
    )


class AvailabilityTraceSpec(Section):
    """Online intervals replayed from a file (`devices.availability_traces`), and what going offline does."""

    path_fields: ClassVar[tuple[str, ...]] = ("path",)  # file paths (resolved from a scenario file's folder)

    path: str | None = Field(
        None, min_length=1, max_length=4096,
        description="Trace file: FedScale's client_behave_trace (pickle or .json) or a .csv/.parquet of "
        "client, start_s, end_s[, period_s] rows (docs/devices.md); devices map to its clients by a seeded "
        "draw; null = off.",
    )
    on_offline: Literal["fail", "pause"] = Field(
        "fail", description="Going offline fails a running job, or pauses it (it resumes if back within grace_s)."
    )
    grace_s: float = Field(
        300.0, ge=0.0, le=1.0e7,
        description="on_offline: pause: longest offline spell a paused job waits out before it fails [s].",
    )

    @field_validator("path")
    @classmethod
    def _readable(cls, path: str | None) -> str | None:
        if path is not None:
            from devices.availability_traces import read_availability_trace

            read_availability_trace(path)  # a missing or malformed file fails here, with the reason
        return path


class DeviceProfile(Section):
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
