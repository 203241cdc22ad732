"""The server on a scripted fleet: agent reuse, encrypted aggregation, no plaintext on the server."""

from __future__ import annotations

import numpy as np
import pytest

from crypto import EncryptedVector
from fl.global_model import GlobalModels
from fl.secure import integer_weights, make_codec
from fl.server import PayloadRef, Server
from fl.strategies import PPAFL, FedAvg
from sim.testing import GivenUpdates, ScriptedNetwork

N_PARAMS = 64


def _setup(strategy, mode="real", num_clients=2, per_round=2, **server_options):
    codec, aggregator = make_codec(mode, N_PARAMS, max_clients=16, params="high_throughput", seed=7)
    models = GlobalModels(codec, np.zeros(N_PARAMS, np.float32))
    net = ScriptedNetwork(models, GivenUpdates(codec))
    server = Server(strategy, aggregator, num_clients, per_round, 60.0, 8, np.random.default_rng(0), **server_options)
    return codec, aggregator, models, net, server


def _aggregate(codec, aggregator, vecs, weights):
    return aggregator.weighted_sum([codec.encrypt(v) for v in vecs], weights)


def test_ppafl_late_update_and_agent_reuse_exact_weights():
    rng = np.random.default_rng(1)
    u = {k: rng.uniform(-1, 1, N_PARAMS).astype(np.float32) for k in ("a0", "a1", "a2", "a3", "b0")}
    codec, aggregator, models, net, server = _setup(PPAFL(delay_threshold=6))
    server.start(net)  # round 1 at version 0 invites both clients
    assert sorted(c for c, _ in net.invited) == [0, 1]

    def arrive(client, base, key):
        server.receive(net.update(client, base, u[key]), net)

    arrive(0, 0, "a0")
    net.fire_deadline()  # client 1 is late: no agent yet, v1 = a0
    assert models.version == 1
    np.testing.assert_array_equal(models.current, models.get(1))
    assert np.max(np.abs(models.current - u["a0"])) <= 2**-16

    arrive(0, 1, "a1")  # round 2 had only client 0: closes at once, v2 = a1
    assert models.version == 2
    arrive(1, 0, "b0")  # 2 rounds late: weight 2^-2
    arrive(0, 2, "a2")  # closes round 3
    assert models.version == 3
    w = integer_weights([100.0, 25.0], 8)
    assert w == [255, 64]
    expected = codec.decrypt_average(_aggregate(codec, aggregator, [u["a2"], u["b0"]], w))
    np.testing.assert_array_equal(models.current, expected.astype(np.float32))

    # Round 4 invites both; only client 0 answers: client 1 is represented by its agent b0 (s = 3).
    net.invited.clear()
    net.now = 10.0
    arrive(0, 3, "a3")
    net.fire_deadline()
    assert models.version == 4
    w = integer_weights([100.0, 100.0 * 2**-3], 8)
    expected = codec.decrypt_average(_aggregate(codec, aggregator, [u["a3"], u["b0"]], w))
    np.testing.assert_array_equal(models.current, expected.astype(np.float32))
    assert server.stats["agents_reused"] == 1


def _assert_holds_no_secrets(objects: list) -> None:
    floats = [o for o in objects if isinstance(o, np.ndarray) and o.dtype.kind == "f"]
    assert floats == [], "the server reaches a plaintext float array"
    client_side = {"SecretKey", "KeyHolder", "ClientCodec", "GlobalModels", "Job", "ClientUpload", "GivenUpdates"}
    assert not [type(o).__name__ for o in objects if type(o).__name__ in client_side]


def test_server_holds_only_ciphertexts_and_handles_mid_round_and_after(reachable):
    rng = np.random.default_rng(2)
    _codec, _aggregator, models, net, server = _setup(PPAFL(delay_threshold=6), num_clients=3, per_round=3)
    server.start(net)
    seen_mid_round = []
    for step in range(4):
        for c in range(3):
            if c == 2 and step > 0:
                continue  # client 2 stays delayed: its agent is kept as a ciphertext
            base = models.version
            server.receive(net.update(c, base, rng.normal(0, 0.5, N_PARAMS).astype(np.float32)), net)
            seen_mid_round.append(reachable(server))  # updates received, round still open
        if server.in_flight:
            net.fire_deadline()
    assert models.version >= 3 and server.stats["agents_reused"] >= 1
    everything = reachable(server)
    assert any(isinstance(o, EncryptedVector) for o in everything)  # the stored agent
    assert any(isinstance(o, PayloadRef) for objs in seen_mid_round for o in objs)  # unfetched updates
    for objects in [*seen_mid_round, everything]:
        _assert_holds_no_secrets(objects)


