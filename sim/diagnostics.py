"""What a run cannot do, or did not do: checks before it starts and warnings after it ends.

Before a run: a scenario in which no device could deliver a single update before
`stop.max_time_s` (even with no outage and bandwidth and compute draws as fast as one in a
million, a job's download, training and upload take longer) is refused, naming the
quickest group and its times; a group that cannot is warned about. After a run: `run_warnings` lists in plain words what the outputs must not
be read as claiming (no global version, no update ever arrived, rejected updates,
aggregates of one, groups that never delivered, a version or accuracy target not met).
They go into `summary.json`'s `warnings` and to the console.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd

from sim.fleet import group_sizes
from sim.scenario import TRAIN_SAMPLES, Scenario, ScenarioError

__all__ = [
    "MAX_BATTERY_CYCLES",
    "MAX_CYCLES_PER_TRANSFER",
    "EndlessTransferError",
    "FlickeringBatteryError",
    "JobTime",
    "NoUpdatePossibleError",
    "job_times",
    "preflight_warnings",
    "run_warnings",
]

_ONE_IN_A_MILLION = 4.753  # standard normal quantile exceeded with probability 1e-6
MAX_CYCLES_PER_TRANSFER = 100_000  # link up/down periods one transfer may span (each is drawn and kept)
MAX_BATTERY_CYCLES = 100_000  # empty-recharge-empty cycles one device may go through in a run (each is integrated)
_FAILURE_EVENTS = {
    "download_abandoned": "downloads abandoned after too many restarts",
    "upload_abandoned": "uploads abandoned after too many restarts",
    "battery_depleted": "batteries ran empty",
    "dropped_out": "devices left",
}


class NoUpdatePossibleError(ScenarioError):
    """No device of the scenario could deliver one update within the run's time limit."""


class EndlessTransferError(ScenarioError):
    """A group's transfers outlast the run across so many link outages that drawing them would exhaust memory."""


class FlickeringBatteryError(ScenarioError):
    """A group's recharged batteries could empty and refill so often in the run that integrating them would hang."""


@dataclass(frozen=True)
class JobTime:
    """The least time one job of a fleet group can take: no outage, one-in-a-million luck [s]."""

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


@cache
def _train_flops_per_sample(model: str, dataset: str) -> float:
    from fl.models import build_model, flops_per_sample
    from sim.engine import TRAIN_FLOPS_PER_FORWARD
    from sim.workload import INPUT_SHAPES

    return TRAIN_FLOPS_PER_FORWARD * float(flops_per_sample(build_model(model), INPUT_SHAPES[dataset]))


def _fast(sigma: float) -> float:
    """The factor by which a lognormal draw of log-sigma `sigma` (median 1) is exceeded once in a million."""
    return math.exp(_ONE_IN_A_MILLION * sigma)


