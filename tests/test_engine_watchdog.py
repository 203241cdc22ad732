"""The watchdog: runs without simulated progress, over their event or memory budget, stop with a clear error;
the cases that used to loop or grow without bound end correctly."""

from __future__ import annotations

import numpy as np
import pytest

from devices import Interruption, InterruptionSource, Segment
from sim.assembly import build_workload, fleet_from_scenario, server_from_scenario
from sim.engine import Monitor, Simulation
from sim.engine.watchdog import BudgetExceeded, RunBudget
from sim.runner import run_scenario
from sim.runner.preflight import NoUpdatePossibleError, ResourceLimitError
from sim.scenario import scenario_from_dict


def _time_only(**over) -> dict:
    raw = {
        "time_only": True,
        "fleet": {"num_devices": 20},
        "strategy": {"name": "fedavg", "client_fraction": 0.5, "round_deadline_s": 30},
        "evaluation": {"interval_s": None},
        "stop": {"max_time_s": 3600},
    }
    raw.update(over)
    return raw


class FailsAtOnce(InterruptionSource):
    """Every job fails the instant it starts: rounds open and close without time passing."""

    def first_interruption(self, segment: Segment) -> Interruption | None:
        return Interruption(segment.start, "crashed")


def test_a_run_that_loops_at_one_instant_is_stopped_naming_the_loop():
    scenario = scenario_from_dict(_time_only())
    seeds = np.random.SeedSequence(0).spawn(3)
    fleet = fleet_from_scenario(scenario, seeds[0], source_factories=[lambda _dev: FailsAtOnce()])
    workload = build_workload(scenario, len(fleet), 0)
    server = server_from_scenario(scenario, len(fleet), workload.aggregator, np.random.default_rng(seeds[1]))
    sim = Simulation(fleet, workload, server, Monitor(3600.0), budget=RunBudget(max_steps_at_one_time=50_000))
    with pytest.raises(BudgetExceeded, match="no simulated progress") as err:
        sim.run()
    assert err.value.cause == "no_progress"
    assert "t = 0 s" in str(err.value) and "round_open" in str(err.value) and "crashed" in str(err.value)
    assert sim.now == 0.0 and sim.recorder.num_events < 100_000


def test_event_and_memory_budgets_stop_a_run_with_the_cause_and_the_fix():
    scenario = scenario_from_dict(_time_only(stop={"max_time_s": 1e9}))  # the longest horizon a scenario may ask for
    with pytest.raises(ResourceLimitError, match=r"event log \(~.* events\).*stop\.max_time_s"):
        run_scenario(scenario)  # refused up front: it would log ~1e9 events
    unlimited = 1 << 62
    with pytest.raises(BudgetExceeded, match=r"over the event budget of 20,000 .*stop\.max_time_s") as err:
        run_scenario(scenario, memory_limit=unlimited, budget=RunBudget(max_events=20_000))
    assert err.value.cause == "events"
    with pytest.raises(BudgetExceeded, match=r"over the budget of 0 MiB.*--memory-limit-gb") as err:
        run_scenario(scenario, memory_limit=unlimited, budget=RunBudget(max_memory_bytes=1))
    assert err.value.cause == "memory"
    with pytest.raises(ValueError, match="whole number >= 1"):
        RunBudget(max_events=0)


def test_a_huge_finite_horizon_neither_overflows_nor_hangs():
    res = run_scenario(scenario_from_dict(_time_only(stop={"max_time_s": 1e9, "max_versions": 3},
                                                     failures={"dropout_rate": 0.5})), progress=True)
    assert res.summary["versions"] == 3 and res.summary["simulated_time_s"] < 1e4


@pytest.mark.parametrize("strategy", ["fedavg", "ppafl", "fedasync", "fedbuff"])
@pytest.mark.parametrize("max_restarts", [3, None])
def test_two_lora_pis_that_restart_transfers_end_in_a_correct_result(strategy, max_restarts):
    link = {"on_outage": "restart"} | ({"max_restarts": max_restarts} if max_restarts is not None else {})
    raw = _time_only(fleet={"num_devices": 2, "groups": [{"device": "rpi4", "link": "lora", "share": 1.0,
                                                          "link_overrides": link}]},
                     strategy={"name": strategy})
    # LoRa needs more than the hour to move one update: refused up front, naming the link and the fix
    with pytest.raises(NoUpdatePossibleError, match=r"rpi4/lora.*longer stop\.max_time_s"):
        run_scenario(scenario_from_dict(raw))
    # Given a day, the engine simulates the restarts: every attempt takes simulated time, nothing loops at t = 0
    res = run_scenario(scenario_from_dict(raw | {"stop": {"max_time_s": 86_400.0}}))
    assert res.summary["stop_reason"] == "reached the time limit 86400 s"
    assert res.summary["events"] < 5_000 and res.events["time_s"].max() <= 86_400.0
    for _, ev in res.events[res.events["device"] >= 0].groupby("device"):
        starts = ev.loc[ev["event"].isin(["download_start", "upload_start"]), "time_s"].to_numpy()
        assert np.all(np.diff(starts) > 0)


def test_a_lora_fleet_with_real_she_over_48_hours_stays_small():
    raw = {
        "fleet": {"num_devices": 5, "groups": [{"device": "rpi4", "link": "lora", "share": 1.0,
                                                "link_overrides": {"on_outage": "restart"}}]},
        "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 50},
        "data": {"max_test_samples": 200},
        "strategy": {"name": "fedasync", "client_fraction": 0.4},
        "encryption": {"mode": "real", "params": "high_throughput"},
        "evaluation": {"interval_s": None},
        "stop": {"max_time_s": 48 * 3600},
    }
    res = run_scenario(scenario_from_dict(raw), budget=RunBudget(max_memory_bytes=4 * 2**30))
    assert res.summary["simulated_time_s"] == 48 * 3600 and res.summary["versions"] > 5
    assert res.summary["events"] < 5000  # events grow with the jobs done, not with the clock
