"""Encryption in whole runs: every strategy runs with real BFV, bit-identical to modeled BFV; splitting
the crypto over worker processes changes nothing; summary.json says what the encryption protects."""

from __future__ import annotations

import numpy as np
import pytest

from crypto import SHEClient, SHEServer
from crypto.bfv import BFVPublic, BFVSecret
from sim.engine import Simulation
from sim.runner import run_scenario
from sim.scenario import scenario_from_dict

pytest.importorskip("tenseal")


def _scenario(strategy: str, encryption: dict) -> dict:
    return {
        "name": f"crypto-{strategy}",
        "data": {"dataset": "mnist5k", "partition": "iid", "max_test_samples": 200},
        "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 50, "lr": 0.05},
        "fleet": {"num_devices": 6, "groups": [{"device": "laptop", "link": "wifi", "share": 1.0}]},
        "strategy": {"name": strategy, "client_fraction": 0.5, "round_deadline_s": 5,
                     **({"buffer_size": 2} if strategy == "fedbuff" else {})},
        "injected_delay": {"fraction": 0.3, "max_rounds": 2},
        "encryption": encryption,
        "evaluation": {"interval_s": None, "every_versions": 1},
        "stop": {"max_time_s": 600, "max_versions": 3},
    }


def _run(scenario: dict) -> Simulation:
    sim = Simulation.from_scenario(scenario_from_dict(scenario))
    try:
        sim.run()
    finally:
        sim.workload.executor.close()
    return sim


@pytest.mark.parametrize("strategy", ["ppafl", "fedavg", "fedasync", "fedbuff"])
def test_every_strategy_runs_with_real_bfv_bit_identical_to_modeled(strategy):
    real = _run(_scenario(strategy, {"scheme": "bfv", "mode": "real"}))
    modeled = _run(_scenario(strategy, {"scheme": "bfv", "mode": "modeled"}))
    assert real.server.version == 3
    assert real.models.current.tobytes() == modeled.models.current.tobytes()
    assert real.recorder.metrics().equals(modeled.recorder.metrics())
    assert real.workload.upload_nbytes == modeled.workload.upload_nbytes > 3_000_000  # ~16 B per parameter


@pytest.mark.parametrize("scheme", ["she", "bfv"])
def test_crypto_split_over_workers_gives_the_same_run(scheme, monkeypatch):
    for cipher in (SHEClient, SHEServer, BFVSecret, BFVPublic):
        monkeypatch.setattr(cipher, "min_chunk", 1)  # split even this small model's few ciphertexts
    runs = [_run(_scenario("ppafl", {"scheme": scheme, "mode": "real", "workers": w})) for w in (1, 2)]
    assert runs[0].models.current.tobytes() == runs[1].models.current.tobytes()
    assert runs[0].recorder.metrics().equals(runs[1].recorder.metrics())
    assert runs[1].workload.aggregator.workers == 2


def test_summary_records_scheme_parameters_and_security(tmp_path):
    base = _scenario("fedasync", {"scheme": "bfv", "mode": "modeled"})
    bfv = run_scenario(scenario_from_dict({**base, "stop": {"max_time_s": 60, "max_versions": 1}}), tmp_path / "b")
    enc = bfv.summary["encryption"]
    assert (enc["scheme"], enc["mode"], enc["params"]["name"]) == ("bfv", "modeled", "compact")
    assert enc["params"]["poly_modulus_degree"] == 8192 and enc["params"]["plain_modulus"] % 16384 == 1
    assert enc["security"].startswith("128-bit")
    she = {**base, "encryption": {"scheme": "she", "mode": "real", "params": "paper"},
           "stop": {"max_time_s": 60, "max_versions": 1}, "time_only": True}
    enc = run_scenario(scenario_from_dict(she)).summary["encryption"]
    assert (enc["scheme"], enc["mode"], enc["params"]["k2"]) == ("she", "modeled", 160)  # time-only models crypto
    assert "ppafl attack" in enc["security"]
    off = run_scenario(scenario_from_dict({**she, "encryption": {"mode": "off"}})).summary["encryption"]
    assert off["scheme"] is None and off["security"].startswith("none")
    assert np.isfinite(bfv.summary["final_accuracy"])
