"""SHE scheme: key generation, Enc/Dec, homomorphic add and plaintext multiply, bounds."""

from __future__ import annotations

from functools import cache

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import (
    PAPER_PARAMS,
    CryptoError,
    OverflowRiskError,
    RandomSource,
    SHEParams,
    add,
    decrypt,
    decrypt_many,
    encrypt,
    encrypt_many,
    keygen,
    mul_plain,
    she,
)

SMALL = SHEParams("test-512", k0=512, k1=20, k2=160, r_bits=160)  # same L and r as the paper, small p, q


@cache
def _key(params: SHEParams = SMALL, seed: int = 7):
    return keygen(params, seed=seed)


def test_paper_keygen_sizes_and_roundtrip():
    sk, pk = _key(PAPER_PARAMS, 11)
    assert sk.p.bit_length() == sk.q.bit_length() == 2048 and sk.p != sk.q
    assert sk.p >= PAPER_PARAMS.p_min and sk.q >= PAPER_PARAMS.p_min
    assert sk.L.bit_length() == 160 and sk.L >= PAPER_PARAMS.l_min
    assert all(gmpy2.is_prime(x, 30) for x in (sk.p, sk.q, sk.L))
    assert pk.n == sk.p * sk.q and pk.n.bit_length() == 4096 and PAPER_PARAMS.ciphertext_bytes == 512
    msgs = [0, 1, -1, 123456789, -(sk.L // 2), sk.L // 2]
    cts = encrypt_many(sk, msgs, RandomSource())
    assert [int(m) for m in decrypt_many(sk, cts)] == msgs
    total = she.weighted_sum(pk, [cts, cts], [3, 200])
    assert [int(m) for m in decrypt_many(sk, total[:4])] == [203 * m for m in msgs[:4]]


def test_keygen_seeded_is_reproducible_unseeded_is_not():
    a, b = keygen(SMALL, seed=3), keygen(SMALL, seed=3)
    assert (a[0].p, a[0].L, a[1].n) == (b[0].p, b[0].L, b[1].n)
    assert keygen(SMALL)[1].n != keygen(SMALL)[1].n
    assert a[1].key_id != keygen(SMALL, seed=4)[1].key_id


@settings(max_examples=60, deadline=None)
@given(st.integers(-(3 << 157), 3 << 157))  # |m| <= L/2 for every 160-bit L keygen draws
def test_roundtrip_signed(m):
    sk, _ = _key()
    c = encrypt(sk, m)
    assert 0 <= c < sk.public.n
    assert decrypt(sk, c) == m


@settings(max_examples=60, deadline=None)
@given(
    st.integers(-(2**100), 2**100), st.integers(-(2**100), 2**100), st.integers(0, 2**40), st.integers(0, 2**40)
)
def test_homomorphic_add_and_plaintext_multiply(m1, m2, k1, k2):
    sk, pk = _key()
    c1, c2 = encrypt(sk, m1), encrypt(sk, m2)
    assert decrypt(sk, add(pk, mul_plain(pk, c1, k1), mul_plain(pk, c2, k2))) == k1 * m1 + k2 * m2
    assert decrypt(sk, add(pk, c1, c2)) == m1 + m2


def test_encryption_is_the_paper_formula_with_r1_uniform_mod_q():
    sk, pk = _key()
    msgs = [5, -7, 2**150, -(2**150)]
    # Replay the seeded stream: c must be exactly r*L + m + p*t for the r and t it draws.
    replay = RandomSource(99, stream=2)
    rs, width = she._random_multipliers(replay, len(msgs), sk.params)
    ts = replay.integers_below(sk.q, len(msgs))
    expected = [int.from_bytes(rs[i * width : (i + 1) * width], "little") * sk.L + m + sk.p * t
                for i, (m, t) in enumerate(zip(msgs, ts))]
    ciphertexts = encrypt_many(sk, msgs, RandomSource(99, stream=2))
    assert ciphertexts == expected
    for m, c in zip(msgs, ciphertexts):
        assert type(c) is int and 0 <= c < pk.n
        x = c % sk.p  # r*L + m
        r, rem = divmod(x - m, sk.L)
        assert rem == 0 and r.bit_length() == SMALL.r_bits
        t, rem = divmod(c - x, sk.p)
        assert rem == 0 and 0 <= t < sk.q
        r1 = t * gmpy2.invert(x, sk.q) % sk.q  # the paper's r1 behind this ciphertext
        assert c == (x * (1 + r1 * sk.p)) % pk.n


@pytest.mark.parametrize("bound", [1, 2, 200, 256, (3 << 14) + 5, (1 << 70) + 1])
def test_integers_below_is_uniform_below_the_bound(bound):
    draws = RandomSource(3).integers_below(bound, 20_000)
    assert len(draws) == 20_000 and min(draws) >= 0 and max(draws) < bound
    if bound > 1:  # mean and the top of the range, within 4 standard errors
        mean, sd = (bound - 1) / 2, bound / 12**0.5
        assert abs(sum(draws) / len(draws) - mean) < 4 * sd / len(draws) ** 0.5
        assert max(draws) >= bound - max(1, bound // 1000)
    with pytest.raises(CryptoError, match="bound >= 1"):
        RandomSource(3).integers_below(0, 5)


def test_encryption_is_randomized_and_seeded_randomness_reproducible():
    sk, _ = _key()
    assert encrypt(sk, 42) != encrypt(sk, 42)
    assert encrypt_many(sk, [1, 2], RandomSource(5)) == encrypt_many(sk, [1, 2], RandomSource(5))


def test_plaintext_beyond_half_L_is_refused():
    sk, _ = _key()
    with pytest.raises(OverflowRiskError, match="exceeds L/2"):
        encrypt(sk, sk.L // 2 + 1)
    with pytest.raises(OverflowRiskError, match="exceeds L/2"):
        encrypt_many(sk, [0, -(sk.L // 2) - 1], RandomSource())


def test_bad_server_side_inputs():
    sk, pk = _key()
    c = encrypt(sk, 1)
    with pytest.raises(CryptoError, match="negative"):
        mul_plain(pk, c, -2)
    with pytest.raises(CryptoError, match="as many weights"):
        she.weighted_sum(pk, [[c]], [1, 2])
    with pytest.raises(CryptoError, match="differ in length"):
        she.weighted_sum(pk, [[c], [c, c]], [1, 2])
    with pytest.raises(CryptoError, match="outside"):
        decrypt(sk, pk.n)


def test_secret_key_is_hidden_and_must_match_public():
    sk, pk = _key()
    assert str(sk.p) not in repr(sk) and str(sk.L) not in repr(sk)
    other_sk, _ = _key(SMALL, 8)
    with pytest.raises(CryptoError, match="do not belong together"):
        she.SecretKey(other_sk.p, sk.L, pk)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k0": 32}, "too small"),
        ({"k1": 160}, "k1 < k2"),
        ({"r_bits": 400}, "below k0 - 1"),
        ({"k2": True}, "positive int"),
        ({"r_bits": 0}, "positive int"),
    ],
)
def test_params_validation(kwargs, match):
    base = {"name": "x", "k0": 512, "k1": 20, "k2": 160, "r_bits": 160}
    with pytest.raises(CryptoError, match=match):
        SHEParams(**{**base, **kwargs})


def test_random_source():
    assert RandomSource().secure and not RandomSource(1).secure
    assert RandomSource(1).bytes(16) == RandomSource(1).bytes(16) != RandomSource(1, stream=1).bytes(16)
    assert RandomSource(2).bits(13) < 2**13
    with pytest.raises(CryptoError, match="seed"):
        RandomSource(-1)
