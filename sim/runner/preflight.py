"""Up-front refusals, before anything is built: a run that would not fit this machine, and one in which nothing
could happen.

Memory: the estimate is an upper bound of what a run holds at once: the training and test
data, the global model versions still in use, the updates the server may keep (its
buffer, late updates and, for ppafl, one update agent per client) at their in-memory size
for the encryption scheme and mode (SHE ciphertexts as ints, BFV ones as serialized
bytes, modeled ones as int64), the fleet (per-device arrays, and a device object for each
device a job touches), the event log (events expected from the jobs the run can do in its
time or version limit, at their size in the log and in the output tables) and a fixed
interpreter/torch baseline. The limit is the machine's physical memory unless given. What
an estimate cannot foresee the engine's watchdog catches (`sim.engine.watchdog`).

Progress: a scenario in which no device could deliver a single update before
`stop.max_time_s` (even with no outage and bandwidth and compute draws as fast as one in a
million, a job's download, training and upload take longer) is refused, naming the
quickest group and its times; a group that cannot is warned about. So are transfers that
would outlast the run across too many link outages, and batteries that would flicker.
Job times follow the one job-time model (`sim.engine.jobtime`).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

from sim.assembly import clients_per_round, job_cost, max_contributions, model_size, scheme_of
from sim.engine.jobtime import JobTime, least_job_time
from sim.errors import ScenarioError
from sim.scenario import Scenario

__all__ = [
    "MAX_BATTERY_CYCLES",
    "MAX_CYCLES_PER_TRANSFER",
    "EndlessTransferError",
    "FlickeringBatteryError",
    "NoUpdatePossibleError",
    "ResourceEstimate",
    "ResourceLimitError",
    "check_resources",
    "estimate_resources",
    "estimated_jobs",
    "int_nbytes",
    "job_times",
    "machine_memory_bytes",
    "preflight_warnings",
]

_BASELINE_BYTES = 600 * 2**20  # interpreter, torch, numpy, pandas
_FLEET_BYTES_PER_DEVICE = 128  # per-device arrays of every device (measured ~110 bytes)
_TOUCHED_DEVICE_BYTES = 2 * 2**10  # one built device with its models (measured ~1.5 KiB at 1M devices)
_EVENT_BYTES = 280  # one event: ~20 bytes in the log, ~250 more while the output tables are written (measured)
_EVENTS_PER_JOB = 12  # a job's phase starts and ends, its upload's arrival and aggregation
_BYTES_OVERHEAD = 33  # bytes of a Python bytes object beyond its data (sys.getsizeof(b"") == 33)
_GIB = 2**30
MAX_CYCLES_PER_TRANSFER = 100_000  # link up/down periods one transfer may span (each is drawn and kept)
MAX_BATTERY_CYCLES = 100_000  # empty-recharge-empty cycles one device may go through in a run (each is integrated)


class ResourceLimitError(ScenarioError):
    """A scenario would need more memory than the limit; the message gives both and the ways out."""


class NoUpdatePossibleError(ScenarioError):
    """No device of the scenario could deliver one update within the run's time limit."""


class EndlessTransferError(ScenarioError):
    """A group's transfers outlast the run across so many link outages that drawing them would exhaust memory."""


class FlickeringBatteryError(ScenarioError):
    """A group's recharged batteries could empty and refill so often in the run that integrating them would hang."""


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

    scheme = scheme_of(scenario)
    args = (num_params, max_clients, enc.weight_bits, enc.scale_bits, enc.value_bound)
    encoder = encoder_for(scheme, choose_params(scheme, enc.params, *args), *args)
    layout = encoder.layout
    wire = payload_nbytes(layout)
    if enc.mode == "modeled":
        return 8 * num_params, wire  # the fixed-point integers, int64
    if scheme.name == "bfv":  # serialized ciphertexts, one bytes object each
        return layout.num_ciphertexts * (layout.ciphertext_bytes + _BYTES_OVERHEAD), wire
    return layout.num_ciphertexts * int_nbytes(8 * layout.ciphertext_bytes), wire  # SHE: Python ints


