"""Per-device privacy accounting over Google's `dp_accounting`, with the assumption it used on record.

Adjacency: a device's *whole* data replaced by nothing ("zero-out", dp_accounting's
REPLACE_SPECIAL: the device still takes part, its payload is its base model, Kairouz et al.
2021), so epsilon protects one device's entire contribution over the run; "replace_one" (any
other data) is needed for fixed-size sampling and doubles every sensitivity.

Without sampling (the default, and the only honest choice when participation follows
availability, speed, churn or asynchrony) a device's epsilon composes only the releases its
own updates took part in: each is a Gaussian mechanism of multiplier z_j, and Gaussian
mechanisms compose exactly into one of mu = sqrt(sum 1 / z_j^2) (Dong, Roth, Su 2019), whose
epsilon at delta is `dp_accounting.get_epsilon_gaussian` (Balle & Wang 2018's analytic
Gaussian, tight). So a device's whole history is one number, devices with equal mu share one
epsilon, and epsilon costs O(1) per release. Amplification by subsampling is used only for
rounds recorded as a uniform sample (Poisson, or fixed-size without replacement) of the whole
population; those rounds count for every device (RDP accountant).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import dp_accounting as dpa
import numpy as np
from dp_accounting.rdp import RdpAccountant

from fl.privacy.mechanism import AggregateNoise

__all__ = [
    "Adjacency",
    "FixedSizeSampling",
    "PoissonSampling",
    "PrivacyAccountant",
    "Sampling",
    "calibrate_noise_multiplier",
]

Adjacency = Literal["zero_out", "replace_one"]
_RELATION = {"zero_out": dpa.NeighboringRelation.REPLACE_SPECIAL, "replace_one": dpa.NeighboringRelation.REPLACE_ONE}
_MU_STEP = 1e-4  # a device's mu is rounded *up* to a relative step of this size before its epsilon is looked up


@dataclass(frozen=True)
class PoissonSampling:
    """Every device of the population takes part in a round independently with probability `rate`."""

    rate: float

    def describe(self) -> str:
        return f"poisson(rate={self.rate:g})"


@dataclass(frozen=True)
class FixedSizeSampling:
    """`sample_size` devices drawn uniformly without replacement from `population` per round."""

    sample_size: int
    population: int

    def describe(self) -> str:
        return f"fixed_size({self.sample_size} of {self.population}, without replacement)"


Sampling = PoissonSampling | FixedSizeSampling


def _sampled_event(noise_multiplier: float, sampling: Sampling, adjacency: Adjacency) -> dpa.DpEvent:
    """One sampled round as a dp_accounting event; ValueError where the adjacency does not fit."""
    if isinstance(sampling, PoissonSampling):
        if adjacency != "zero_out" or not 0 < sampling.rate <= 1:
            raise ValueError(f"Poisson sampling needs adjacency 'zero_out' and a rate in (0, 1], got {adjacency}, "
                             f"{sampling.rate}")
        return dpa.PoissonSampledDpEvent(sampling.rate, dpa.GaussianDpEvent(noise_multiplier))
    if adjacency != "replace_one" or not 0 < sampling.sample_size <= sampling.population:
        raise ValueError(f"fixed-size sampling needs adjacency 'replace_one' and 0 < sample_size <= population, got "
                         f"{adjacency}, {sampling}")
    # replace-one moves a sum by up to 2 S: the event's multiplier is sigma / (2 S).
    return dpa.SampledWithoutReplacementDpEvent(
        sampling.population, sampling.sample_size, dpa.GaussianDpEvent(noise_multiplier / 2.0)
    )


def _gaussian_epsilon(mu: float, delta: float) -> float:
    """Epsilon at `delta` of one Gaussian mechanism with sensitivity / std = `mu` (tight)."""
    if mu == 0:
        return 0.0
    if not math.isfinite(mu):
        return math.inf
    return float(dpa.get_epsilon_gaussian(1.0 / mu, delta))


class PrivacyAccountant:
    """Epsilon per device at a stated delta, fed release events as the run makes them.

    `record(noise)`: an aggregate was released (its `AggregateNoise`), without amplification.
    `record_sampled_round(z, sampling)`: a round whose cohort was a uniform sample of all
    `num_devices` (the caller vouches for it; see docs/privacy.md for when that holds).
    `epsilon()` / `worst_epsilon()` / `report()` at any time. `tail_delta`: the encoder's
    tail-bound failure probability (`encoder_value_bound`), added to the reported delta.
    """

    def __init__(
        self, num_devices: int, delta: float, adjacency: Adjacency = "zero_out", tail_delta: float = 0.0
    ) -> None:
        if num_devices < 1 or not 0 < delta < 1 or not 0 <= tail_delta < 1:
            raise ValueError(f"need num_devices >= 1, delta in (0, 1), tail_delta in [0, 1); got {num_devices}, "
                             f"{delta}, {tail_delta}")
        if adjacency not in _RELATION:
            raise ValueError(f"adjacency must be one of {sorted(_RELATION)}, got {adjacency!r}")
        self.num_devices, self.delta, self.adjacency, self.tail_delta = num_devices, delta, adjacency, tail_delta
        self._scale = 4.0 if adjacency == "replace_one" else 1.0  # (2 S / sigma)^2 against (S / sigma)^2
        self._mu2 = np.zeros(num_devices)  # sum over releases of 1 / z_j^2 (aggregate view)
        self._mu2_local = np.zeros(num_devices)  # sum over first releases of (S / sigma_dev)^2 (single payloads)
        self._releases = np.zeros(num_devices, dtype=np.int64)
        self._rounds: Counter[tuple[float, Sampling]] = Counter()
        self._cache: dict[tuple[float, int], float] = {}

    # ------------------------------------------------------------------ events
    def record(self, noise: AggregateNoise) -> None:
        """An aggregate was released: each device in it composes one Gaussian release of its multiplier."""
        with np.errstate(divide="ignore"):
            mu2 = self._scale / noise.multipliers**2
        np.add.at(self._mu2, noise.devices, mu2)
        np.add.at(self._mu2_local, noise.devices, self._scale * noise.local_mu2)
        np.add.at(self._releases, noise.devices, 1)

    def record_sampled_round(self, noise_multiplier: float, sampling: Sampling) -> None:
        """A round whose cohort was a uniform sample of the population, noise multiplier z on the sum."""
        _sampled_event(noise_multiplier, sampling, self.adjacency)  # validates
        self._rounds[(float(noise_multiplier), sampling)] += 1
        self._cache.clear()

    # ------------------------------------------------------------------ epsilon
    def epsilon(self) -> np.ndarray:
        """Each device's epsilon at `delta`: the smaller of the aggregate and the single-payload bound."""
        if self._rounds:  # sampled rounds are not in the single-payload ledger: only the aggregate bound holds
            return self._epsilons(self._mu2, rounds=True)
        return self._epsilons(np.minimum(self._mu2, self._mu2_local), rounds=False)

    def local_epsilon(self) -> np.ndarray:
        """Each device's epsilon against an observer of its single payloads (inf: they carry no noise,
        or sampled rounds were recorded, which this ledger does not follow)."""
        if self._rounds:
            return np.full(self.num_devices, math.inf)
        return self._epsilons(self._mu2_local, rounds=False)

    def worst_epsilon(self) -> float:
        """The largest epsilon over devices (a metrics column: one lookup without sampled rounds)."""
        if self._rounds:
            return self._lookup(float(self._mu2.max()), rounds=True)
        return self._lookup(float(np.minimum(self._mu2, self._mu2_local).max()), rounds=False)

    def _epsilons(self, mu2: np.ndarray, rounds: bool) -> np.ndarray:
        values, inverse = np.unique(mu2, return_inverse=True)
        eps = np.array([self._lookup(float(v), rounds) for v in values])
        return eps[inverse]

    def _lookup(self, mu2: float, rounds: bool) -> float:
        """Epsilon of a Gaussian release of mu^2 = `mu2` (composed with the sampled rounds if `rounds`)."""
        step = 0 if mu2 == 0 or not math.isfinite(mu2) else math.ceil(math.log(math.sqrt(mu2)) / math.log1p(_MU_STEP))
        mu = 0.0 if mu2 == 0 else math.inf if not math.isfinite(mu2) else math.exp(step * math.log1p(_MU_STEP))
        with_rounds = rounds and bool(self._rounds)
        key = (mu, int(with_rounds))
        if key not in self._cache:
            self._cache[key] = self._rdp_epsilon(mu) if with_rounds else _gaussian_epsilon(mu, self.delta)
        return self._cache[key]

    def _rdp_epsilon(self, mu: float) -> float:
        if not math.isfinite(mu):
            return math.inf
        acc = RdpAccountant(neighboring_relation=_RELATION[self.adjacency])
        for (z, sampling), count in self._rounds.items():
            acc.compose(_sampled_event(z, sampling, self.adjacency), count)
        if mu > 0:
            acc.compose(dpa.GaussianDpEvent(1.0 / mu))
        return float(acc.get_epsilon(self.delta))

    # ------------------------------------------------------------------ summary
    def report(self) -> dict:
        """What summary.json records: epsilons at `delta` (+ `tail_delta`) and the assumptions they rest on."""
        eps, local = self.epsilon(), self.local_epsilon()
        sampled = "; ".join(sorted({s.describe() for _, s in self._rounds}))
        aggregate = self._epsilons(self._mu2, rounds=True)
        return {
            "delta": self.delta + self.tail_delta,
            "epsilon_worst": _json_float(eps.max()),
            "epsilon_median": _json_float(np.median(eps)),
            "epsilon_per_device": [_json_float(e) for e in eps],
            "epsilon_local_worst": _json_float(local.max()),
            "releases_per_device": self._releases.tolist(),
            "devices_bounded_by_single_payloads": int(np.sum(local < aggregate)),
            "amplification": sampled or "none",
            "participation": "uniform sample of the population (caller-declared)" if sampled else
            "not a uniform sample: each device composes its own releases",
            "adjacency": self.adjacency,
            "accountant": "dp_accounting " + ("RDP (sampled rounds)" if sampled else
                                              "analytic Gaussian of the composed releases (exact)"),
        }


