"""The SimPy engine: a fleet of devices training for a server, in simulated time.

Each invited device runs one job as a SimPy process: download the global model ->
decrypt -> train -> encrypt -> upload, each phase taking time from its compute and link
models and energy from its battery; an outage stretches a transfer, a dropout or an
empty battery ends the job. A finished upload reaches the server as a timed
`UpdateArrived`. Gradient work is deferred to the executor and never moves the
simulated clock, so the same scenario and seed give the same numbers on any machine.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from devices import AvailabilitySpec, Device
from fl.executors import resolve_all
from fl.global_model import GlobalModels
from fl.jobs import Job, TrainingTask, task_seed
from fl.result_cache import ResultCache
from fl.server import Network, PayloadRef, Server, UpdateArrived
from fl.strategies import AggregationPlan, make_strategy
from sim.recorder import Recorder
from sim.scenario import Scenario
from sim.workload import Workload, build_workload, clients_per_round

__all__ = ["TRAIN_FLOPS_PER_FORWARD", "Simulation", "build_fleet"]

TRAIN_FLOPS_PER_FORWARD = 3.0  # forward + backward (about twice the forward) per sample


def _group_sizes(shares: list[float], total: int) -> list[int]:
    """Split `total` by `shares` with the largest-remainder method (sizes sum to total)."""
    exact = [s * total for s in shares]
    sizes = [int(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: exact[i] - sizes[i], reverse=True)
    for i in order[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def build_fleet(scenario: Scenario, seed_seq: np.random.SeedSequence) -> list[Device]:
    """The scenario's devices, classes assigned by share in a seeded random order."""
    fleet_cfg, failures = scenario.fleet, scenario.failures
    n = fleet_cfg.num_devices
    sizes = _group_sizes([g.share for g in fleet_cfg.groups], n)
    group_of = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(seed_seq.spawn(1)[0]).shuffle(group_of)
    profiles = [g.profile() for g in fleet_cfg.groups]
    availability = AvailabilitySpec(
        dropout_rate=failures.dropout_rate,
        dropout_window_s=failures.dropout_window_s or scenario.stop.max_time_s,
        unavailability=failures.unavailability,
        daily_window=failures.daily_window,
    )
    streams = seed_seq.spawn(n)
    devices = []
    for i in range(n):
        g = fleet_cfg.groups[group_of[i]]
        devices.append(
            Device(
                i, g.device, g.link, profiles[group_of[i]], availability, np.random.default_rng(streams[i]),
                horizon_s=scenario.stop.max_time_s,
            )
        )
    return devices


@dataclass
class _DeviceTotals:
    jobs: int = 0
    updates_sent: int = 0
    jobs_failed: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    transfer_restarts: int = 0
    depletions: int = 0
    declined: int = 0


