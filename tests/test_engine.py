"""The SimPy engine end to end: determinism, energy, batteries, speed, stop conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from devices.profiles import group_sizes
from sim.engine import Simulation
from sim.runner import run_scenario
from sim.scenario import scenario_from_dict

MIXED_FLEET = {
    "num_devices": 30,
    "groups": [
        {"device": "rpi4", "link": "wifi", "share": 0.4, "link_overrides": {"mean_up_s": 120, "mean_down_s": 30}},
        {"device": "smartphone", "link": "lte", "share": 0.4},
        {"device": "rpi3", "link": "ltem", "share": 0.2},
    ],
}


def _time_only(**over) -> dict:
    raw = {
        "time_only": True,
        "fleet": MIXED_FLEET,
        "failures": {"dropout_rate": 0.2, "unavailability": 0.1},
        "strategy": {"name": "ppafl", "client_fraction": 0.3, "round_deadline_s": 60},
        "evaluation": {"interval_s": None},
        "stop": {"max_time_s": 3000},
    }
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return raw


def _run(raw: dict):
    return run_scenario(scenario_from_dict(raw))


def test_group_sizes_follow_shares_and_sum_to_total():
    assert group_sizes([0.4, 0.4, 0.2], 30) == [12, 12, 6]
    assert sum(group_sizes([1 / 3, 1 / 3, 1 / 3], 10)) == 10


@pytest.mark.parametrize("strategy", ["ppafl", "fedavg", "fedasync", "fedbuff"])
def test_same_seed_gives_identical_event_logs(strategy):
    raw = _time_only(strategy={"name": strategy})
    a, b = _run(raw), _run(raw)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.devices, b.devices)
    assert a.summary["versions"] > 3
    c = _run({**raw, "seed": 1})
    assert not c.events.equals(a.events)


def test_outages_in_the_log_and_devices_table_agree():
    res = _run(_time_only())
    ev, dev = res.events, res.devices
    paused = ev[ev["event"] == "transfer_paused"].groupby("device").size()
    assert paused.sum() > 10  # some transfers waited through an outage
    counted = dev.set_index("device")["outages"]
    assert (counted.reindex(paused.index) == paused).all()
    assert counted.sum() == paused.sum()  # every device, including those that never met one
    assert (dev["outage_s"] > 0).sum() == len(paused)


def test_energy_is_never_negative_and_attributed_to_causes():
    raw = _time_only(fleet={**MIXED_FLEET, "groups": [{"device": "smartphone", "link": "lte", "share": 1.0}]})
    res = _run(raw)
    d = res.devices
    cause_cols = [c for c in d.columns if c.startswith("energy_") and c != "energy_j" and c != "energy_recharge_j"]
    assert (d[cause_cols] >= 0).all().all()
    np.testing.assert_allclose(d["energy_j"], d[cause_cols].sum(axis=1))
    assert d["energy_compute_j"].sum() > 0 and d["energy_tx_j"].sum() > 0


def test_device_with_empty_battery_never_uploads():
    tiny = {"capacity_j": 5.0, "initial_fraction": 1.0, "idle_power_w": 0.0, "recharge": None}
    raw = _time_only(
        fleet={"num_devices": 10, "groups": [{"device": "smartphone", "link": "lte", "share": 1.0, "battery": tiny}]},
        failures={"dropout_rate": 0.0, "unavailability": 0.0},
    )
    res = _run(raw)
    ev = res.events
    depleted = ev[ev["event"] == "battery_depleted"]
    assert len(depleted) > 0
    for dev, t in depleted.groupby("device")["time_s"].min().items():
        later = ev[(ev["device"] == dev) & (ev["time_s"] >= t)]
        assert not later["event"].isin(["upload_start", "upload_end"]).any()
        assert not (ev[(ev["device"] == dev)]["event"] == "battery_recharged").any()


def test_faster_profile_completes_more_updates_in_the_same_time():
    raw = _time_only(
        fleet={
            "num_devices": 20,
            "groups": [
                {"device": "laptop", "link": "wifi", "share": 0.5},
                {"device": "rpi3", "link": "wifi", "share": 0.5},
            ],
        },
        failures={"dropout_rate": 0.0, "unavailability": 0.0},
        strategy={"name": "fedasync", "client_fraction": 0.5},
        training={"model": "mnist_cnn", "epochs": 2},
    )
    per_class = _run(raw).devices.groupby("device_class")["updates_sent"].sum()
    assert per_class["laptop"] > 1.5 * per_class["rpi3"]


def test_stops_at_the_version_limit():
    res = _run(_time_only(stop={"max_time_s": 1e6, "max_versions": 7}))
    assert res.summary["versions"] == 7
    assert "7 global versions" in res.summary["stop_reason"]


def _tiny_learning(**over) -> dict:
    raw = {
        "name": "tiny",
        "data": {"dataset": "mnist5k", "partition": "iid", "max_test_samples": 300},
        "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 20, "lr": 0.05},
        "fleet": {"num_devices": 8, "groups": [{"device": "laptop", "link": "wifi", "share": 1.0}]},
        "strategy": {"name": "ppafl", "client_fraction": 0.5, "round_deadline_s": 30},
        "encryption": {"mode": "modeled"},
        "evaluation": {"interval_s": 3},
        "stop": {"max_time_s": 24},
    }
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return raw


def test_learning_run_improves_accuracy_and_is_reproducible():
    a = _run(_tiny_learning())
    m = a.metrics
    assert m["accuracy"].iloc[0] < 0.3
    assert m["accuracy"].iloc[-1] > 0.7
    assert m["time_s"].is_monotonic_increasing and m["version"].is_monotonic_increasing
    b = _run(_tiny_learning())
    pd.testing.assert_frame_equal(a.metrics, b.metrics)


def test_target_accuracy_stops_the_run():
    res = _run(_tiny_learning(stop={"max_time_s": 1000, "target_accuracy": 0.6}))
    assert res.summary["stop_reason"].startswith("reached target accuracy")
    assert res.metrics["accuracy"].iloc[-1] >= 0.6
    assert res.summary["simulated_time_s"] < 1000


def test_real_and_modeled_encryption_give_bit_identical_models():
    common = _tiny_learning(stop={"max_time_s": 8})
    real = Simulation.from_scenario(scenario_from_dict({**common, "encryption": {"mode": "real", "params": "high_throughput"}}))
    modeled = Simulation.from_scenario(
        scenario_from_dict({**common, "encryption": {"mode": "modeled", "params": "high_throughput"}})
    )
    real.run()
    modeled.run()
    assert real.server.version == modeled.server.version > 1
    np.testing.assert_array_equal(real.models.current, modeled.models.current)


def _count_evaluations(sim: Simulation) -> list:
    calls = []
    evaluate = sim.workload.evaluate
    sim.workload.evaluate = lambda params: calls.append(1) or evaluate(params)
    return calls


@pytest.mark.parametrize(
    ("evaluation", "stop", "versions_evaluated"),
    [
        ({"interval_s": None, "every_versions": None}, {"max_time_s": 24}, "end only"),
        ({"interval_s": None, "every_versions": 1}, {"max_time_s": 1000, "max_versions": 3}, [0, 1, 2, 3]),
        ({"interval_s": 1.5}, {"max_time_s": 24}, "every row"),
    ],
)
def test_each_global_version_is_evaluated_once(evaluation, stop, versions_evaluated):
    sim = Simulation.from_scenario(scenario_from_dict(_tiny_learning(evaluation=evaluation, stop=stop)))
    calls = _count_evaluations(sim)
    sim.run()
    m = sim.recorder.metrics()
    assert len(calls) == m["version"].nunique()  # a row for a version already evaluated repeats its numbers
    if versions_evaluated == "end only":
        assert len(m) == 1 and m["time_s"].iloc[0] == 24 and m["version"].iloc[0] > 0
    elif versions_evaluated == "every row":
        assert len(m) > len(calls)  # more rows (every 1.5 s) than versions
        assert (m.groupby("version")["accuracy"].nunique() == 1).all()
    else:
        assert list(m["version"]) == versions_evaluated


def test_evaluation_runs_with_one_torch_thread(monkeypatch):
    import torch

    import fl.training

    sim = Simulation.from_scenario(scenario_from_dict(_tiny_learning(stop={"max_time_s": 4})))
    seen, inner = [], fl.training.evaluate
    monkeypatch.setattr("fl.training.evaluate", lambda *a, **k: seen.append(torch.get_num_threads()) or inner(*a, **k))
    torch.set_num_threads(2)  # what torch would use on 2 cores
    try:
        sim.run()
    finally:
        torch.set_num_threads(1)
    assert seen and set(seen) == {1}


def test_the_event_log_is_written_as_csv_and_parquet_with_the_same_rows(tmp_path):
    res = run_scenario(scenario_from_dict(_time_only(stop={"max_time_s": 600})), tmp_path / "run")
    csv = pd.read_csv(tmp_path / "run" / "events.csv")
    parquet = pd.read_parquet(tmp_path / "run" / "events.parquet")
    assert len(csv) == len(parquet) == len(res.events) == res.summary["events"] > 100
    assert list(csv.columns) == list(parquet.columns) == list(res.events.columns)
    np.testing.assert_array_equal(csv["time_s"], res.events["time_s"])
    assert (csv["event"] == parquet["event"]).all() and (parquet["device"] == res.events["device"]).all()
    assert parquet["staleness"].dtype == "Int64"  # typed: missing values stay missing, numbers stay integers
