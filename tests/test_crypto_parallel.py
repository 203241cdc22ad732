"""Ciphertext-chunk parallelism: split encryption, aggregation and decryption give the serial results."""

from __future__ import annotations

import numpy as np
import pytest

from crypto import BFV_COMPACT, SHEClient, SHEParams, SHEServer, make_secure_aggregation
from crypto.bfv import BFVPublic, BFVSecret
from crypto.parallel import WorkerPool, run_split, split

SMALL = SHEParams("test-512", k0=512, k1=20, k2=160, r_bits=160)


def test_split_covers_the_range_and_keeps_small_work_serial():
    assert split(10, 3, 1) == [(0, 3), (3, 6), (6, 10)]
    assert split(10, 3, 4) == [(0, 5), (5, 10)]
    assert split(10, 1, 1) == [(0, 10)]
    assert split(3, 4, 2) == [(0, 3)]
    pool = WorkerPool(3)
    try:
        assert run_split(pool, divmod, [(7, 2), (9, 4), (11, 5)]) == [(3, 1), (2, 1), (2, 1)]
        assert run_split(None, divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]
    finally:
        pool.close()


@pytest.mark.parametrize("params", [SMALL, BFV_COMPACT], ids=["she", "bfv"])
def test_split_operations_are_bit_identical_to_the_serial_ones(params, monkeypatch):
    for cipher in (SHEClient, SHEServer, BFVSecret, BFVPublic):
        monkeypatch.setattr(cipher, "min_chunk", 1)
    n = 5 * params.slots if hasattr(params, "slots") else 60
    holder, server = make_secure_aggregation("real", params, num_values=n, max_clients=4, seed=3)
    rng = np.random.default_rng(0)
    updates = [rng.normal(0, 1, n) for _ in range(3)]
    weights = [255, 7, 30]
    serial_vectors = [holder.encrypt(u) for u in updates]
    serial = server.weighted_sum(serial_vectors, weights)
    holder.workers = server.workers = 3
    split_vectors = [holder.encrypt(u) for u in updates]
    assert len(set(split_vectors[0].body)) == len(split_vectors[0].body)  # every chunk drew its own randomness
    split_sum = server.weighted_sum(serial_vectors, weights)
    assert split_sum.body == serial.body  # the server's arithmetic is deterministic: the same ciphertexts
    expected = sum(w * holder.quantize(u) for w, u in zip(weights, updates))
    np.testing.assert_array_equal(holder.decrypt_sum(server.weighted_sum(split_vectors, weights)), expected)
    holder.workers = 1
    np.testing.assert_array_equal(holder.decrypt_sum(serial), expected)
