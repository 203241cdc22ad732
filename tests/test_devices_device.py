"""Device: composition, online/next_online, determinism, config/state for the logs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devices import DAY_S, AvailabilitySpec, Device, resolve_profile

ROOT = Path(__file__).resolve().parents[1]


def _device(device="smartphone", link="lte", seed=0, overrides=None, horizon_s=math.inf, **availability) -> Device:
    return Device(
        7, device, link, resolve_profile(device, link, overrides or {}), AvailabilitySpec(**availability),
        np.random.default_rng(seed), horizon_s,
    )


def test_online_respects_window_battery_and_dropout() -> None:
    d = _device(daily_window=(9.0, 17.0))
    assert not d.online(8 * 3600.0) and d.online(10 * 3600.0)
    assert d.next_online(8 * 3600.0) == pytest.approx(9 * 3600.0)
    gone = _device(dropout_rate=1.0, dropout_window_s=100.0)
    assert gone.online(0.0) == (gone.availability.dropout_time > 0.0)
    assert not gone.online(100.0) and gone.next_online(100.0) == math.inf


def test_depleted_device_comes_back_when_recharged_inside_its_window() -> None:
    # a phone that starts empty, charges 20:00-23:00 at 10 W and works 09:00-17:00
    charge = {"initial_fraction": 0.0, "recharge": {"windows": [[20.0, 23.0]]}}
    d = _device(daily_window=(9.0, 17.0), overrides={"battery": charge})
    assert not d.online(10 * 3600.0)
    assert d.battery.time_recharged(10 * 3600.0) == pytest.approx(20 * 3600.0 + 0.2 * 55440.0 / 10.0)
    back = d.next_online(10 * 3600.0)
    assert back == pytest.approx(DAY_S + 9 * 3600.0)  # recharged in the evening, then waits for 09:00
    assert d.online(back)


def test_device_that_never_recharges_is_never_online_again() -> None:
    d = _device("mcu", "lora", overrides={"battery": {"recharge": None, "initial_fraction": 0.0}})
    assert d.next_online(0.0) == math.inf


def test_same_seed_same_device() -> None:
    def run(seed: int) -> tuple:
        d = _device(seed=seed, dropout_rate=0.5, dropout_window_s=1e4)
        tr = d.link.transfer(0.0, 1_000_000, "up")
        return d.availability.dropout_time, tr.end, d.compute.train_seconds(1e10), d.link.outages_between(0, 1e5)

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_config_and_state_feed_the_logs() -> None:
    d = _device()
    d.battery.try_draw(10.0, 5.0, "compute")
    config, state = d.config(), d.state()
    assert config["id"] == 7 and config["device_class"] == "smartphone" and config["link_class"] == "lte"
    assert config["compute.crypto_s_per_param"] > 0 and "availability.dropout_time_s" in config
    assert state["battery.energy_compute_j"] == 5.0 and state["link.transfers"] == 0
    assert all("." in k for k in state if k != "id")


def test_devices_imports_nothing_from_the_other_packages() -> None:
    code = "import sys, devices; print(sorted({m.split('.')[0] for m in sys.modules} & {'sim', 'fl', 'crypto'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
