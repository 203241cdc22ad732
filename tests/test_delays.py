"""Injected delays: the three models, and paired seeds (the same fleet, data split and delays whatever the strategy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl.delays import InjectedDelays
from sim.engine import Simulation
from sim.scenario import scenario_from_dict


def test_independent_delays_are_keyed_by_the_job():
    d = InjectedDelays(0.4, "independent", 0, 3, slots=10, entropy=7)
    draws = {(c, n): d.for_job(c, n) for c in range(50) for n in range(1, 41)}
    assert draws == {(c, n): d.for_job(c, n) for c in reversed(range(50)) for n in range(1, 41)}  # any order
    delayed = [v for v in draws.values() if v is not None]
    assert abs(len(delayed) / len(draws) - 0.4) < 0.03 and set(delayed) == {0, 1, 2, 3}
    assert d.for_round(5, range(10), []) == {}  # not a per-round model


def test_batch_delays_a_share_of_the_invitees_only_when_none_is_delayed():
    d = InjectedDelays(0.4, "batch", 0, 3, slots=20, entropy=1)
    invited = list(range(20))
    assert d.for_round(1, invited, []) == {}  # none in the first round (as the reference code)
    batch = d.for_round(2, invited, [])
    assert len(batch) == 8 and set(batch.values()) <= {0, 1, 2, 3}
    assert d.for_round(2, invited, []) == batch  # keyed by the round
    assert d.for_round(3, invited[:15], [15]) == {}  # one still delayed: no new batch


def test_topup_fills_the_delayed_slots_towards_the_share():
    d = InjectedDelays(0.4, "topup", 1, 4, slots=20, entropy=3)
    still = [0, 1, 2, 3, 4]
    sizes = []
    for r in range(2, 400):
        got = d.for_round(r, list(range(5, 20)), still)
        assert set(got) <= set(range(5, 20)) and set(got.values()) <= {1, 2, 3, 4}
        sizes.append(len(got))
    # 3 of the 20 slots are drawn; those already delayed (5 of 20) are skipped: 3 * 15/20 on average
    assert max(sizes) <= 3 and abs(np.mean(sizes) - 3 * 15 / 20) < 0.15


# ------------------------------------------------------------------ paired seeds through the engine
def _scenario(strategy: str, model: str = "batch") -> dict:
    return {
        "name": "paired",
        "seed": 4,
        "data": {"dataset": "mnist5k", "partition": "shards", "max_test_samples": 100},
        "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 50, "lr": 0.05},
        "fleet": {"num_devices": 10, "groups": [{"device": "rpi4", "link": "wifi", "share": 0.5},
                                                {"device": "smartphone", "link": "lte", "share": 0.5}]},
        "strategy": {"name": strategy, "client_fraction": 1.0, "round_deadline_s": 600,
                     **({"participation": "slots"} if strategy != "fedbuff" else {})},
        "injected_delay": {"fraction": 0.4, "model": model, "min_rounds": 0, "max_rounds": 3},
        "encryption": {"mode": "modeled"},
        "evaluation": {"interval_s": None},
        "stop": {"max_time_s": 1e6, "max_versions": 8},
    }


def _run(raw: dict) -> Simulation:
    sim = Simulation.from_scenario(scenario_from_dict(raw))
    sim.run()
    return sim


def _delays(sim: Simulation) -> list[tuple]:
    ev = sim.recorder.events()
    ev = ev[ev["event"] == "delay_injected"]
    return sorted(zip(ev["device"], ev["job"], ev["version"], ev["rounds"]))


def test_paired_seeds_give_every_strategy_the_same_fleet_split_and_delays():
    sims = {s: _run(_scenario(s)) for s in ("ppafl_reference", "fedavg_straggler", "asyfl")}
    ref = sims["ppafl_reference"]
    assert len(_delays(ref)) >= 8 and ref.server.stats["agents_reused"] > 0
    for name, sim in sims.items():
        devices, ref_devices = ([f.device(i) for i in range(len(f))] for f in (sim.fleet, ref.fleet))
        assert [(d.device_class, d.link_class, d.profile) for d in devices] == [
            (d.device_class, d.link_class, d.profile) for d in ref_devices
        ], name
        shards, ref_shards = sim.workload.executor.workload.shards, ref.workload.executor.workload.shards
        assert all(np.array_equal(a, b) for a, b in zip(shards, ref_shards, strict=True)), name
        assert _delays(sim) == _delays(ref), name


def test_retrained_agents_start_from_the_delayed_jobs_model_and_repeat_exactly():
    sim, again = _run(_scenario("ppafl_reference")), _run(_scenario("ppafl_reference"))
    ev = sim.recorder.events()
    started = {(d, v) for d, v in zip(*(ev.loc[ev["event"] == "delay_injected", k] for k in ("device", "version")))}
    agents = ev[ev["event"] == "agent_retrained"]
    assert len(agents) > 0
    assert all((d, b) in started for d, b in zip(agents["device"], agents["base_version"]))  # the delay-start model
    assert np.array_equal(sim.models.current, again.models.current)  # agents' training seeds are deterministic


def test_independent_delays_agree_on_common_jobs_across_round_based_and_async_strategies():
    a, b = _run(_scenario("ppafl", "independent")), _run(_scenario("fedbuff", "independent"))
    by_job = {(dev, job): rounds for dev, job, _v, rounds in _delays(a)}
    common = [(dev, job, rounds) for dev, job, _v, rounds in _delays(b) if (dev, job) in by_job]
    assert len(common) >= 3
    assert all(by_job[dev, job] == rounds for dev, job, rounds in common)


@pytest.mark.parametrize("model", ["batch", "topup"])
def test_per_round_delays_need_a_round_based_strategy(model):
    from sim.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="has no rounds; use injected_delay.model: independent"):
        scenario_from_dict(_scenario("fedbuff", model))


def _delayed_at_round_open(model: str, seed: int) -> list[int]:
    from sim.scenario import load_scenario

    sc = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "reference_mnist5k.yaml", [
        "time_only=true", f"injected_delay.model={model}", f"seed={seed}", "evaluation.every_versions=null"])
    sim = Simulation.from_scenario(sc)
    sim.run()
    ev = sim.recorder.events()
    held: set[int] = set()
    counts = []
    for event, device in zip(ev["event"], ev["device"]):
        if event == "delay_injected":
            held.add(device)
        elif event == "update_received":
            held.discard(device)
        elif event == "round_open":
            counts.append(len(held))  # after this round's draw, as the reference code counts its flags
    return counts[1:]


@pytest.mark.parametrize("model, expected", [("batch", 5.15), ("topup", 7.33)])
def test_the_reference_delay_models_leave_as_many_slots_delayed_as_the_reference_code(model, expected):
    """scripts/reference_replay.py replays the reference code's bookkeeping: 5.15 delayed slots per round
    under its scheme's guard, 7.33 under its baselines' top-up (40% of 20 slots, delays 1..4, 50 replays)."""
    counts = [c for seed in range(4) for c in _delayed_at_round_open(model, seed)]
    assert len(counts) >= 390
    assert abs(np.mean(counts) - expected) < 0.35


@pytest.mark.parametrize("strategy", ["fedavg", "fedavg_straggler"])
def test_delays_count_rounds_that_aggregate_nothing_so_every_slot_delayed_still_progresses(strategy):
    # All slots delayed at once (batch, round(0.99 x 10 slots) = 10): no fresh job is left to make a version, so the
    # held updates must be released by rounds passing, not by versions only they could make.
    raw = _scenario(strategy)
    raw.update(time_only=True, injected_delay={"fraction": 0.99, "model": "batch", "min_rounds": 1, "max_rounds": 3})
    raw["strategy"]["round_deadline_s"] = 30
    raw["stop"] = {"max_time_s": 3600, "max_versions": 12}
    sim = _run(raw)
    ev = sim.recorder.events()
    held = ev[ev["event"] == "update_held"]
    assert len(held) >= 10 and held["until_round"].notna().all()
    assert sim.server.version == 12, sim.stop_reason  # before the change: stuck at version 1 until the time limit
