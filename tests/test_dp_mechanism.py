"""Client-level DP mechanisms: clipping bounds, noise calibration (statistical tests), distributed = central,
every strategy's weights, adaptive clipping, encoder bounds, reproducible streams.

Statistical tests draw from fixed seeds; each states the rate at which it would fail for a
correct implementation if the seed were random (two-sided, 1e-6).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fl.privacy import (
    LATTICE_MARGIN,
    ClipSchedule,
    DPConfig,
    clip_delta,
    encoder_value_bound,
    finish_average,
    noise_rng,
    plan_noise,
    privatize,
    tail_multiplier,
)
from fl.secure import integer_weights
from fl.strategies import PPAFL, Arrival, FedAsync, FedBuff

N = 199_210  # mnist_2nn
ALPHA = 1e-6  # false-failure rate of each statistical test


def _base(n: int = N, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.05).astype(np.float32)


def _grid(x: np.ndarray, cfg: DPConfig) -> np.ndarray:
    scale = 2.0**cfg.scale_bits
    return np.rint(np.asarray(x, dtype=np.float64) * scale) / scale


def _assert_std(samples: np.ndarray, std: float) -> None:
    """Chi-square test of the sample variance (and a z-test of the mean) at false-failure rate ALPHA each."""
    n = samples.size
    stat = (n - 1) * samples.var(ddof=1) / std**2
    lo, hi = stats.chi2.ppf(ALPHA / 2, n - 1), stats.chi2.isf(ALPHA / 2, n - 1)
    assert lo <= stat <= hi, f"sample std {samples.std(ddof=1)} vs calibrated {std} (chi2 {stat}, [{lo}, {hi}])"
    assert abs(samples.mean()) <= stats.norm.isf(ALPHA / 2) * std / math.sqrt(n)


# ------------------------------------------------------------------------------------ clipping


@pytest.mark.parametrize("scale", [1e-6, 0.1, 0.999, 1.0, 1.001, 10.0, 1e6])
def test_clipping_bounds_every_delta_and_keeps_small_ones(scale):
    rng = np.random.default_rng(1)
    base = _base(1000)
    direction = rng.standard_normal(1000)
    params = (base + scale * direction / np.linalg.norm(direction)).astype(np.float32)
    clipped, norm = clip_delta(params, base, 1.0)
    exact = np.asarray(params, np.float64) - base
    assert norm == pytest.approx(np.linalg.norm(exact), rel=1e-12)
    assert np.linalg.norm(clipped) <= 1.0 * (1 + 1e-12)
    if norm <= 1.0:
        np.testing.assert_array_equal(clipped, exact)
    else:  # scaled, not distorted
        np.testing.assert_allclose(clipped, exact / norm, rtol=1e-12)


@pytest.mark.parametrize("adaptive", [False, True])
def test_a_payload_moves_at_most_its_sensitivity_from_the_null_payload(adaptive):
    """Zero-out adjacency: the device's payload against the one it sends without data (its base)."""
    cfg = DPConfig(1.0, 0.5, count_noise_multiplier=5.0 if adaptive else None)
    base = _base()
    rng = np.random.default_rng(2)
    for size in (0.01, 0.5, 50.0):
        d = rng.standard_normal(N)
        params = base + (size * d / np.linalg.norm(d)).astype(np.float32)
        got = privatize(cfg, params, base, 0.5, noise_rng("device", 1)).values
        null = privatize(cfg, base, base, 0.5, noise_rng("device", 1)).values
        if adaptive:
            null[-1] = 0.0  # nothing: no count either
        assert np.linalg.norm(got - null) <= cfg.sensitivity(0.5, N)
        assert np.all(got * 2.0**cfg.scale_bits == np.rint(got * 2.0**cfg.scale_bits))  # on the grid


# ------------------------------------------------------------------------------------ noise


