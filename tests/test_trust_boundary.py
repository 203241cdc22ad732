"""The trust boundary in a whole run: nothing on the client side is reachable from the server.

The server object graph is walked with no exclusions while the run is in progress (rounds
open, updates received and not yet fetched, agents stored) and after it ends, for every
encryption scheme (real SHE and real BFV) and every local executor. For BFV the server's
TenSEAL context must hold no key at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto import BFVPublic, EncryptedVector
from sim.engine import Simulation
from sim.scenario import scenario_from_dict

CLIENT_SIDE = {
    "SecretKey", "SHEClient", "BFVSecret", "KeyHolder", "ClientCodec", "GlobalModels", "Job", "ClientUpload",
    "ClientWorkload", "Simulation", "Workload", "Device", "Environment", "Fleet", "DeviceJob", "Monitor", "Recorder",
    "Watchdog",
    "SequentialExecutor", "BatchedExecutor", "ProcessExecutor", "RayExecutor",
}


def _scenario(encryption: dict) -> dict:
    return {
        "name": "boundary",
        "data": {"dataset": "mnist5k", "partition": "shards", "max_test_samples": 100},
        "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 50, "lr": 0.05},
        "fleet": {"num_devices": 6, "groups": [{"device": "laptop", "link": "wifi", "share": 1.0}]},
        "strategy": {"name": "ppafl", "client_fraction": 0.5, "round_deadline_s": 2},
        "injected_delay": {"fraction": 0.5, "max_rounds": 3},
        "encryption": encryption,
        "evaluation": {"interval_s": None},
        "stop": {"max_time_s": 60, "max_versions": 5},
    }


def _violations(objects: list) -> list[str]:
    found = [type(o).__name__ for o in objects if type(o).__name__ in CLIENT_SIDE]
    found += [f"float array {o.shape}" for o in objects if isinstance(o, np.ndarray) and o.dtype.kind == "f"]
    found += ["a TenSEAL context with a secret key" for o in objects if isinstance(o, BFVPublic)
              and o.context.has_secret_key()]
    return found


@pytest.mark.parametrize("executor", ["sequential", "batched", "process"])
@pytest.mark.parametrize(
    "encryption",
    [{"scheme": "she", "mode": "real", "params": "high_throughput"}, {"scheme": "bfv", "mode": "real"}],
    ids=["she", "bfv"],
)
def test_server_reaches_nothing_of_the_client_side(executor, encryption, reachable):
    sim = Simulation.from_scenario(scenario_from_dict(_scenario(encryption)), executor=executor)
    snapshots = []

    def inspect():
        while True:
            yield sim.env.timeout(0.37)
            snapshots.append((sim.now, reachable(sim.server)))

    sim.env.process(inspect())
    try:
        sim.run()
    finally:
        sim.workload.executor.close()
    snapshots.append((sim.now, reachable(sim.server)))
    assert sim.server.version == 5 and sim.server.stats["agents_reused"] > 0
    assert len(snapshots) > 5
    assert any(isinstance(o, EncryptedVector) for _, objects in snapshots for o in objects)
    if encryption["scheme"] == "bfv":  # the walk reached the server's context (and found no key in it)
        assert any(isinstance(o, BFVPublic) for _, objects in snapshots for o in objects)
    for t, objects in snapshots:
        assert _violations(objects) == [], f"at t={t:.2f} s the server reaches {sorted(set(_violations(objects)))}"
