"""Device: composition, interruption sources, online, determinism, config/state for the logs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from devices import (
    AvailabilitySpec,
    BatteryDepletion,
    Device,
    InterruptionSource,
    LinkOutages,
    PermanentDropout,
    Segment,
    resolve_profile,
)

ROOT = Path(__file__).resolve().parents[1]


def _device(device="smartphone", link="lte", seed=0, overrides=None, dropout_time=math.inf, **availability) -> Device:
    return Device(
        7, device, link, resolve_profile(device, link, overrides or {}), AvailabilitySpec(**availability),
        np.random.default_rng(seed), dropout_time,
    )


def test_sources_are_what_can_interrupt_this_device() -> None:
    phone = _device(dropout_time=50.0)
    assert [type(s) for s in phone.sources] == [PermanentDropout, BatteryDepletion, LinkOutages]
    pi = _device("rpi4", "ethernet")  # mains-powered, no outages, stays
    assert pi.sources == []


def test_online_respects_window_battery_and_dropout() -> None:
    d = _device(daily_window=(9.0, 17.0))
    assert not d.online(8 * 3600.0) and d.online(10 * 3600.0)
    gone = _device(dropout_time=100.0)
    assert gone.online(99.0) and not gone.online(100.0)
    empty = _device("mcu", "lora", overrides={"battery": {"recharge": None, "initial_fraction": 0.0}})
    assert not empty.online(0.0)


def test_an_added_source_can_keep_the_device_offline_and_interrupt_it() -> None:
    class Offline(InterruptionSource):
        def available(self, t: float) -> bool:
            return not 10.0 <= t < 20.0

        def first_interruption(self, segment: Segment):
            return None

    d = _device("rpi4", "ethernet")
    d.add_source(Offline())
    assert d.online(5.0) and not d.online(15.0) and d.online(20.0)


def test_dropout_interrupts_a_segment_it_falls_in() -> None:
    src = PermanentDropout(50.0)
    assert src.first_interruption(Segment("train", 0.0, 40.0, 1.0, False)) is None
    hit = src.first_interruption(Segment("train", 30.0, 60.0, 1.0, False))
    assert hit.time == 50.0 and hit.device_left and hit.resume_at is None


def test_same_seed_same_device() -> None:
    def run(seed: int) -> tuple:
        d = _device(seed=seed)
        return d.link.bandwidth("up"), d.compute.train_seconds(1e10), d.link.next_down(0.0)

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_config_and_state_feed_the_logs() -> None:
    d = _device(dropout_time=123.0)
    d.battery.advance(10.0, 0.5, "compute")
    config, state = d.config(), d.state()
    assert config["id"] == 7 and config["device_class"] == "smartphone" and config["link_class"] == "lte"
    assert config["compute.crypto_s_per_param"] > 0 and config["availability.dropout_time_s"] == 123.0
    assert state["battery.energy_compute_j"] == 5.0
    assert all("." in k for k in state if k != "id")


def test_devices_imports_nothing_from_the_other_packages() -> None:
    code = "import sys, devices; print(sorted({m.split('.')[0] for m in sys.modules} & {'sim', 'fl', 'crypto'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
