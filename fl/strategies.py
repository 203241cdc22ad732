"""Aggregation strategies: when to aggregate and with which weights.

A strategy is pure weighting logic. The server tells it about arrivals and round
closes; it answers with an `AggregationPlan` (which stored updates, which weights,
and how the key holders fold the decrypted average into the global model) or `None`.
It never touches parameters or ciphertexts.

Versions count global models; staleness s = current version - the version a client
trained on (the version lag). For the round-based strategies a round yields one version,
so s is also the delay in rounds. The delay-compensated family (`PPAFL`) can count
staleness like the paper's reference code instead: lag + 1 for any update that is late
or was held back, counted from the version its job started on (a held-back update that
arrives in its own round has s = 1).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "PPAFL",
    "AgentSource",
    "AggregationPlan",
    "Arrival",
    "Contribution",
    "FedAsync",
    "FedAvg",
    "FedBuff",
    "LateWeight",
    "StalenessClock",
    "Strategy",
    "make_strategy",
    "staleness_weight",
]

Rule = Literal["replace", "mix", "delta"]
LateWeight = Literal["halving", "full", "zero"]
StalenessClock = Literal["version_lag", "lag_plus_one"]
AgentSource = Literal["last_update", "retrain"]


@dataclass(frozen=True)
class Arrival:
    """What a strategy learns of an update that reached the server."""

    client: int
    base_version: int
    num_samples: int
    uid: int = 0  # identifies the stored payload
    delayed: bool = False  # the server held this job back (an injected delay), possibly by 0 versions


@dataclass(frozen=True)
class Contribution:
    """One update taking part in an aggregate, with its (unnormalised) weight."""

    client: int
    base_version: int
    weight: float
    kind: Literal["fresh", "late", "agent"]
    uid: int = 0


@dataclass(frozen=True)
class AggregationPlan:
    """How to build the next global model.

    rule "replace": new = avg, the weighted average of the contributions' models.
    rule "mix":     new = (1 - mix) * global + mix * avg            (FedAsync).
    rule "delta":   new = global + delta_scale * (avg - base_avg)   (FedBuff), where
                    base_avg is the same weighted average of the contributions' base models.
    """

    contributions: tuple[Contribution, ...]
    rule: Rule = "replace"
    mix: float = 1.0
    delta_scale: float = 1.0
    discarded: tuple[Arrival, ...] = ()

    @property
    def normalised_weights(self) -> list[float]:
        total = sum(c.weight for c in self.contributions)
        return [c.weight / total for c in self.contributions]


def staleness_weight(fn: str, s: int, a: float, b: int) -> float:
    """FedAsync staleness function s(t - tau) of Xie et al. (2019)."""
    if fn == "constant":
        return 1.0
    if fn == "polynomial":
        return (s + 1) ** -a
    if fn == "hinge":
        return 1.0 if s <= b else 1.0 / (a * (s - b) + 1.0)
    raise ValueError(f"unknown staleness function {fn!r}; known: constant, polynomial, hinge")


class Strategy(ABC):
    """Base class: round-based strategies override `close_round`, async ones `on_arrival`."""

    name: str = ""
    round_based: bool = False
    agent_source: AgentSource | None = None  # where update agents come from; None = no agents
    delay_threshold: int = 0

    @property
    def reuses_agents(self) -> bool:
        """Whether the server keeps each client's last delivered update as its agent."""
        return self.agent_source == "last_update"

    def __init__(self, weight_by_samples: bool = True) -> None:
        self.weight_by_samples = weight_by_samples

    def _size(self, num_samples: int) -> float:
        return float(num_samples) if self.weight_by_samples else 1.0

    @abstractmethod
    def on_arrival(self, arrival: Arrival, version: int) -> AggregationPlan | None:
        """Record an arrival; return a plan if the strategy aggregates now."""

    def close_round(self, version: int, delayed_agents: dict[int, Arrival]) -> AggregationPlan | None:
        """Round-based strategies: aggregate at the end of a round (all in, or deadline)."""
        raise NotImplementedError(f"{self.name} is not round-based")

    def wants_agent(self, version: int, base_version: int) -> bool:
        """Whether a client in flight on `base_version` takes part as an agent in the round closing at `version`."""
        return False

    def agent_expired(self, version: int, base_version: int) -> bool:
        """A stored agent trained on `base_version` is past use at `version` (and always will be)."""
        return True

    def max_contributions(self, num_clients: int, per_round: int) -> int:
        """Upper bound on the updates in one aggregate (sizes the encoder's headroom)."""
        return num_clients

    def versions_per_round(self, per_round: int) -> int:
        """Global versions made while `per_round` updates arrive (a 'round' for async strategies)."""
        return 1


