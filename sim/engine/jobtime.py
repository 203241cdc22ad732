"""The one model of how long a device job takes: transfers, training and crypto on a device's profile.

`DeviceJob` charges each phase with these formulas as the job runs (with the bandwidth
and jitter drawn for that job); the up-front checks (`sim.runner.preflight`) ask for the
least time a job of a fleet group can take. Units: seconds, bytes, FLOPs, bit/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from devices import DeviceProfile

__all__ = [
    "TRAIN_FLOPS_PER_FORWARD", "JobCost", "JobTime", "data_s", "least_job_time", "train_flops", "transfer_s",
]

TRAIN_FLOPS_PER_FORWARD = 3.0  # forward + backward (about twice the forward) per sample
_ONE_IN_A_MILLION = 4.753  # standard normal quantile exceeded with probability 1e-6


def train_flops(flops_per_sample: float, samples: int, epochs: int) -> float:
    """FLOPs of one local training job: `epochs` passes over `samples` at forward + backward cost."""
    return TRAIN_FLOPS_PER_FORWARD * flops_per_sample * samples * epochs


def data_s(nbytes: float, bps: float) -> float:
    """Time to move `nbytes` at `bps` [s]."""
    return 8.0 * nbytes / bps


def transfer_s(nbytes: float, bps: float, latency_s: float) -> float:
    """Time of one transfer: its set-up latency, then `nbytes` at `bps` [s]."""
    return latency_s + data_s(nbytes, bps)


@dataclass(frozen=True)
class JobCost:
    """What one job moves and computes: bytes each way and the training FLOPs of a typical client."""

    download_nbytes: int
    upload_nbytes: int
    train_flops: float


@dataclass(frozen=True)
class JobTime:
    """The least time of one job of a fleet group, by phase [s] (crypto left out: it only adds)."""

    group: int
    label: str  # "mcu/lora"
    devices: int
    download_s: float
    train_s: float
    upload_s: float

    @property
    def total_s(self) -> float:
        return self.download_s + self.train_s + self.upload_s

    def describe(self) -> str:
        return (f"download {self.download_s:.3g} s, training {self.train_s:.3g} s, upload {self.upload_s:.3g} s; "
                f"{self.total_s:.3g} s in all")


def _fast(sigma: float) -> float:
    """The factor by which a lognormal draw of log-sigma `sigma` (median 1) is exceeded once in a million."""
    return math.exp(_ONE_IN_A_MILLION * sigma)


def least_job_time(profile: DeviceProfile, cost: JobCost, *, lucky: bool, group: int = 0, label: str = "",
                   devices: int = 0) -> JobTime:
    """One job's time on `profile` with no outage: at the link's mean bandwidth and the device's median speed
    (`lucky` False), or with draws as fast as one in a million (`lucky` True: bandwidth and compute jitter)."""
    link, compute = profile.link, profile.compute
    speedup = 1.0
    if lucky:
        sigma = math.sqrt(math.log1p(link.bandwidth_cv**2))
        speedup = math.exp(-sigma * sigma / 2) * _fast(sigma)  # the lognormal's mean is the link's mean
    train = cost.train_flops / compute.flops_per_s / (_fast(compute.jitter_sigma) if lucky else 1.0)
    return JobTime(group, label, devices, transfer_s(cost.download_nbytes, link.down_bps * speedup, link.latency_s),
                   train, transfer_s(cost.upload_nbytes, link.up_bps * speedup, link.latency_s))
