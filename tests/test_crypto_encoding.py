"""Fixed-point encoding and slot packing: layouts, exact packed arithmetic, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crypto import (
    HIGH_THROUGHPUT_PARAMS,
    PAPER_PARAMS,
    CryptoError,
    NonFiniteUpdateError,
    OverflowRiskError,
    PackedEncoder,
    SHEParams,
    flatten_update,
)


def _encoder(n=11, k=64, **kw) -> PackedEncoder:
    return PackedEncoder(PAPER_PARAMS, n, k, **kw)


def test_paper_default_layout_meets_the_bytes_target():
    enc = _encoder(n=100_000, k=64)  # weight_bits 8, scale_bits 16, value_bound 8
    assert enc.max_quantized == 8 * 2**16
    assert enc.layout.slot_bits == (64 * 255 * 8 * 2**16).bit_length() + 1 == 34
    assert enc.layout.slots_per_ciphertext >= 4
    assert enc.layout.ciphertext_bytes / enc.layout.slots_per_ciphertext <= 512 / 4


def test_high_throughput_layout_meets_the_bytes_target():
    enc = PackedEncoder(HIGH_THROUGHPUT_PARAMS, 100_000, 64)
    assert enc.layout.ciphertext_bytes / enc.layout.slots_per_ciphertext <= 16
    # the packed sum stays below L/2 for the smallest L, and r*L + m below the smallest p
    s, n = enc.layout.slot_bits, enc.layout.slots_per_ciphertext
    assert 2 * enc.slot_limit * sum(1 << (j * s) for j in range(n)) < HIGH_THROUGHPUT_PARAMS.l_min


_Q = 8 * 2**16


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(
        np.int64, st.integers(1, 40), elements=st.one_of(st.integers(-_Q, _Q), st.sampled_from([-_Q, _Q, -1, 0]))
    )
)
def test_pack_unpack_roundtrip_including_negatives_and_extremes(q):
    enc = _encoder(n=q.size, k=64)
    packed = enc.pack(q)
    assert len(packed) == enc.num_ciphertexts
    np.testing.assert_array_equal(enc.unpack(packed), q)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_weighted_packed_sums_unpack_to_the_slotwise_sums(data):
    k = data.draw(st.integers(1, 64), label="clients")
    n = data.draw(st.integers(1, 10), label="values")
    enc = _encoder(n=n, k=64)
    qs = data.draw(
        st.lists(hnp.arrays(np.int64, n, elements=st.one_of(st.integers(-_Q, _Q), st.sampled_from([-_Q, _Q]))),
                 min_size=k, max_size=k)
    )
    ws = data.draw(st.lists(st.one_of(st.integers(1, 255), st.just(255)), min_size=k, max_size=k))
    packed = [enc.pack(q) for q in qs]
    totals = [sum(w * p[j] for w, p in zip(ws, packed)) for j in range(enc.num_ciphertexts)]
    expected = sum(w * q for w, q in zip(ws, qs))
    np.testing.assert_array_equal(enc.unpack(totals), expected)


def test_negative_slot_borrow_is_undone_where_naive_shift_and_mask_fails():
    enc = _encoder(n=3, k=64)
    q = np.array([-1, 0, 5])
    (packed,) = enc.pack(q)
    s = enc.layout.slot_bits
    naive = [(packed >> (j * s)) & ((1 << s) - 1) for j in range(3)]
    naive = [v - (1 << s) if v >> (s - 1) else v for v in naive]
    assert naive == [-1, -1, 4]  # slot 0's sign borrowed from its neighbours
    np.testing.assert_array_equal(enc.unpack([packed]), q)


def test_worst_case_all_slots_at_the_limit():
    enc = _encoder(n=13, k=64)
    for sign in (1, -1):
        q = np.full(13, sign * _Q, dtype=np.int64)
        total = [64 * 255 * m for m in enc.pack(q)]
        np.testing.assert_array_equal(enc.unpack(total), 64 * 255 * q)


def test_quantize_rounds_at_the_scale():
    enc = _encoder(n=4, k=2, scale_bits=4, value_bound=2.0)
    np.testing.assert_array_equal(enc.quantize(np.array([0.5, -0.03, 2.0, -2.0])), [8, 0, 32, -32])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    v = np.zeros(11, dtype=np.float32)
    v[6] = bad
    with pytest.raises(NonFiniteUpdateError, match="index 6"):
        _encoder().quantize(v)


def test_values_beyond_bound_are_refused_or_clipped_on_request():
    v = np.zeros(11)
    v[3] = -8.5
    with pytest.raises(OverflowRiskError, match=r"-8\.5 at index 3 exceeds value_bound=8\.0"):
        _encoder().quantize(v)
    assert _encoder(clip=True).quantize(v)[3] == -_Q


def test_state_dict_is_flattened_in_order():
    state = {"w": torch.ones(2, 3, requires_grad=True), "b": np.array([0.5, -0.25])}
    flat = flatten_update(state)
    np.testing.assert_array_equal(flat, [1, 1, 1, 1, 1, 1, 0.5, -0.25])
    np.testing.assert_array_equal(_encoder(n=8).quantize(state), np.rint(flat * 2**16))


@pytest.mark.parametrize(
    "update, match",
    [
        (np.zeros(10), "has 10 values, the encoder was built for num_values=11"),
        (np.zeros((11, 1)), "1-D"),
        (np.zeros(11, dtype=complex), "dtype complex"),
        ({}, "empty"),
    ],
)
def test_bad_update_shapes_and_types(update, match):
    with pytest.raises(CryptoError, match=match):
        _encoder().quantize(update)


def test_encoder_refuses_settings_that_could_overflow():
    with pytest.raises(OverflowRiskError, match="54-bit limit"):
        _encoder(k=2**20, weight_bits=16)
    with pytest.raises(OverflowRiskError, match="already reaches L/2"):
        PackedEncoder(SHEParams("tiny-L", 512, 8, 30, 160), 5, 16)
    with pytest.raises(OverflowRiskError, match="beyond p"):
        PackedEncoder(SHEParams("tight-p", 512, 20, 300, 200), 5, 16)
    PackedEncoder(SHEParams("tight-p", 512, 20, 300, 200), 5, 4)  # 4 * 255 < 2^11 fits


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "num_values"),
        ({"k": 0}, "max_clients"),
        ({"weight_bits": 0}, "weight_bits"),
        ({"scale_bits": 60}, "scale_bits"),
        ({"value_bound": float("nan")}, "value_bound"),
        ({"value_bound": -1.0}, "value_bound"),
        ({"value_bound": 1e-9}, "rounds to 0"),
    ],
)
def test_encoder_argument_validation(kwargs, match):
    with pytest.raises(CryptoError, match=match):
        _encoder(**kwargs)


def test_pack_and_unpack_refuse_bad_integers():
    enc = _encoder(n=6)
    with pytest.raises(OverflowRiskError, match="exceeds the encoder's bound"):
        enc.pack(np.array([0, 0, _Q + 1, 0, 0, 0]))
    with pytest.raises(CryptoError, match="quantize"):
        enc.pack(np.zeros(6))
    with pytest.raises(CryptoError, match="layout has"):
        enc.unpack([0] * (enc.num_ciphertexts + 1))
    with pytest.raises(CryptoError, match="does not fit its slots"):
        enc.unpack([PAPER_PARAMS.l_min] * enc.num_ciphertexts)
