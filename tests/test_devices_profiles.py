"""Built-in profiles: every combination resolves, overrides apply, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices import DEVICE_CLASSES, LINK_CLASSES, MainsCharging, ProfileError, SolarHarvest, resolve_profile

DOCS = Path(__file__).resolve().parents[1] / "docs" / "devices.md"


def test_the_required_classes_exist() -> None:
    assert set(DEVICE_CLASSES) == {"mcu", "rpi3", "rpi4", "jetson_nano", "smartphone", "laptop"}
    assert set(LINK_CLASSES) == {"lora", "nbiot", "ltem", "lte", "wifi", "ethernet"}


@pytest.mark.parametrize("device", sorted(DEVICE_CLASSES))
def test_every_combination_resolves(device: str) -> None:
    for link in LINK_CLASSES:
        profile = resolve_profile(device, link, {})
        assert profile.link.down_bps == LINK_CLASSES[link]["down_bps"]
        assert profile.compute.flops_per_s == DEVICE_CLASSES[device]["compute"]["flops_per_s"]


def test_link_speeds_are_ordered_as_the_technologies() -> None:
    order = ["lora", "nbiot", "ltem", "lte", "wifi", "ethernet"]
    ups = [resolve_profile("rpi4", name).link.up_bps for name in order]
    assert ups == sorted(ups)


def test_unknown_class_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="unknown device class 'rpi5'; known: mcu, rpi3, rpi4"):
        resolve_profile("rpi5", "wifi")
    with pytest.raises(ProfileError, match="unknown link class '5g'; known: lora, nbiot"):
        resolve_profile("rpi4", "5g")


def test_overrides_apply_and_keep_the_rest() -> None:
    base = resolve_profile("smartphone", "lte")
    p = resolve_profile("smartphone", "lte", {"compute": {"flops_per_s": 1e9}, "link": {"mean_down_s": 0}})
    assert p.compute.flops_per_s == 1e9 and p.link.mean_down_s == 0
    assert p.compute.jitter_sigma == base.compute.jitter_sigma and p.battery == base.battery


def test_recharge_override_merges_same_kind_and_replaces_another() -> None:
    merged = resolve_profile("smartphone", "wifi", {"battery": {"recharge": {"power_w": 20.0}}}).battery.recharge
    assert isinstance(merged, MainsCharging) and merged.power_w == 20.0 and merged.windows == ((22.0, 7.0),)
    solar = resolve_profile("smartphone", "wifi", {"battery": {"recharge": {"kind": "solar", "panel_w": 3.0}}})
    assert isinstance(solar.battery.recharge, SolarHarvest) and solar.battery.recharge.panel_w == 3.0
    mains = resolve_profile("smartphone", "wifi", {"battery": {"capacity_j": None, "recharge": None}})
    assert mains.battery.capacity_j is None


def test_bad_overrides_are_named() -> None:
    with pytest.raises(ProfileError, match=r"link\.down_kbps: unknown setting"):
        resolve_profile("rpi4", "wifi", {"link": {"down_kbps": 5}})
    with pytest.raises(ProfileError, match=r"compute\.flops_per_s = -1"):
        resolve_profile("rpi4", "wifi", {"compute": {"flops_per_s": -1}})
    with pytest.raises(ProfileError, match="unknown override section 'radio'"):
        resolve_profile("rpi4", "wifi", {"radio": {}})
    with pytest.raises(ProfileError, match=r"battery\.recharge = 5"):
        resolve_profile("smartphone", "wifi", {"battery": {"recharge": 5}})
    with pytest.raises(ProfileError, match="capacity_j is null"):
        resolve_profile("smartphone", "wifi", {"battery": {"capacity_j": None}})
    with pytest.raises(ProfileError, match="solar trace file not found"):
        resolve_profile("mcu", "lora", {"battery": {"recharge": {"trace_path": "/nonexistent/sun.csv"}}})


def test_builtin_profiles_are_not_mutated_by_overrides() -> None:
    resolve_profile("smartphone", "wifi", {"battery": {"recharge": {"power_w": 99.0}}})
    assert DEVICE_CLASSES["smartphone"]["battery"]["recharge"]["power_w"] == 10.0


def test_docs_table_lists_every_class() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in [*DEVICE_CLASSES, *LINK_CLASSES]:
        assert f"`{name}`" in text, f"docs/devices.md does not describe {name}"