@pytest.mark.parametrize("mode", ["real", "modeled"])
def test_encrypted_aggregate_equals_plaintext_within_fixed_point_step(mode):
    rng = np.random.default_rng(3)
    vecs = [rng.uniform(-2, 2, N_PARAMS).astype(np.float32) for _ in range(5)]
    weights = [3, 255, 17, 1, 100]
    plain_codec, plain_agg = make_codec("off", N_PARAMS, max_clients=16)
    codec, agg = make_codec(mode, N_PARAMS, max_clients=16, params="high_throughput", seed=11)
    plain = plain_codec.decrypt_average(plain_agg.weighted_sum([plain_codec.encrypt(v) for v in vecs], weights))
    enc = codec.decrypt_average(agg.weighted_sum([codec.encrypt(v) for v in vecs], weights))
    assert np.max(np.abs(plain - enc)) <= 2**-16


def test_fedavg_aggregate_of_one_is_counted():
    _codec, _aggregator, _models, net, server = _setup(FedAvg(), num_clients=2, per_round=2)
    server.start(net)
    server.receive(net.update(0, 0, np.ones(N_PARAMS, np.float32)), net)
    net.fire_deadline()
    assert server.stats["aggregates_of_one"] == 1


def _delayed(net: ScriptedNetwork) -> dict[int, int]:
    return {device: info["rounds"] for event, device, info in net.events if event == "delay_injected"}


def test_reference_agents_are_retrained_from_the_delay_start_model_with_lag_plus_one_weights():
    """ppafl_reference's rounds on three slots, one delayed two rounds (batch model), step by step."""
    from sim.scenario import scenario_from_dict

    strategy = scenario_from_dict({"strategy": {"name": "ppafl_reference"}}).strategy.build()
    codec, aggregator, models, net, server = _setup(
        strategy, num_clients=3, per_round=3, participation="slots", injected_model="batch",
        injected_fraction=1 / 3, injected_min_rounds=2, injected_max_rounds=2,
    )
    rng = np.random.default_rng(5)
    vec = {}

    def arrive(client: int) -> None:
        vec[client, models.version] = rng.uniform(-1, 1, N_PARAMS).astype(np.float32)
        server.receive(net.update(client, models.version, vec[client, models.version]), net)

    def expect(contribs: list[tuple[np.ndarray, float]]) -> None:
        w = integer_weights([wt for _, wt in contribs], 8)
        want = codec.decrypt_average(_aggregate(codec, aggregator, [v for v, _ in contribs], w))
        np.testing.assert_array_equal(models.current, want.astype(np.float32))

    server.start(net)
    for c in range(3):
        arrive(c)  # round 1: no delays in the first round (as the reference code); round 2 opens
    (d,) = _delayed(net)  # round 2 (on version 1): one of the three slots is delayed by 2 rounds
    assert models.version == 1 and [i["version"] for e, _, i in net.events if e == "delay_injected"] == [1]
    for c in range(3):
        arrive(c)
    others = [c for c in range(3) if c != d]
    assert models.version == 2 and net.agent_calls == [(d, 1)]  # retrained from version 1, where its delay began
    expect([(vec[others[0], 1], 1.0), (vec[others[1], 1], 1.0), (net.agent_vectors[0], 0.5)])  # s = 0 + 1
    assert sorted(c for c, _ in net.invited[-2:]) == others  # slots: the delayed job keeps its slot
    for c in others:
        arrive(c)  # round 3 (version 2): retrained again from version 1, s = 2
    assert models.version == 3 and net.agent_calls == [(d, 1), (d, 1)]
    expect([(vec[others[0], 2], 1.0), (vec[others[1], 2], 1.0), (net.agent_vectors[1], 0.25)])
    net.fire_due()  # round 4 (version 3): the held-back update arrives, 2 versions late: s = 3
    for c in others:
        arrive(c)
    assert models.version == 4 and len(net.agent_calls) == 2
    expect([(vec[d, 1], 0.125), (vec[others[0], 3], 1.0), (vec[others[1], 3], 1.0)])
    assert server._pending == {}  # no agent payload left behind
    assert server.stats["agents_reused"] == 2 and server.stats["updates_aggregated"] == 10


@pytest.mark.parametrize("participation, invited_in_round_2", [("fresh", 2), ("slots", 0)])
def test_participation_fresh_invites_beside_delayed_jobs_slots_keeps_their_slots(participation, invited_in_round_2):
    _codec, _agg, _models, net, server = _setup(
        PPAFL(), num_clients=6, per_round=2, participation=participation,
        injected_fraction=1.0, injected_min_rounds=3, injected_max_rounds=3,
    )
    server.start(net)  # round 1 invites two clients; every job is held back three rounds
    first = [c for c, _ in net.invited]
    for c in first:
        server.receive(net.update(c, 0, np.zeros(N_PARAMS, np.float32)), net)  # held: answered, round closes
    assert len(first) == 2 and server.version == 0
    assert len(net.invited) - 2 == invited_in_round_2
