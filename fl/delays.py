"""Injected delays (the paper's setting): which jobs the server holds back, and for how many rounds.

Three models, each a way of reading the paper's "x% of the users are delayed":
- `independent`: every job is held back with probability `fraction` (this project's default);
- `batch`: the reference code's scheme: when no job is delayed, round(fraction * slots) of
  the round's invitees are delayed at once (from the second round on, as there);
- `topup`: the reference code's baselines: every round, `round(fraction * slots)` minus the
  number still delayed are drawn among all slots, and those drawn that are free are delayed.
A delay is a number of global versions (rounds) in [min_rounds, max_rounds], uniform.

Every draw comes from a stream keyed by the job (client, its job number) or by the round,
never from the stream that picks clients, so two strategies run on the same seed see the
same delays for the same jobs (paired comparisons).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["DelayModel", "InjectedDelays"]

DelayModel = Literal["independent", "batch", "topup"]


@dataclass(frozen=True)
class InjectedDelays:
    """The delays of one run: `fraction` of jobs (or slots) held back `min_rounds..max_rounds` versions."""

    fraction: float = 0.0
    model: DelayModel = "independent"
    min_rounds: int = 1
    max_rounds: int = 1
    slots: int = 1  # jobs per round (C * N); batch and topup delay a share of these
    entropy: int = 0

    @property
    def per_round(self) -> bool:
        """Whether delays are drawn once per round (batch, topup) rather than per job."""
        return self.model != "independent" and self.fraction > 0

    def for_job(self, client: int, job_number: int) -> int | None:
        """Independent model: the delay of `client`'s `job_number`-th job, or None if it is not delayed."""
        if self.model != "independent" or self.fraction <= 0:
            return None
        rng = np.random.default_rng([self.entropy, 0, client, job_number])
        if rng.random() >= self.fraction:
            return None
        return int(rng.integers(self.min_rounds, self.max_rounds + 1))

    def for_round(self, round_number: int, invited: Collection[int], delayed: Collection[int]) -> dict[int, int]:
        """Batch and topup models: the delays of this round's `invited` clients, given those still `delayed`."""
        if not self.per_round or not invited:
            return {}
        target = round(self.fraction * self.slots)
        if self.model == "batch":
            if delayed or round_number < 2:
                return {}
            pool, wanted = sorted(invited), target
        else:  # topup: draw among all slots, delayed ones included, and skip those already delayed
            pool, wanted = sorted(invited) + sorted(delayed), target - len(delayed)
        if wanted <= 0:
            return {}
        rng = np.random.default_rng([self.entropy, 1, round_number])
        busy = set(delayed)
        drawn = [pool[i] for i in rng.permutation(len(pool))[:wanted]]
        chosen = sorted(c for c in drawn if c not in busy)
        lengths = rng.integers(self.min_rounds, self.max_rounds + 1, size=len(chosen))
        return dict(zip(chosen, map(int, lengths), strict=True))
