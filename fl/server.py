"""The aggregation server: consumes timed update arrivals and builds global versions.

The server is the untrusted party. It holds the public aggregator, the clients'
payloads (ciphertexts when encryption is on, also the stored update agents), opaque
references to payloads not yet fetched, and bookkeeping; it never holds a secret key,
a codec, an executor or a plaintext update. It asks its strategy when and how to
aggregate, sums the payloads with integer weights, and hands the aggregate to the key
holders, who decrypt it into the next global version.

The trust boundary is structural: the server keeps no reference to the simulation.
Everything it does to the world (invite devices, schedule deadlines, log, fetch
payloads, publish aggregates) goes through the `Network` handed to each call, which it
never stores, so nothing on the client side is reachable from the server object.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from fl.delays import DelayModel, InjectedDelays
from fl.secure import integer_weights
from fl.strategies import AggregationPlan, Arrival, Strategy

__all__ = ["Network", "PayloadRef", "Server", "UpdateArrived"]

# Async strategies that cannot fill a slot look again after the round deadline, within these bounds [s]: polling
# faster than once a simulated second would spin the clock in steps that log nothing while no device is available.
_RETRY_MIN_S, _RETRY_MAX_S = 1.0, 30.0


class PayloadRef:
    """An opaque handle for an update's payload; only the client side knows what it refers to.

    The payload (the client's ciphertext) is computed when the server first fetches it,
    so gradient work never moves simulated time. The server drops a handle once it has
    fetched or discarded the update; the client side keys its pending work by handle
    weakly, so dropping it releases that work.
    """

    __slots__ = ("__weakref__", "uid")

    def __init__(self, uid: int) -> None:
        self.uid = uid

    def __repr__(self) -> str:
        return f"PayloadRef({self.uid})"


class Network(Protocol):
    """What the server may do to the world; handed to every call, never stored."""

    @property
    def now(self) -> float: ...

    def available(self, client: int) -> bool: ...

    def invite(self, client: int, version: int) -> bool: ...

    def call_at(self, time: float, fn: Callable[[Network], None]) -> None:
        """Call `fn(network)` at simulated `time`."""

    def log(self, event: str, device: int = -1, **info: Any) -> None: ...

    def fetch(self, refs: Sequence[PayloadRef]) -> list[tuple[Any, str | None]]:
        """(payload, problem) per handle: the payload the client sent, or None and why it sent none."""

    def publish(self, plan: AggregationPlan, aggregate: Any, weights: Sequence[int]) -> int | None:
        """Hand an aggregate (None in time-only runs) to the key holders; the new global version, or None
        when they refuse it (the resulting model is not finite)."""

    def version_created(self, version: int) -> None: ...

    def train_agent(self, client: int, base_version: int) -> UpdateArrived:
        """`client` retrained from global `base_version` now, at no simulated cost: an update agent
        as the reference code makes them (a simulation shortcut; the physical agent is the client's
        last delivered update)."""


@dataclass(frozen=True)
class UpdateArrived:
    """An update that reached the server at `time`; `payload` is None in time-only runs."""

    client: int
    base_version: int
    num_samples: int
    time: float
    payload: PayloadRef | None


class Server:
    """Versioning, client selection, staleness bookkeeping and encrypted aggregation."""

    def __init__(
        self,
        strategy: Strategy,
        aggregator: Any,
        num_clients: int,
        clients_per_round: int,
        round_deadline_s: float,
        weight_bits: int,
        rng: np.random.Generator,
        injected_fraction: float = 0.0,
        injected_max_rounds: int = 1,
        injected_min_rounds: int = 1,
        injected_model: DelayModel = "independent",
        participation: Literal["fresh", "slots"] = "fresh",
    ) -> None:
        self.strategy, self.aggregator = strategy, aggregator
        self.num_clients = num_clients
        self.clients_per_round = clients_per_round
        self.round_deadline_s = round_deadline_s
        self.weight_bits = weight_bits
        self.rng = rng
        self.participation = participation
        self.delays = InjectedDelays(
            injected_fraction, injected_model, injected_min_rounds, injected_max_rounds, clients_per_round,
            entropy=int(rng.spawn(1)[0].integers(2**63)),  # own streams: the same delays whatever is picked
        )
        self.version = 0
        self.stats: Counter[str] = Counter()
        self._in_flight: dict[int, int] = {}  # client -> base version of its running job
        self._jobs: Counter[int] = Counter()  # client -> jobs it accepted (keys its delay draws)
        # client -> when its held-back update may arrive, on the delay clock (`_delay_clock`)
        self._release_at: dict[int, int] = {}
        self._held: list[UpdateArrived] = []
        self._pending: dict[int, tuple[int, PayloadRef | None]] = {}  # arrival uid -> (base version, handle)
        # client -> its last update (ppafl): a handle until fetched, then the payload itself
        self._agents: dict[int, tuple[Arrival, Any]] = {}
        self._next_uid = 0
        self._round = 0  # advances at every open and close (tells a round's deadline whether it still counts)
        self._rounds_opened = 0
        self._rounds_closed = 0
        self._round_members: set[int] = set()
        self._retry_scheduled = False

    # ----------------------------------------------------------------- control flow
    def start(self, net: Network) -> None:
        """Open the first round (round-based strategies) or fill the concurrency slots."""
        if self.strategy.round_based:
            self._open_round(net)
        else:
            self._fill(net)

    def receive(self, update: UpdateArrived, net: Network) -> None:
        """Called by the engine when a device's upload completes."""
        release = self._release_at.get(update.client, 0)
        if self._delay_clock() < release:
            # An injected delay: the update reaches the server only when the delay clock reaches
            # `release`; the current round no longer waits for it.
            self._held.append(update)
            unit = "until_round" if self.strategy.round_based else "until_version"
            net.log("update_held", update.client, version=self.version, **{unit: release})
            self._after_client_done(update.client, net)
            return
        self._deliver(update, net)

    def job_failed(self, client: int, reason: str, net: Network) -> None:
        """Called by the engine when a device's job ends without an upload (dropout, battery)."""
        self._in_flight.pop(client, None)
        self._release_at.pop(client, None)
        self.stats["jobs_failed"] += 1
        self._after_client_done(client, net)

    @property
    def in_flight(self) -> dict[int, int]:
        return dict(self._in_flight)

    def _deliver(self, update: UpdateArrived, net: Network) -> None:
        self._in_flight.pop(update.client, None)
        delayed = self._release_at.pop(update.client, None) is not None
        self.stats["updates_received"] += 1
        arrival = self._hold(update, delayed)
        staleness = self.version - update.base_version
        net.log("update_received", update.client, version=self.version, staleness=staleness)
        if self.strategy.reuses_agents and not self.strategy.agent_expired(self.version, update.base_version):
            self._agents[update.client] = (arrival, update.payload)
        plan = self.strategy.on_arrival(arrival, self.version)
        if plan is not None:
            self._execute(plan, net)
        self._after_client_done(update.client, net)

    def _hold(self, update: UpdateArrived, delayed: bool = True) -> Arrival:
        """Keep an update's handle until a plan fetches or discards it; what the strategy learns of it."""
        uid = self._next_uid
        self._next_uid += 1
        self._pending[uid] = (update.base_version, update.payload)
        return Arrival(update.client, update.base_version, update.num_samples, uid, delayed)

    def _after_client_done(self, client: int, net: Network) -> None:
        if self.strategy.round_based:
            self._round_members.discard(client)
            if not self._round_members:
                self._close_round(self._round, net)
        else:
            self._fill(net)

    # ----------------------------------------------------------------- selection
    def _pick(self, k: int, net: Network) -> list[int]:
        """Up to k distinct idle, available clients, uniformly at random."""
        n = self.num_clients
        chosen: list[int] = []
        seen: set[int] = set()
        probes = self.rng.integers(0, n, size=4 * k + 64)
        for c in map(int, probes):
            if len(chosen) == k:
                return chosen
            if c not in seen and c not in self._in_flight and net.available(c):
                chosen.append(c)
            seen.add(c)
        if len(chosen) < k:  # sparse availability: fall back to a full scan in random order
            for c in map(int, self.rng.permutation(n)):
                if len(chosen) == k:
                    break
                if c not in seen and c not in self._in_flight and net.available(c):
                    chosen.append(c)
                    seen.add(c)
        return chosen

    def _invite(self, clients: list[int], net: Network) -> list[int]:
        accepted = []
        for c in clients:
            if not net.invite(c, self.version):
                self.stats["invitations_declined"] += 1
                continue
            self._in_flight[c] = self.version
            self._jobs[c] += 1
            delay = self.delays.for_job(c, self._jobs[c])
            if delay is not None:
                self._delay(c, delay, net)
            accepted.append(c)
        return accepted

    def _delay_clock(self) -> int:
        """What injected delays count: rounds closed (round-based strategies: a round that aggregates
        nothing still passes, so held updates cannot wait on a version only they could make), else
        global versions."""
        return self._rounds_closed if self.strategy.round_based else self.version

    def _delay(self, client: int, rounds: int, net: Network) -> None:
        """Hold `client`'s running job back: its update may arrive only `rounds` rounds after it started."""
        # Delays count rounds; an async strategy makes several versions per round.
        per_round = 1 if self.strategy.round_based else self.strategy.versions_per_round(self.clients_per_round)
        self._release_at[client] = self._delay_clock() + rounds * per_round
        net.log("delay_injected", client, version=self.version, rounds=rounds, job=self._jobs[client])

    def _fill(self, net: Network) -> None:
        """Async strategies: keep `clients_per_round` jobs in flight."""
        free = self.clients_per_round - (len(self._in_flight) - len(self._held))
        if free <= 0:
            return
        started = self._invite(self._pick(free, net), net)
        if len(started) < free:
            self._retry_later(net)

    def _retry_later(self, net: Network) -> None:
        if self._retry_scheduled:
            return
        self._retry_scheduled = True

        def retry(later: Network) -> None:
            self._retry_scheduled = False
            self._fill(later)

        net.call_at(net.now + min(max(self.round_deadline_s, _RETRY_MIN_S), _RETRY_MAX_S), retry)

    def _open_round(self, net: Network) -> None:
        self._round += 1
        self._rounds_opened += 1
        round_id = self._round
        # fresh: C*N new invitations beside the jobs still running; slots: running jobs keep their slots.
        free = self.clients_per_round - (len(self._in_flight) if self.participation == "slots" else 0)
        invited = self._invite(self._pick(free, net), net) if free > 0 else []
        for c, rounds in self.delays.for_round(self._rounds_opened, invited, list(self._release_at)).items():
            self._delay(c, rounds, net)
        self._round_members = set(invited)
        net.log("round_open", -1, version=self.version, invited=len(self._round_members))
        net.call_at(net.now + self.round_deadline_s, lambda later: self._close_round(round_id, later))

    def _close_round(self, round_id: int, net: Network) -> None:
        if round_id != self._round:
            return  # that round already closed
        self._round += 1  # invalidates this round's deadline
        self._rounds_closed += 1
        if self.strategy.agent_source == "retrain":
            agents = self._retrained_agents(net)
        else:
            agents = {c: self._agents[c][0] for c in self._in_flight if c in self._agents}
        plan = self.strategy.close_round(self.version, agents)
        if plan is not None:
            self._execute(plan, net)
        self._release_held(net)  # also when the round made no version: delays still count it
        if self.strategy.agent_source == "retrain":
            for a in agents.values():
                self._pending.pop(a.uid, None)  # an agent the plan did not take (no aggregation this round)
        self._open_round(net)

    def _retrained_agents(self, net: Network) -> dict[int, Arrival]:
        """Agents of the clients in flight, retrained from the model their job started on (a shortcut)."""
        wanted = [(c, b) for c, b in self._in_flight.items() if self.strategy.wants_agent(self.version, b)]
        return {c: self._hold(net.train_agent(c, b)) for c, b in sorted(wanted)}

    # ----------------------------------------------------------------- aggregation
    def _take_payloads(self, plan: AggregationPlan, net: Network) -> list[tuple[Any, str | None]]:
        """(payload, problem) per contribution, fetching every unfetched one in one call.

        A fresh or late update leaves `_pending`; an agent's payload stays stored (fetched).
        """
        stored: list[Any] = []
        for c in plan.contributions:
            if c.uid in self._pending:
                stored.append(self._pending.pop(c.uid)[1])
            else:
                stored.append(self._agents[c.client][1])
        refs = [p for p in stored if isinstance(p, PayloadRef)]
        fetched = dict(zip(map(id, refs), net.fetch(refs), strict=True)) if refs else {}
        out = [fetched.get(id(p), (p, None)) if isinstance(p, PayloadRef) else (p, None) for p in stored]
        for c, (payload, _problem) in zip(plan.contributions, out, strict=True):
            agent = self._agents.get(c.client)
            if agent is not None and agent[0].uid == c.uid and isinstance(agent[1], PayloadRef):
                self._agents[c.client] = (agent[0], payload)  # keep the ciphertext, drop the handle
        return out

    def _execute(self, plan: AggregationPlan, net: Network) -> None:
        for d in plan.discarded:
            self._pending.pop(d.uid, None)
            self.stats["updates_discarded"] += 1
            net.log("update_discarded", d.client, version=self.version, staleness=self.version - d.base_version)
        if not plan.contributions:
            return
        contribs, payloads = [], []
        for c, (payload, problem) in zip(plan.contributions, self._take_payloads(plan, net), strict=True):
            if problem is not None:
                self.stats["updates_rejected"] += 1
                net.log("update_rejected", c.client, version=self.version, reason=problem)
                self._agents.pop(c.client, None)
                continue
            contribs.append(c)
            payloads.append(payload)
        if not contribs:
            return
        plan = AggregationPlan(tuple(contribs), plan.rule, plan.mix, plan.delta_scale)
        weights = integer_weights([c.weight for c in contribs], self.weight_bits)
        timed_only = any(p is None for p in payloads)  # time-only runs carry no payloads
        aggregate = None if timed_only else self.aggregator.weighted_sum(payloads, weights)
        version = net.publish(plan, aggregate, weights)
        if version is None:  # the step diverged: no version, the global model stays
            self.stats["aggregates_rejected"] += 1
            net.log("aggregate_rejected", -1, version=self.version, reason="the new global model is not finite")
            return
        self.version = version
        kinds = Counter(c.kind for c in contribs)
        self.stats["aggregations"] += 1
        self.stats["updates_aggregated"] += kinds["fresh"] + kinds["late"]
        self.stats["agents_reused"] += kinds["agent"]
        if len(contribs) == 1:
            self.stats["aggregates_of_one"] += 1
        net.log(
            "aggregated", -1, version=self.version, fresh=kinds["fresh"], late=kinds["late"], agents=kinds["agent"]
        )
        self._drop_expired_agents()
        net.version_created(self.version)
        self._release_held(net)

    def _release_held(self, net: Network) -> None:
        ready = [u for u in self._held if self._release_at.get(u.client, 0) <= self._delay_clock()]
        if not ready:
            return
        self._held = [u for u in self._held if u not in ready]
        for u in ready:
            net.call_at(net.now, functools.partial(self._deliver, u))

    def oldest_version_in_use(self) -> int:
        """The oldest global version a running job, held or buffered update still refers to."""
        in_use = [*self._in_flight.values(), *(u.base_version for u in self._held), *(b for b, _ in self._pending.values())]
        return min(in_use, default=self.version)

    def _drop_expired_agents(self) -> None:
        for c in [c for c, (a, _) in self._agents.items() if self.strategy.agent_expired(self.version, a.base_version)]:
            del self._agents[c]
