"""Resource limits: a scenario that would not fit the machine is refused before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest

import sim.runner.run
from sim.cli import main
from sim.runner import run_scenario
from sim.runner.preflight import ResourceLimitError, check_resources, estimate_resources, machine_memory_bytes
from sim.scenario import ScenarioError, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
HUGE = {
    "name": "huge",
    "data": {"dataset": "mnist"},  # 60,000 training samples: enough for 5,000 clients
    "training": {"model": "mnist_cnn"},
    "fleet": {"num_devices": 5000},
    "strategy": {"name": "ppafl"},
    "encryption": {"mode": "real", "params": "paper"},
}


def test_a_scenario_beyond_the_machine_is_refused_with_estimate_and_limit():
    with pytest.raises(ResourceLimitError) as err:
        check_resources(scenario_from_dict(HUGE))
    msg = str(err.value)
    assert "scenario 'huge' needs an estimated" in msg and "GiB" in msg
    assert "updates held by the server (" in msg and "this machine's memory" in msg
    assert "time_only: true" in msg  # says how to get out
    assert isinstance(err.value, ScenarioError)


def test_the_estimate_follows_the_encryption_mode_and_the_fleet():
    def updates(**changes):
        sc = scenario_from_dict({**HUGE, "fleet": {"num_devices": 100}, **changes})
        return next(v for k, v in estimate_resources(sc).parts.items() if k.startswith("updates held"))

    real, modeled = updates(), updates(encryption={"mode": "modeled"})
    off = updates(encryption={"mode": "off"})
    assert real > modeled > off == (2 * 10 + 100) * 4 * 1663370  # ppafl: no fedbuff buffer, an agent per device
    assert updates(fleet={"num_devices": 200}) > real


def test_time_only_holds_no_data_and_no_updates():
    est = estimate_resources(scenario_from_dict({**HUGE, "time_only": True, "fleet": {"num_devices": 100_000}}))
    assert {k.split(" (")[0] for k in est.parts} == {"interpreter and libraries", "devices", "event log"}
    assert est.update_nbytes > 10 * 2**20  # still reports what one ciphertext update weighs on the wire


def test_long_runs_count_their_event_log():
    raw = {"time_only": True, "fleet": {"num_devices": 1000}, "evaluation": {"interval_s": None},
           "stop": {"max_time_s": 3600}}
    short, long = (estimate_resources(scenario_from_dict({**raw, "stop": {"max_time_s": t}})) for t in (3600, 3.6e8))
    log = next(k for k in long.parts if k.startswith("event log"))
    assert long.parts[log] > 1000 * short.parts[next(k for k in short.parts if k.startswith("event log"))]
    with pytest.raises(ResourceLimitError, match=r"event log \(~.* events\).*stop\.max_time_s"):
        check_resources(scenario_from_dict({**raw, "stop": {"max_time_s": 1e9}}))
    versions = scenario_from_dict({**raw, "stop": {"max_time_s": 1e9, "max_versions": 10}})
    assert check_resources(versions).total < 2 * 2**30  # a version limit bounds the jobs


def test_an_explicit_limit_is_used_and_named():
    quick = load_scenario("scenarios/quickstart.yaml")
    with pytest.raises(ResourceLimitError, match=r"more than the memory limit \(100.0 MiB\)"):
        check_resources(quick, limit_bytes=100 * 2**20)


def test_run_refuses_before_building_anything(tmp_path, monkeypatch):
    def no_simulation(*_a, **_k):
        raise AssertionError("the simulation was built before the resource check")

    monkeypatch.setattr(sim.runner.run, "build_simulation", no_simulation)
    with pytest.raises(ResourceLimitError):
        run_scenario(scenario_from_dict(HUGE), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_reports_the_refusal(tmp_path, capsys):
    argv = ["run", "scenarios/quickstart.yaml", "--out", str(tmp_path / "o"), "--memory-limit-gb", "0.1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ppafl: error: scenario 'quickstart' needs an estimated") and "102.4 MiB" in err


@pytest.mark.parametrize("bad", ["0", "-1", "inf", "nan", "lots"])
def test_cli_rejects_a_bad_limit(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "scenarios/quickstart.yaml", "--out", "x", "--memory-limit-gb", bad])
    assert exit_.value.code == 2 and "--memory-limit-gb" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_scenario_fits(path):
    est = check_resources(load_scenario(path))
    assert 0 < est.total < machine_memory_bytes()


def test_a_ciphertext_is_counted_at_its_real_size_in_memory():
    import sys

    from crypto import PARAM_SETS, PackedEncoder
    from sim.runner.preflight import int_nbytes

    layout = PackedEncoder(PARAM_SETS["paper"], 1000, 10, 8, 16, 8.0).layout
    ciphertext = (1 << (8 * layout.ciphertext_bytes - 1)) + 12345  # a full-size ciphertext value
    assert int_nbytes(8 * layout.ciphertext_bytes) == sys.getsizeof(ciphertext) == 572
