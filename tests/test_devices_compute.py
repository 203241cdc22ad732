"""Compute model: training time with lognormal jitter, crypto time, energy; faster is faster."""

from __future__ import annotations

import numpy as np
import pytest

from devices import DEVICE_CLASSES, Compute, ComputeSpec, resolve_profile


def test_no_jitter_gives_flops_over_throughput() -> None:
    c = Compute(ComputeSpec(flops_per_s=2e9, jitter_sigma=0.0), np.random.default_rng(0))
    assert c.train_seconds(6e9) == 3.0
    assert c.state() == {"train_jobs": 1, "train_s": 3.0, "crypto_s": 0.0}


def test_jitter_is_lognormal_with_median_one() -> None:
    c = Compute(ComputeSpec(flops_per_s=1e9, jitter_sigma=0.3), np.random.default_rng(1))
    logs = np.log([c.train_seconds(1e9) for _ in range(20000)])
    assert abs(np.median(logs)) < 0.02
    assert logs.std() == pytest.approx(0.3, rel=0.03)


def test_jitter_is_deterministic_per_seed() -> None:
    spec = ComputeSpec(jitter_sigma=0.2)
    a = [Compute(spec, np.random.default_rng(7)).train_seconds(1e9) for _ in range(2)]
    assert a[0] == a[1]


def test_energy_is_per_flop_and_crypto_power_times_time() -> None:
    spec = ComputeSpec(energy_per_flop_j=2e-9, active_power_w=3.0, crypto_s_per_param=1e-6)
    c = Compute(spec, np.random.default_rng(0))
    assert c.train_energy_j(1e9) == pytest.approx(2.0)
    secs = c.crypto_seconds(1_000_000)
    assert secs == pytest.approx(1.0)
    assert c.crypto_energy_j(secs) == pytest.approx(3.0)


def test_bad_inputs_are_rejected() -> None:
    c = Compute(ComputeSpec(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="FLOPs must be >= 0"):
        c.train_seconds(-1.0)
    with pytest.raises(ValueError, match="parameters must be >= 0"):
        c.crypto_seconds(-5)


def test_a_faster_profile_takes_less_time() -> None:
    """Every built-in device class: higher throughput -> shorter median training and crypto time."""
    flops, params = 5e11, 1_000_000
    rows = []
    for name in DEVICE_CLASSES:
        compute = Compute(resolve_profile(name, "wifi").compute, np.random.default_rng(0))
        median = float(np.median([compute.train_seconds(flops) for _ in range(301)]))
        rows.append((compute.spec.flops_per_s, median, name))
    rows.sort()
    medians = [m for _, m, _ in rows]
    assert medians == sorted(medians, reverse=True), rows
    slow = Compute(resolve_profile("rpi3", "wifi").compute, np.random.default_rng(0))
    fast = Compute(resolve_profile("laptop", "wifi").compute, np.random.default_rng(0))
    assert fast.crypto_seconds(params) < slow.crypto_seconds(params)
