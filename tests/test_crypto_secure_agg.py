"""Secure aggregation: real vs modeled bit-identity, exact averages, wire format, refusals."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crypto import (
    HIGH_THROUGHPUT_PARAMS,
    PAPER_PARAMS,
    Aggregator,
    CryptoError,
    EncryptedAggregate,
    EncryptedVector,
    KeyHolder,
    NonFiniteUpdateError,
    OverflowRiskError,
    PackedEncoder,
    PayloadError,
    RandomSource,
    SecretKey,
    SHEClient,
    SHEParams,
    SHEServer,
    keygen,
    make_secure_aggregation,
)

SMALL = SHEParams("test-512", k0=512, k1=20, k2=160, r_bits=160)
K = 64


@cache
def _key(params: SHEParams = SMALL, seed: int = 21):
    return keygen(params, seed=seed)


def _pairs(n: int, k: int = K, params: SHEParams = SMALL, **kw):
    """(real key holder, real aggregator), (modeled key holder, modeled aggregator) sharing one layout."""
    enc = PackedEncoder(params, n, k, **kw)
    sk, pk = _key(params)
    real = KeyHolder(enc, SHEClient(sk, enc.layout), RandomSource(1)), Aggregator(enc, SHEServer(pk))
    return real, (KeyHolder(enc), Aggregator(enc))


def _exact_average(holder: KeyHolder, updates, weights) -> np.ndarray:
    total = sum(w * holder.quantize(u) for w, u in zip(weights, updates))
    return total.astype(np.float64) / sum(weights) / 2.0**holder.encoder.scale_bits


def _run(pair, updates, weights):
    """Two aggregates of fresh encryptions of the same updates (a verifier opens an aggregate once)."""
    holder, server = pair
    aggs = [server.weighted_sum([holder.encrypt(u) for u in updates], weights) for _ in range(2)]
    return aggs[0], holder.decrypt_sum(aggs[0]), holder.decrypt_average(aggs[1])


_VALUE = st.one_of(st.floats(-8.0, 8.0, allow_nan=False, width=32), st.sampled_from([-8.0, 8.0, 0.0, -1e-6]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_real_and_modeled_are_bit_identical_and_exact(data):
    n = data.draw(st.integers(1, 12), label="values")
    k = data.draw(st.integers(1, K), label="clients")
    updates = data.draw(st.lists(hnp.arrays(np.float32, n, elements=_VALUE), min_size=k, max_size=k))
    weights = data.draw(st.lists(st.integers(1, 255), min_size=k, max_size=k))
    real, modeled = _pairs(n)
    agg_r, sum_r, avg_r = _run(real, updates, weights)
    agg_m, sum_m, avg_m = _run(modeled, updates, weights)
    np.testing.assert_array_equal(sum_r, sum(w * real[0].quantize(u) for w, u in zip(weights, updates)))
    np.testing.assert_array_equal(sum_r, sum_m)
    assert avg_r.dtype == np.float64 and avg_r.tobytes() == avg_m.tobytes()
    assert avg_r.tobytes() == _exact_average(real[0], updates, weights).tobytes()
    assert (agg_r.weight_sum, agg_r.count, agg_r.nbytes) == (sum(weights), k, agg_m.nbytes)


@pytest.mark.parametrize("pattern", ["max", "min", "alternate"])
def test_extremes_with_max_clients_and_max_weights(pattern):
    n = 23
    real, modeled = _pairs(n)
    base = {"max": np.full(n, 8.0), "min": np.full(n, -8.0), "alternate": np.resize([8.0, -8.0], n)}[pattern]
    updates, weights = [base] * K, [255] * K
    for pair in (real, modeled):
        _, total, avg = _run(pair, updates, weights)
        np.testing.assert_array_equal(total, K * 255 * np.rint(base * 2**16).astype(np.int64))
        np.testing.assert_array_equal(avg, base)


def test_many_clients_with_unequal_weights_give_the_unbiased_average():
    n, rng = 9, np.random.default_rng(3)
    updates = [rng.uniform(-8, 8, n) for _ in range(K)]
    weights = [int(w) for w in rng.integers(1, 256, K)]
    real, _ = _pairs(n)
    _, _, avg = _run(real, updates, weights)
    assert avg.tobytes() == _exact_average(real[0], updates, weights).tobytes()
    float_avg = sum(w * u for w, u in zip(weights, updates)) / sum(weights)
    assert np.abs(avg - float_avg).max() <= 2.0**-17 * (1 + 1e-9)  # half a quantization step


def test_paper_defaults_real_mode():
    holder, server = make_secure_aggregation("real", PAPER_PARAMS, num_values=41, max_clients=64, seed=5)
    assert holder.encoder.layout.slots_per_ciphertext >= 4
    updates = [np.linspace(-8, 8, 41), -np.linspace(-8, 8, 41), np.full(41, 0.1)]
    agg = server.weighted_sum([holder.encrypt(u) for u in updates], [255, 1, 17])
    assert holder.decrypt_average(agg).tobytes() == _exact_average(holder, updates, [255, 1, 17]).tobytes()


def test_high_throughput_real_mode_and_bytes():
    holder, server = make_secure_aggregation(
        "real", HIGH_THROUGHPUT_PARAMS, num_values=1000, max_clients=64, seed=6
    )
    updates = [np.random.default_rng(i).normal(0, 1, 1000) for i in range(3)]
    agg = server.weighted_sum([holder.encrypt(u) for u in updates], [3, 2, 1])
    assert holder.decrypt_average(agg).tobytes() == _exact_average(holder, updates, [3, 2, 1]).tobytes()
    assert holder.encrypt(updates[0]).nbytes / 1000 <= 16


def test_nbytes_match_between_modes_and_equal_the_wire_size():
    real, modeled = _pairs(101)
    v = np.zeros(101)
    ev_r, ev_m = real[0].encrypt(v), modeled[0].encrypt(v)
    assert ev_r.nbytes == ev_m.nbytes == len(ev_r.to_bytes())
    agg = real[1].weighted_sum([ev_r], [1])
    assert agg.nbytes == len(agg.to_bytes())
    with pytest.raises(PayloadError, match="modeled"):
        ev_m.to_bytes()


def test_serialization_roundtrip():
    (holder, server), _ = _pairs(50)
    pk = holder.public
    updates = [np.full(50, 0.5), np.full(50, -1.25)]
    vecs = [EncryptedVector.from_bytes(holder.encrypt(u).to_bytes(), pk) for u in updates]
    agg = EncryptedAggregate.from_bytes(server.weighted_sum(vecs, [2, 3]).to_bytes(), pk)
    assert (agg.weight_sum, agg.count) == (5, 2)
    np.testing.assert_array_equal(holder.decrypt_average(agg), np.full(50, (2 * 0.5 - 3 * 1.25) / 5))


def test_truncated_tampered_and_wrong_key_payloads_are_refused():
    (holder, _), _ = _pairs(20)
    data = holder.encrypt(np.ones(20)).to_bytes()
    pk = holder.public
    with pytest.raises(PayloadError, match="truncated"):
        EncryptedVector.from_bytes(data[:-1], pk)
    with pytest.raises(PayloadError, match="truncated"):
        EncryptedVector.from_bytes(data[:30], pk)
    body_flip = bytearray(data)
    body_flip[100] ^= 1
    with pytest.raises(PayloadError, match="digest"):
        EncryptedVector.from_bytes(bytes(body_flip), pk)
    header_flip = bytearray(data)
    header_flip[27] ^= 1  # num_values
    with pytest.raises(PayloadError, match="truncated or corrupted"):
        EncryptedVector.from_bytes(bytes(header_flip), pk)
    with pytest.raises(PayloadError, match="encrypted under key"):
        EncryptedVector.from_bytes(data, _key(SMALL, 22)[1])
    with pytest.raises(PayloadError, match="expected an encrypted aggregate"):
        EncryptedAggregate.from_bytes(data, pk)
    with pytest.raises(PayloadError, match="not a ppafl"):
        EncryptedVector.from_bytes(b"X" * len(data), pk)
    with pytest.raises(PayloadError, match="must be bytes"):
        EncryptedVector.from_bytes("text", pk)


def test_aggregator_refuses_bad_weights_counts_and_foreign_vectors():
    (holder, server), (m_holder, _) = _pairs(5, k=3)
    ev = holder.encrypt(np.zeros(5))
    for weights, err, match in [
        ([0], CryptoError, "below 1"),
        ([256], OverflowRiskError, "exceeds 2\\^weight_bits - 1 = 255"),
        ([2.5], CryptoError, "not an integer"),
        ([True], CryptoError, "bool"),
        ([1, 1], CryptoError, "1 vectors but 2 weights"),
    ]:
        with pytest.raises(err, match=match):
            server.weighted_sum([ev], weights)
    assert server.weighted_sum([ev], [np.int64(7)]).weight_sum == 7
    with pytest.raises(OverflowRiskError, match="exceed max_clients=3"):
        server.weighted_sum([ev] * 4, [1] * 4)
    with pytest.raises(CryptoError, match="at least one"):
        server.weighted_sum([], [])
    with pytest.raises(PayloadError, match="modeled and real"):
        server.weighted_sum([m_holder.encrypt(np.zeros(5))], [1])
    (other, _), _ = _pairs(6, k=3)
    with pytest.raises(PayloadError, match="layout"):
        server.weighted_sum([other.encrypt(np.zeros(6))], [1])


def test_decrypt_refuses_aggregates_beyond_the_encoder_bounds_or_foreign():
    (holder, server), (m_holder, _m_server) = _pairs(4, k=2)
    agg = server.weighted_sum([holder.encrypt(np.zeros(4))], [1])
    forged = EncryptedAggregate(agg.layout, agg.key_id, agg.body, weight_sum=600, count=3)
    with pytest.raises(OverflowRiskError, match="outside what the encoder was built for"):
        holder.decrypt_average(forged)
    with pytest.raises(PayloadError, match="key"):
        m_holder.decrypt_average(agg)


def test_bad_updates_are_refused_before_encryption():
    (holder, _), _ = _pairs(4)
    with pytest.raises(NonFiniteUpdateError, match="non-finite"):
        holder.encrypt(np.array([0.0, np.nan, 0.0, 0.0], dtype=np.float32))
    with pytest.raises(OverflowRiskError, match="value_bound"):
        holder.encrypt(np.array([0.0, 9.0, 0.0, 0.0]))
    clipped, _ = make_secure_aggregation("modeled", SMALL, num_values=4, max_clients=2, clip=True)
    np.testing.assert_array_equal(clipped.quantize(np.array([0.0, 9.0, -9.0, 0.0])), [0, 8 << 16, -8 << 16, 0])


def test_state_dict_and_flat_vector_encrypt_alike():
    (holder, server), _ = _pairs(6)
    state = {"a": np.ones((2, 2)), "b": np.array([0.5, -0.5])}
    agg = server.weighted_sum([holder.encrypt(state), holder.encrypt(np.array([1, 1, 1, 1, 0.5, -0.5]))], [1, 1])
    np.testing.assert_array_equal(holder.decrypt_average(agg), [1, 1, 1, 1, 0.5, -0.5])


def _holds_secret(obj, seen: set[int]) -> bool:
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if isinstance(obj, SecretKey):
        return True
    children = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    if isinstance(obj, (list, tuple, set)):
        children = list(obj)
    return any(_holds_secret(c, seen) for c in children)


def test_aggregator_holds_only_public_parameters():
    holder, server = make_secure_aggregation("real", SMALL, num_values=3, max_clients=2, seed=9)
    assert _holds_secret(holder, set()) and not _holds_secret(server, set())
    secret = holder._cipher.secret
    assert server.public == secret.public
    assert all(v not in (secret.p, secret.q, secret.L) for v in vars(server).values())


def test_seeds_reproduce_and_modes_are_checked():
    a, _ = make_secure_aggregation("real", SMALL, num_values=3, max_clients=2, seed=4)
    b, _ = make_secure_aggregation("real", SMALL, num_values=3, max_clients=2, seed=4)
    assert a.encrypt(np.ones(3)).to_bytes() == b.encrypt(np.ones(3)).to_bytes()
    c, _ = make_secure_aggregation("real", SMALL, num_values=3, max_clients=2)
    assert c.key_id != a.key_id
    with pytest.raises(CryptoError, match="unknown secure aggregation mode"):
        make_secure_aggregation("fake", SMALL, num_values=3, max_clients=2)
