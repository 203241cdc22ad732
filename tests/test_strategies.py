"""Each strategy's weighting on hand-made arrivals: exact expected weights."""

import math

import pytest

from fl.strategies import PPAFL, Arrival, FedAsync, FedAvg, FedBuff, staleness_weight


def test_fedavg_weights_fresh_by_samples_and_discards_late():
    s = FedAvg()
    s.on_arrival(Arrival(0, 3, 100, uid=1), version=3)
    s.on_arrival(Arrival(1, 3, 300, uid=2), version=3)
    s.on_arrival(Arrival(2, 2, 500, uid=3), version=3)  # trained on an old model: discarded
    plan = s.close_round(3, {})
    assert [c.client for c in plan.contributions] == [0, 1]
    assert plan.normalised_weights == pytest.approx([0.25, 0.75])
    assert [d.client for d in plan.discarded] == [2]
    assert plan.rule == "replace"
    assert s.close_round(4, {}) is None  # state cleared


def test_ppafl_halves_weight_per_round_of_delay():
    s = PPAFL(delay_threshold=6)
    s.on_arrival(Arrival(0, 10, 100), version=10)  # fresh: 1
    s.on_arrival(Arrival(1, 9, 100), version=10)  # 1 round late: 1/2
    s.on_arrival(Arrival(2, 7, 100), version=10)  # 3 rounds late: 1/8
    plan = s.close_round(10, {})
    weights = {c.client: c.weight for c in plan.contributions}
    assert weights == {0: 100.0, 1: 50.0, 2: 12.5}
    total = 100 + 50 + 12.5
    assert plan.normalised_weights == pytest.approx([100 / total, 50 / total, 12.5 / total])
    assert [c.kind for c in plan.contributions] == ["fresh", "late", "late"]


def test_ppafl_threshold_cuts_off_stale_updates_and_agents():
    s = PPAFL(delay_threshold=2)
    s.on_arrival(Arrival(0, 10, 10), version=10)
    s.on_arrival(Arrival(1, 7, 10), version=10)  # 3 > threshold: discarded
    agents = {5: Arrival(5, 8, 10), 6: Arrival(6, 7, 10)}  # s=2 kept, s=3 cut
    plan = s.close_round(10, agents)
    assert {c.client: c.weight for c in plan.contributions} == {0: 10.0, 5: 2.5}
    assert [d.client for d in plan.discarded] == [1]


def test_ppafl_reuses_agent_only_for_clients_without_a_new_update():
    s = PPAFL(delay_threshold=6)
    s.on_arrival(Arrival(0, 4, 50, uid=7), version=4)
    agents = {0: Arrival(0, 2, 50, uid=1), 3: Arrival(3, 3, 200, uid=2)}
    plan = s.close_round(4, agents)
    by_client = {c.client: c for c in plan.contributions}
    assert by_client[0].kind == "fresh" and by_client[0].uid == 7  # new update wins over its agent
    assert by_client[3].kind == "agent" and by_client[3].weight == 200 * 2**-1 and by_client[3].uid == 2


def test_ppafl_with_only_agents_does_not_aggregate():
    s = PPAFL()
    assert s.close_round(5, {1: Arrival(1, 4, 10)}) is None


def test_ppafl_equal_sample_weighting_can_be_switched_off():
    s = PPAFL(weight_by_samples=False)
    s.on_arrival(Arrival(0, 1, 999), version=2)
    plan = s.close_round(2, {})
    assert plan.contributions[0].weight == 0.5


@pytest.mark.parametrize(
    "fn,s,a,b,expected",
    [
        ("constant", 7, 0.5, 4, 1.0),
        ("polynomial", 3, 0.5, 4, 4**-0.5),
        ("hinge", 4, 0.5, 4, 1.0),
        ("hinge", 6, 0.5, 4, 1 / (0.5 * 2 + 1)),
    ],
)
def test_fedasync_staleness_functions(fn, s, a, b, expected):
    assert staleness_weight(fn, s, a, b) == pytest.approx(expected)


def test_fedasync_mixes_each_arrival_at_once():
    s = FedAsync(alpha=0.6, staleness_fn="polynomial", a=0.5)
    plan = s.on_arrival(Arrival(2, 5, 10), version=8)
    assert plan.rule == "mix"
    assert plan.mix == pytest.approx(0.6 * (3 + 1) ** -0.5)
    assert len(plan.contributions) == 1 and plan.contributions[0].kind == "late"


def test_fedasync_rejects_unknown_staleness_function():
    with pytest.raises(ValueError, match="known: constant, polynomial, hinge"):
        FedAsync(staleness_fn="linear")


def test_fedbuff_aggregates_every_k_with_inverse_sqrt_staleness():
    s = FedBuff(buffer_size=3, server_lr=0.5)
    assert s.on_arrival(Arrival(0, 4, 10), version=4) is None
    assert s.on_arrival(Arrival(1, 1, 10), version=4) is None
    plan = s.on_arrival(Arrival(2, 4, 10), version=4)
    w = [1.0, 1 / math.sqrt(4), 1.0]
    assert [c.weight for c in plan.contributions] == pytest.approx(w)
    assert plan.rule == "delta"
    assert plan.delta_scale == pytest.approx(0.5 * sum(w) / 3)
    assert s.on_arrival(Arrival(3, 4, 10), version=4) is None  # buffer emptied


def test_fedbuff_delta_equals_mean_of_staleness_weighted_deltas():
    """delta_scale * normalised average == (1/K) * sum_i s_i * delta_i."""
    s = FedBuff(buffer_size=2, server_lr=1.0)
    s.on_arrival(Arrival(0, 0, 10), version=3)
    plan = s.on_arrival(Arrival(1, 3, 10), version=3)
    deltas = [2.0, -1.0]
    weights = [c.weight for c in plan.contributions]
    via_plan = plan.delta_scale * sum(p * d for p, d in zip(plan.normalised_weights, deltas))
    expected = sum(w * d for w, d in zip(weights, deltas)) / 2
    assert via_plan == pytest.approx(expected)