def test_device_noise_std_matches_its_calibration():
    cfg = DPConfig(1.1, 0.8, "distributed", min_cohort=7)
    base = _base()
    values = privatize(cfg, base, base, 0.8, noise_rng("device", 42)).values
    noise = (values - _grid(base, cfg)) * 2.0**cfg.scale_bits  # grid units
    sigma = cfg.device_std(0.8, N) * 2.0**cfg.scale_bits
    assert sigma == pytest.approx(1.1 * cfg.sensitivity(0.8, N) / math.sqrt(7) * 2.0**cfg.scale_bits)
    np.testing.assert_array_equal(noise, np.rint(noise))
    _assert_std(noise, math.sqrt(sigma**2 + 1 / 12))  # + the rounding of the noise to the grid


def test_central_noise_std_matches_its_calibration():
    cfg = DPConfig(0.9, 1.0, "central")
    noise = plan_noise(cfg, [0, 1, 2], [255, 255, 128], [1.0] * 3, N, [True] * 3)
    assert noise.central_std == pytest.approx(0.9 * cfg.sensitivity(1.0, N) * 255 / 638)
    avg, frac = finish_average(cfg, np.zeros(N), noise, noise_rng("central", 0, 1))
    assert frac is None
    _assert_std(avg, noise.central_std)
    np.testing.assert_allclose(noise.multipliers, [0.9, 0.9, 0.9 * 255 / 128])  # the less weight, the more privacy


@pytest.mark.parametrize("k", [1, 4, 10])
def test_distributed_noise_summed_over_k_devices_is_the_central_noise(k):
    central, distributed = DPConfig(1.0, 1.0, "central"), DPConfig(1.0, 1.0, "distributed", min_cohort=k)
    args = (list(range(k)), [200] * k, [1.0] * k, N, [True] * k)
    c, d = plan_noise(central, *args), plan_noise(distributed, *args)
    expected = c.central_std
    assert distributed.device_std(1.0, N) / math.sqrt(k) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(d.multipliers, c.multipliers, rtol=1e-12)
    np.testing.assert_allclose(d.multipliers, 1.0, rtol=1e-12)
    base = _base()
    total = np.zeros(N)
    for device in range(k):
        total += privatize(distributed, base, base, 1.0, noise_rng("device", 1000 + device)).values
    noise = total / k - _grid(base, distributed)  # the decrypted average's noise
    grid_var = k / 12 * 4.0**-distributed.scale_bits / k**2  # k roundings of 1/12 grid^2, averaged
    _assert_std(noise, math.sqrt(expected**2 + grid_var))


def test_fewer_contributors_than_planned_lower_the_realised_multiplier():
    cfg = DPConfig(1.0, 1.0, "distributed", min_cohort=10)
    full = plan_noise(cfg, list(range(10)), [1] * 10, [1.0] * 10, N, [True] * 10)
    half = plan_noise(cfg, list(range(5)), [1] * 5, [1.0] * 5, N, [True] * 5)
    assert full.meets_target and not half.meets_target
    assert half.min_multiplier == pytest.approx(math.sqrt(5 / 10))  # z * sqrt(K / K_min)


def test_reused_payloads_credit_no_device_noise_but_count_once_locally():
    cfg = DPConfig(1.0, 1.0, "distributed", min_cohort=4)
    noise = plan_noise(cfg, [0, 1, 2, 3], [4, 4, 4, 4], [1.0] * 4, N, [True, True, False, False],
                       device_noise_fresh=False)
    np.testing.assert_array_equal(noise.multipliers, 0.0)
    np.testing.assert_allclose(noise.local_mu2, [4.0, 4.0, 0.0, 0.0])  # K_min / z^2, first releases only


def test_device_noise_too_fine_for_the_weights_is_not_counted():
    """Shares of std below LATTICE_MARGIN * the largest weight (grid units) could be told apart in the weighted
    sum by their residues: the aggregate then credits no device noise (only the single-payload bound holds)."""
    cfg = DPConfig(1.0, 1e-3, "distributed", min_cohort=1, scale_bits=8)  # sigma on the grid ~ 10
    assert cfg.device_std(1e-3, 100) * 2.0**8 < LATTICE_MARGIN * 255
    noise = plan_noise(cfg, [0, 1], [255, 254], [1e-3] * 2, 100, [True] * 2)
    np.testing.assert_array_equal(noise.multipliers, 0.0)
    assert plan_noise(cfg, [0, 1], [1, 1], [1e-3] * 2, 100, [True] * 2).min_multiplier > 1.0  # 10 >= 4 * 1
    coarse = DPConfig(1.0, 0.1, "distributed", min_cohort=1)  # sigma on the grid ~ 6,600 >= 4 * 255
    assert plan_noise(coarse, [0, 1], [255, 254], [0.1] * 2, 100, [True] * 2).min_multiplier > 1.0