class FedAvg(Strategy):
    """Synchronous FedAvg: updates trained on the current model, weighted by sample count; late ones discarded."""

    name = "fedavg"
    round_based = True

    def __init__(self, weight_by_samples: bool = True) -> None:
        super().__init__(weight_by_samples)
        self._fresh: list[Arrival] = []
        self._discarded: list[Arrival] = []

    def on_arrival(self, arrival: Arrival, version: int) -> None:
        (self._fresh if arrival.base_version == version else self._discarded).append(arrival)

    def close_round(self, version: int, delayed_agents: dict[int, Arrival]) -> AggregationPlan | None:
        fresh, discarded = self._fresh, tuple(self._discarded)
        self._fresh, self._discarded = [], []
        if not fresh:
            return AggregationPlan((), discarded=discarded) if discarded else None
        contribs = tuple(Contribution(a.client, a.base_version, self._size(a.num_samples), "fresh", a.uid) for a in fresh)
        return AggregationPlan(contribs, discarded=discarded)

    def max_contributions(self, num_clients: int, per_round: int) -> int:
        return min(num_clients, per_round)


class PPAFL(Strategy):
    """The paper's delay-compensated scheme, and the reference code's baselines as settings of it.

    At the close of round `version` (trained on global `version`), with s the staleness
    (`staleness_clock`: the version lag, or lag + 1 for late or held-back updates):
    - an update with s = 0 counts fully (weight 1);
    - a late update counts `late_weight` (2^-s "halving", 1 "full", 0 "zero": discarded),
      and 0 past `delay_threshold`;
    - if `agents`, each client still in flight whose update has not arrived is represented
      by an *update agent* weighted like a late update of its staleness: its last delivered
      update (`agent_source` "last_update", the physical default) or a fresh training of
      that client from the model its delayed job started on ("retrain", the reference
      code's simulation shortcut); only while `version < agents_until_version`.
    Weights are multiplied by sample counts (if `weight_by_samples`) and normalised.
    """

    name = "ppafl"
    round_based = True

    def __init__(
        self,
        delay_threshold: int = 6,
        weight_by_samples: bool = True,
        late_weight: LateWeight = "halving",
        agents: bool = True,
        agent_source: AgentSource = "last_update",
        agents_until_version: int | None = None,
        staleness_clock: StalenessClock = "version_lag",
    ) -> None:
        super().__init__(weight_by_samples)
        if late_weight not in ("halving", "full", "zero"):
            raise ValueError(f"unknown late weight {late_weight!r}; known: halving, full, zero")
        if staleness_clock not in ("version_lag", "lag_plus_one"):
            raise ValueError(f"unknown staleness clock {staleness_clock!r}; known: version_lag, lag_plus_one")
        self.delay_threshold = delay_threshold
        self.late_weight, self.staleness_clock = late_weight, staleness_clock
        self.agent_source = agent_source if agents else None
        self.agents_until_version = agents_until_version
        self._arrived: dict[int, Arrival] = {}
        self._too_late: list[Arrival] = []

    def staleness(self, version: int, base_version: int, delayed: bool) -> int:
        """s of an update trained on `base_version` at `version`; `delayed`: its job was held back."""
        lag = version - base_version
        if self.staleness_clock == "lag_plus_one" and (lag > 0 or delayed):
            return lag + 1
        return lag

    def _factor(self, s: int) -> float:
        """The weight of an update of staleness s before sample counts (0: it does not take part)."""
        if s == 0:
            return 1.0
        if s > self.delay_threshold or self.late_weight == "zero":
            return 0.0
        return 2.0**-s if self.late_weight == "halving" else 1.0

    def wants_agent(self, version: int, base_version: int) -> bool:
        if self.agent_source is None:
            return False
        if self.agents_until_version is not None and version >= self.agents_until_version:
            return False
        return self._factor(self.staleness(version, base_version, delayed=True)) > 0

    def agent_expired(self, version: int, base_version: int) -> bool:
        return self.staleness(version, base_version, delayed=True) > self.delay_threshold

    def on_arrival(self, arrival: Arrival, version: int) -> None:
        if self._factor(self.staleness(version, arrival.base_version, arrival.delayed)) == 0:
            self._too_late.append(arrival)
        else:
            self._arrived[arrival.client] = arrival  # a client's newest arrival this round wins

    def close_round(self, version: int, delayed_agents: dict[int, Arrival]) -> AggregationPlan | None:
        contribs: list[Contribution] = []
        for a in self._arrived.values():
            s = self.staleness(version, a.base_version, a.delayed)
            w = self._size(a.num_samples) * self._factor(s)
            contribs.append(Contribution(a.client, a.base_version, w, "fresh" if s == 0 else "late", a.uid))
        for client, agent in delayed_agents.items():
            if client in self._arrived or not self.wants_agent(version, agent.base_version):
                continue
            s = self.staleness(version, agent.base_version, delayed=True)
            w = self._size(agent.num_samples) * self._factor(s)
            contribs.append(Contribution(client, agent.base_version, w, "agent", agent.uid))
        discarded = tuple(self._too_late)
        self._arrived, self._too_late = {}, []
        if not contribs or all(c.kind == "agent" for c in contribs):
            # Nothing new arrived: re-averaging old agents alone would only move the model backwards.
            return AggregationPlan((), discarded=discarded) if discarded else None
        return AggregationPlan(tuple(contribs), discarded=discarded)

    def max_contributions(self, num_clients: int, per_round: int) -> int:
        return min(num_clients, per_round * (self.delay_threshold + 2))


