"""BFV through TenSEAL: parameter checks, the plain modulus and noise bound, real = modeled bit for bit,
exact extremes, the wire format, pickling, a keyless server, reused payloads."""

from __future__ import annotations

import pickle
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crypto import (
    BFV_COMPACT,
    BFV_PARAM_SETS,
    BFV_WIDE,
    BFVEncoder,
    BFVParams,
    CryptoError,
    EncryptedAggregate,
    EncryptedVector,
    OverflowRiskError,
    PayloadError,
    make_secure_aggregation,
)
from crypto.bfv import FRESH_NOISE, batching_prime
from crypto.bigint import is_prime
from crypto.params import HE_STANDARD_128

ts = pytest.importorskip("tenseal")


@cache
def _pair(n: int, k: int = 10, params: BFVParams = BFV_COMPACT):
    real = make_secure_aggregation("real", params, num_values=n, max_clients=k)
    modeled = make_secure_aggregation("modeled", params, num_values=n, max_clients=k)
    return real, modeled


def _run(pair, updates, weights):
    """Two aggregates of fresh encryptions of the same updates (a verifier opens an aggregate once)."""
    holder, server = pair
    aggs = [server.weighted_sum([holder.encrypt(u) for u in updates], weights) for _ in range(2)]
    return aggs[0], holder.decrypt_sum(aggs[0]), holder.decrypt_average(aggs[1])


@pytest.mark.parametrize("params", list(BFV_PARAM_SETS.values()), ids=list(BFV_PARAM_SETS))
def test_parameter_sets_are_128_bit_and_ciphertexts_have_the_modeled_size(params):
    assert sum(params.coeff_mod_bit_sizes) <= HE_STANDARD_128[params.poly_modulus_degree]
    holder, server = make_secure_aggregation("real", params, num_values=3 * params.slots - 20, max_clients=4)
    vec = holder.encrypt(np.linspace(-8, 8, 3 * params.slots - 20))
    assert [len(b) for b in vec.body] == [params.ciphertext_bytes] * 3
    agg = server.weighted_sum([vec, vec], [255, 3])
    assert [len(b) for b in agg.body] == [params.ciphertext_bytes] * 3  # a sum serializes at the same size
    assert vec.nbytes == len(vec.to_bytes()) == agg.nbytes - 2 * 20 == len(agg.to_bytes()) - 2 * 20  # its claims
    assert make_secure_aggregation("modeled", params, num_values=3 * params.slots - 20, max_clients=4)[0].encrypt(
        np.zeros(3 * params.slots - 20)
    ).nbytes == vec.nbytes


def test_parameter_sets_below_128_bit_or_malformed_are_refused():
    with pytest.raises(CryptoError, match="below 128-bit"):
        BFVParams("weak", 4096, (60, 60), 1)
    with pytest.raises(CryptoError, match="poly_modulus_degree"):
        BFVParams("odd", 5000, (60, 60), 1)
    with pytest.raises(CryptoError, match="at least two primes"):
        BFVParams("one", 8192, (60,), 1)


def test_plain_modulus_is_the_smallest_batching_prime_above_twice_the_largest_sum():
    enc = BFVEncoder(BFV_COMPACT, 100, 10)
    t, n = enc.plain_modulus, BFV_COMPACT.poly_modulus_degree
    assert is_prime(t) and t % (2 * n) == 1 and t > 2 * enc.slot_limit
    assert not any(is_prime(c) for c in range(t - 2 * n, 2 * enc.slot_limit, -2 * n))
    assert batching_prime(8, 100) == 113  # 113 = 7 * 16 + 1, the first prime 1 mod 16 above 100


def test_encoder_refuses_noise_or_plain_moduli_beyond_the_bounds():
    compact_max = max(k for k in (100, 200, 300, 400, 500) if _accepts(BFV_COMPACT, k))
    with pytest.raises(OverflowRiskError, match="encryption.params wide"):
        BFVEncoder(BFV_COMPACT, 10, compact_max + 200)
    BFVEncoder(BFV_WIDE, 10, compact_max + 200)  # the wide set takes it
    with pytest.raises(OverflowRiskError, match="over SEAL's 60"):
        BFVEncoder(BFV_WIDE, 10, 100_000, weight_bits=24, scale_bits=20)
    with pytest.raises(CryptoError, match="needs BFVParams"):
        BFVEncoder(object(), 10, 2)


def _accepts(params, k):
    try:
        BFVEncoder(params, 1, k)
    except OverflowRiskError:
        return False
    return True


def test_noise_bound_holds_with_margin_at_the_largest_accepted_aggregate():
    """Everything at its bound: max clients, max weights, +-value_bound, on the compact set's edge."""
    k = max(k for k in range(50, 1000, 25) if _accepts(BFV_COMPACT, k))
    enc = BFVEncoder(BFV_COMPACT, 1, k)
    assert 2 * enc.plain_modulus * enc.noise_bound < BFV_COMPACT.q_min <= 2 * 2 * enc.plain_modulus * (
        (k + 25) * enc.max_weight * FRESH_NOISE
    )
    n = 40
    holder, server = make_secure_aggregation("real", BFV_COMPACT, num_values=n, max_clients=k)
    base = np.resize([8.0, -8.0, 7.99], n)
    vec = holder.encrypt(base)
    total = holder.decrypt_sum(server.weighted_sum([vec] * k, [255] * k))
    np.testing.assert_array_equal(total, k * 255 * np.rint(base * 2**16).astype(np.int64))


