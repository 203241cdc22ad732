"""Integrity, the minimum aggregate size, the authority arrangement, SEAL's noise budget at the edge,
and seeded randomness that cannot be copied: no corrupted or tampered aggregate is ever accepted."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from crypto import BFV_COMPACT, BFV_PARAM_SETS, BFV_WIDE, CryptoError, RandomSource, SHEParams, make_secure_aggregation
from crypto.authority import make_authority_aggregation
from crypto.bfv import BFVEncoder, fresh_noise
from crypto.integrity import (
    TAG_PRIME,
    IntegrityError,
    IntegrityKey,
    ReplayError,
    TagLayout,
    TooFewContributorsError,
    dot_mod_p,
)
from crypto.secure_agg import EncryptedAggregate

ts = pytest.importorskip("tenseal")

SMALL_SHE = SHEParams("test-512", k0=512, k1=20, k2=160, r_bits=160)
K = 10
N = 8192 + 300  # two BFV ciphertexts


def _setups():
    """(name, encrypt(update, device), aggregator, open(aggregate), verifier) per arrangement."""
    out = []
    for name, params in (("shared-bfv", BFV_COMPACT), ("she", SMALL_SHE)):
        for mode in ("real", "modeled"):
            holder, server = make_secure_aggregation(mode, params, num_values=N, max_clients=K, min_contributors=3)
            out.append((f"{name}-{mode}", holder.encrypt, server, holder.decrypt_sum, holder.verifier))
    for mode in ("real", "modeled"):
        authority, server = make_authority_aggregation(mode, BFV_WIDE, num_values=N, max_clients=K)
        devices = {d: authority.enroll(d) for d in range(K)}
        out.append((f"authority-{mode}", lambda u, d, devs=devices: devs[d].encrypt(u), server,
                    authority.decrypt_sum, authority.verifier))
    return out


SETUPS = _setups()


def _flip(body, index, bit):
    """One bit flipped: in value `index` (modeled), ciphertext `index` (SHE), or byte `index` of the first
    serialized BFV ciphertext."""
    if isinstance(body, np.ndarray):
        out = body.copy()
        out[index] ^= 1 << bit
        return out
    items = list(body)
    if isinstance(items[0], bytes):
        blob = bytearray(items[0])
        blob[index] ^= 1 << (bit % 8)
        items[0] = bytes(blob)
    else:
        items[index % len(items)] ^= 1 << bit
    return tuple(items)


def _swap(body):
    if isinstance(body, np.ndarray):
        out = body.copy()
        out[:100], out[100:200] = body[100:200], body[:100]
        return out
    return (body[1], body[0], *body[2:])


@pytest.mark.parametrize("setup", SETUPS, ids=[s[0] for s in SETUPS])
def test_corrupted_or_tampered_aggregates_at_the_largest_weights_are_refused(setup):
    _, encrypt, server, open_sum, verifier = setup
    rng = np.random.default_rng(0)
    updates = [np.clip(rng.normal(0, 3, N), -8, 8) for _ in range(K)]
    updates[0][:50] = 8.0
    weights = [255] * K

    def aggregate():
        return server.weighted_sum([encrypt(u, d) for d, u in enumerate(updates)], weights)

    agg = aggregate()
    expected = sum(255 * np.rint(u * 2**16).astype(np.int64) for u in updates)
    size = len(agg.body[0]) if isinstance(agg.body, tuple) and isinstance(agg.body[0], bytes) else 8192
    refused = 0
    for where in range(size // 2, size, size // 20):  # bit flips: refused, or absorbed by BFV's noise margin
        flipped = EncryptedAggregate(agg.layout, agg.key_id, _flip(agg.body, where, 7), agg.weight_sum, K, agg.claims)
        try:
            np.testing.assert_array_equal(open_sum(flipped), expected)
        except IntegrityError:
            refused += 1
    assert refused >= 5
    tampered = {
        "swapped chunks": EncryptedAggregate(agg.layout, agg.key_id, _swap(agg.body), agg.weight_sum, K, agg.claims),
        "scaled": EncryptedAggregate(agg.layout, agg.key_id, server.weighted_sum(
            [encrypt(u, d) for d, u in enumerate(updates)], [2] * K).body, agg.weight_sum, K, agg.claims),
        "claims dropped": EncryptedAggregate(agg.layout, agg.key_id, agg.body, 255 * 9, 9, agg.claims[1:]),
        "claims relabelled": EncryptedAggregate(agg.layout, agg.key_id, agg.body, agg.weight_sum, K,
                                                (agg.claims[0]._replace(device=99), *agg.claims[1:])),
    }
    for what, forged in tampered.items():
        with pytest.raises(CryptoError) as caught:
            open_sum(forged)
        assert isinstance(caught.value, IntegrityError), (what, caught.value)
    assert verifier.refused_tampered >= refused + len(tampered)
    genuine = aggregate()
    np.testing.assert_array_equal(open_sum(genuine), expected)  # the genuine one passes, exactly
    with pytest.raises(ReplayError):
        open_sum(genuine)
    small = server.weighted_sum([encrypt(updates[0], 0), encrypt(updates[1], 1), encrypt(updates[2], 1)], [1, 1, 1])
    with pytest.raises(TooFewContributorsError, match="2 distinct device"):
        open_sum(small)
    assert verifier.refused_small == 1


def test_the_reported_bug_one_flipped_bit_at_k10_and_weight_255_is_refused():
    holder, server = make_secure_aggregation("real", BFV_COMPACT, num_values=8192, max_clients=10)
    vecs = [holder.encrypt(np.full(8192, 8.0 if i % 2 else -8.0), i) for i in range(10)]
    agg = server.weighted_sum(vecs, [255] * 10)
    blob = bytearray(agg.body[0])
    blob[len(blob) // 2] ^= 0x10
    with pytest.raises(IntegrityError):
        holder.decrypt_sum(EncryptedAggregate(agg.layout, agg.key_id, (bytes(blob),), agg.weight_sum, 10, agg.claims))


def test_dot_mod_p_is_exact():
    rng = np.random.default_rng(1)
    n = (1 << 18) + 500  # two chunks
    alpha = rng.integers(0, TAG_PRIME, (2, n), dtype=np.uint64)
    x = rng.integers(-(1 << 59), 1 << 59, n)
    assert dot_mod_p(alpha, x) == [sum(int(a) * int(v) for a, v in zip(row, x)) % TAG_PRIME for row in alpha]
    layout = TagLayout.for_bound(8 << 16)
    assert (layout.limb_bits, layout.limbs, layout.values) == (19, 4, 8)
    assert layout.recombine(layout.digits([TAG_PRIME - 5, 12345])) == [TAG_PRIME - 5, 12345]


def test_authority_devices_hold_no_key_that_reads_another_devices_update():
    authority, server = make_authority_aggregation("real", BFV_WIDE, num_values=100, max_clients=4)
    alice, bob = authority.enroll(1), authority.enroll(2)
    secret_update = np.linspace(-1, 1, 100)
    vec = bob.encrypt(secret_update)
    context = alice._cipher.context  # everything a captured device holds
    assert not context.has_secret_key() and context.has_public_key()
    with pytest.raises(ValueError, match="secret"):
        ts.bfv_vector_from(context, vec.body[0]).decrypt()
    captured = pickle.loads(pickle.dumps(alice))  # its serialized material holds no secret key either
    assert not captured._cipher.context.has_secret_key()
    with pytest.raises(ValueError, match="secret"):
        ts.bfv_vector_from(captured._cipher.context, vec.body[0]).decrypt()
    with pytest.raises(CryptoError, match="device 1"):
        alice.encrypt(secret_update, device=2)  # its tag material is its own: it cannot pose as bob
    with pytest.raises(CryptoError, match="never pickled"):
        pickle.dumps(authority)
    agg = server.weighted_sum([vec, alice.encrypt(-secret_update), authority.enroll(3).encrypt(secret_update)],
                              [3, 1, 2])
    np.testing.assert_array_equal(authority.decrypt_sum(agg), 4 * np.rint(secret_update * 2**16).astype(np.int64))
    assert authority.last_decrypt_seconds > 0


def test_authority_needs_the_public_key_noise_bound():
    with pytest.raises(CryptoError, match="encryption.params wide"):
        BFVEncoder(BFV_COMPACT, 10, 10, public_key=True)
    assert fresh_noise(8192, True) == 21 * (2 * 8192 + 1) + 1


def _largest_clients(params, public_key):
    k = 1
    while True:
        try:
            BFVEncoder(params, 1, 2 * k, public_key=public_key)
        except CryptoError:
            break
        k *= 2
    low, high = k, 2 * k
    while high - low > 1:
        mid = (low + high) // 2
        try:
            BFVEncoder(params, 1, mid, public_key=public_key)
            low = mid
        except CryptoError:
            high = mid
    return low


@pytest.mark.parametrize("public_key", [False, True], ids=["symmetric", "public-key"])
@pytest.mark.parametrize("params", list(BFV_PARAM_SETS.values()), ids=list(BFV_PARAM_SETS))
def test_seal_noise_budget_stays_positive_at_the_largest_admitted_aggregate(params, public_key):
    """The worst admissible aggregate's noise is that of one ciphertext times K * 255 (noise adds up);
    SEAL's measured budget must be at least what the encoder's bound predicts."""
    from tenseal import sealapi

    clients = _largest_clients(params, public_key)
    if clients == 0:
        pytest.skip(f"{params.name} admits no aggregate with public-key noise")
    enc = BFVEncoder(params, 8, clients, public_key=public_key)
    context = ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree=params.poly_modulus_degree,
                         plain_modulus=enc.plain_modulus, coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
                         encryption_type=ts.ENCRYPTION_TYPE.ASYMMETRIC if public_key else ts.ENCRYPTION_TYPE.SYMMETRIC,
                         n_threads=1)
    values = [enc.max_quantized, -enc.max_quantized] * 4
    vec = ts.bfv_vector(context, values)
    vec.mul_(clients * enc.max_weight)
    decryptor = sealapi.Decryptor(context.seal_context().data, context.secret_key().data)
    budget = decryptor.invariant_noise_budget(vec.ciphertext()[0])
    predicted = (params.q_min // (2 * enc.plain_modulus * enc.noise_bound)).bit_length() - 1
    assert budget >= max(predicted, 1), (clients, budget, predicted)
    assert vec.decrypt()[:8] == [clients * enc.max_weight * v for v in values]


def test_a_seeded_random_source_cannot_be_copied_into_two_processes():
    seeded = RandomSource(7)
    for clone in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(CryptoError, match="same stream"):
            clone(seeded)
    child = seeded.spawn(1)[0]
    handed = pickle.loads(pickle.dumps(child))  # a spawned stream is handed over once
    with pytest.raises(CryptoError, match="same stream"):
        pickle.dumps(child)
    assert handed.bytes(16) != RandomSource(7).spawn(1)[0].bytes(0) + seeded.bytes(16)
    secure = pickle.loads(pickle.dumps(RandomSource()))
    assert secure.secure and len(secure.bytes(8)) == 8
    holder, _ = make_secure_aggregation("modeled", SMALL_SHE, num_values=4, max_clients=2, seed=3)
    with pytest.raises(CryptoError, match="same stream"):
        pickle.dumps(holder)


def test_integrity_keys_and_verifiers_keep_their_secret_out_of_repr():
    key = IntegrityKey.generate()
    assert key.master.hex() not in repr(key) and key.master.hex() not in repr(key.tagger(1, TagLayout(19, 4)))
