"""The key holders' side: decrypt aggregates and keep the global model versions still in use.

The clients hold the secret key. They turn each decrypted weighted average into the
next global model following the plan's rule, and keep the older versions that clients
are still training on (FedBuff needs them to form deltas).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fl.secure import ClientCodec
from fl.strategies import AggregationPlan

__all__ = ["GlobalModels"]


class GlobalModels:
    """Global model versions 0, 1, 2, ... as flat float32 vectors."""

    def __init__(self, codec: ClientCodec, initial: np.ndarray) -> None:
        self.codec = codec
        self.version = 0
        self._versions: dict[int, np.ndarray] = {0: np.asarray(initial, dtype=np.float32)}

    @property
    def current(self) -> np.ndarray:
        return self._versions[self.version]

    def get(self, version: int) -> np.ndarray:
        try:
            return self._versions[version]
        except KeyError:
            raise KeyError(f"global version {version} was already forgotten (kept: {sorted(self._versions)})") from None

    def apply(self, plan: AggregationPlan, aggregate, weights: Sequence[int]) -> int | None:
        """Decrypt `aggregate` (the integer-weighted sum of the plan's models) and store the next version.

        None, and no version, when the result holds NaN or a value beyond float32 (the server's step diverged,
        e.g. a large FedBuff server_lr): the global model stays as it was.
        """
        avg = self.codec.decrypt_average(aggregate)
        g = self.current.astype(np.float64)
        if plan.rule == "replace":
            new = avg
        elif plan.rule == "mix":
            new = (1.0 - plan.mix) * g + plan.mix * avg
        elif plan.rule == "delta":
            base_avg = np.zeros_like(g)
            for c, w in zip(plan.contributions, weights, strict=True):
                base_avg += w * self.get(c.base_version)
            base_avg /= sum(weights)
            new = g + plan.delta_scale * (avg - base_avg)
        else:
            raise ValueError(f"unknown aggregation rule {plan.rule!r}")
        with np.errstate(over="ignore", invalid="ignore"):
            new32 = new.astype(np.float32)
        if not np.isfinite(new32).all():
            return None
        self.version += 1
        self._versions[self.version] = new32
        return self.version

    def forget_before(self, version: int) -> None:
        """Drop versions older than `version` (never the current one)."""
        for v in [v for v in self._versions if v < min(version, self.version)]:
            del self._versions[v]
