"""What every strategy is: the arrivals it learns of, the plans it answers with, its settings.

A strategy is pure weighting logic. The server tells it about arrivals and round closes;
it answers with an `AggregationPlan` (which stored updates, which weights, and how the
key holders fold the decrypted average into the global model) or `None`. It never
touches parameters or ciphertexts.

A strategy also declares what the rest of the simulator needs to know of it (whether it
works in rounds, how many jobs one global version takes, how many updates it holds back,
whether it reuses stored updates), so no other module switches on strategy types.

Each strategy has a settings class, a `StrategyConfig` (pydantic) whose `name` is the
strategy's registered name and whose `build()` makes the strategy: the scenario's
`strategy` section is validated by the settings class its `name` selects.

Versions count global models; staleness s = current version - the version a client
trained on (the version lag).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_TIME_S",
    "MIN_ROUND_DEADLINE_S",
    "AggregationPlan",
    "Arrival",
    "Contribution",
    "RoundBasedConfig",
    "Strategy",
    "StrategyConfig",
]

MAX_TIME_S = 1.0e9  # ~32 years of simulated time: beyond any device's life, and float64 still resolves 0.1 us
MIN_ROUND_DEADLINE_S = 1e-3  # below any network round trip: no job could finish in a round

Rule = Literal["replace", "mix", "delta"]


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


class Strategy(ABC):
    """Base class: round-based strategies override `close_round`, asynchronous ones `on_arrival`.

    Declarations the engine, the server and the up-front checks ask (override as needed):
    `round_based`, `jobs_per_version`, `buffered_updates`, `reuses_agents`,
    `max_contributions`, `versions_per_round`.
    """

    name: str = ""
    round_based: bool = False  # the server opens rounds with a deadline (else it keeps C*N jobs in flight)
    agent_source: Literal["last_update", "retrain"] | None = None  # where update agents come from; None = none
    delay_threshold: int = 0

    @property
    def reuses_agents(self) -> bool:
        """Whether the server keeps each client's last delivered update (a ciphertext) to reuse as its agent."""
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

    def jobs_per_version(self, per_round: int) -> int:
        """Training jobs one global version takes when `per_round` jobs run at once (a round's worth by default)."""
        return per_round

    def buffered_updates(self) -> int:
        """Updates the strategy holds back before it aggregates them (a buffer), at most."""
        return 0


class StrategyConfig(BaseModel):
    """Settings every strategy has; a strategy's own settings class adds its fields and `build()`.

    Immutable, unknown keys rejected, numbers finite. `name` is the registered name (a
    `Literal` of it, or of several names for a family of named settings such as presets).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(description="Aggregation strategy.")
    client_fraction: float = Field(
        0.1, gt=0, le=1, description="C: share of devices invited per round (concurrency for async strategies)."
    )
    round_deadline_s: float = Field(
        120.0, ge=MIN_ROUND_DEADLINE_S, le=MAX_TIME_S,
        description="Round deadline [s] (round-based strategies); async ones retry unfilled slots after "
        "min(this, 30) s, at least 1 s; 1 ms (below any network round trip) to 1e9 s.",
    )
    lr: float | None = Field(
        None, gt=0, le=10, allow_inf_nan=False,
        description="Local SGD learning rate under this strategy; null = training.lr (to reproduce an lr confound).",
    )
    prox_mu: float | None = Field(
        None, ge=0, le=100, allow_inf_nan=False,
        description="FedProx mu under this strategy; null = the preset's (fedprox_straggler: 0.01), else training.prox_mu.",
    )

    def build(self) -> Strategy:
        """The strategy these settings describe."""
        raise NotImplementedError(f"{type(self).__name__} must define build()")

    def local_lr(self, default: float) -> float:
        """The learning rate clients train with under this strategy (`default`: training.lr)."""
        return default if self.lr is None else self.lr

    def local_prox_mu(self, default: float) -> float:
        """The FedProx mu clients train with under this strategy (`default`: training.prox_mu)."""
        return default if self.prox_mu is None else self.prox_mu


class RoundBasedConfig(StrategyConfig):
    """Settings of a round-based strategy: how a round's participants are chosen."""

    participation: Literal["fresh", "slots"] = Field(
        "fresh",
        description="fresh = invite C*N idle devices every round, beside those still delayed; slots = C*N slots all "
        "taking part: a delayed job keeps its slot, the free slots go to idle devices drawn anew each round.",
    )