class FedAsync(Strategy):
    """FedAsync (Xie et al. 2019): every arrival is mixed in at once with alpha * s(staleness)."""

    name = "fedasync"

    def __init__(self, alpha: float = 0.6, staleness_fn: str = "polynomial", a: float = 0.5, b: int = 4) -> None:
        super().__init__(weight_by_samples=False)
        staleness_weight(staleness_fn, 0, a, b)  # validates the name
        self.alpha, self.staleness_fn, self.a, self.b = alpha, staleness_fn, a, b

    def on_arrival(self, arrival: Arrival, version: int) -> AggregationPlan:
        s = version - arrival.base_version
        mix = self.alpha * staleness_weight(self.staleness_fn, s, self.a, self.b)
        kind: Literal["fresh", "late"] = "fresh" if s == 0 else "late"
        return AggregationPlan((Contribution(arrival.client, arrival.base_version, 1.0, kind, arrival.uid),), rule="mix", mix=mix)

    def max_contributions(self, num_clients: int, per_round: int) -> int:
        return 1

    def versions_per_round(self, per_round: int) -> int:
        return per_round


class FedBuff(Strategy):
    """FedBuff (Nguyen et al. 2022): aggregate every K arrivals, staleness weight 1/sqrt(1+s)."""

    name = "fedbuff"

    def __init__(self, buffer_size: int = 5, server_lr: float = 1.0, weight_by_samples: bool = False) -> None:
        super().__init__(weight_by_samples)
        self.buffer_size, self.server_lr = buffer_size, server_lr
        self._buffer: list[Arrival] = []

    def on_arrival(self, arrival: Arrival, version: int) -> AggregationPlan | None:
        self._buffer.append(arrival)
        if len(self._buffer) < self.buffer_size:
            return None
        contribs, stale_sum = [], 0.0
        for a in self._buffer:
            s = version - a.base_version
            stale_sum += 1.0 / math.sqrt(1.0 + s)
            w = self._size(a.num_samples) / math.sqrt(1.0 + s)
            contribs.append(Contribution(a.client, a.base_version, w, "fresh" if s == 0 else "late", a.uid))
        self._buffer = []
        # global += eta * (1/K) * sum_i s_i * delta_i, written as the mean staleness weight times
        # the normalised weighted mean of the deltas (so sample-count weights may be folded in).
        return AggregationPlan(tuple(contribs), rule="delta", delta_scale=self.server_lr * stale_sum / len(contribs))

    def max_contributions(self, num_clients: int, per_round: int) -> int:
        return min(num_clients, self.buffer_size)

    def versions_per_round(self, per_round: int) -> int:
        return max(1, round(per_round / self.buffer_size))


def make_strategy(cfg: Any) -> Strategy:
    """Build the strategy named in a scenario's `strategy` section (a preset resolves to its PPAFL settings)."""
    if hasattr(cfg, "resolved"):
        cfg = cfg.resolved()
    if cfg.name == "fedavg":
        return FedAvg(cfg.weight_by_samples)
    if cfg.name == "ppafl":
        return PPAFL(
            cfg.delay_threshold, cfg.weight_by_samples, cfg.late_weight, cfg.agents, cfg.agent_source,
            cfg.agents_until_version, cfg.staleness_clock,
        )
    if cfg.name == "fedasync":
        return FedAsync(cfg.alpha, cfg.staleness_fn, cfg.staleness_a, cfg.staleness_b)
    if cfg.name == "fedbuff":
        return FedBuff(cfg.buffer_size, cfg.server_lr, cfg.weight_by_samples)
    raise ValueError(f"unknown strategy {cfg.name!r}; known: fedavg, ppafl, fedasync, fedbuff")