def _shortest_job_s(scenario: Scenario, wire: int) -> float:
    """A lower bound of one job's duration over the fleet's groups (transfers at mean bandwidth, training) [s]."""
    cost = job_cost(scenario, wire)
    shortest = min(least_job_time(g.profile(), cost, lucky=False).total_s for g in scenario.fleet.groups)
    return max(shortest, 1e-9)


def estimated_jobs(scenario: Scenario, wire: int) -> float:
    """Jobs a run can do: the fewest of what its version limit needs and what its time limit allows."""
    k = clients_per_round(scenario, scenario.fleet.num_devices)
    strategy = scenario.strategy.build()
    job_s = _shortest_job_s(scenario, wire)
    if strategy.round_based:  # a round lasts at least until its deadline or its members are done
        by_time = k * scenario.stop.max_time_s / min(scenario.strategy.round_deadline_s, job_s)
    else:
        by_time = k * scenario.stop.max_time_s / job_s
    versions = scenario.stop.max_versions
    if versions is None:
        return by_time
    # every version takes its jobs; the jobs running when the last version is made have started too
    return min(by_time, versions * strategy.jobs_per_version(k) + k)


def estimate_resources(scenario: Scenario) -> ResourceEstimate:
    """Upper-bound estimate of the memory a run of `scenario` holds at once."""
    n = scenario.fleet.num_devices
    per_round = clients_per_round(scenario, n)
    strategy = scenario.strategy.build()
    num_params = model_size(scenario)[0]
    in_memory, wire = _update_sizes(scenario, num_params, max_contributions(scenario, n))
    jobs = estimated_jobs(scenario, wire)
    events = min(jobs * _EVENTS_PER_JOB, 1e18)
    touched = min(n, jobs)
    parts = {
        "interpreter and libraries": _BASELINE_BYTES,
        "devices": int(n * _FLEET_BYTES_PER_DEVICE + touched * _TOUCHED_DEVICE_BYTES),
        f"event log (~{_count(events)} events)": int(events * _EVENT_BYTES),
    }
    if not scenario.time_only:
        info = scenario.data.info()
        test = info.test_samples if scenario.data.max_test_samples is None else min(
            info.test_samples, scenario.data.max_test_samples
        )
        sample_bytes = 4 * math.prod(info.sample_shape) + 8  # float32 sample + int64 label
        parts["data set"] = (info.train_samples + test) * sample_bytes
        # Each job in flight (or held back by an injected delay) pins the version it trained on.
        parts["global model versions"] = (2 * per_round + 2) * 4 * num_params
        held = 2 * per_round + strategy.buffered_updates() + (n if strategy.agent_source else 0)
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


def job_times(scenario: Scenario, update_nbytes: int) -> list[JobTime]:
    """Each fleet group's least job time, with no outage and luck that comes once in a million draws.

    Transfers at the group's mean bandwidth times its one-in-a-million fast draw (1 for a fixed
    bandwidth), training at its one-in-a-million fast jitter, mean samples per client. Crypto
    time is left out (it only adds). Links driven by a bandwidth trace are skipped.
    """
    from devices.profiles import group_sizes

    fleet = scenario.fleet
    sizes = group_sizes([g.share for g in fleet.groups], fleet.num_devices)
    cost = job_cost(scenario, update_nbytes)
    return [least_job_time(p, cost, lucky=True, group=i, label=f"{g.device}/{g.link}", devices=n)
            for i, (g, n) in enumerate(zip(fleet.groups, sizes)) if (p := g.profile()).link.bandwidth_trace is None]


