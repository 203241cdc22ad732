"""FedAsync (Xie et al. 2019): every arrival is mixed into the global model at once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fl.strategies.base import AggregationPlan, Arrival, Contribution, Strategy, StrategyConfig

__all__ = ["FedAsync", "FedAsyncConfig", "staleness_weight"]


def staleness_weight(fn: str, s: int, a: float, b: int) -> float:
    """FedAsync staleness function s(t - tau) of Xie et al. (2019)."""
    if fn == "constant":
        return 1.0
    if fn == "polynomial":
        return (s + 1) ** -a
    if fn == "hinge":
        return 1.0 if s <= b else 1.0 / (a * (s - b) + 1.0)
    raise ValueError(f"unknown staleness function {fn!r}; known: constant, polynomial, hinge")


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

    def jobs_per_version(self, per_round: int) -> int:
        return 1


class FedAsyncConfig(StrategyConfig):
    name: Literal["fedasync"] = Field("fedasync", description="Aggregation strategy.")
    alpha: float = Field(0.6, gt=0, le=1, description="Mixing rate alpha.")
    staleness_fn: Literal["constant", "polynomial", "hinge"] = Field(
        "polynomial", description="Staleness function s(t - tau)."
    )
    staleness_a: float = Field(
        0.5, ge=0, le=100, allow_inf_nan=False, description="Exponent (polynomial) or slope (hinge) a."
    )
    staleness_b: int = Field(4, ge=0, le=10_000_000, description="Hinge knee b [versions].")

    def build(self) -> FedAsync:
        return FedAsync(self.alpha, self.staleness_fn, self.staleness_a, self.staleness_b)
