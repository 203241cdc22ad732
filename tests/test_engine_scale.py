"""A larger time-only fleet: the engine completes and its counts add up (speed: benchmarks/engine_bench.py)."""

from __future__ import annotations

import pytest

from sim.engine import Simulation
from sim.scenario import scenario_from_dict

DEVICES, VERSIONS = 2_000, 5


@pytest.fixture(scope="module")
def sim() -> Simulation:
    scenario = scenario_from_dict(
        {
            "time_only": True,
            "fleet": {"num_devices": DEVICES},
            "strategy": {"name": "fedavg", "client_fraction": 0.1},
            "encryption": {"mode": "modeled"},
            "evaluation": {"interval_s": None},
            "stop": {"max_versions": VERSIONS, "max_time_s": 1e7},
        }
    )
    simulation = Simulation.from_scenario(scenario)
    simulation.run()
    return simulation


def test_time_only_fleet_reaches_its_versions(sim):
    assert sim.stop_reason == f"reached {VERSIONS} global versions"
    assert sim.server.version == VERSIONS
    assert sim.workload.executor is None and sim.models is None  # no gradient work at all


def test_every_job_is_counted_once(sim):
    jobs = int(sim.fleet.counter("jobs").sum())
    sent = int(sim.fleet.counter("updates_sent").sum())
    failed = int(sim.fleet.counter("jobs_failed").sum())
    stats = sim.server.stats
    # FedAvg invites 10% of the fleet per round; the round opened by the last version is still running
    assert jobs == (VERSIONS + 1) * DEVICES // 10
    assert sent + failed + len(sim.server.in_flight) == jobs
    assert stats["updates_received"] == sent
    assert stats["updates_aggregated"] + stats["updates_discarded"] == sent
    events = sim.recorder.events()
    assert (events["event"] == "upload_end").sum() == sent
    assert len(sim.fleet.touched) <= jobs < DEVICES  # only invited devices were ever built
    assert (events["event"] == "aggregated").sum() == VERSIONS