def job_times(scenario: Scenario, update_nbytes: int) -> list[JobTime]:
    """Each fleet group's least job time, with no outage and luck that comes once in a million draws.

    Transfers at the group's mean bandwidth times its one-in-a-million fast draw (1 for a fixed
    bandwidth), training at its one-in-a-million fast jitter, mean samples per client. Crypto
    time is left out (it only adds). Links driven by a bandwidth trace are skipped.
    """
    fleet = scenario.fleet
    sizes = group_sizes([g.share for g in fleet.groups], fleet.num_devices)
    samples = max(1, TRAIN_SAMPLES[scenario.data.dataset] // fleet.num_devices)
    flops = scenario.training.epochs * samples * _train_flops_per_sample(scenario.training.model, scenario.data.dataset)
    out = []
    for i, (g, n) in enumerate(zip(fleet.groups, sizes)):
        p = g.profile()
        if p.link.bandwidth_trace is not None:
            continue
        sigma = math.sqrt(math.log1p(p.link.bandwidth_cv**2))
        bits = 8.0 * update_nbytes / (math.exp(-sigma * sigma / 2) * _fast(sigma))  # the lognormal's mean is kept
        train = flops / p.compute.flops_per_s / _fast(p.compute.jitter_sigma)
        out.append(JobTime(i, f"{g.device}/{g.link}", n, p.link.latency_s + bits / p.link.down_bps, train,
                           p.link.latency_s + bits / p.link.up_bps))
    return out


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


def run_warnings(
    scenario: Scenario, summary: dict[str, Any], events: pd.DataFrame, devices: pd.DataFrame
) -> list[str]:
    """What this run's outputs must not be read as showing, in plain words (empty when nothing is wrong)."""
    out: list[str] = []
    server = summary.get("server", {})
    versions, received = summary["versions"], server.get("updates_received", 0)
    if versions == 0:
        why = _no_update_reason(devices, events) if received == 0 else (
            f"{received} update(s) arrived but none was aggregated ({server.get('updates_discarded', 0)} discarded "
            f"as too late or stale, {server.get('updates_rejected', 0)} rejected)")
        model = "" if scenario.time_only else (
            "; the model was never trained, so final_accuracy is null (initial_accuracy is the untrained model's)")
        out.append(f"no global version was made: {why}{model}")
    elif received == 0:
        out.append("no update ever arrived at the server")
    rejected = server.get("updates_rejected", 0)
    if rejected:
        out.append(f"{rejected} update(s) were rejected (non-finite or out-of-range parameters; events.csv "
                   "has each as update_rejected)")
    diverged = server.get("aggregates_rejected", 0)
    if diverged:
        out.append(f"{diverged} aggregate(s) were refused because the new global model would not be finite (the "
                   "server's step diverged: lower strategy.server_lr or training.lr); events.csv has each as "
                   "aggregate_rejected")
    ones = summary.get("aggregates_of_one", 0)
    if ones and scenario.encryption.mode != "off":
        out.append(f"{ones} of {versions} global versions were built from a single client's update: the key holders "
                   "could decrypt that client's model")
    if versions > 0 and len(devices):
        for (cls, link), g in devices.groupby(["device_class", "link_class"], sort=False):
            if int(g["updates_sent"].sum()) == 0 and int(g["jobs"].sum()) > 0:
                out.append(f"no {cls} device on {link} delivered an update ({len(g)} devices, {int(g['jobs'].sum())} "
                           f"jobs, {int(g['jobs_failed'].sum())} failed)")
    stop = scenario.stop
    if stop.max_versions is not None and versions < stop.max_versions:
        out.append(f"the run made {versions} of the {stop.max_versions} global versions asked for "
                   f"(stop.max_versions) before it stopped: {summary['stop_reason']}")
    if stop.target_accuracy is not None and not scenario.time_only and summary.get("best_accuracy") is not None:
        best = summary["best_accuracy"]
        if best < stop.target_accuracy:
            out.append(f"stop.target_accuracy {stop.target_accuracy:g} was not reached (best {best:.4f})")
    return out


def _no_update_reason(devices: pd.DataFrame, events: pd.DataFrame) -> str:
    jobs = int(devices["jobs"].sum()) if len(devices) else 0
    failed = int(devices["jobs_failed"].sum()) if len(devices) else 0
    if jobs == 0:
        return "no device ever started a job (all declined, were offline, or the run ended first)"
    counts = events["event"].value_counts() if "event" in events else pd.Series(dtype=int)
    causes = [f"{int(counts[e])} {what}" for e, what in _FAILURE_EVENTS.items() if counts.get(e, 0)]
    held = int(counts.get("update_held", 0))
    if held:
        causes.append(f"{held} held back by the injected delay (injected_delay.fraction) for a version that never "
                      "came")
    unfinished = jobs - failed - (int(devices["updates_sent"].sum()) if len(devices) else 0)
    if unfinished > 0:
        causes.append(f"{unfinished} still running when the run ended")
    return (f"no update ever arrived ({jobs} jobs started, {failed} failed"
            + (f": {', '.join(causes)}" if causes else "") + ")")
