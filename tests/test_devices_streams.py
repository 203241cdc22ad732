"""Counter-based device streams: the distributions they draw, independence, determinism, the reference output."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devices import CounterStream, stream_seed


def test_splitmix64_matches_the_reference_sequence() -> None:
    # SplitMix64 seeded with 1234567 (Vigna's splitmix64.c): the first outputs
    s = CounterStream(1234567)
    assert [s._next() for _ in range(3)] == [6457827717110365317, 3203168211198807973, 9817491932198370423]


def test_draws_follow_their_distributions() -> None:
    s = CounterStream(stream_seed(7, 3))
    n = 100_000
    u = np.array([s.random() for _ in range(n)])
    assert 0.0 <= u.min() and u.max() < 1.0
    assert u.mean() == pytest.approx(0.5, abs=0.005) and u.var() == pytest.approx(1 / 12, rel=0.02)
    z = np.array([s.normal(2.0, 3.0) for _ in range(n)])
    assert z.mean() == pytest.approx(2.0, abs=0.03) and z.std() == pytest.approx(3.0, rel=0.01)
    assert abs(np.mean(((z - 2.0) / 3.0) ** 3)) < 0.03  # symmetric
    e = np.array([s.exponential(5.0) for _ in range(n)])
    assert e.min() >= 0 and e.mean() == pytest.approx(5.0, rel=0.02) and e.std() == pytest.approx(5.0, rel=0.03)
    lg = np.array([s.lognormal(0.0, 0.5) for _ in range(n)])
    assert np.median(lg) == pytest.approx(1.0, rel=0.02) and lg.mean() == pytest.approx(math.exp(0.125), rel=0.02)
    k = np.array([s.integers(6) for _ in range(60_000)])
    assert set(k) == set(range(6)) and np.bincount(k).min() > 9_500


def test_streams_of_different_devices_are_independent_and_reproducible() -> None:
    draws = np.array([[s.random() for _ in range(2000)] for s in (CounterStream(stream_seed(11, i)) for i in range(50))])
    corr = np.corrcoef(draws)[np.triu_indices(50, 1)]
    assert np.abs(corr).max() < 0.1  # ~N(0, 1/sqrt(2000)) each
    assert CounterStream(stream_seed(11, 0)).random() == draws[0, 0]  # the same seed, the same draws
    assert stream_seed(11, 0) != stream_seed(12, 0) and CounterStream(5).random() == CounterStream(5).random()
    with pytest.raises(ValueError, match=r"high must be in \(0, 2\*\*63\]"):
        CounterStream(1).integers(0)