def test_noise_streams_are_reproducible_and_independent():
    a = noise_rng("device", 7).standard_normal(5)
    np.testing.assert_array_equal(a, noise_rng("device", 7).standard_normal(5))
    assert not np.array_equal(a, noise_rng("device", 8).standard_normal(5))
    assert not np.array_equal(a, noise_rng("central", 7).standard_normal(5))
    cfg = DPConfig(1.0, 1.0, "distributed", min_cohort=3)
    base = _base(1000)
    one, two = (privatize(cfg, base + 0.01, base, 1.0, noise_rng("device", 3)).values for _ in range(2))
    np.testing.assert_array_equal(one, two)


# ------------------------------------------------------------------------------------ every strategy


def _plans():
    """Real plans of the weighting strategies: PPAFL (halving, an agent), FedBuff (staleness), FedAsync."""
    ppafl = PPAFL(delay_threshold=4)
    for client, base_version in [(0, 10), (1, 9), (2, 7), (3, 10)]:
        ppafl.on_arrival(Arrival(client, base_version, 100 + 50 * client, uid=client), version=10)
    yield ppafl.close_round(10, {4: Arrival(4, 8, 120, uid=9)}), 1.0
    fedbuff = FedBuff(buffer_size=4, server_lr=1.5)
    plan = None
    for uid, (client, base_version) in enumerate([(0, 5), (1, 3), (0, 4), (2, 5)]):  # device 0 twice
        plan = fedbuff.on_arrival(Arrival(client, base_version, 100, uid=uid), version=5) or plan
    yield plan, plan.delta_scale
    yield FedAsync(alpha=0.6).on_arrival(Arrival(3, 2, 100), version=6), 0.6 * 5**-0.5


@pytest.mark.parametrize("plan_and_step", list(_plans()), ids=["ppafl", "fedbuff", "fedasync"])
def test_every_device_gets_at_least_z_under_every_strategys_weights(plan_and_step):
    plan, step = plan_and_step
    cfg = DPConfig(1.0, 0.3, "central")
    n = 2000
    devices = [c.client for c in plan.contributions]
    weights = integer_weights([c.weight for c in plan.contributions], 8)
    noise = plan_noise(cfg, devices, weights, [0.3] * len(devices), n, [c.kind != "agent" for c in plan.contributions])
    assert noise.meets_target and noise.min_multiplier == pytest.approx(1.0)
    # the zero-out shift of each device on the average (and on the rule's step: `step` times both)
    rng = np.random.default_rng(5)
    base = _base(n)
    payloads = [privatize(cfg, base + rng.standard_normal(n).astype(np.float32), base, 0.3, rng).values
                for _ in devices]
    null = privatize(cfg, base, base, 0.3, rng).values
    w = np.asarray(weights, float)
    avg = np.average(payloads, axis=0, weights=w)
    for device, z in zip(noise.devices, noise.multipliers, strict=True):
        without = np.average([null if d == device else y for d, y in zip(devices, payloads, strict=True)],
                             axis=0, weights=w)
        shift = np.linalg.norm(avg - without)
        assert shift <= noise.central_std / z * (1 + 1e-9)  # p_j S_j, the sensitivity the noise was set for
        assert (step * noise.central_std) / (step * shift) >= 1.0 - 1e-9  # the rule scales both alike


# ------------------------------------------------------------------------------------ adaptive clipping


def test_adaptive_clipping_splits_the_multiplier_as_andrew_et_al():
    cfg = DPConfig(1.0, 1.0, "central", count_noise_multiplier=10.0)
    z_delta = cfg.update_noise_multiplier
    assert z_delta == pytest.approx((1.0 - 1 / 100) ** -0.5)  # z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2
    assert 1 / z_delta**2 + 1 / 10.0**2 == pytest.approx(1.0)  # the pair is one mechanism of multiplier z
    grid = math.sqrt(N + 1) * 2.0**-cfg.scale_bits
    assert cfg.sensitivity(1.0, N) - grid == pytest.approx(math.hypot(1.0, cfg.count_scale(1.0) / 2))


