"""Tests for fl.partition: exact coverage, determinism and the label skew of each scheme."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.partition import PARTITION_SCHEMES, partition

BALANCED = np.repeat(np.arange(10), 600)  # 6,000 samples, 600 per label


def _label_shares(labels: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    """Rows: clients; columns: fraction of the client's samples with each label."""
    counts = np.stack([np.bincount(labels[p], minlength=10) for p in parts])
    return counts / counts.sum(axis=1, keepdims=True)


def _mean_tv_distance(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between each client's and the global label mix."""
    overall = np.bincount(labels, minlength=10) / labels.size
    return float(np.mean(0.5 * np.abs(_label_shares(labels, parts) - overall).sum(axis=1)))


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 9), min_size=2, max_size=300).map(np.array),
    scheme=st.sampled_from(PARTITION_SCHEMES),
    data=st.data(),
    seed=st.integers(0, 2**32),
)
def test_every_sample_assigned_exactly_once(labels, scheme, data, seed) -> None:
    num_clients = data.draw(st.integers(1, max(1, labels.size // 2)))
    try:
        parts = partition(labels, num_clients, scheme, seed=seed, alpha=1.0)
    except ValueError as exc:  # only dirichlet may refuse (a client left empty)
        assert scheme == "dirichlet" and "without samples" in str(exc), exc
        return
    assert len(parts) == num_clients
    assert all(p.dtype == np.int64 and p.size > 0 for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(labels.size))


@pytest.mark.parametrize("scheme", PARTITION_SCHEMES)
def test_deterministic_from_seed(scheme: str) -> None:
    first = partition(BALANCED, 10, scheme, seed=5)
    again = partition(BALANCED, 10, scheme, seed=5)
    other = partition(BALANCED, 10, scheme, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_iid_gives_equal_sizes_and_global_label_mix() -> None:
    parts = partition(BALANCED, 10, "iid", seed=0)
    assert [p.size for p in parts] == [600] * 10
    assert _mean_tv_distance(BALANCED, parts) < 0.06
    assert _label_shares(BALANCED, parts).min() > 0.05  # every client sees every label


def test_shards_give_each_client_at_most_two_labels() -> None:
    # 20 shards of 300 on label-sorted data: each shard holds a single label
    parts = partition(BALANCED, 10, "shards", seed=0)
    assert [p.size for p in parts] == [600] * 10
    labels_per_client = [np.unique(BALANCED[p]).size for p in parts]
    assert max(labels_per_client) <= 2
    assert _mean_tv_distance(BALANCED, parts) >= 0.8


def test_shards_per_client_controls_label_count() -> None:
    parts = partition(BALANCED, 5, "shards", seed=1, shards_per_client=4)
    assert [p.size for p in parts] == [1200] * 5
    assert max(np.unique(BALANCED[p]).size for p in parts) <= 4


def test_dirichlet_skew_shrinks_as_alpha_grows() -> None:
    skew = {
        alpha: _mean_tv_distance(BALANCED, partition(BALANCED, 10, "dirichlet", 0, alpha=alpha))
        for alpha in (0.1, 1.0, 100.0)
    }
    assert skew[0.1] > 0.5
    assert skew[0.1] > skew[1.0] > skew[100.0]
    assert skew[100.0] < 0.1


def test_dirichlet_small_alpha_concentrates_labels() -> None:
    parts = partition(BALANCED, 10, "dirichlet", seed=3, alpha=0.05)
    dominant = _label_shares(BALANCED, parts).max(axis=1)
    assert np.median(dominant) > 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_clients": 0}, "num_clients=0 must be between 1 and the number of samples"),
        ({"num_clients": 6001}, r"num_clients=6001 .*\(6000\)"),
        ({"num_clients": 2.5}, "num_clients must be an integer, got 2.5"),
        (
            {"num_clients": 4, "scheme": "pathological"},
            "unknown partition scheme 'pathological'.*iid, shards, dirichlet",
        ),
        (
            {"num_clients": 4, "scheme": "dirichlet", "alpha": 0},
            "alpha must be a finite number > 0, got 0",
        ),
        (
            {"num_clients": 4, "scheme": "shards", "shards_per_client": 0},
            "shards_per_client must be an integer >= 1",
        ),
        (
            {"num_clients": 3001, "scheme": "shards"},
            "3001 clients x 2 shards = 6002 shards exceeds the 6000 samples",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        partition(BALANCED, **kwargs)


def test_bad_labels_are_named() -> None:
    with pytest.raises(ValueError, match=r"non-empty 1-D array, got shape \(2, 2\)"):
        partition(np.zeros((2, 2), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="labels must be integers, got dtype float64"):
        partition(np.zeros(4), 2)


def test_dirichlet_refuses_when_clients_stay_empty() -> None:
    with pytest.raises(ValueError, match="left a client without samples.*raise alpha"):
        partition(np.zeros(12, dtype=np.int64), 12, "dirichlet", seed=0, alpha=0.01)
