"""Up-front resource checks: refuse a scenario that would not fit this machine, before building it.

The estimate is an upper bound of the memory a run holds at once: the training and test
data, the global model versions still in use, the updates the server may keep (its
buffer, late updates and, for ppafl, one update agent per client) at their in-memory
size for the encryption mode, the fleet's device objects and a fixed interpreter/torch
baseline. The limit is the machine's physical memory unless given.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache

from sim.scenario import Scenario, ScenarioError

__all__ = ["ResourceEstimate", "ResourceLimitError", "check_resources", "estimate_resources", "machine_memory_bytes"]

_BASELINE_BYTES = 600 * 2**20  # interpreter, torch, numpy, pandas
_DEVICE_BYTES = 4 * 2**10  # one simulated device with its models (measured ~2 KiB; doubled)
_MPZ_OVERHEAD = 48  # bytes of a Python big-integer object beyond its digits
_TEST_SIZE = {"mnist5k": 1000, "mnist": 10000, "cifar10": 10000}
_GIB = 2**30


class ResourceLimitError(ScenarioError):
    """A scenario would need more memory than the limit; the message gives both and the ways out."""


@dataclass(frozen=True)
class ResourceEstimate:
    """Estimated peak memory of a run, in bytes, by part; `update_nbytes` is one update on the wire."""

    parts: dict[str, int]
    update_nbytes: int
    num_params: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        """The parts, largest first, in GiB/MiB."""
        return ", ".join(f"{name} {_size(n)}" for name, n in sorted(self.parts.items(), key=lambda kv: -kv[1]))


def _size(n: float) -> str:
    return f"{n / _GIB:.2f} GiB" if n >= _GIB else f"{n / 2**20:.1f} MiB"


@cache
def _num_params(model: str) -> int:
    from fl.models import build_model, num_parameters

    return num_parameters(build_model(model))


def _update_sizes(scenario: Scenario, num_params: int, max_clients: int) -> tuple[int, int]:
    """(bytes of one update in memory, bytes on the wire) for the scenario's encryption mode."""
    enc = scenario.encryption
    if enc.mode == "off":
        return 4 * num_params, 4 * num_params
    from crypto import PARAM_SETS, PackedEncoder, payload_nbytes

    encoder = PackedEncoder(
        PARAM_SETS[enc.params], num_params, max_clients, enc.weight_bits, enc.scale_bits, enc.value_bound
    )
    layout = encoder.layout
    wire = payload_nbytes(layout)
    if enc.mode == "modeled":
        return 8 * num_params, wire  # the fixed-point integers, int64
    return layout.num_ciphertexts * (layout.ciphertext_bytes + _MPZ_OVERHEAD), wire


def estimate_resources(scenario: Scenario) -> ResourceEstimate:
    """Upper-bound estimate of the memory a run of `scenario` holds at once."""
    from fl.strategies import make_strategy
    from sim.workload import INPUT_SHAPES, NOMINAL_TRAIN_SIZE, clients_per_round, max_contributions

    n = scenario.fleet.num_devices
    per_round = clients_per_round(scenario, n)
    strategy = make_strategy(scenario.strategy)
    num_params = _num_params(scenario.training.model)
    in_memory, wire = _update_sizes(scenario, num_params, max_contributions(scenario, n))
    parts = {"interpreter and libraries": _BASELINE_BYTES, "devices": n * _DEVICE_BYTES}
    if not scenario.time_only:
        ds = scenario.data.dataset
        test = _TEST_SIZE[ds] if scenario.data.max_test_samples is None else min(
            _TEST_SIZE[ds], scenario.data.max_test_samples
        )
        sample_bytes = 4 * math.prod(INPUT_SHAPES[ds]) + 8  # float32 image + int64 label
        parts["data set"] = (NOMINAL_TRAIN_SIZE[ds] + test) * sample_bytes
        # Each job in flight (or held back by an injected delay) pins the version it trained on.
        parts["global model versions"] = (2 * per_round + 2) * 4 * num_params
        buffer = getattr(scenario.strategy, "buffer_size", 0)  # fedbuff only
        held = 2 * per_round + buffer + (n if strategy.agent_source else 0)
        parts[f"updates held by the server ({held} x {_size(in_memory)})"] = held * in_memory
    return ResourceEstimate(parts, wire, num_params)


def machine_memory_bytes() -> int:
    """Physical memory of this machine in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_resources(scenario: Scenario, limit_bytes: int | None = None) -> ResourceEstimate:
    """The estimate for `scenario`; ResourceLimitError if it exceeds `limit_bytes` (default: physical memory)."""
    est = estimate_resources(scenario)
    limit = machine_memory_bytes() if limit_bytes is None else int(limit_bytes)
    what = "this machine's memory" if limit_bytes is None else "the memory limit"
    if est.update_nbytes > limit:
        raise ResourceLimitError(
            f"scenario {scenario.name!r}: one update is {_size(est.update_nbytes)} on the wire "
            f"({est.num_params} parameters, encryption {scenario.encryption.mode}/{scenario.encryption.params}), "
            f"more than {what} ({_size(limit)}); use a smaller model or encryption.params high_throughput"
        )
    if est.total > limit:
        raise ResourceLimitError(
            f"scenario {scenario.name!r} needs an estimated {_size(est.total)} of memory ({est.describe()}), "
            f"more than {what} ({_size(limit)}). Use fewer devices, a smaller model, encryption.mode modeled "
            "or off, or time_only: true; or raise the limit (ppafl run --memory-limit-gb)"
        )
    return est
