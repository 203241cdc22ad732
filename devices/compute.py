"""Compute model: training and crypto time and energy on one device.

Training time = flops / flops_per_s x a lognormal jitter (median 1, one draw per job);
training energy = flops x energy_per_flop_j (above idle). Crypto time =
parameters x crypto_s_per_param; crypto energy = active_power_w x seconds (above idle).
"""

from __future__ import annotations

from typing import Any

from devices.specs import ComputeSpec, spec_dict
from devices.streams import RandomStream

__all__ = ["Compute"]


class Compute:
    """Training and crypto cost of one device; draws its jitter from `rng`."""

    __slots__ = ("_crypto_s_per_param", "_flops_per_s", "_rng", "_sigma", "crypto_s", "jobs", "spec", "train_s")

    def __init__(self, spec: ComputeSpec, rng: RandomStream) -> None:
        self.spec = spec
        self._rng = rng
        self._flops_per_s = spec.flops_per_s
        self._sigma = spec.jitter_sigma
        self._crypto_s_per_param = spec.resolved_crypto_s_per_param
        self.jobs = 0
        self.train_s = 0.0
        self.crypto_s = 0.0

    def train_seconds(self, flops: float) -> float:
        """Time of one training job of `flops` FLOPs (forward + backward, all samples and epochs) [s]."""
        if not flops >= 0.0:
            raise ValueError(f"training FLOPs must be >= 0, got {flops!r}")
        jitter = self._rng.lognormal(0.0, self._sigma) if self._sigma > 0.0 else 1.0
        seconds = flops / self._flops_per_s * jitter
        self.jobs += 1
        self.train_s += seconds
        return seconds

    def train_energy_j(self, flops: float) -> float:
        """Energy of training `flops` FLOPs above idle [J]."""
        return flops * self.spec.energy_per_flop_j

    def crypto_seconds(self, num_params: int) -> float:
        """Time to encrypt or decrypt `num_params` parameters [s]."""
        if num_params < 0:
            raise ValueError(f"number of parameters must be >= 0, got {num_params!r}")
        seconds = num_params * self._crypto_s_per_param
        self.crypto_s += seconds
        return seconds

    def crypto_energy_j(self, seconds: float) -> float:
        """Energy of `seconds` of crypto work above idle [J]."""
        return seconds * self.spec.active_power_w

    def config(self) -> dict[str, Any]:
        """Static description (flattened spec, with the crypto rate in use)."""
        return {**spec_dict(self.spec), "crypto_s_per_param": self._crypto_s_per_param}

    def state(self) -> dict[str, Any]:
        """Training jobs run and seconds spent training and on crypto so far."""
        return {"train_jobs": self.jobs, "train_s": self.train_s, "crypto_s": self.crypto_s}
