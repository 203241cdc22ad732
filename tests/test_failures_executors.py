"""Same scenario and seed, same numbers on every executor, with per-job dropout and churn cutting and pausing jobs
(the failure sources live in the engine and draw from per-device streams: executors only compute payloads)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from harness import simulate

from fl.executors import EXECUTORS, BatchedExecutor
from sim.engine import Simulation

SCENARIO = {
    "seed": 5,
    "data": {"dataset": "mnist5k", "partition": "iid", "max_test_samples": 500},
    "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 20, "lr": 0.05},
    "fleet": {"num_devices": 10, "groups": [{"device": "rpi4", "link": "wifi", "share": 1.0}]},
    "failures": {"job_dropout": 0.3, "job_dropout_offline_s": 5.0,
                 "churn": {"enabled": True, "mean_on_s": 6.0, "mean_off_s": 4.0, "on_offline": "pause",
                           "grace_s": 4.0}},
    "strategy": {"name": "fedbuff", "client_fraction": 0.5, "buffer_size": 2},
    "encryption": {"mode": "modeled"},
    "evaluation": {"interval_s": None, "every_versions": 1},
    "stop": {"max_versions": 4, "max_time_s": 3600},
}


def _simulate(executor: str) -> Simulation:
    return simulate(SCENARIO, executor)


@pytest.fixture(scope="module")
def reference() -> Simulation:
    return _simulate("sequential")


def test_the_reference_run_meets_every_kind_of_job_failure(reference):
    names = set(reference.recorder.events()["event"])
    assert {"job_dropout", "went_offline"} <= names and names & {"came_online", "offline_too_long"}
    assert reference.server.version == 4


@pytest.mark.slow
def test_the_process_pool_gives_the_same_numbers(reference):
    sim = _simulate("process")
    np.testing.assert_array_equal(sim.models.current, reference.models.current)
    pd.testing.assert_frame_equal(sim.recorder.events(), reference.recorder.events())
    assert sim.recorder.metrics().equals(reference.recorder.metrics())


def test_the_batched_executor_gives_the_same_events_and_models_within_float_tolerance(reference, monkeypatch):
    monkeypatch.setitem(EXECUTORS, "batched_forced", lambda w, _setup=None: BatchedExecutor(w, device="cpu", force=True))
    sim = _simulate("batched_forced")
    assert sim.workload.executor.batching
    pd.testing.assert_frame_equal(sim.recorder.events(), reference.recorder.events())  # timing never depends on it
    np.testing.assert_allclose(sim.models.current, reference.models.current, atol=2e-3)


@pytest.mark.slow
def test_the_ray_executor_gives_the_same_numbers(reference):
    pytest.importorskip("ray")
    sim = _simulate("ray")
    np.testing.assert_array_equal(sim.models.current, reference.models.current)
    pd.testing.assert_frame_equal(sim.recorder.events(), reference.recorder.events())