def test_max_contributions_bounds():
    assert FedAvg().max_contributions(100, 10) == 10
    assert PPAFL(delay_threshold=6).max_contributions(100, 10) == 80
    assert PPAFL(delay_threshold=6).max_contributions(30, 10) == 30
    assert FedAsync().max_contributions(100, 10) == 1
    assert FedBuff(buffer_size=7).max_contributions(100, 10) == 7


def test_versions_per_round_lets_injected_delays_count_rounds_for_every_strategy():
    assert FedAvg().versions_per_round(10) == 1
    assert PPAFL().versions_per_round(10) == 1
    assert FedAsync().versions_per_round(10) == 10
    assert FedBuff(buffer_size=5).versions_per_round(10) == 2


# ---------------------------------------------------------------- the reference code's settings (presets)
def _preset(name: str):
    from sim.scenario import scenario_from_dict

    return scenario_from_dict({"strategy": {"name": name}}).strategy.build()


# Round closing at version 10. Arrivals: 0 fresh; 1 held back but arrived in its own round (lag 0,
# the reference code's "delay 1"); 2 held back 2 versions; 3 held back 5. Agents: 4 on version 9
# (lag 1), 5 on version 7 (lag 3). Under lag + 1 their staleness is 0, 1, 3, 6 and 2, 4.
_SCRIPT_ARRIVALS = [Arrival(0, 10, 100, uid=1), Arrival(1, 10, 100, uid=2, delayed=True),
                    Arrival(2, 8, 100, uid=3, delayed=True), Arrival(3, 5, 100, uid=4, delayed=True)]
_SCRIPT_AGENTS = {4: Arrival(4, 9, 100, uid=5, delayed=True), 5: Arrival(5, 7, 100, uid=6, delayed=True)}


def _scripted_round(strategy, version: int = 10):
    for a in _SCRIPT_ARRIVALS:
        strategy.on_arrival(a, version)
    plan = strategy.close_round(version, dict(_SCRIPT_AGENTS))
    return {c.client: (c.kind, c.weight) for c in plan.contributions}, sorted(d.client for d in plan.discarded)


@pytest.mark.parametrize(
    "name, weights, discarded",
    [
        # 2^-s with s = lag + 1, threshold 6, agents weighted alike; no sample counts.
        ("ppafl_reference", {0: ("fresh", 1.0), 1: ("late", 0.5), 2: ("late", 0.125), 3: ("late", 2**-6),
                             4: ("agent", 0.25), 5: ("agent", 2**-4)}, []),
        # every late update dropped (the held-back one that came in its own round too), no agents
        ("fedavg_straggler", {0: ("fresh", 1.0)}, [1, 2, 3]),
        ("fedprox_straggler", {0: ("fresh", 1.0)}, [1, 2, 3]),
        # threshold 3: s = 6 dropped, the s = 4 agent left out
        ("asyfl", {0: ("fresh", 1.0), 1: ("late", 0.5), 2: ("late", 0.125), 4: ("agent", 0.25)}, [3]),
        # weight 1 for late updates and agents up to the threshold
        ("ppflpro", {0: ("fresh", 1.0), 1: ("late", 1.0), 2: ("late", 1.0), 3: ("late", 1.0),
                     4: ("agent", 1.0), 5: ("agent", 1.0)}, []),
    ],
)
def test_each_preset_weighs_scripted_arrivals_as_the_reference_code(name, weights, discarded):
    got, dropped = _scripted_round(_preset(name))
    assert got == weights  # powers of two: exact
    assert dropped == discarded


def test_the_projects_ppafl_counts_version_lag_and_sample_counts():
    # The held-back update that arrived in its own round is fresh; lags 2, 5; agents lag 1, 3.
    got, dropped = _scripted_round(_preset("ppafl"))
    assert got == ({0: ("fresh", 100.0), 1: ("fresh", 100.0), 2: ("late", 25.0),
                                 3: ("late", 100 * 2**-5), 4: ("agent", 50.0), 5: ("agent", 12.5)})
    assert dropped == []


def test_agents_stop_at_their_version_limit():
    asyfl = _preset("asyfl")  # agents only while the version is below 20
    assert asyfl.wants_agent(19, 18) and not asyfl.wants_agent(20, 19)
    got, _ = _scripted_round(asyfl, version=10)
    assert {k for k, (kind, _) in got.items() if kind == "agent"} == {4}
    asyfl.on_arrival(Arrival(0, 25, 100), 25)
    plan = asyfl.close_round(25, {4: Arrival(4, 24, 100, delayed=True)})
    assert [c.kind for c in plan.contributions] == ["fresh"]


def test_lag_plus_one_counts_from_the_delays_start():
    s = PPAFL(staleness_clock="lag_plus_one")
    assert s.staleness(7, 7, delayed=False) == 0  # on time
    assert s.staleness(7, 7, delayed=True) == 1  # held back, arrived in its own round: weight 1/2
    assert s.staleness(7, 5, delayed=False) == 3  # a straggler two rounds late
    assert PPAFL().staleness(7, 5, delayed=True) == 2  # version lag


def test_agents_off_and_unknown_settings():
    s = PPAFL(agents=False)
    assert s.agent_source is None and not s.reuses_agents and not s.wants_agent(3, 2)
    with pytest.raises(ValueError, match="known: halving, full, zero"):
        PPAFL(late_weight="half")
    with pytest.raises(ValueError, match="known: version_lag, lag_plus_one"):
        PPAFL(staleness_clock="wall")
