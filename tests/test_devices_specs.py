"""Device specs: defaults, units in descriptions, validation messages, flattening."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel, ValidationError

from devices import (
    CRYPTO_FLOPS_PER_PARAM,
    AvailabilitySpec,
    BatterySpec,
    ComputeSpec,
    DeviceProfile,
    LinkSpec,
    MainsCharging,
    SolarHarvest,
    spec_dict,
)

SPECS = [ComputeSpec, MainsCharging, SolarHarvest, BatterySpec, LinkSpec, AvailabilitySpec, DeviceProfile]


def _is_numeric(annotation: object) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return any(a in (int, float) for a in args)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.__name__)
def test_every_field_has_a_default_and_a_description(spec: type[BaseModel]) -> None:
    spec()  # all defaults valid
    for name, field in spec.model_fields.items():
        assert not field.is_required(), f"{spec.__name__}.{name} has no default"
        assert field.description, f"{spec.__name__}.{name} has no description"
        if _is_numeric(field.annotation):
            assert "[" in field.description, f"{spec.__name__}.{name}: no [unit] in {field.description!r}"


def test_unknown_key_is_rejected_by_name() -> None:
    with pytest.raises(ValidationError, match="flops_per_sec"):
        ComputeSpec(flops_per_sec=1e9)


def test_specs_are_immutable_and_hashable() -> None:
    spec = LinkSpec()
    with pytest.raises(ValidationError):
        spec.up_bps = 1.0
    assert hash(spec) == hash(LinkSpec())


def test_negative_throughput_is_rejected() -> None:
    with pytest.raises(ValidationError, match="flops_per_s"):
        ComputeSpec(flops_per_s=-1.0)


def test_crypto_rate_defaults_to_a_ratio_of_the_throughput() -> None:
    assert ComputeSpec(flops_per_s=2e9).resolved_crypto_s_per_param == pytest.approx(CRYPTO_FLOPS_PER_PARAM / 2e9)
    assert ComputeSpec(crypto_s_per_param=3e-7).resolved_crypto_s_per_param == 3e-7


@pytest.mark.parametrize(
    ("window", "message"), [((25.0, 3.0), "out of range"), ((5.0, 5.0), "empty"), ((-1.0, 3.0), "out of range")]
)
def test_bad_daily_window_names_the_problem(window: tuple[float, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AvailabilitySpec(daily_window=window)
    with pytest.raises(ValidationError, match=message):
        MainsCharging(windows=[window])


def test_recharge_without_capacity_is_rejected_with_the_fix() -> None:
    with pytest.raises(ValidationError, match="set capacity_j or set recharge to null"):
        BatterySpec(capacity_j=None, recharge=MainsCharging())


def test_recharge_is_chosen_by_its_kind_tag() -> None:
    spec = BatterySpec.model_validate({"capacity_j": 100.0, "recharge": {"kind": "solar", "panel_w": 2.0}})
    assert isinstance(spec.recharge, SolarHarvest) and spec.recharge.panel_w == 2.0
    with pytest.raises(ValidationError, match="kind"):
        BatterySpec.model_validate({"capacity_j": 100.0, "recharge": {"kind": "wind"}})


def test_solar_column_without_a_trace_is_rejected() -> None:
    with pytest.raises(ValidationError, match="trace_path is null"):
        SolarHarvest(column="Berlin")


def test_spec_dict_flattens_with_dotted_keys() -> None:
    flat = spec_dict(DeviceProfile())
    assert flat["compute.flops_per_s"] == ComputeSpec().flops_per_s
    assert flat["battery.recharge"] is None
    assert flat["link.on_outage"] == "resume"