def preflight_warnings(scenario: Scenario, update_nbytes: int) -> list[str]:
    """Warnings about groups that cannot deliver an update in time.

    NoUpdatePossibleError if no group can; EndlessTransferError if a group's transfers would
    outlast the run across more than MAX_CYCLES_PER_TRANSFER outage cycles.
    """
    limit = scenario.stop.max_time_s
    _check_battery_cycles(scenario)
    times = job_times(scenario, update_nbytes)
    if not times:
        return []
    slow = [t for t in times if t.total_s > limit]
    if len(slow) == len(scenario.fleet.groups):
        best = min(times, key=lambda t: t.total_s)
        raise NoUpdatePossibleError(
            f"scenario {scenario.name!r}: no device can deliver an update before stop.max_time_s = {limit:g} s: "
            f"even with no outage and one-in-a-million fast draws, one job of the quickest group, "
            f"groups[{best.group}] ({best.label}), takes "
            f"{best.describe()} ({update_nbytes:,} bytes each way). Use faster links or devices, a smaller model or "
            "lighter encryption (encryption.params high_throughput, or mode off), or a longer stop.max_time_s"
        )
    for t in slow:
        link = scenario.fleet.groups[t.group].profile().link
        transfer = max(t.download_s, t.upload_s)
        cycles = transfer / (link.mean_up_s + link.mean_down_s) if link.mean_down_s > 0 else 0.0
        if cycles > MAX_CYCLES_PER_TRANSFER:
            raise EndlessTransferError(
                f"scenario {scenario.name!r}: one transfer of groups[{t.group}] ({t.label}) takes {transfer:.3g} s, "
                f"longer than the whole run (stop.max_time_s = {limit:g} s), across ~{cycles:.2g} up/down periods "
                f"of its link (mean_up_s {link.mean_up_s:g} + mean_down_s {link.mean_down_s:g}), more than the "
                f"{MAX_CYCLES_PER_TRANSFER:,} one transfer may span: its devices could never deliver, and the outage "
                "schedule alone would fill the memory. Use a faster link, fewer bytes or longer up periods"
            )
    return [
        f"groups[{t.group}] ({t.label}, {t.devices} devices) cannot deliver an update before stop.max_time_s = "
        f"{limit:g} s: one job takes at least {t.describe()}"
        for t in slow
    ]


def _check_battery_cycles(scenario: Scenario) -> None:
    """FlickeringBatteryError if a group's battery could empty and refill more than MAX_BATTERY_CYCLES times
    before stop.max_time_s.

    That happens only while its recharge delivers less than the idle drain (and more than nothing): back at
    resume_fraction x capacity_j, the device empties at idle, recharges while off, and so on. Each cycle lasts
    at least the time to empty at idle plus the time to refill at the strongest such power.
    """
    from devices.recharge import recharge_profile

    limit = scenario.stop.max_time_s
    for i, g in enumerate(scenario.fleet.groups):
        b = g.profile().battery
        if b.recharge is None or b.capacity_j is None or b.idle_power_w <= 0:
            continue
        profile = recharge_profile(b.recharge)
        weak = [(p, hi - lo) for p, lo, hi in zip(profile.power, profile.edges, profile.edges[1:])
                if 0 < p < b.idle_power_w]
        if not weak:
            continue
        resume_j = b.resume_fraction * b.capacity_j
        strongest = max(p for p, _ in weak)
        cycle_s = resume_j / b.idle_power_w + resume_j / strongest
        weak_s = limit * sum(d for _, d in weak) / profile.period + cycle_s  # time spent under such power
        cycles = weak_s / cycle_s
        if cycles > MAX_BATTERY_CYCLES:
            raise FlickeringBatteryError(
                f"scenario {scenario.name!r}: the batteries of groups[{i}] ({g.device}/{g.link}) come back from "
                f"empty with resume_fraction x capacity_j = {resume_j:.3g} J, which the idle drain of "
                f"{b.idle_power_w:g} W empties in {resume_j / b.idle_power_w:.3g} s while the recharge gives "
                f"{strongest:.3g} W at most, refilling it in {resume_j / strongest:.3g} s: the device could flicker "
                f"on and off ~{cycles:.2g} times before stop.max_time_s = {limit:g} s, more than the "
                f"{MAX_BATTERY_CYCLES:,} a run may integrate. Raise battery.capacity_j or battery.resume_fraction, "
                "lower battery.idle_power_w, give a recharge stronger than the idle drain, or shorten the run"
            )
