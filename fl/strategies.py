"""Aggregation strategies: when to aggregate and with which weights.

A strategy is pure weighting logic. The server tells it about arrivals and round
closes; it answers with an `AggregationPlan` (which stored updates, which weights,
and how the key holders fold the decrypted average into the global model) or `None`.
It never touches parameters or ciphertexts.

Versions count global models; staleness s = current version - the version a client
trained on. For the round-based strategies a round yields one version, so s is also
the delay in rounds.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "PPAFL",
    "AggregationPlan",
    "Arrival",
    "Contribution",
    "FedAsync",
    "FedAvg",
    "FedBuff",
    "Strategy",
    "make_strategy",
    "staleness_weight",
]

Rule = Literal["replace", "mix", "delta"]


@dataclass(frozen=True)
class Arrival:
    """What a strategy learns of an update that reached the server."""

    client: int
    base_version: int
    num_samples: int
    uid: int = 0  # identifies the stored payload


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
    reuses_agents: bool = False  # keep each client's last update as its agent (ppafl)
    delay_threshold: int = 0

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
    """The paper's delay-compensated scheme.

    At the close of round `version` (trained on global `version`):
    - an update trained on this round's model counts fully;
    - an update arriving s rounds late counts 2^-s, and 0 past `delay_threshold`;
    - each delayed client (still in flight) whose update has not arrived this round is
      represented by its last received update, its *update agent*, weighted 2^-s with s
      that update's staleness, again 0 past the threshold.
    Weights are multiplied by sample counts (if `weight_by_samples`) and normalised.
    """

    name = "ppafl"
    round_based = True
    reuses_agents = True

    def __init__(self, delay_threshold: int = 6, weight_by_samples: bool = True) -> None:
        super().__init__(weight_by_samples)
        self.delay_threshold = delay_threshold
        self._arrived: dict[int, Arrival] = {}
        self._too_late: list[Arrival] = []

    def on_arrival(self, arrival: Arrival, version: int) -> None:
        if version - arrival.base_version > self.delay_threshold:
            self._too_late.append(arrival)
        else:
            self._arrived[arrival.client] = arrival  # a client's newest arrival this round wins

    def _weight(self, arrival: Arrival, s: int) -> float:
        return self._size(arrival.num_samples) * 2.0**-s

    def close_round(self, version: int, delayed_agents: dict[int, Arrival]) -> AggregationPlan | None:
        contribs: list[Contribution] = []
        for a in self._arrived.values():
            s = version - a.base_version
            contribs.append(Contribution(a.client, a.base_version, self._weight(a, s), "fresh" if s == 0 else "late", a.uid))
        for client, agent in delayed_agents.items():
            s = version - agent.base_version
            if client in self._arrived or s > self.delay_threshold:
                continue
            contribs.append(Contribution(client, agent.base_version, self._weight(agent, s), "agent", agent.uid))
        discarded = tuple(self._too_late)
        self._arrived, self._too_late = {}, []
        if not contribs:
            return AggregationPlan((), discarded=discarded) if discarded else None
        if all(c.kind == "agent" for c in contribs):
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


def make_strategy(cfg) -> Strategy:
    """Build the strategy named in a scenario's `strategy` section."""
    if cfg.name == "fedavg":
        return FedAvg(cfg.weight_by_samples)
    if cfg.name == "ppafl":
        return PPAFL(cfg.delay_threshold, cfg.weight_by_samples)
    if cfg.name == "fedasync":
        return FedAsync(cfg.alpha, cfg.staleness_fn, cfg.staleness_a, cfg.staleness_b)
    if cfg.name == "fedbuff":
        return FedBuff(cfg.buffer_size, cfg.server_lr, cfg.weight_by_samples)
    raise ValueError(f"unknown strategy {cfg.name!r}; known: fedavg, ppafl, fedasync, fedbuff")
