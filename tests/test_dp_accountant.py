"""The privacy accountant: published epsilons, exact composition, no amplification without a uniform sample,
calibration to a target epsilon, the summary's stated assumptions."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from fl.privacy import (
    DPConfig,
    FixedSizeSampling,
    PoissonSampling,
    PrivacyAccountant,
    calibrate_noise_multiplier,
    plan_noise,
)

# TensorFlow Privacy, tutorials/README.md, "Select Parameters" and "Expected Output" (DP-SGD on MNIST:
# 60,000 examples, batches of 256 Poisson-sampled, delta = 1e-5, steps = epochs * 60000 // 256):
# (noise multiplier, epochs, published epsilon, to two decimals).
TF_PRIVACY_TABLE = [(1.12, 60, 2.92), (0.6, 30, 9.74), (1.2, 10, 1.20), (1.12, 1, 1.00), (1.12, 2, 1.04)]
TUTORIAL_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def _classic_epsilon(event: dpa.DpEvent, delta: float) -> float:
    """Epsilon by the RDP-to-DP conversion the table was made with, eps = min_a RDP(a) + log(1/delta) / (a - 1)
    (Mironov 2017, Prop. 3), from dp_accounting's RDP at each order (its own conversion is Canonne et al.'s,
    tighter: eps_a = RDP(a) + log1p(-1/a) - log(delta a) / (a - 1), inverted here order by order)."""
    best = math.inf
    for a in TUTORIAL_ORDERS:
        acc = RdpAccountant(orders=[a])
        acc.compose(event)
        tight = acc.get_epsilon(delta)
        best = min(best, tight - math.log1p(-1 / a) + math.log(a) / (a - 1))
    return best


@pytest.mark.parametrize(("z", "epochs", "published"), TF_PRIVACY_TABLE)
def test_rdp_reproduces_tf_privacy_published_epsilons(z, epochs, published):
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(256 / 60000, dpa.GaussianDpEvent(z)),
                                    epochs * 60000 // 256)
    # Published to two decimals; the (0.6, 30) row computes to 9.760 (0.2% above), the others round to it.
    assert _classic_epsilon(event, 1e-5) == pytest.approx(published, rel=3e-3)
    # the accountant, fed the same rounds, uses the tighter conversion: never above the published bound
    accountant = PrivacyAccountant(60000, 1e-5)
    for _ in range(epochs * 60000 // 256):
        accountant.record_sampled_round(z, PoissonSampling(256 / 60000))
    assert accountant.worst_epsilon() <= published
    assert accountant.report()["amplification"] == "poisson(rate=0.00426667)"


def test_sampled_rounds_compose_like_the_rdp_accountant():
    accountant = PrivacyAccountant(100, 1e-5)
    for _ in range(500):
        accountant.record_sampled_round(1.1, PoissonSampling(0.05))
    acc = RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_SPECIAL)
    acc.compose(dpa.PoissonSampledDpEvent(0.05, dpa.GaussianDpEvent(1.1)), 500)
    assert accountant.worst_epsilon() == pytest.approx(acc.get_epsilon(1e-5), rel=1e-3)
    np.testing.assert_allclose(accountant.epsilon(), accountant.worst_epsilon())  # every device, sampled or not


def test_gaussian_releases_compose_exactly_like_the_pld_accountant():
    """Each device's releases (different multipliers) against dp_accounting's PLD composition."""
    multipliers = [0.8, 1.5, 3.0, 3.0, 7.0]
    accountant = PrivacyAccountant(1, 1e-6)
    pld = PLDAccountant(dpa.NeighboringRelation.REPLACE_SPECIAL, value_discretization_interval=1e-4)
    for z in multipliers:
        accountant.record(_one_release(device=0, multiplier=z))
        pld.compose(dpa.GaussianDpEvent(z))
    assert accountant.worst_epsilon() == pytest.approx(pld.get_epsilon(1e-6), rel=2e-3)
    mu = math.sqrt(sum(z**-2 for z in multipliers))
    assert accountant.worst_epsilon() >= dpa.get_epsilon_gaussian(1 / mu, 1e-6)  # mu rounded up, never down


def _one_release(device: int, multiplier: float):
    """An AggregateNoise for one device alone with a given multiplier (central noise: no local bound)."""
    cfg = DPConfig(multiplier, 1.0, "central")
    noise = plan_noise(cfg, [device], [1], [1.0], 10, [True])
    assert noise.multipliers[0] == pytest.approx(multiplier)
    return noise


def test_participation_that_is_not_a_uniform_sample_is_never_amplified():
    """Devices that take part in a fraction q of rounds (availability decides) get the composition of their own
    releases, which is larger than the amplified bound a Poisson sample of rate q would give."""
    rounds, q, z, n = 400, 0.1, 1.0, 50
    rng = np.random.default_rng(0)
    accountant = PrivacyAccountant(n, 1e-5)
    taken = np.zeros(n, dtype=int)
    cfg = DPConfig(z, 1.0, "central")
    for _ in range(rounds):
        cohort = np.flatnonzero(rng.random(n) < q)
        if cohort.size:
            accountant.record(plan_noise(cfg, cohort, [1] * cohort.size, [1.0] * cohort.size, 10, [True] * cohort.size))
            taken[cohort] += 1
    report = accountant.report()
    assert report["amplification"] == "none"
    assert report["participation"].startswith("not a uniform sample")
    for device in range(n):  # equal weights: every release has multiplier z * K / K = z
        exact = dpa.get_epsilon_gaussian(z / math.sqrt(taken[device]), 1e-5)
        assert accountant.epsilon()[device] == pytest.approx(exact, rel=1e-3)
    amplified = RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_SPECIAL)
    amplified.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z)), rounds)
    assert accountant.epsilon().min() > 2 * amplified.get_epsilon(1e-5)


def test_distributed_noise_with_reused_payloads_falls_back_to_the_single_payload_bound():
    cfg = DPConfig(1.0, 1.0, "distributed", min_cohort=4)
    accountant = PrivacyAccountant(4, 1e-5)
    first = plan_noise(cfg, [0, 1, 2, 3], [1] * 4, [1.0] * 4, 100, [True] * 4, device_noise_fresh=False)
    again = plan_noise(cfg, [0, 1, 2, 3], [1] * 4, [1.0] * 4, 100, [False] * 4, device_noise_fresh=False)
    for noise in (first, again, again):
        accountant.record(noise)
    local = dpa.get_epsilon_gaussian(1 / math.sqrt(4.0), 1e-5)  # each payload alone: S / sigma_dev = sqrt(K_min)
    np.testing.assert_allclose(accountant.epsilon(), local, rtol=1e-3)
    report = accountant.report()
    assert report["devices_bounded_by_single_payloads"] == 4 and report["releases_per_device"] == [3] * 4


def test_central_noise_has_no_single_payload_bound():
    accountant = PrivacyAccountant(2, 1e-5)
    accountant.record(_one_release(0, 2.0))
    assert accountant.report()["epsilon_local_worst"] == "inf"
    assert accountant.epsilon()[1] == 0.0 and math.isfinite(accountant.epsilon()[0])


@pytest.mark.parametrize("target", [0.5, 2.0, 8.0])
@pytest.mark.parametrize("releases", [1, 30, 1000])
def test_calibration_hits_the_target_epsilon(target, releases):
    z = calibrate_noise_multiplier(target, 1e-5, releases)
    accountant = PrivacyAccountant(1, 1e-5)
    for _ in range(releases):
        accountant.record(_one_release(0, z))
    assert accountant.worst_epsilon() == pytest.approx(target, rel=1e-3)  # mu rounded up by <= 1e-4 relative


def test_calibration_with_poisson_sampling_hits_the_target_epsilon():
    z = calibrate_noise_multiplier(2.0, 1e-5, 1000, PoissonSampling(0.02))
    acc = RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_SPECIAL)
    acc.compose(dpa.PoissonSampledDpEvent(0.02, dpa.GaussianDpEvent(z)), 1000)
    assert acc.get_epsilon(1e-5) == pytest.approx(2.0, abs=1e-4)


def test_fixed_size_sampling_needs_replace_one_adjacency_and_doubles_the_sensitivity():
    with pytest.raises(ValueError, match="replace_one"):
        PrivacyAccountant(100, 1e-5).record_sampled_round(1.0, FixedSizeSampling(10, 100))
    with pytest.raises(ValueError, match="zero_out"):
        PrivacyAccountant(100, 1e-5, "replace_one").record_sampled_round(1.0, PoissonSampling(0.1))
    accountant = PrivacyAccountant(100, 1e-5, "replace_one")
    for _ in range(50):
        accountant.record_sampled_round(2.0, FixedSizeSampling(10, 100))
    acc = RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    acc.compose(dpa.SampledWithoutReplacementDpEvent(100, 10, dpa.GaussianDpEvent(1.0)), 50)
    assert accountant.worst_epsilon() == pytest.approx(acc.get_epsilon(1e-5), rel=1e-3)
    assert accountant.report()["amplification"] == "fixed_size(10 of 100, without replacement)"
    one = PrivacyAccountant(1, 1e-5, "replace_one")
    one.record(_one_release(0, 2.0))
    assert one.worst_epsilon() == pytest.approx(dpa.get_epsilon_gaussian(1.0, 1e-5), rel=1e-3)
    assert calibrate_noise_multiplier(1.0, 1e-5, 4, adjacency="replace_one") == pytest.approx(
        2 * calibrate_noise_multiplier(1.0, 1e-5, 4))


def test_many_devices_and_releases_stay_cheap():
    """2,000 devices x 2,000 aggregates of 20: the events are array additions, epsilon one lookup per distinct mu."""
    cfg = DPConfig(1.0, 1.0, "central")
    rng = np.random.default_rng(1)
    accountant = PrivacyAccountant(2000, 1e-6)
    for _ in range(2000):
        cohort = rng.choice(2000, 20, replace=False)
        accountant.record(plan_noise(cfg, cohort, rng.integers(1, 256, 20), [1.0] * 20, 10, [True] * 20))
    worst = accountant.worst_epsilon()
    eps = accountant.epsilon()
    assert eps.max() == pytest.approx(worst) and np.all(eps > 0)
    assert sum(accountant.report()["releases_per_device"]) == 2000 * 20
