"""Up-front resource checks: refuse a scenario that would not fit this machine, before building it.

The estimate is an upper bound of the memory a run holds at once: the training and test
data, the global model versions still in use, the updates the server may keep (its
buffer, late updates and, for ppafl, one update agent per client) at their in-memory
size for the encryption scheme and mode (SHE ciphertexts as ints, BFV ones as serialized
bytes, modeled ones as int64), the fleet (per-device arrays, and a device object for each
device a job touches), the event log (events expected from the jobs the run can do in its
time or version limit, at their size in the log and in the output tables) and a fixed
interpreter/torch baseline. The limit is the machine's physical memory unless given. What
an estimate cannot foresee the engine's watchdog catches (`sim.watchdog`).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from functools import cache

from sim.scenario import FedBuffConfig, Scenario, ScenarioError

__all__ = [
    "ResourceEstimate",
    "ResourceLimitError",
    "check_resources",
    "estimate_resources",
    "estimated_jobs",
    "machine_memory_bytes",
]

_BASELINE_BYTES = 600 * 2**20  # interpreter, torch, numpy, pandas
_FLEET_BYTES_PER_DEVICE = 128  # per-device arrays of every device (measured ~110 bytes)
_TOUCHED_DEVICE_BYTES = 2 * 2**10  # one built device with its models (measured ~1.5 KiB at 1M devices)
_EVENT_BYTES = 280  # one event: ~20 bytes in the log, ~250 more while the output tables are written (measured)
_EVENTS_PER_JOB = 12  # a job's phase starts and ends, its upload's arrival and aggregation
_BYTES_OVERHEAD = 33  # bytes of a Python bytes object beyond its data (sys.getsizeof(b"") == 33)
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


def int_nbytes(bits: int) -> int:
    """Memory of one Python int of `bits` bits, as a ciphertext is held (object header included) [bytes]."""
    return sys.getsizeof(1 << (bits - 1))


def _update_sizes(scenario: Scenario, num_params: int, max_clients: int) -> tuple[int, int]:
    """(bytes of one update in memory, bytes on the wire) for the scenario's encryption mode."""
    enc = scenario.encryption
    if enc.mode == "off":
        return 4 * num_params, 4 * num_params
    from crypto import payload_nbytes
    from fl.secure import choose_params, encoder_for

    args = (num_params, max_clients, enc.weight_bits, enc.scale_bits, enc.value_bound)
    encoder = encoder_for(choose_params(enc.scheme, enc.params, *args), *args)
    layout = encoder.layout
    wire = payload_nbytes(layout)
    if enc.mode == "modeled":
        return 8 * num_params, wire  # the fixed-point integers, int64
    if enc.scheme == "bfv":  # serialized ciphertexts, one bytes object each
        return layout.num_ciphertexts * (layout.ciphertext_bytes + _BYTES_OVERHEAD), wire
    return layout.num_ciphertexts * int_nbytes(8 * layout.ciphertext_bytes), wire  # SHE: Python ints


