"""The server on a scripted fleet: agent reuse, encrypted aggregation, no plaintext on the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from crypto import EncryptedVector
from fl.global_model import GlobalModels
from fl.jobs import ClientUpload, Job, TrainingTask
from fl.secure import integer_weights, make_codec
from fl.server import Server, UpdateArrived
from fl.strategies import PPAFL, FedAvg

N_PARAMS = 64


@dataclass
class ScriptedFleet:
    """A fleet whose clients are always available and whose timers fire only when told."""

    num_clients: int
    now: float = 0.0
    invited: list[tuple[int, int]] = field(default_factory=list)
    timers: list[tuple[float, Callable[[], None]]] = field(default_factory=list)
    events: list[tuple[str, int, dict]] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)

    def available(self, client: int) -> bool:
        return True

    def invite(self, client: int, version: int) -> bool:
        self.invited.append((client, version))
        return True

    def call_at(self, time: float, fn: Callable[[], None]) -> None:
        self.timers.append((time, fn))

    def log(self, event: str, device: int = -1, **info) -> None:
        self.events.append((event, device, info))

    def version_created(self, version: int) -> None:
        self.versions.append(version)

    def fire_deadline(self) -> None:
        """Fire the most recent round deadline."""
        _, fn = self.timers.pop()
        fn()


class GivenUpdates:
    """An executor whose clients 'train' to vectors the test chose, sealed by the real codec."""

    name = "given"

    def __init__(self, codec) -> None:
        self.codec, self.vectors = codec, {}

    def submit(self, client: int, version: int, vec: np.ndarray) -> Job:
        self.vectors[(client, version)] = vec
        return Job(self, TrainingTask(client, version, 0), np.zeros(N_PARAMS, np.float32))

    def resolve(self, jobs: list[Job]) -> None:
        for j in jobs:
            vec = self.vectors[(j.task.client, j.task.base_version)]
            j.set_result(ClientUpload(self.codec.encrypt(vec), 100, 0.0))

    def close(self) -> None:
        pass


def _setup(strategy, mode="real", num_clients=2, per_round=2):
    codec, aggregator = make_codec(mode, N_PARAMS, max_clients=16, params="high_throughput", seed=7)
    models = GlobalModels(codec, np.zeros(N_PARAMS, np.float32))
    fleet = ScriptedFleet(num_clients)
    server = Server(strategy, aggregator, models.apply, fleet, per_round, 60.0, 8, np.random.default_rng(0))
    return codec, aggregator, models, fleet, server, GivenUpdates(codec)


def _aggregate(codec, aggregator, vecs, weights):
    return aggregator.weighted_sum([codec.encrypt(v) for v in vecs], weights)


def test_ppafl_late_update_and_agent_reuse_exact_weights():
    rng = np.random.default_rng(1)
    u = {k: rng.uniform(-1, 1, N_PARAMS).astype(np.float32) for k in ("a0", "a1", "a2", "a3", "b0")}
    codec, aggregator, models, fleet, server, ex = _setup(PPAFL(delay_threshold=6))
    server.start()  # round 1 at version 0 invites both clients
    assert sorted(c for c, _ in fleet.invited) == [0, 1]

    def arrive(client, base, key):
        server.receive(UpdateArrived(client, base, 100, fleet.now, ex.submit(client, base, u[key])))

    arrive(0, 0, "a0")
    fleet.fire_deadline()  # client 1 is late: no agent yet, v1 = a0
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
    fleet.invited.clear()
    fleet.now = 10.0
    arrive(0, 3, "a3")
    fleet.fire_deadline()
    assert models.version == 4
    w = integer_weights([100.0, 100.0 * 2**-3], 8)
    expected = codec.decrypt_average(_aggregate(codec, aggregator, [u["a3"], u["b0"]], w))
    np.testing.assert_array_equal(models.current, expected.astype(np.float32))
    assert server.stats["agents_reused"] == 1


def _walk(obj, seen=None):
    """Every object reachable from `obj` through attributes and containers (not through functions)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or callable(obj) and not hasattr(obj, "__dict__"):
        return
    seen.add(id(obj))
    yield obj
    children = []
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    for child in children:
        if callable(child) and not hasattr(child, "__dict__"):
            continue  # bound methods / closures are message channels, not state
        if hasattr(child, "__self__"):
            continue
        yield from _walk(child, seen)


def test_server_holds_only_ciphertexts_when_encryption_is_on():
    rng = np.random.default_rng(2)
    _codec, _aggregator, models, fleet, server, ex = _setup(PPAFL(delay_threshold=6), num_clients=3, per_round=3)
    server.start()
    for step in range(4):
        for c in range(3):
            if c == 2 and step > 0:
                continue  # client 2 stays delayed: its agent is kept as a ciphertext
            base = models.version
            server.receive(UpdateArrived(c, base, 100, fleet.now, ex.submit(c, base, rng.normal(0, 0.5, N_PARAMS).astype(np.float32))))
        fleet.fire_deadline() if server.in_flight else None
    assert models.version >= 3 and server.stats["agents_reused"] >= 1
    held = list(_walk(vars(server)["_agents"])) + list(_walk(vars(server)["_pending"]))
    everything = list(_walk({k: v for k, v in vars(server).items() if k not in ("fleet", "_publish")}))
    assert any(isinstance(o, EncryptedVector) for o in held)
    floats = [o for o in everything if isinstance(o, np.ndarray) and o.dtype.kind == "f"]
    assert floats == [], "the server object holds a plaintext float array"
    uploads = [o for o in everything if isinstance(o, ClientUpload)]
    assert uploads and all(isinstance(u.payload, EncryptedVector) for u in uploads)
    assert not any(type(o).__name__ in ("SecretKey", "KeyHolder", "ClientCodec") for o in everything)


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
    _codec, _aggregator, _models, fleet, server, ex = _setup(FedAvg(), num_clients=2, per_round=2)
    server.start()
    server.receive(UpdateArrived(0, 0, 100, 0.0, ex.submit(0, 0, np.ones(N_PARAMS, np.float32))))
    fleet.fire_deadline()
    assert server.stats["aggregates_of_one"] == 1
