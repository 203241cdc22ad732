"""Synchronous FedAvg (McMahan et al. 2017)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fl.strategies.base import AggregationPlan, Arrival, Contribution, RoundBasedConfig, Strategy

__all__ = ["FedAvg", "FedAvgConfig"]


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


class FedAvgConfig(RoundBasedConfig):
    name: Literal["fedavg"] = Field("fedavg", description="Aggregation strategy.")
    weight_by_samples: bool = Field(True, description="Weight clients by their sample counts.")

    def build(self) -> FedAvg:
        return FedAvg(self.weight_by_samples)