def _json_float(x: float) -> float | str:
    """JSON has no infinity: say it in words."""
    return float(x) if math.isfinite(x) else "inf"


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    releases: int,
    sampling: Sampling | None = None,
    adjacency: Adjacency = "zero_out",
) -> float:
    """The noise multiplier z with which `releases` releases of a device reach `target_epsilon` at `delta`.

    Without sampling: releases compose into mu = sqrt(releases) / z, so z = sqrt(releases) * s
    with s the std of the single Gaussian mechanism at (epsilon, delta) (exact, monotone). With
    sampling, `releases` counts rounds and dp_accounting's calibration searches z over the RDP
    accountant. `replace_one` doubles the sensitivity.
    """
    if not (target_epsilon > 0 and 0 < delta < 1 and releases >= 1):
        raise ValueError(f"need target_epsilon > 0, delta in (0, 1), releases >= 1; got {target_epsilon}, {delta}, "
                         f"{releases}")
    if sampling is None:
        factor = 2.0 if adjacency == "replace_one" else 1.0
        return factor * math.sqrt(releases) * float(dpa.get_sigma_gaussian(target_epsilon, delta))
    relation = _RELATION[adjacency]
    return float(dpa.calibrate_dp_mechanism(
        lambda: RdpAccountant(neighboring_relation=relation),
        lambda z: dpa.SelfComposedDpEvent(_sampled_event(z, sampling, adjacency), releases),
        target_epsilon,
        delta,
        dpa.LowerEndpointAndGuess(1e-3, 1.0),
        tol=1e-6,
    ))
