"""Client-level DP mechanisms: clipping, Gaussian noise (central or distributed), noise per aggregate.

A device's contribution is its *delta* d = params - base (the trained model minus the global
version it started from), scaled to L2 norm <= C. With adaptive clipping (Andrew et al. 2021)
the device appends one coordinate kappa * (b - 1/2), b = 1 when ||d|| <= C, so that the key
holders can estimate the unclipped fraction from the same noised average. The device then
rounds base + clipped delta to the fixed-point grid 2^-scale_bits of the encoder (so rounding
is deterministic and done before any noise) and, in distributed mode, adds its share of the
noise on that grid. What it encrypts is that model, so every aggregation rule works unchanged.

Everything is measured on the *average* that the key holders decrypt, avg = sum_i w_i y_i / W
with the plan's public integer weights w_i: device j's contribution moves it by at most
p_j * S_j, p_j = w_j / W, S_j the L2 bound of its payload (clip, count coordinate and grid
rounding, see `DPConfig.sensitivity`). Every rule's new global model is a public function of
that average (replace: avg; mix: (1 - m) g + m avg; delta: g + eta (avg - base_avg)), so noise
on the average protects all three alike (docs/privacy.md works the sensitivities out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import ndtri

__all__ = [
    "LATTICE_MARGIN",
    "AggregateNoise",
    "ClipSchedule",
    "DPConfig",
    "NoiseMode",
    "PrivateUpdate",
    "clip_delta",
    "encoder_value_bound",
    "finish_average",
    "noise_rng",
    "plan_noise",
    "privatize",
    "tail_multiplier",
]

NoiseMode = Literal["central", "distributed"]

# Device noise counts for an aggregate only when each share's std on the grid is at least this many times the
# largest integer weight: a Gaussian of std >= 4 w is uniform modulo w up to 2 exp(-32 pi^2) < 1e-137, so the
# weighted sum of lattice noises cannot be taken apart by its residues (docs/privacy.md, "the grid").
LATTICE_MARGIN = 4.0

# Stream purposes: a device's noise share (keyed by its job's seed) and the key holders' noise (run seed, version).
_PURPOSES = {"device": 0x6465765F6E6F6973, "central": 0x63656E5F6E6F6973}


def noise_rng(purpose: Literal["device", "central"], *ids: int) -> np.random.Generator:
    """A counter-based (Philox) stream keyed by `purpose` and `ids`: the same draws on every executor.

    Device noise: `noise_rng("device", task.seed)`; the key holders' noise for version v of a run
    with seed s: `noise_rng("central", s, v)`. Seeded streams are for simulation, not a deployment.
    """
    words = [int(i) for i in ids]
    if any(w < 0 for w in words):
        raise ValueError(f"stream ids must be non-negative integers, got {ids}")
    key = np.random.SeedSequence([_PURPOSES[purpose], *words]).generate_state(2, np.uint64)
    return np.random.Generator(np.random.Philox(key=key))


@dataclass(frozen=True)
class DPConfig:
    """Settings of client-level DP for a run.

    `noise_multiplier` z: the std of the noise on the average over the largest per-device
    sensitivity in it (>= z for every device). `clip_norm` C (the initial one with adaptive
    clipping), in parameter units (L2). `mode` "central": the key holders add all the noise to
    the decrypted average; "distributed": each device adds N(0, sigma_dev^2) on the grid with
    sigma_dev = z * S / sqrt(min_cohort), so that an average of `min_cohort` equally weighted
    devices carries the full noise. `count_noise_multiplier` z_b turns adaptive clipping on:
    the noise multiplier of the clipped-count estimate (z_b > z; Andrew et al.'s 2 * sigma_b);
    the update's share then is z_delta = (z^-2 - z_b^-2)^-1/2, so the pair is one Gaussian
    mechanism of multiplier z. `target_quantile` gamma and `clip_learning_rate` eta_C drive
    the geometric update C <- C exp(-eta_C (b~ - gamma)); `max_clip_norm` caps C (needed to
    bound the encoder's values). `scale_bits`: the fixed-point grid 2^-scale_bits the payload
    lies on (the encoder's).
    """

    noise_multiplier: float
    clip_norm: float
    mode: NoiseMode = "central"
    min_cohort: int = 1
    count_noise_multiplier: float | None = None
    target_quantile: float = 0.5
    clip_learning_rate: float = 0.2
    max_clip_norm: float | None = None
    scale_bits: int = 16

    def __post_init__(self) -> None:
        z, c = self.noise_multiplier, self.clip_norm
        if not (_finite(z) and z > 0):
            raise ValueError(f"noise_multiplier must be a finite number > 0, got {z!r}")
        if not (_finite(c) and c > 0):
            raise ValueError(f"clip_norm must be a finite number > 0, got {c!r}")
        if self.mode not in ("central", "distributed"):
            raise ValueError(f"mode must be 'central' or 'distributed', got {self.mode!r}")
        if not isinstance(self.min_cohort, int) or isinstance(self.min_cohort, bool) or self.min_cohort < 1:
            raise ValueError(f"min_cohort must be an int >= 1, got {self.min_cohort!r}")
        zb = self.count_noise_multiplier
        if zb is not None and not (_finite(zb) and zb > z):
            raise ValueError(f"count_noise_multiplier must be a finite number > noise_multiplier={z}, got {zb!r}")
        if not 0 < self.target_quantile < 1:
            raise ValueError(f"target_quantile must be in (0, 1), got {self.target_quantile!r}")
        if not (_finite(self.clip_learning_rate) and self.clip_learning_rate >= 0):
            raise ValueError(f"clip_learning_rate must be a finite number >= 0, got {self.clip_learning_rate!r}")
        cap = self.max_clip_norm
        if cap is not None and not (_finite(cap) and cap >= c):
            raise ValueError(f"max_clip_norm must be a finite number >= clip_norm={c}, got {cap!r}")
        if not isinstance(self.scale_bits, int) or not 0 <= self.scale_bits <= 52:
            raise ValueError(f"scale_bits must be an int in [0, 52], got {self.scale_bits!r}")

    @property
    def adaptive(self) -> bool:
        """Whether the clip norm adapts (a count coordinate travels with each update)."""
        return self.count_noise_multiplier is not None

    @property
    def update_noise_multiplier(self) -> float:
        """z_delta: the noise multiplier of the update part alone (z without adaptive clipping)."""
        zb = self.count_noise_multiplier
        if zb is None:
            return self.noise_multiplier
        return (self.noise_multiplier**-2 - zb**-2) ** -0.5

    def payload_size(self, num_params: int) -> int:
        """Values a device encrypts: the model, and the count coordinate with adaptive clipping."""
        return num_params + int(self.adaptive)

    def count_scale(self, clip_norm: float) -> float:
        """kappa: the count coordinate is kappa * (b - 1/2), so its noise has multiplier z_b."""
        zb = self.count_noise_multiplier
        return 0.0 if zb is None else 2.0 * clip_norm * self.update_noise_multiplier / zb

    def sensitivity(self, clip_norm: float, num_params: int) -> float:
        """S: the L2 bound of one payload's change when its device's data is replaced by nothing.

        sqrt(C^2 + kappa^2 / 4) (= C z_delta / z) for the clipped delta and count coordinate, plus
        sqrt(payload values) * 2^-scale_bits for rounding both payloads to the grid.
        """
        part = clip_norm * self.update_noise_multiplier / self.noise_multiplier
        return part + math.sqrt(self.payload_size(num_params)) * 2.0**-self.scale_bits

    def device_std(self, clip_norm: float, num_params: int) -> float:
        """sigma_dev: the std of a device's own noise per value (0 in central mode), parameter units."""
        if self.mode == "central":
            return 0.0
        return self.noise_multiplier * self.sensitivity(clip_norm, num_params) / math.sqrt(self.min_cohort)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------------------------- device side


def clip_delta(
    params: np.ndarray, base: np.ndarray, clip_norm: float, out: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """The delta params - base (float64, into `out` if given) scaled to L2 norm <= `clip_norm`, and its norm before."""
    delta = np.subtract(params, base, out=out, dtype=np.float64)
    norm = math.sqrt(float(np.einsum("i,i->", delta, delta)))  # einsum: no BLAS threads
    if norm > clip_norm:
        delta *= clip_norm / norm
    return delta, norm


@dataclass(frozen=True, eq=False)  # holds an array: compare by identity
class PrivateUpdate:
    """What a device encrypts instead of its model: `values` (float64 multiples of 2^-scale_bits,
    `DPConfig.payload_size` of them); `norm` the L2 norm of its delta before clipping."""

    values: np.ndarray
    norm: float
    clip_norm: float

    @property
    def clipped(self) -> bool:
        return self.norm > self.clip_norm


def privatize(
    cfg: DPConfig, params: np.ndarray, base: np.ndarray, clip_norm: float, rng: np.random.Generator
) -> PrivateUpdate:
    """Device side, before encryption: clip the delta, round base + delta to the grid, add the
    device's noise share (distributed mode), append the count coordinate (adaptive clipping).

    `clip_norm` is the clip of the version `base` is (`ClipSchedule.clip_for`); `rng` the job's
    stream (`noise_rng("device", task.seed)`).
    """
    params, base = np.asarray(params), np.asarray(base)
    if params.shape != base.shape or params.ndim != 1:
        raise ValueError(f"params and base must be 1-D of one shape, got {params.shape} and {base.shape}")
    n = params.size
    scale = 2.0**cfg.scale_bits
    out = np.empty(cfg.payload_size(n), dtype=np.float64)
    model, norm = clip_delta(params, base, clip_norm, out=out[:n])
    model += base
    model *= scale
    np.rint(model, out=model)
    if cfg.adaptive:
        unclipped = 0.5 if norm <= clip_norm else -0.5
        out[n] = np.rint(cfg.count_scale(clip_norm) * unclipped * scale)
    std = cfg.device_std(clip_norm, n)
    if std > 0:
        noise = rng.standard_normal(out.size)
        noise *= std * scale
        out += np.rint(noise, out=noise)
    out /= scale  # exact: a power of two
    return PrivateUpdate(out, norm, clip_norm)


# ---------------------------------------------------------------------------------- aggregator side


@dataclass(frozen=True, eq=False)
class AggregateNoise:
    """The noise of one aggregate, as its plan's public weights make it.

    `devices`: the distinct devices in it; `multipliers`: each one's realised noise multiplier
    (std of the fresh noise on the average / the device's sensitivity on it; 0 where no noise
    counts for it); `local_mu2`: (S / sigma_dev)^2 summed over the device's payloads released
    here for the first time (what an observer of single payloads learns; inf in central mode);
    `central_std`: the std the key holders add to each value of the average; `count_scale`:
    sum_i p_i kappa_i, to read the unclipped fraction; `target`: the configured z.
    """

    devices: np.ndarray
    multipliers: np.ndarray
    local_mu2: np.ndarray
    central_std: float
    count_scale: float
    target: float

    @property
    def min_multiplier(self) -> float:
        """The smallest realised noise multiplier (the device this aggregate protects least)."""
        return float(self.multipliers.min())

    @property
    def meets_target(self) -> bool:
        """Whether every device got at least the configured z (distributed noise: enough contributors)."""
        return self.min_multiplier >= self.target * (1.0 - 1e-9)


def plan_noise(
    cfg: DPConfig,
    devices: np.ndarray | list[int],
    weights: np.ndarray | list[int],
    clip_norms: np.ndarray | list[float],
    num_params: int,
    first_release: np.ndarray | list[bool],
    device_noise_fresh: bool = True,
) -> AggregateNoise:
    """The noise for an aggregate of payloads with integer `weights` (per contribution: its
    device, the clip it was made with, whether this is its first release).

    Central: sigma = z * max_j sum_{i of j} p_i S_i, so every device gets multiplier >= z.
    Distributed: the fresh noise on the average is sqrt(sum_i p_i^2 sigma_dev,i^2), counted only
    when `device_noise_fresh` (a payload that may be released again, e.g. a stored update agent,
    shares its noise between aggregates: that noise is not counted for anyone) and every share's
    std on the grid is >= `LATTICE_MARGIN` * the largest weight. A device with
    several payloads in one aggregate (FedBuff) has their sensitivities added.
    """
    dev = np.asarray(devices, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    clips = np.asarray(clip_norms, dtype=np.float64)
    first = np.asarray(first_release, dtype=bool)
    if not (dev.shape == w.shape == clips.shape == first.shape) or dev.ndim != 1 or dev.size == 0:
        raise ValueError("devices, weights, clip_norms and first_release must be non-empty 1-D arrays of one length")
    if (w <= 0).any():
        raise ValueError(f"weights must be positive, got {w.tolist()}")
    p = w / w.sum()
    sens = np.array([cfg.sensitivity(c, num_params) for c in clips])
    unique, index = np.unique(dev, return_inverse=True)
    device_sens = np.bincount(index, weights=p * sens)  # sum_{i of j} p_i S_i
    if cfg.mode == "central":
        central = cfg.noise_multiplier * float(device_sens.max())
        fresh, local = central, np.where(np.bincount(index, weights=first) > 0, np.inf, 0.0)
    else:
        central = 0.0
        sigma_dev = np.array([cfg.device_std(c, num_params) for c in clips])
        smooth = sigma_dev.min() * 2.0**cfg.scale_bits >= LATTICE_MARGIN * w.max()
        fresh = math.sqrt(float(np.sum((p * sigma_dev) ** 2))) if device_noise_fresh and smooth else 0.0
        local = np.bincount(index, weights=np.where(first, (sens / sigma_dev) ** 2, 0.0))
    kappa = float(np.sum(p * np.array([cfg.count_scale(c) for c in clips])))
    return AggregateNoise(unique, fresh / device_sens, local, central, kappa, cfg.noise_multiplier)


def finish_average(
    cfg: DPConfig, average: np.ndarray, noise: AggregateNoise, rng: np.random.Generator
) -> tuple[np.ndarray, float | None]:
    """Key holders' side, after decryption and before the plan's rule: add the central noise
    (`rng`: `noise_rng("central", run_seed, new_version)`), split off the count coordinate.

    Returns the noised average model (float64) and, with adaptive clipping, the noised
    fraction of unclipped updates b~ (weighted by p_i kappa_i; it may leave [0, 1]).
    """
    out = np.array(average, dtype=np.float64)
    if noise.central_std > 0:
        out += noise.central_std * rng.standard_normal(out.size)
    if not cfg.adaptive:
        return out, None
    return out[:-1], 0.5 + float(out[-1]) / noise.count_scale


class ClipSchedule:
    """The clip norm of each global version: fixed, or adapted after each aggregate (Andrew et al. 2021).

    C_(v+1) = C_v * exp(-eta_C * (b~ - gamma)), capped at `max_clip_norm`. The clip is public
    (published with its version); a job clips with the clip of the version it trained on.
    """

    def __init__(self, cfg: DPConfig) -> None:
        self.cfg = cfg
        self._clips = {0: cfg.clip_norm}
        self._latest = 0

    def clip_for(self, version: int) -> float:
        """The clip norm of global `version`."""
        try:
            return self._clips[version]
        except KeyError:
            raise KeyError(f"no clip norm for version {version} (kept: {sorted(self._clips)})") from None

    def advance(self, version: int, unclipped_fraction: float | None) -> float:
        """Store the clip of the new global `version` from the latest one and the aggregate's b~."""
        clip = self._clips[self._latest]
        if unclipped_fraction is not None:
            clip *= math.exp(-self.cfg.clip_learning_rate * (unclipped_fraction - self.cfg.target_quantile))
            if self.cfg.max_clip_norm is not None:
                clip = min(clip, self.cfg.max_clip_norm)
        self._clips[version] = clip
        self._latest = version
        return clip

    def forget_before(self, version: int) -> None:
        """Drop the clips of versions older than `version` (never the latest)."""
        for v in [v for v in self._clips if v < min(version, self._latest)]:
            del self._clips[v]


# ---------------------------------------------------------------------------------- encoder bounds


def tail_multiplier(num_draws: int, failure_prob: float) -> float:
    """k such that all `num_draws` standard normal draws stay within +-k with probability
    >= 1 - `failure_prob` (union bound: k = Phi^-1(1 - failure_prob / (2 num_draws)))."""
    if num_draws < 1 or not 0 < failure_prob < 1:
        raise ValueError(f"need num_draws >= 1 and failure_prob in (0, 1), got {num_draws} and {failure_prob}")
    return float(-ndtri(failure_prob / (2.0 * num_draws)))


def encoder_value_bound(
    cfg: DPConfig, model_bound: float, num_params: int, max_payloads: int, failure_prob: float = 1e-9
) -> float:
    """The fixed-point encoder's `value_bound` for DP payloads (parameter units).

    A payload value is base + clipped delta (+ count coordinate) + noise: at most
    `model_bound` (the bound on global model values the run already assumed) + S + k sigma_dev
    + one grid step, where k = `tail_multiplier` over all `max_payloads` payloads of the run:
    with probability >= 1 - `failure_prob` no payload exceeds it (add `failure_prob` to delta:
    a refused payload is a data-dependent event). The largest clip counts (`max_clip_norm` with
    adaptive clipping, which must then be set).
    """
    if cfg.adaptive and cfg.max_clip_norm is None:
        raise ValueError("adaptive clipping needs max_clip_norm to bound the encoder's values")
    clip = cfg.max_clip_norm if cfg.max_clip_norm is not None else cfg.clip_norm
    sens = cfg.sensitivity(clip, num_params)
    std = cfg.device_std(clip, num_params)
    tail = tail_multiplier(cfg.payload_size(num_params) * max_payloads, failure_prob) * std if std > 0 else 0.0
    return model_bound + sens + tail + 2.0**-cfg.scale_bits