class Simulation:
    """One run of a scenario: build everything, then `run()` until a stop condition.

    The simulation is the server's `Network`: the server reaches devices, timers, the
    clients' payloads and the key holders only through the calls it makes on it.
    """

    def __init__(
        self,
        scenario: Scenario,
        executor: str = "sequential",
        progress: bool = False,
        cache: ResultCache | None = None,
    ) -> None:
        self.scenario = scenario
        self.progress = progress
        root = np.random.SeedSequence(scenario.seed)
        fleet_seq, server_seq, init_seq = root.spawn(3)
        self.env = simpy.Environment()
        self.recorder = Recorder()
        self.devices = build_fleet(scenario, fleet_seq)
        self.num_clients = len(self.devices)
        init_seed = int(init_seq.generate_state(1)[0])
        self.workload: Workload = build_workload(scenario, self.num_clients, init_seed, executor, cache)
        self.models: GlobalModels | None = self.workload.models
        strategy = make_strategy(scenario.strategy)
        self.server = Server(
            strategy=strategy,
            aggregator=self.workload.aggregator,
            num_clients=self.num_clients,
            clients_per_round=clients_per_round(scenario, self.num_clients),
            round_deadline_s=scenario.strategy.round_deadline_s,
            weight_bits=scenario.encryption.weight_bits,
            rng=np.random.default_rng(server_seq),
            injected_fraction=scenario.injected_delay.fraction,
            injected_max_rounds=scenario.injected_delay.max_rounds,
            injected_min_rounds=scenario.injected_delay.min_rounds,
            injected_model=scenario.injected_delay.model,
            participation=getattr(scenario.strategy, "participation", "fresh"),  # round-based strategies only
        )
        self.totals = [_DeviceTotals() for _ in self.devices]
        self._work: weakref.WeakKeyDictionary[PayloadRef, Job] = weakref.WeakKeyDictionary()
        self._next_ref = 0
        self._busy: set[int] = set()
        self._stop = self.env.event()
        self.stop_reason = ""
        self._last_eval_time = -1.0
        self.reached_target_at: float | None = None

    # ------------------------------------------------------------- the server's Network
    @property
    def now(self) -> float:
        return float(self.env.now)

    def available(self, client: int) -> bool:
        return client not in self._busy and self.devices[client].online(self.now)

    def invite(self, client: int, version: int) -> bool:
        dev = self.devices[client]
        if dev.availability.declines_invitation():
            self.totals[client].declined += 1
            self.log("invitation_declined", client, version=version)
            return False
        self._busy.add(client)
        self.env.process(self._job(client, version))
        return True

    def call_at(self, time: float, fn: Callable[[Network], None]) -> None:
        self.env.timeout(max(0.0, time - self.now)).callbacks.append(lambda _ev: fn(self))

    def fetch(self, refs: Sequence[PayloadRef]) -> list[tuple[Any, str | None]]:
        """The payloads behind `refs`: the clients' training runs now (all of it at once, so executors batch)."""
        jobs = [self._work.pop(ref) for ref in refs]
        resolve_all(list(jobs))
        uploads = [job.result() for job in jobs]
        return [(u.payload, u.problem if u.payload is None else None) for u in uploads]

    def publish(self, plan: AggregationPlan, aggregate: Any, weights: Sequence[int]) -> int:
        """The key holders decrypt the aggregate into the next global version (time-only: count it)."""
        if self.models is None:
            return self.server.version + 1
        return self.models.apply(plan, aggregate, weights)

    def log(self, event: str, device: int = -1, **info: Any) -> None:
        version = info.pop("version", self.server.version)
        self.recorder.event(self.now, event, device, version, **info)

    def train_agent(self, client: int, base_version: int) -> UpdateArrived:
        """`client` retrained from global `base_version` now, as the reference code's update agents are:
        a deferred job like any update, at no simulated time or energy (a simulation shortcut)."""
        w, ref = self.workload, None
        if w.executor is not None and self.models is not None:
            entropy = [self.scenario.seed, client, base_version, self.server.version, 1]  # 1: not a device job
            seed = int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> np.uint64(1))
            ref = PayloadRef(self._next_ref)
            self._next_ref += 1
            self._work[ref] = w.executor.submit(TrainingTask(client, base_version, seed), self.models.get(base_version))
        self.log("agent_retrained", client, base_version=base_version)
        return UpdateArrived(client, base_version, w.num_samples(client), self.now, ref)

    def version_created(self, version: int) -> None:
        if self.models is not None:
            self.models.forget_before(self.server.oldest_version_in_use())
        stop = self.scenario.stop
        every = self.scenario.evaluation.every_versions
        if every and version % every == 0:
            self._evaluate()
        if stop.max_versions is not None and version >= stop.max_versions:
            self._finish(f"reached {stop.max_versions} global versions")

    # ------------------------------------------------------------- device jobs
    def _phase(self, client: int, seconds: float, joules: float, cause: str, name: str) -> Generator:
        """Spend `seconds` and `joules` on one phase; False if a dropout or empty battery ends the job."""
        dev, now = self.devices[client], self.now
        if not dev.battery.try_draw(now, joules, cause):
            self.totals[client].depletions += 1
            self.log("battery_depleted", client, phase=name)
            back = dev.battery.time_recharged(now)
            if np.isfinite(back):
                self.call_at(back, lambda _net: self.log("battery_recharged", client))
            return False
        end = now + seconds
        if dev.availability.dropout_time < end:
            yield self.env.timeout(max(0.0, dev.availability.dropout_time - now))
            self.log("dropped_out", client, phase=name)
            return False
        self.log(f"{name}_start", client)
        yield self.env.timeout(seconds)
        self.log(f"{name}_end", client)
        return True

    def _transfer(self, client: int, nbytes: int, direction: str) -> Generator:
        dev = self.devices[client]
        tr = dev.link.transfer(self.now, nbytes, direction)
        for start, end in tr.outages:
            self.recorder.event(start, "transfer_paused", client, self.server.version, direction=direction)
            self.recorder.event(end, "transfer_resumed", client, self.server.version, direction=direction)
        self.totals[client].transfer_restarts += tr.restarts
        name = "upload" if direction == "up" else "download"
        if not tr.completed:
            self.log(f"{name}_abandoned", client, reason=tr.reason)
            return False
        ok = yield from self._phase(client, tr.end - self.now, tr.energy_j, "tx" if direction == "up" else "rx", name)
        if ok:
            t = self.totals[client]
            if direction == "up":
                t.bytes_sent += tr.bytes_on_air
            else:
                t.bytes_received += tr.bytes_on_air
        return ok

    def _job(self, client: int, version: int) -> Generator:
        dev, totals, w = self.devices[client], self.totals[client], self.workload
        totals.jobs += 1
        job_number = totals.jobs
        ok = yield from self._transfer(client, w.download_nbytes, "down")
        if ok and w.encrypted:
            secs = dev.compute.crypto_seconds(w.crypto_params["decrypt"])
            ok = yield from self._phase(client, secs, dev.compute.crypto_energy_j(secs), "crypto", "decrypt")
        ref = None
        if ok:
            flops = TRAIN_FLOPS_PER_FORWARD * w.flops_per_sample * w.num_samples(client) * self.scenario.training.epochs
            if w.executor is not None and self.models is not None:
                task = TrainingTask(client, version, task_seed(self.scenario.seed, client, job_number))
                ref = PayloadRef(self._next_ref)
                self._next_ref += 1
                self._work[ref] = w.executor.submit(task, self.models.get(version))
            secs = dev.compute.train_seconds(flops)
            ok = yield from self._phase(client, secs, dev.compute.train_energy_j(flops), "compute", "train")
        if ok and w.encrypted:
            secs = dev.compute.crypto_seconds(w.crypto_params["encrypt"])
            ok = yield from self._phase(client, secs, dev.compute.crypto_energy_j(secs), "crypto", "encrypt")
        if ok:
            ok = yield from self._transfer(client, w.upload_nbytes, "up")
        self._busy.discard(client)
        if not ok:
            totals.jobs_failed += 1
            self.server.job_failed(client, "job ended early", self)
            return
        totals.updates_sent += 1
        self.server.receive(UpdateArrived(client, version, w.num_samples(client), self.now, ref), self)

    # ------------------------------------------------------------- evaluation & stop
    def _evaluate(self) -> None:
        if self._last_eval_time == self.now:
            return  # already evaluated this instant
        self._last_eval_time = self.now
        version = self.server.version
        acc, loss = self.workload.evaluate(self.models.current) if self.models is not None else (np.nan, np.nan)
        stats = self.server.stats
        self.recorder.metric(
            time_s=self.now,
            version=version,
            accuracy=acc,
            loss=loss,
            updates_received=stats["updates_received"],
            updates_aggregated=stats["updates_aggregated"],
            agents_reused=stats["agents_reused"],
            updates_discarded=stats["updates_discarded"],
            jobs_failed=stats["jobs_failed"],
            aggregations=stats["aggregations"],
        )
        target = self.scenario.stop.target_accuracy
        if target is not None and acc >= target and self.reached_target_at is None:
            self.reached_target_at = self.now
            self._finish(f"reached target accuracy {target:g}")

    def _evaluator(self, interval: float) -> Generator:
        while True:
            yield self.env.timeout(interval)
            self._evaluate()

    def _finish(self, reason: str) -> None:
        if not self._stop.triggered:
            self.stop_reason = reason
            self._stop.succeed()

    def run(self) -> None:
        """Run until the simulated time limit, the version limit or the target accuracy."""
        stop = self.scenario.stop
        self._evaluate()
        self.server.start(self)
        if self.scenario.evaluation.interval_s:
            self.env.process(self._evaluator(self.scenario.evaluation.interval_s))
        self.call_at(stop.max_time_s, lambda _net: self._finish(f"reached the time limit {stop.max_time_s:g} s"))
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=round(stop.max_time_s), unit="sim-s", desc=self.scenario.name, leave=False)
            self.env.process(self._progress(bar, stop.max_time_s / 200))
        try:
            self.env.run(until=self._stop)
        finally:
            if bar is not None:
                bar.close()
        self._evaluate()
        self._log_passive_events()

    def _progress(self, bar, step: float) -> Generator:
        while True:
            yield self.env.timeout(step)
            bar.update(round(self.now) - bar.n)
            bar.set_postfix(version=self.server.version, refresh=False)

    def _log_passive_events(self) -> None:
        """Outages and dropouts that happened while devices were idle, up to the end of the run."""
        end = self.now
        for dev in self.devices:
            for start, stop in dev.link.outages_between(0.0, end):
                self.recorder.event(start, "outage_start", dev.id, -1)
                self.recorder.event(min(stop, end), "outage_end", dev.id, -1)
            if dev.availability.dropout_time <= end:
                self.recorder.event(dev.availability.dropout_time, "device_left", dev.id, -1)
            dev.battery.advance(end)
