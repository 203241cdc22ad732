"""SecAgg+ and Shamir sharing: drops at every stage, below-threshold aborts, real == modeled bit for bit,
what a captured device holds, refusals of malicious requests, and integrity of the unmasked sum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.bigint import is_prime
from crypto.integrity import IntegrityError, IntegrityKey, IntegrityVerifier, TagLayout, TooFewContributorsError
from crypto.randomness import RandomSource
from crypto.secagg import (
    ProtocolViolation,
    SecAggConfig,
    SecAggDevice,
    SecAggServer,
    TooFewSurvivorsError,
    UnmaskRequest,
    _agree,
    _pair_info,
    _prg,
    _unpack,
    default_neighbours,
    harary_graph,
)
from crypto.shamir import PRIME, ShareError, reconstruct, reconstruct_bytes, share, share_bytes

pytest.importorskip("cryptography")

STAGES = ("advertise", "share", "masked", "unmask")


# ---- Shamir -------------------------------------------------------------------------------------


def test_prime_is_the_smallest_above_2_256():
    assert is_prime(PRIME) and not any(is_prime((1 << 256) + d) for d in range(1, 297, 2))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, PRIME - 1), st.integers(1, 8), st.integers(0, 5), st.randoms(use_true_random=False))
def test_any_t_shares_reconstruct_and_fewer_do_not(secret, t, extra, draw):
    xs = draw.sample(range(1, 10_000), t + extra)
    shares = share(secret, t, xs, RandomSource(draw.randrange(1 << 30)))
    for subset in (xs[:t], xs[-t:], draw.sample(xs, min(len(xs), t + 1))):
        assert reconstruct({x: shares[x] for x in subset}, t) == secret
    if t > 1:
        with pytest.raises(ShareError, match="cannot reconstruct"):
            reconstruct({x: shares[x] for x in xs[: t - 1]}, t)


def test_a_corrupted_extra_share_is_detected_and_bytes_roundtrip():
    shares = share_bytes(b"\x07" * 32, 3, [1, 2, 3, 4])
    assert reconstruct_bytes(shares, 3) == b"\x07" * 32
    bad = dict(shares)
    bad[4] = (int.from_bytes(bad[4], "big") ^ 1).to_bytes(33, "big")
    with pytest.raises(ShareError, match="corrupted share"):
        reconstruct_bytes(bad, 3)
    with pytest.raises(ShareError, match="distinct"):
        share(5, 2, [1, 1])
    with pytest.raises(ShareError, match="threshold"):
        share(5, 3, [1, 2])


class _Coefficients(RandomSource):
    """Hands out given polynomial coefficients, to enumerate every polynomial of a small field."""

    def __init__(self, coefficients):
        super().__init__()
        self._c = list(coefficients)

    def integers_below(self, bound, count):
        return self._c[:count]


@pytest.mark.parametrize("t", [2, 3])
def test_t_minus_1_shares_are_distributed_alike_for_every_secret(t):
    """Perfect secrecy, exhaustively over GF(11): the multiset of t - 1 shares does not depend on the secret."""
    p, xs = 11, [1, 2, 5][:t]
    seen = set()
    for secret in range(p):
        counts: dict[tuple[int, ...], int] = {}
        for coefficients in itertools.product(range(p), repeat=t - 1):
            shares = share(secret, t, xs, _Coefficients(coefficients), prime=p)
            key = tuple(shares[x] for x in xs[: t - 1])
            counts[key] = counts.get(key, 0) + 1
        seen.add(tuple(sorted(counts.items())))
    assert len(seen) == 1


# ---- SecAgg+ ------------------------------------------------------------------------------------


def _cohort(mode, n=10, k=None, t=None, drops=None, nv=300, weights=None, seed=1, key=None):
    """Run one cohort; `drops` maps a device to the stage it drops in (it sends nothing from then on).
    Returns (server, aggregate or the TooFewSurvivorsError, updates, config, devices)."""
    drops = drops or {}
    cfg = SecAggConfig(nv, n, neighbours=k, threshold=t)
    key = key or IntegrityKey.generate(b"fleet")
    layout = TagLayout.for_bound(cfg.encoder.max_quantized)
    rng = np.random.default_rng(seed)
    updates = {d: rng.uniform(-2, 2, nv) for d in range(n)}
    devices = {d: SecAggDevice(cfg, d, mode, key.tagger(d, layout), RandomSource(1000 + d)) for d in range(n)}
    server = SecAggServer(cfg, list(range(n)), mode, RandomSource(seed))
    weights = weights or {d: 1 + (7 * d) % 255 for d in range(n)}

    def sending(stage, addressed):
        return [d for d in devices if d in addressed and (d not in drops or STAGES.index(drops[d]) > STAGES.index(stage))]

    try:
        keys = server.receive_keys([devices[d].advertise_keys()[0] for d in sending("advertise", devices)])
        routed = server.receive_shares([devices[d].share_keys(keys[d])[0] for d in sending("share", keys)], weights)
        requests = server.receive_masked(
            [devices[d].masked_input(routed[d], updates[d])[0] for d in sending("masked", routed)]
        )
        agg = server.receive_unmask([devices[d].unmask(requests[d])[0] for d in sending("unmask", requests)])
    except TooFewSurvivorsError as exc:
        return server, exc, updates, cfg, devices
    return server, agg, updates, cfg, devices


def _expected(server, updates, cfg, weights=None):
    weights = weights or {d: 1 + (7 * d) % 255 for d in updates}
    return sum(weights[d] * cfg.encoder.quantize(updates[d]) for d in server.u3)


@pytest.mark.parametrize("stage", STAGES)
def test_drops_at_each_stage_give_the_survivors_sum_real_equal_to_modeled(stage):
    drops = {2: stage, 7: stage} if stage != "unmask" else {2: "unmask", 7: "unmask", 4: "masked"}
    results = {}
    for mode in ("real", "modeled"):
        server, agg, updates, cfg, _ = _cohort(mode, n=10, drops=drops)
        key = IntegrityKey.generate(b"fleet")
        values = agg.open(IntegrityVerifier(key, TagLayout.for_bound(cfg.encoder.max_quantized), 3))
        survivors = set(range(10)) - ({2, 7, 4} if stage == "unmask" else {2, 7})
        assert set(server.u3) == (survivors | ({2, 7} if stage == "unmask" else set()))
        np.testing.assert_array_equal(values, _expected(server, updates, cfg))
        results[mode] = agg.sums
    assert results["real"].tobytes() == results["modeled"].tobytes()


def test_sparse_graph_with_dropouts_and_the_harary_structure():
    n, k = 30, 8
    order = list(range(n))
    graph = harary_graph(order, k)
    assert all(len(v) == k and u not in v for u, v in graph.items())
    assert all(u in graph[v] for u in graph for v in graph[u])
    assert default_neighbours(100) == 20 and default_neighbours(10) == 9
    drops = {d: "masked" for d in range(0, n, 10)} | {5: "share"}
    results = {}
    for mode in ("real", "modeled"):
        server, agg, updates, cfg, _ = _cohort(mode, n=n, k=k, drops=drops, nv=200)
        assert all(len(server.graph[u]) == k for u in server.graph)
        np.testing.assert_array_equal(agg.open(None), _expected(server, updates, cfg))
        results[mode] = agg.sums
    assert results["real"].tobytes() == results["modeled"].tobytes()


@pytest.mark.parametrize("stage", STAGES)
def test_below_threshold_no_aggregate_is_made_and_it_is_counted(stage):
    n = 6  # complete graph: k = 5, t = 4 of 6 share holders
    drops = {0: stage, 1: stage, 2: stage}
    for mode in ("real", "modeled"):
        server, result, *_ = _cohort(mode, n=n, drops=drops)
        assert isinstance(result, TooFewSurvivorsError), result
        assert server.failures == {result.stage: 1}


def test_unmasking_fails_when_a_dropped_device_has_fewer_than_t_surviving_share_holders():
    # complete graph of 6, t = 4: device 0 drops after sharing, 3 of the 5 others drop in unmasking
    _, result, *_ = _cohort("real", n=6, drops={0: "masked", 1: "unmask", 2: "unmask", 3: "unmask"})
    assert isinstance(result, TooFewSurvivorsError) and result.stage == "unmask"


def test_a_device_never_reveals_both_shares_of_one_peer():
    cfg = SecAggConfig(50, 4)
    devices = {d: SecAggDevice(cfg, d, "real") for d in range(4)}
    server = SecAggServer(cfg, list(range(4)), "real")
    keys = server.receive_keys([dev.advertise_keys()[0] for dev in devices.values()])
    routed = server.receive_shares([devices[d].share_keys(keys[d])[0] for d in range(4)], dict.fromkeys(range(4), 1))
    requests = server.receive_masked([devices[d].masked_input(routed[d], np.zeros(50))[0] for d in range(3)])
    victim = devices[0]
    with pytest.raises(ProtocolViolation, match="both kinds"):
        victim.unmask(UnmaskRequest(frozenset({1, 2}), frozenset({1})))
    with pytest.raises(ProtocolViolation, match="own mask key"):
        victim.unmask(UnmaskRequest(frozenset({1}), frozenset({0})))
    victim.unmask(requests[0])  # 1, 2 survived; 3 dropped
    with pytest.raises(ProtocolViolation, match="already revealed"):
        victim.unmask(UnmaskRequest(frozenset({3}), frozenset()))
    with pytest.raises(ProtocolViolation, match="nothing to unmask"):
        devices[3].unmask(UnmaskRequest(frozenset({1}), frozenset()))


def test_a_captured_device_unmasks_no_other_device():
    """Device 1 is captured (every key, seed and share it holds) and colludes with the server (every
    message): it cannot read device 0's share ciphertexts, holds one share of 0's secrets (< t), and
    removing every mask it can compute from 0's masked input leaves noise, not 0's update."""
    n = 5
    server, agg, updates, cfg, devices = _cohort("real", n=n, drops={4: "masked"})
    spy = devices[1]
    assert sum(1 for d in devices.values() if 0 in d._held and d._held[0][0] is not None) == n - 1
    assert cfg.t > 1  # the spy's single share of b_0 and of s_0 says nothing about them
    for_other = next(s for s in server._routed[2] if s.src == 0)
    with pytest.raises(ProtocolViolation, match="authentication|not for device"):
        spy._open_share(for_other)
    masked = _unpack(server.u3[0].body, cfg.wire_values, cfg.mod_bits)
    mask = (1 << cfg.mod_bits) - 1
    guess = masked.copy()
    seed = _agree(spy._mask_key, server.u1[0].mask_public, _pair_info(server.cohort_id, b"mask", 1, 0))
    guess = (guess - _prg(seed, cfg.wire_values, mask)) & np.uint64(mask)  # the one pairwise mask it shares
    x0 = 1 * np.concatenate([cfg.encoder.quantize(updates[0]), np.zeros(cfg.encoder.tag_values, np.int64)])
    signed = guess.astype(np.int64)
    signed[guess >= np.uint64(1 << (cfg.mod_bits - 1))] -= 1 << cfg.mod_bits
    assert np.mean(signed[: cfg.encoder.num_values] == x0[: cfg.encoder.num_values]) < 0.01
    np.testing.assert_array_equal(agg.open(None), _expected(server, updates, cfg))


def test_the_unmasked_sum_is_verified_and_tampering_is_refused():
    key = IntegrityKey.generate(b"fleet")
    server, agg, updates, cfg, _ = _cohort("modeled", n=8, key=key)
    layout = TagLayout.for_bound(cfg.encoder.max_quantized)
    for tamper in ("flip", "scale", "drop_claim", "reweight"):
        sums, claims = agg.sums.copy(), agg.claims
        if tamper == "flip":
            sums[17] ^= 1 << 20
        elif tamper == "scale":
            sums = 2 * sums  # (scaling the claimed weights too would give the same average: harmless)
        elif tamper == "drop_claim":
            claims = claims[1:]
        else:
            claims = (claims[0]._replace(weight=claims[0].weight + 1), *claims[1:])
        forged = type(agg)(cfg, sums, claims)
        with pytest.raises(IntegrityError):
            forged.open(IntegrityVerifier(key, layout))
    verifier = IntegrityVerifier(key, layout, min_contributors=3)
    np.testing.assert_array_equal(agg.open(verifier), _expected(server, updates, cfg))
    with pytest.raises(IntegrityError, match="replay"):
        agg.open(verifier)
    with pytest.raises(TooFewContributorsError):
        type(agg)(cfg, agg.sums, agg.claims[:2]).open(IntegrityVerifier(key, layout, min_contributors=3))


def test_costs_are_reported_per_stage_and_identical_between_modes():
    cfg = SecAggConfig(1000, 10)
    costs = {}
    for mode in ("real", "modeled"):
        dev = {d: SecAggDevice(cfg, d, mode, rng=RandomSource(d)) for d in range(10)}
        srv = SecAggServer(cfg, list(range(10)), mode, RandomSource(3))
        m0 = [dev[d].advertise_keys() for d in range(10)]
        keys = srv.receive_keys([m for m, _ in m0])
        m1 = [dev[d].share_keys(keys[d]) for d in range(10)]
        routed = srv.receive_shares([m for m, _ in m1], dict.fromkeys(range(10), 3))
        m2 = [dev[d].masked_input(routed[d], np.zeros(1000)) for d in range(9)]
        requests = srv.receive_masked([m for m, _ in m2])
        m3 = [dev[d].unmask(requests[d]) for d in range(9)]
        srv.receive_unmask([m for m, _ in m3])
        costs[mode] = [(c.sent_bytes, c.received_bytes, c.ops) for _, c in (m0[0], m1[0], m2[0], m3[0])]
        if mode == "real":
            assert all(c.measured_s is not None and c.measured_s > 0 for _, c in (m0[0], m1[0], m2[0], m3[0]))
            assert m2[0][1].sent_bytes == cfg.masked_bytes == len(m2[0][0].body) + 20
            assert m2[0][1].seconds() > 0
    assert costs["real"] == costs["modeled"]
