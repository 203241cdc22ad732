"""Statistics over seeds: a mean with its t-based confidence interval, and paired differences.

Seeds are the independent replications: a strategy's metric has one value per seed, and
two strategies run on the same seed share its fleet, data split and delays, so their
difference is taken seed by seed (a paired t interval) before it is averaged.
Missing values (NaN: e.g. a target never reached) are left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

__all__ = ["Estimate", "ci_band_over_seeds", "mean_ci", "paired_difference"]

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over `n` of `total` values with its confidence interval [lo, hi] (NaN for fewer than 2)."""

    mean: float
    lo: float
    hi: float
    n: int
    total: int

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    @property
    def excludes_zero(self) -> bool:
        """The interval lies wholly above or below 0 (False without an interval)."""
        return bool(self.lo > 0 or self.hi < 0)

    def text(self, scale: float = 1.0, digits: int = 1, signed: bool = False) -> str:
        """`88.7 ± 0.9`, with `(k/n)` where only k of n values exist; `n/a` without any."""
        if self.n == 0:
            return f"n/a (0/{self.total})"
        sign = "+" if signed else ""
        out = f"{self.mean * scale:{sign}.{digits}f}"
        if not math.isnan(self.half_width):
            out += f" ± {self.half_width * scale:.{digits}f}"
        return out + (f" ({self.n}/{self.total})" if self.n < self.total else "")


def mean_ci(values: Iterable[float], level: float = LEVEL) -> Estimate:
    """The mean of the finite `values` and its two-sided t interval at `level`."""
    all_values = np.asarray(list(values), dtype=float)
    x = all_values[np.isfinite(all_values)]
    n = int(x.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, int(all_values.size))
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, int(all_values.size))
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n, int(all_values.size))


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Estimate:
    """Mean of a[seed] - b[seed] over the seeds both have a finite value for, with its paired t interval."""
    seeds = sorted(set(a) | set(b))
    diffs = [a.get(s, math.nan) - b.get(s, math.nan) for s in seeds]
    return mean_ci(diffs, level)


def ci_band_over_seeds(curves: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean accuracy over seeds against `x` (version or time_s) with its t-based 95% interval.

    Each seed's accuracy holds from one evaluation to its next (the last one per `x` value),
    so seeds evaluated at different points still line up.
    """
    last = curves.dropna(subset=["accuracy"]).drop_duplicates(subset=["seed", x], keep="last")
    wide = last.pivot_table(index=x, columns="seed", values="accuracy").sort_index().ffill()
    est = [mean_ci(row) for _, row in wide.iterrows()]
    return pd.DataFrame({x: wide.index, "mean": [e.mean for e in est], "lo": [e.lo for e in est],
                         "hi": [e.hi for e in est]}).reset_index(drop=True)