_VALUE = st.one_of(st.floats(-8.0, 8.0, allow_nan=False, width=32), st.sampled_from([-8.0, 8.0, 0.0, -1e-6]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_real_and_modeled_are_bit_identical_and_exact(data):
    n = data.draw(st.sampled_from([1, 7, 8192, 8193]), label="values")
    k = data.draw(st.integers(1, 10), label="clients")
    updates = data.draw(st.lists(hnp.arrays(np.float32, n, elements=_VALUE), min_size=k, max_size=k))
    weights = data.draw(st.lists(st.integers(1, 255), min_size=k, max_size=k))
    real, modeled = _pair(n)
    agg_r, sum_r, avg_r = _run(real, updates, weights)
    agg_m, sum_m, avg_m = _run(modeled, updates, weights)
    np.testing.assert_array_equal(sum_r, sum(w * real[0].quantize(u) for w, u in zip(weights, updates)))
    np.testing.assert_array_equal(sum_r, sum_m)
    assert avg_r.dtype == np.float64 and avg_r.tobytes() == avg_m.tobytes()
    assert (agg_r.weight_sum, agg_r.count, agg_r.nbytes) == (sum(weights), k, agg_m.nbytes)


def test_she_and_bfv_give_the_same_averages():
    updates = [np.random.default_rng(i).normal(0, 1, 50) for i in range(4)]
    weights = [3, 255, 1, 70]
    she = make_secure_aggregation("modeled", num_values=50, max_clients=4)
    (bfv, _m) = _pair(50, 4)
    assert _run(she, updates, weights)[2].tobytes() == _run(bfv, updates, weights)[2].tobytes()


def test_wire_format_roundtrip_and_refusals():
    (holder, server), (m_holder, _) = _pair(20)
    pk = holder.public
    vec = EncryptedVector.from_bytes(holder.encrypt(np.full(20, 0.5)).to_bytes(), pk)
    agg = EncryptedAggregate.from_bytes(server.weighted_sum([vec, vec], [2, 3]).to_bytes(), pk)
    assert (agg.weight_sum, agg.count) == (5, 2)
    np.testing.assert_array_equal(holder.decrypt_average(agg), np.full(20, 0.5))
    data = vec.to_bytes()
    with pytest.raises(PayloadError, match="truncated"):
        EncryptedVector.from_bytes(data[:-1], pk)
    flipped = bytearray(data)
    flipped[500] ^= 1
    with pytest.raises(PayloadError, match="digest"):
        EncryptedVector.from_bytes(bytes(flipped), pk)
    other, _ = make_secure_aggregation("real", BFV_COMPACT, num_values=20, max_clients=10)
    with pytest.raises(PayloadError, match="encrypted under key"):
        EncryptedVector.from_bytes(data, other.public)
    with pytest.raises(PayloadError, match="not a ppafl BFV payload"):
        EncryptedVector.from_bytes(make_secure_aggregation("real", num_values=20, max_clients=10, seed=1)[0].encrypt(
            np.zeros(20)).to_bytes(), pk)
    with pytest.raises(PayloadError, match="modeled"):
        m_holder.encrypt(np.zeros(20)).to_bytes()
    with pytest.raises(PayloadError, match="key"):
        server.weighted_sum([m_holder.encrypt(np.zeros(20))], [1])


def test_server_holds_a_context_without_any_key():
    (holder, server), _ = _pair(20)
    context = server.public.context
    assert not context.has_secret_key() and context.is_public()
    vec = holder.encrypt(np.ones(20))
    with pytest.raises(ValueError, match="decrypt|secret"):
        server.public.load(vec.body[0]).decrypt()
    assert holder._cipher.context.has_secret_key()


def test_payloads_keyholders_and_aggregators_pickle_and_stored_payloads_are_reused():
    (holder, server), _ = _pair(30)
    first = holder.encrypt(np.full(30, 1.5))
    holder2, server2, stored = (pickle.loads(pickle.dumps(x)) for x in (holder, server, first))
    for _round in range(2):  # an update agent: the same stored ciphertexts in two aggregates
        second = holder2.encrypt(np.full(30, -0.5))
        agg = server2.weighted_sum([stored, second], [1, 1])
        np.testing.assert_array_equal(holder.decrypt_average(agg), np.full(30, 0.5))
        np.testing.assert_array_equal(holder2.decrypt_average(agg), np.full(30, 0.5))


def test_decryption_refuses_a_weight_sum_that_does_not_match_the_ciphertexts():
    (holder, server), _ = _pair(5)
    agg = server.weighted_sum([holder.encrypt(np.full(5, 8.0))] * 2, [255, 255])
    forged = EncryptedAggregate(agg.layout, agg.key_id, agg.body, weight_sum=2, count=2, claims=agg.claims)
    with pytest.raises(CryptoError, match="its header says 2 and 2"):
        holder.decrypt_average(forged)
