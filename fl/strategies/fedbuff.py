"""FedBuff (Nguyen et al. 2022): aggregate every K arrivals."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from fl.strategies.base import AggregationPlan, Arrival, Contribution, Strategy, StrategyConfig

__all__ = ["FedBuff", "FedBuffConfig"]


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

    def jobs_per_version(self, per_round: int) -> int:
        return self.buffer_size

    def buffered_updates(self) -> int:
        return self.buffer_size


class FedBuffConfig(StrategyConfig):
    name: Literal["fedbuff"] = Field("fedbuff", description="Aggregation strategy.")
    buffer_size: int = Field(5, ge=1, le=10**6, description="Aggregate every K arrivals.")
    server_lr: float = Field(
        1.0, gt=0, le=10, description="Server learning rate eta_g; at most 10, like training.lr."
    )
    weight_by_samples: bool = Field(True, description="Weight clients by their sample counts.")

    def build(self) -> FedBuff:
        return FedBuff(self.buffer_size, self.server_lr, self.weight_by_samples)
