"""Partitions of a training set over clients, deterministic from a seed.

Every scheme returns one sorted ``int64`` index array per client; together
they hold every sample index exactly once.

``iid``
    Shuffle, then cut into ``num_clients`` near-equal parts.
``shards``
    The FedAvg paper's non-IID split: sort by label, cut into
    ``num_clients * shards_per_client`` near-equal shards, give each client
    ``shards_per_client`` shards at random. With 2 shards per client most
    clients see only two labels.
``dirichlet``
    For each label, split its samples over clients in proportions drawn from
    Dirichlet(``alpha``). Small ``alpha`` (e.g. 0.1) gives strong label skew,
    large ``alpha`` (e.g. 100) approaches ``iid``. Draws are repeated (from the
    same seeded generator) until every client has at least one sample.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["PARTITION_SCHEMES", "partition"]

PARTITION_SCHEMES: tuple[str, ...] = ("iid", "shards", "dirichlet")

_DIRICHLET_MAX_DRAWS = 100


def partition(
    labels: np.ndarray,
    num_clients: int,
    scheme: str = "iid",
    seed: int = 0,
    alpha: float = 0.5,
    shards_per_client: int = 2,
) -> list[np.ndarray]:
    """Split sample indices ``0..len(labels)-1`` over ``num_clients`` clients.

    ``alpha`` is used by ``dirichlet`` only, ``shards_per_client`` by
    ``shards`` only. Raises ``ValueError`` on an unknown scheme or on
    parameters that cannot give every client a sample.
    """
    labels = _check_labels(labels)
    if not _is_int(num_clients):
        raise ValueError(f"num_clients must be an integer, got {num_clients!r}")
    if not 1 <= num_clients <= labels.size:
        raise ValueError(
            f"num_clients={num_clients} must be between 1 and the number of "
            f"samples ({labels.size}) so that every client gets a sample"
        )
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(labels.size), num_clients)
    elif scheme == "shards":
        parts = _shards(labels, num_clients, shards_per_client, rng)
    elif scheme == "dirichlet":
        parts = _dirichlet(labels, num_clients, alpha, rng)
    else:
        raise ValueError(
            f"unknown partition scheme {scheme!r}; known schemes: {', '.join(PARTITION_SCHEMES)}"
        )
    return [np.sort(part).astype(np.int64) for part in parts]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {array.dtype}")
    return array


def _shards(
    labels: np.ndarray, num_clients: int, shards_per_client: int, rng: np.random.Generator
) -> list[np.ndarray]:
    if not _is_int(shards_per_client) or shards_per_client < 1:
        raise ValueError(f"shards_per_client must be an integer >= 1, got {shards_per_client!r}")
    num_shards = num_clients * shards_per_client
    if num_shards > labels.size:
        raise ValueError(
            f"{num_clients} clients x {shards_per_client} shards = {num_shards} shards "
            f"exceeds the {labels.size} samples; use fewer clients or shards_per_client"
        )
    shards = np.array_split(np.argsort(labels, kind="stable"), num_shards)
    order = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.concatenate([shards[s] for s in row]) for row in order]


def _dirichlet(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    if not (_is_real(alpha) and np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    for _ in range(_DIRICHLET_MAX_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for members in by_class:
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = np.round(np.cumsum(shares)[:-1] * members.size).astype(np.int64)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
        merged = [np.concatenate(chunks) for chunks in parts]
        if min(part.size for part in merged) > 0:
            return merged
    raise ValueError(
        f"dirichlet partition with alpha={alpha} left a client without samples in "
        f"{_DIRICHLET_MAX_DRAWS} draws ({num_clients} clients, {labels.size} samples); "
        f"raise alpha or use fewer clients"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