def test_adaptive_clipping_estimates_the_unclipped_fraction_and_moves_the_clip():
    # little noise, most of it on the count: kappa ~ 1.15, the estimate's std ~ 1e-3
    cfg = DPConfig(0.01, 1.0, "central", count_noise_multiplier=0.02, clip_learning_rate=0.2, target_quantile=0.5)
    base = _base(500)
    rng = np.random.default_rng(3)
    norms = [0.5] * 7 + [3.0] * 3  # 7 of 10 unclipped
    payloads = []
    for size in norms:
        d = rng.standard_normal(500)
        payloads.append(privatize(cfg, base + (size * d / np.linalg.norm(d)).astype(np.float32), base, 1.0, rng))
    assert [u.clipped for u in payloads] == [False] * 7 + [True] * 3
    noise = plan_noise(cfg, list(range(10)), [1] * 10, [1.0] * 10, 500, [True] * 10)
    avg = np.mean([u.values for u in payloads], axis=0)
    model, frac = finish_average(cfg, avg, noise, noise_rng("central", 0, 1))
    assert model.size == 500 and frac == pytest.approx(0.7, abs=0.01)
    schedule = ClipSchedule(cfg)
    assert schedule.advance(1, frac) == pytest.approx(math.exp(-0.2 * (frac - 0.5)))  # too few clipped: shrink
    assert schedule.clip_for(0) == 1.0
    schedule.forget_before(1)
    with pytest.raises(KeyError):
        schedule.clip_for(0)


def test_clip_schedule_is_fixed_without_adaptive_clipping_and_capped_with_it():
    fixed = ClipSchedule(DPConfig(1.0, 2.0))
    assert fixed.advance(1, None) == fixed.advance(2, None) == 2.0
    capped = ClipSchedule(DPConfig(1.0, 2.0, count_noise_multiplier=5.0, max_clip_norm=2.5))
    assert capped.advance(1, -10.0) == 2.5  # all clipped, much noise: grows, up to the cap


# ------------------------------------------------------------------------------------ encoder bounds


def test_encoder_value_bound_holds_every_noised_value():
    cfg = DPConfig(1.0, 1.0, "distributed", min_cohort=2)
    bound = encoder_value_bound(cfg, model_bound=0.5, num_params=N, max_payloads=20, failure_prob=1e-6)
    k = tail_multiplier(N * 20, 1e-6)
    assert k == pytest.approx(stats.norm.isf(1e-6 / (2 * N * 20)))
    assert bound == pytest.approx(0.5 + cfg.sensitivity(1.0, N) + k * cfg.device_std(1.0, N) + 2.0**-16)
    base = np.clip(_base(), -0.5, 0.5)
    for job in range(20):
        d = np.random.default_rng(job).standard_normal(N)
        params = base + (5.0 * d / np.linalg.norm(d)).astype(np.float32)
        assert np.abs(privatize(cfg, params, base, 1.0, noise_rng("device", job)).values).max() <= bound
    with pytest.raises(ValueError, match="max_clip_norm"):
        encoder_value_bound(DPConfig(1.0, 1.0, count_noise_multiplier=3.0), 0.5, N, 20)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"noise_multiplier": 0.0, "clip_norm": 1.0},
        {"noise_multiplier": 1.0, "clip_norm": -1.0},
        {"noise_multiplier": 1.0, "clip_norm": 1.0, "mode": "local"},
        {"noise_multiplier": 1.0, "clip_norm": 1.0, "min_cohort": 0},
        {"noise_multiplier": 2.0, "clip_norm": 1.0, "count_noise_multiplier": 1.5},
        {"noise_multiplier": 1.0, "clip_norm": 1.0, "max_clip_norm": 0.5},
        {"noise_multiplier": 1.0, "clip_norm": 1.0, "target_quantile": 1.0},
    ],
)
def test_config_refuses_settings_without_a_guarantee(kwargs):
    with pytest.raises(ValueError):
        DPConfig(**kwargs)