def _shortest_job_s(scenario: Scenario, num_params: int, wire: int) -> float:
    """A lower bound of one job's duration over the fleet's groups (transfers at mean bandwidth, training) [s]."""
    from fl.models import build_model, flops_per_sample
    from sim.device_job import TRAIN_FLOPS_PER_FORWARD
    from sim.workload import INPUT_SHAPES, NOMINAL_TRAIN_SIZE

    samples = max(1, NOMINAL_TRAIN_SIZE[scenario.data.dataset] // scenario.fleet.num_devices)
    flops = TRAIN_FLOPS_PER_FORWARD * samples * scenario.training.epochs * float(
        flops_per_sample(build_model(scenario.training.model), INPUT_SHAPES[scenario.data.dataset])
    )
    shortest = math.inf
    for group in scenario.fleet.groups:
        p = group.profile()
        link = p.link
        transfers = 2 * link.latency_s + 8.0 * wire * (1 / link.down_bps + 1 / link.up_bps)
        shortest = min(shortest, transfers + flops / p.compute.flops_per_s)
    return max(shortest, 1e-9)


def estimated_jobs(scenario: Scenario, num_params: int, wire: int) -> float:
    """Jobs a run can do: the fewest of what its version limit needs and what its time limit allows."""
    from fl.strategies import make_strategy
    from sim.workload import clients_per_round

    k = clients_per_round(scenario, scenario.fleet.num_devices)
    strategy = make_strategy(scenario.strategy)
    job_s = _shortest_job_s(scenario, num_params, wire)
    if strategy.round_based:  # a round lasts at least until its deadline or its members are done
        by_time = k * scenario.stop.max_time_s / min(scenario.strategy.round_deadline_s, job_s)
    else:
        by_time = k * scenario.stop.max_time_s / job_s
    versions = scenario.stop.max_versions
    if versions is None:
        return by_time
    if strategy.round_based:  # every round invites k; the round after the last version has started
        by_versions = (versions + 1) * k
    elif isinstance(scenario.strategy, FedBuffConfig):  # a version per buffer_size arrivals
        by_versions = versions * scenario.strategy.buffer_size + k
    else:  # a version per arrival
        by_versions = versions + k
    return min(by_time, by_versions)


def estimate_resources(scenario: Scenario) -> ResourceEstimate:
    """Upper-bound estimate of the memory a run of `scenario` holds at once."""
    from fl.strategies import make_strategy
    from sim.workload import INPUT_SHAPES, NOMINAL_TRAIN_SIZE, clients_per_round, max_contributions

    n = scenario.fleet.num_devices
    per_round = clients_per_round(scenario, n)
    strategy = make_strategy(scenario.strategy)
    num_params = _num_params(scenario.training.model)
    in_memory, wire = _update_sizes(scenario, num_params, max_contributions(scenario, n))
    jobs = estimated_jobs(scenario, num_params, wire)
    events = min(jobs * _EVENTS_PER_JOB, 1e18)
    touched = min(n, jobs)
    parts = {
        "interpreter and libraries": _BASELINE_BYTES,
        "devices": int(n * _FLEET_BYTES_PER_DEVICE + touched * _TOUCHED_DEVICE_BYTES),
        f"event log (~{_count(events)} events)": int(events * _EVENT_BYTES),
    }
    if not scenario.time_only:
        ds = scenario.data.dataset
        test = _TEST_SIZE[ds] if scenario.data.max_test_samples is None else min(
            _TEST_SIZE[ds], scenario.data.max_test_samples
        )
        sample_bytes = 4 * math.prod(INPUT_SHAPES[ds]) + 8  # float32 image + int64 label
        parts["data set"] = (NOMINAL_TRAIN_SIZE[ds] + test) * sample_bytes
        # Each job in flight (or held back by an injected delay) pins the version it trained on.
        parts["global model versions"] = (2 * per_round + 2) * 4 * num_params
        buffer = scenario.strategy.buffer_size if isinstance(scenario.strategy, FedBuffConfig) else 0
        held = 2 * per_round + buffer + (n if strategy.agent_source else 0)
        parts[f"updates held by the server ({held} x {_size(in_memory)})"] = held * in_memory
    return ResourceEstimate(parts, wire, num_params)


def _count(n: float) -> str:
    return f"{n:.3g}" if n >= 1e6 else f"{round(n):,}"


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
            f"({est.num_params} parameters, encryption {scenario.encryption.scheme} {scenario.encryption.mode}/"
            f"{scenario.encryption.params}), more than {what} ({_size(limit)}); use a smaller model or a more "
            "compact parameter set (bfv: compact)"
        )
    if est.total > limit:
        raise ResourceLimitError(
            f"scenario {scenario.name!r} needs an estimated {_size(est.total)} of memory ({est.describe()}), "
            f"more than {what} ({_size(limit)}). Use fewer devices, a smaller model, encryption.mode modeled "
            "or off, or time_only: true, or a shorter run (stop.max_time_s, stop.max_versions); or raise the limit "
            "(ppafl run --memory-limit-gb)"
        )
    return est
