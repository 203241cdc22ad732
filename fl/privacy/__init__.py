"""Client-level differential privacy: mechanisms (clipping, noise, per-aggregate calibration) and accounting.

Torch-free. `fl.privacy.mechanism` holds what devices and key holders compute,
`fl.privacy.accountant` the per-device epsilon; docs/privacy.md explains both.
"""

from fl.privacy.accountant import (
    Adjacency,
    FixedSizeSampling,
    PoissonSampling,
    PrivacyAccountant,
    Sampling,
    calibrate_noise_multiplier,
)
from fl.privacy.mechanism import (
    LATTICE_MARGIN,
    AggregateNoise,
    ClipSchedule,
    DPConfig,
    NoiseMode,
    PrivateUpdate,
    clip_delta,
    encoder_value_bound,
    finish_average,
    noise_rng,
    plan_noise,
    privatize,
    tail_multiplier,
)

__all__ = [
    "LATTICE_MARGIN",
    "Adjacency",
    "AggregateNoise",
    "ClipSchedule",
    "DPConfig",
    "FixedSizeSampling",
    "NoiseMode",
    "PoissonSampling",
    "PrivacyAccountant",
    "PrivateUpdate",
    "Sampling",
    "calibrate_noise_multiplier",
    "clip_delta",
    "encoder_value_bound",
    "finish_average",
    "noise_rng",
    "plan_noise",
    "privatize",
    "tail_multiplier",
]
