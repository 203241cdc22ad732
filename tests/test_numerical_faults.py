"""Diverged clients: a NaN/inf update is detected, logged and left out of aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from fl.jobs import ClientWorkload
from fl.secure import make_codec
from fl.training import LocalResult, TrainConfig
from sim.runner import run_scenario
from sim.scenario import scenario_from_dict

SMALL = {
    "name": "faults",
    "seed": 2,
    "data": {"dataset": "mnist5k", "max_test_samples": 200},
    "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 50, "lr": 0.05},
    "fleet": {"num_devices": 4},
    "strategy": {"name": "fedavg", "client_fraction": 1.0, "round_deadline_s": 60},
    "encryption": {"mode": "modeled"},
    "evaluation": {"interval_s": 10},
    "stop": {"max_time_s": 30},
}


def _workload(mode: str) -> ClientWorkload:
    codec, _ = make_codec(mode, num_values=3, max_clients=4)
    return ClientWorkload("mnist_2nn", None, None, [], TrainConfig(), codec)


@pytest.mark.parametrize("mode", ["off", "modeled"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_update_is_not_sent(mode, bad):
    upload = _workload(mode).seal(np.array([0.1, bad, 0.2], dtype=np.float32), 7, float("nan"))
    assert upload.payload is None and upload.num_samples == 7
    assert upload.problem == "non-finite parameters (local training diverged)"


def test_update_beyond_the_encoding_range_is_not_sent():
    upload = _workload("modeled").seal(np.array([0.0, 1e6, 0.0], dtype=np.float32), 7, 0.5)
    assert upload.payload is None and upload.problem.startswith("not encodable")


def test_finite_update_is_sealed():
    upload = _workload("modeled").seal(np.array([0.0, 1.0, -1.0], dtype=np.float32), 7, 0.5)
    assert upload.payload is not None and upload.problem is None


def test_a_diverged_client_is_excluded_and_the_model_still_learns(monkeypatch):
    """Client 0's training always diverges; the others' updates build the global model."""
    original = ClientWorkload.train_cached
    diverged = []

    def train_cached(self, task, base):
        res = original(self, task, base)
        if task.client != 0:
            return res
        diverged.append(task)
        return LocalResult(np.full_like(res.params, np.nan), res.num_samples, float("nan"))

    monkeypatch.setattr(ClientWorkload, "train_cached", train_cached)
    result = run_scenario(scenario_from_dict(SMALL))
    events = result.events
    rejected = events[events["event"] == "update_rejected"]
    aggregated_from = set(events[events["event"] == "update_received"]["device"]) - {0}
    assert len(rejected) > 0 and set(rejected["device"]) == {0}
    assert (rejected["reason"] == "non-finite parameters (local training diverged)").all()
    assert result.summary["server"]["updates_rejected"] == len(rejected) == len(diverged)
    assert aggregated_from  # the healthy clients did contribute
    assert np.isfinite(result.metrics["loss"]).all()
    assert result.summary["versions"] > 0 and result.summary["final_accuracy"] > 0.6


def test_a_huge_learning_rate_diverges_without_poisoning_the_global_model():
    """lr = 10: local SGD blows up to NaN; every such update is rejected, the global model stays usable."""
    scenario = scenario_from_dict({**SMALL, "training": {**SMALL["training"], "lr": 10}})
    result = run_scenario(scenario)
    stats = result.summary["server"]
    assert stats["updates_rejected"] > 0
    assert stats.get("updates_aggregated", 0) + stats["updates_rejected"] <= stats["updates_received"]
    assert np.isfinite(result.metrics["loss"]).all()
    rejected = result.events[result.events["event"] == "update_rejected"]
    assert len(rejected) == stats["updates_rejected"]


def test_a_run_whose_training_diverges_every_time_stops_and_says_so():
    """Class: with every update non-finite no version is ever made, each round retrains from the same model
    and fails again, and a run asked for many versions ran until its event budget (the paper's -lr 10)."""
    from sim.engine import DIVERGED_AFTER

    raw = {**SMALL, "training": {**SMALL["training"], "lr": 10}, "evaluation": {"interval_s": None},
           "stop": {"max_time_s": 1e9, "max_versions": 1000}}
    result = run_scenario(scenario_from_dict(raw))
    s = result.summary
    assert s["versions"] == 0 and s["stop_reason"].startswith("training diverged") and "lower training.lr" in s[
        "stop_reason"]
    # stopped within the round in which the count reached its limit (4 clients a round)
    assert DIVERGED_AFTER <= s["server"]["updates_rejected"] < DIVERGED_AFTER + 4
    assert s["simulated_time_s"] < 1e6
