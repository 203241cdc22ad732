"""The aggregation server: consumes timed update arrivals and builds global versions.

The server is the untrusted party. It holds the public aggregator, the clients'
payloads (ciphertexts when encryption is on, also the stored update agents) and
bookkeeping; it never holds a secret key or a plaintext update. It asks its strategy
when and how to aggregate, sums the payloads with integer weights, and sends the
aggregate to the key holders through `publish` (in a run: `GlobalModels.apply`), who
decrypt it into the next global version.

The server drives the fleet through a small `Fleet` interface implemented by the
simulation engine: it invites idle devices to train and schedules its deadlines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fl.executors import resolve_all
from fl.jobs import Job
from fl.secure import integer_weights
from fl.strategies import AggregationPlan, Arrival, Strategy

__all__ = ["Fleet", "Server", "UpdateArrived"]


class Fleet(Protocol):
    """What the server needs from the simulated fleet."""

    num_clients: int

    @property
    def now(self) -> float: ...

    def available(self, client: int) -> bool: ...

    def invite(self, client: int, version: int) -> bool: ...

    def call_at(self, time: float, fn: Callable[[], None]) -> None: ...

    def log(self, event: str, device: int = -1, **info) -> None: ...

    def version_created(self, version: int) -> None: ...


@dataclass(frozen=True)
class UpdateArrived:
    """An update that reached the server at `time`; its payload is resolved from `job` when needed."""

    client: int
    base_version: int
    num_samples: int
    time: float
    job: Job | None  # None in time-only mode


class Server:
    """Versioning, client selection, staleness bookkeeping and encrypted aggregation."""

    def __init__(
        self,
        strategy: Strategy,
        aggregator,
        publish: Callable[[AggregationPlan, object, list[int]], int] | None,
        fleet: Fleet,
        clients_per_round: int,
        round_deadline_s: float,
        weight_bits: int,
        rng: np.random.Generator,
        injected_fraction: float = 0.0,
        injected_max_rounds: int = 1,
    ) -> None:
        self.strategy, self.aggregator, self.fleet = strategy, aggregator, fleet
        self._publish = publish  # None in time-only mode: versions advance without payloads
        self.clients_per_round = clients_per_round
        self.round_deadline_s = round_deadline_s
        self.weight_bits = weight_bits
        self.rng = rng
        self.injected_fraction, self.injected_max_rounds = injected_fraction, injected_max_rounds
        self.version = 0
        self.stats: Counter[str] = Counter()
        self._in_flight: dict[int, int] = {}  # client -> base version of its running job
        self._release_at: dict[int, int] = {}  # client -> version at which its update may arrive
        self._held: list[UpdateArrived] = []
        self._pending: dict[int, tuple[int, Job | None]] = {}  # arrival uid -> (base version, job) until used
        self._agents: dict[int, tuple[Arrival, Job | None]] = {}  # client -> its last update (ppafl)
        self._next_uid = 0
        self._round = 0
        self._round_members: set[int] = set()
        self._retry_scheduled = False

    # ----------------------------------------------------------------- control flow
    def start(self) -> None:
        """Open the first round (round-based strategies) or fill the concurrency slots."""
        if self.strategy.round_based:
            self._open_round()
        else:
            self._fill()

    def receive(self, update: UpdateArrived) -> None:
        """Called by the engine when a device's upload completes."""
        release = self._release_at.get(update.client, 0)
        if self.version < release:
            # An injected delay: the update reaches the server only at version `release`;
            # the current round no longer waits for it.
            self._held.append(update)
            self.fleet.log("update_held", update.client, version=self.version, until_version=release)
            self._after_client_done(update.client)
            return
        self._deliver(update)

    def job_failed(self, client: int, reason: str) -> None:
        """Called by the engine when a device's job ends without an upload (dropout, battery)."""
        self._in_flight.pop(client, None)
        self._release_at.pop(client, None)
        self.stats["jobs_failed"] += 1
        self._after_client_done(client)

    @property
    def in_flight(self) -> dict[int, int]:
        return dict(self._in_flight)

    def _deliver(self, update: UpdateArrived) -> None:
        self._in_flight.pop(update.client, None)
        self._release_at.pop(update.client, None)
        self.stats["updates_received"] += 1
        uid = self._next_uid
        self._next_uid += 1
        arrival = Arrival(update.client, update.base_version, update.num_samples, uid)
        self._pending[uid] = (update.base_version, update.job)
        staleness = self.version - update.base_version
        self.fleet.log("update_received", update.client, version=self.version, staleness=staleness)
        if self.strategy.reuses_agents and staleness <= self.strategy.delay_threshold:
            self._agents[update.client] = (arrival, update.job)
        plan = self.strategy.on_arrival(arrival, self.version)
        if plan is not None:
            self._execute(plan)
        self._after_client_done(update.client)

    def _after_client_done(self, client: int) -> None:
        if self.strategy.round_based:
            self._round_members.discard(client)
            if not self._round_members:
                self._close_round(self._round)
        else:
            self._fill()

    # ----------------------------------------------------------------- selection
    def _pick(self, k: int) -> list[int]:
        """Up to k distinct idle, available clients, uniformly at random."""
        n = self.fleet.num_clients
        chosen: list[int] = []
        seen: set[int] = set()
        probes = self.rng.integers(0, n, size=4 * k + 64)
        for c in map(int, probes):
            if len(chosen) == k:
                return chosen
            if c not in seen and c not in self._in_flight and self.fleet.available(c):
                chosen.append(c)
            seen.add(c)
        if len(chosen) < k:  # sparse availability: fall back to a full scan in random order
            for c in map(int, self.rng.permutation(n)):
                if len(chosen) == k:
                    break
                if c not in seen and c not in self._in_flight and self.fleet.available(c):
                    chosen.append(c)
                    seen.add(c)
        return chosen

    def _invite(self, clients: list[int]) -> list[int]:
        accepted = []
        for c in clients:
            if not self.fleet.invite(c, self.version):
                self.stats["invitations_declined"] += 1
                continue
            self._in_flight[c] = self.version
            if self.injected_fraction > 0 and self.rng.random() < self.injected_fraction:
                # Delays count rounds; an async strategy makes several versions per round.
                delay = int(self.rng.integers(1, self.injected_max_rounds + 1))
                self._release_at[c] = self.version + delay * self.strategy.versions_per_round(self.clients_per_round)
                self.fleet.log("delay_injected", c, version=self.version, rounds=delay)
            accepted.append(c)
        return accepted

    def _fill(self) -> None:
        """Async strategies: keep `clients_per_round` jobs in flight."""
        free = self.clients_per_round - (len(self._in_flight) - len(self._held))
        if free <= 0:
            return
        started = self._invite(self._pick(free))
        if len(started) < free:
            self._retry_later(self._fill)

    def _retry_later(self, fn: Callable[[], None]) -> None:
        if self._retry_scheduled:
            return
        self._retry_scheduled = True

        def retry() -> None:
            self._retry_scheduled = False
            fn()

        self.fleet.call_at(self.fleet.now + min(self.round_deadline_s, 30.0), retry)

    def _open_round(self) -> None:
        self._round += 1
        round_id = self._round
        self._round_members = set(self._invite(self._pick(self.clients_per_round)))
        self.fleet.log("round_open", -1, version=self.version, invited=len(self._round_members))
        self.fleet.call_at(self.fleet.now + self.round_deadline_s, lambda: self._close_round(round_id))

    def _close_round(self, round_id: int) -> None:
        if round_id != self._round:
            return  # that round already closed
        self._round += 1  # invalidates this round's deadline
        agents = {c: self._agents[c][0] for c in self._in_flight if c in self._agents}
        plan = self.strategy.close_round(self.version, agents)
        if plan is not None:
            self._execute(plan)
        self._open_round()

    # ----------------------------------------------------------------- aggregation
    def _payload_job(self, uid: int, client: int) -> Job | None:
        if uid in self._pending:
            return self._pending.pop(uid)[1]
        return self._agents[client][1]

    def _execute(self, plan: AggregationPlan) -> None:
        for d in plan.discarded:
            self._pending.pop(d.uid, None)
            self.stats["updates_discarded"] += 1
            self.fleet.log("update_discarded", d.client, version=self.version, staleness=self.version - d.base_version)
        if not plan.contributions:
            return
        contribs, payloads = [], []
        jobs = [self._payload_job(c.uid, c.client) for c in plan.contributions]
        resolve_all(jobs)  # all of the plan's training at once: executors batch or parallelise it
        for c, job in zip(plan.contributions, jobs):
            upload = job.result() if job is not None else None
            if upload is not None and upload.payload is None:
                self.stats["updates_rejected"] += 1
                self.fleet.log("update_rejected", c.client, version=self.version, reason=upload.problem)
                self._agents.pop(c.client, None)
                continue
            contribs.append(c)
            payloads.append(None if upload is None else upload.payload)
        if not contribs:
            return
        plan = AggregationPlan(tuple(contribs), plan.rule, plan.mix, plan.delta_scale)
        weights = integer_weights([c.weight for c in contribs], self.weight_bits)
        if self._publish is not None:
            aggregate = self.aggregator.weighted_sum(payloads, weights)
            self.version = self._publish(plan, aggregate, weights)
        else:
            self.version += 1
        kinds = Counter(c.kind for c in contribs)
        self.stats["aggregations"] += 1
        self.stats["updates_aggregated"] += kinds["fresh"] + kinds["late"]
        self.stats["agents_reused"] += kinds["agent"]
        if len(contribs) == 1:
            self.stats["aggregates_of_one"] += 1
        self.fleet.log(
            "aggregated", -1, version=self.version, fresh=kinds["fresh"], late=kinds["late"], agents=kinds["agent"]
        )
        self._drop_expired_agents()
        self.fleet.version_created(self.version)
        self._release_held()

    def _release_held(self) -> None:
        ready = [u for u in self._held if self._release_at.get(u.client, 0) <= self.version]
        if not ready:
            return
        self._held = [u for u in self._held if u not in ready]
        for u in ready:
            self.fleet.call_at(self.fleet.now, lambda u=u: self._deliver(u))

    def oldest_version_in_use(self) -> int:
        """The oldest global version a running job, held or buffered update still refers to."""
        in_use = [*self._in_flight.values(), *(u.base_version for u in self._held), *(b for b, _ in self._pending.values())]
        return min(in_use, default=self.version)

    def _drop_expired_agents(self) -> None:
        if self.strategy.reuses_agents:
            threshold = self.strategy.delay_threshold
            for c in [c for c, (a, _) in self._agents.items() if self.version - a.base_version > threshold]:
                del self._agents[c]
