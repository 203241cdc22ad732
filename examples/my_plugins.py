"""A researcher's own strategy, model and data set for ppafl, kept outside the package (docs/extending.md).

Load it with `ppafl run examples/digits.yaml --plugin examples/my_plugins.py`, or in Python
with `sim.load_plugins(["examples/my_plugins.py"])` (or simply by importing it). It adds:

- the strategy `decayed_buffer`: asynchronous, aggregates every `buffer_size` arrivals like
  FedBuff, weights an update of staleness s by exp(-decay * s) and drops updates staler
  than `max_staleness`;
- the model `tiny_mlp`: one hidden layer, for any flat input;
- the data set `digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 real images,
  offline), 80/20 split stratified by digit.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from fl.strategies import AggregationPlan, Arrival, Contribution, Strategy, StrategyConfig
from sim.plugins import DatasetInfo, register_dataset, register_model, register_strategy


class DecayedBuffer(Strategy):
    """Aggregate every `buffer_size` arrivals; weight exp(-decay * s); drop updates staler than `max_staleness`."""

    name = "decayed_buffer"

    def __init__(self, buffer_size: int, decay: float, max_staleness: int, server_lr: float) -> None:
        super().__init__(weight_by_samples=False)
        self.buffer_size, self.decay, self.max_staleness, self.server_lr = buffer_size, decay, max_staleness, server_lr
        self._buffer: list[Arrival] = []
        self._too_stale: list[Arrival] = []

    def on_arrival(self, arrival: Arrival, version: int) -> AggregationPlan | None:
        if version - arrival.base_version > self.max_staleness:
            self._too_stale.append(arrival)
        else:
            self._buffer.append(arrival)
        if len(self._buffer) < self.buffer_size:
            return None
        contributions = tuple(
            Contribution(a.client, a.base_version, math.exp(-self.decay * (version - a.base_version)),
                         "fresh" if a.base_version == version else "late", a.uid)
            for a in self._buffer
        )
        discarded = tuple(self._too_stale)
        self._buffer, self._too_stale = [], []
        return AggregationPlan(contributions, rule="delta", delta_scale=self.server_lr, discarded=discarded)

    # What the simulator asks of a strategy (see fl.strategies.base.Strategy).
    def jobs_per_version(self, per_round: int) -> int:
        return self.buffer_size

    def buffered_updates(self) -> int:
        return self.buffer_size

    def max_contributions(self, num_clients: int, per_round: int) -> int:
        return min(num_clients, self.buffer_size)

    def versions_per_round(self, per_round: int) -> int:
        return max(1, round(per_round / self.buffer_size))


@register_strategy
class DecayedBufferConfig(StrategyConfig):
    name: Literal["decayed_buffer"] = Field("decayed_buffer", description="Aggregation strategy.")
    buffer_size: int = Field(4, ge=1, le=10_000, description="Aggregate every K arrivals.")
    decay: float = Field(0.5, ge=0, le=100, description="Staleness decay: an update of staleness s weighs exp(-decay s).")
    max_staleness: int = Field(10, ge=0, le=10_000, description="Updates staler than this many versions are dropped.")
    server_lr: float = Field(1.0, gt=0, le=10, description="Server learning rate on the averaged delta.")

    def build(self) -> DecayedBuffer:
        return DecayedBuffer(self.buffer_size, self.decay, self.max_staleness, self.server_lr)


class TinyMLPOptions(BaseModel):
    hidden: int = Field(32, ge=1, le=4096, description="Width of the hidden layer [units].")


def tiny_mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 32):
    """One hidden ReLU layer from the flattened sample to `num_classes` logits."""
    from torch import nn

    width = int(np.prod(input_shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


register_model("tiny_mlp", tiny_mlp, config=TinyMLPOptions, description="One hidden layer, any flat input.")


def load_digits(root: str | None = None, download: bool = False):
    """scikit-learn's 8x8 digits: every fifth image of each digit is a test image; pixels scaled to [0, 1]."""
    import torch
    from sklearn.datasets import load_digits as sklearn_digits

    from fl.data import Dataset

    x, y = sklearn_digits(return_X_y=True)
    test = np.zeros(len(y), dtype=bool)
    for digit in range(10):
        test[np.flatnonzero(y == digit)[4::5]] = True
    as_x = lambda rows: torch.tensor(x[rows] / 16.0, dtype=torch.float32)
    as_y = lambda rows: torch.tensor(y[rows], dtype=torch.int64)
    return Dataset("digits", as_x(~test), as_y(~test), as_x(test), as_y(test), 10, (64,))


register_dataset("digits", load_digits, info=DatasetInfo((64,), 10, 1442, 355),
                 description="scikit-learn's 8x8 handwritten digits (offline).")
