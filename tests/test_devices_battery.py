"""Battery: conservation and bounds under random actions, depletion, recharge, accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from devices import DAY_S, DRAW_CAUSES, Battery, BatterySpec, MainsCharging, SolarHarvest, recharge_profile, start_days

ALWAYS = ((0.0, 24.0),)


def _check_invariants(b: Battery) -> None:
    energy = b.energy_by_cause()
    drawn = sum(energy[c] for c in DRAW_CAUSES)
    level = b.level_j(b.time_s)
    scale = b.initial_j + energy["recharge"] + drawn + 1.0
    assert level >= 0.0
    assert level <= b.spec.capacity_j * (1 + 1e-12)
    assert min(energy.values()) >= 0.0
    assert b.initial_j + energy["recharge"] - drawn == pytest.approx(level, abs=1e-9 * scale)


_recharge = st.one_of(
    st.none(),
    st.builds(
        MainsCharging,
        windows=st.tuples(st.tuples(st.floats(0, 23.5), st.floats(0.5, 24)).filter(lambda w: w[0] != w[1])),
        power_w=st.floats(0.01, 20),
    ),
    st.builds(SolarHarvest, panel_w=st.floats(0.01, 20)),
)
_spec = st.builds(
    BatterySpec,
    capacity_j=st.floats(1.0, 1e5),
    initial_fraction=st.floats(0.0, 1.0),
    idle_power_w=st.one_of(st.just(0.0), st.floats(0.0, 5.0)),
    resume_fraction=st.floats(0.01, 1.0),
    recharge=_recharge,
)
_action = st.tuples(
    st.one_of(st.just(0.0), st.floats(0.0, 3 * DAY_S)),
    st.sampled_from(("advance", "query") + DRAW_CAUSES[1:]),
    st.floats(0.0, 50.0),
)


@settings(max_examples=150, deadline=None)
@given(spec=_spec, actions=st.lists(_action, max_size=25))
@example(  # solar harvest over a night: a difference of cumulative sums once rounded to -6e-11 J
    spec=BatterySpec(capacity_j=33.0, initial_fraction=0.0, idle_power_w=1.0, resume_fraction=1.0,
                     recharge=SolarHarvest(panel_w=2.6875)),
    actions=[(91428.0, "advance", 0.0), (205594.0, "advance", 0.0), (221378.0, "advance", 0.0)],
)
def test_energy_is_conserved_and_never_negative(spec: BatterySpec, actions: list) -> None:
    b = Battery(spec)
    t = 0.0
    _check_invariants(b)
    for dt, what, load_w in actions:
        t += dt
        if what == "advance":
            b.advance(t)
        elif what == "query":
            level, back = b.level_j(t), b.time_recharged(t)
            b.advance(t)
            assert b.level_j(t) == level  # a pure query agrees with the committed state
            assert back >= t
            if b.depleted and math.isfinite(back):
                assert not b.depleted_at(back)
        else:  # run a load from the committed time to t, or until the battery empties
            start, was_on = b.time_s, not b.depleted
            empty = b.time_empty(t, load_w)
            stop = min(t, empty)
            before = b.energy_by_cause()[what]
            b.advance(stop, load_w, what)
            drawn = b.energy_by_cause()[what] - before
            if was_on:
                assert drawn == pytest.approx(load_w * (stop - start), rel=1e-9, abs=1e-9)
                assert b.depleted == (empty <= t)  # it empties exactly when time_empty said
            else:
                assert empty == start and drawn == 0.0  # a device that is off draws nothing
        _check_invariants(b)


def test_idle_drain_empties_then_the_device_is_off() -> None:
    b = Battery(BatterySpec(capacity_j=100.0, idle_power_w=1.0))
    assert b.level_j(40.0) == pytest.approx(60.0)
    assert not b.depleted_at(99.0) and b.depleted_at(100.0)
    b.advance(1000.0)
    assert b.level_j(1000.0) == 0.0
    assert b.energy_by_cause()["idle"] == pytest.approx(100.0)  # no drain while off
    assert b.time_recharged(1000.0) == math.inf
    assert b.depletions == 1


def test_a_load_empties_the_battery_at_the_predicted_time_and_draws_only_until_then() -> None:
    spec = BatterySpec(capacity_j=100.0, idle_power_w=1.0, resume_fraction=0.2,
                       recharge=MainsCharging(windows=ALWAYS, power_w=5.0))
    b = Battery(spec)
    assert b.time_empty(1000.0, 24.0) == pytest.approx(5.0)  # 100 J at 1 + 24 - 5 = 20 W net
    assert b.time_empty(4.0, 24.0) == math.inf  # not before t_end
    b.advance(5.0, 24.0, "compute")
    assert b.depleted and b.level_j(5.0) == 0.0
    assert b.energy_by_cause()["compute"] == pytest.approx(120.0) and b.energy_by_cause()["idle"] == pytest.approx(5.0)
    assert b.time_recharged(5.0) == pytest.approx(5.0 + 20.0 / 5.0)  # back at 20 J, charging at 5 W while off
    assert b.time_empty(6.0, 24.0) == 5.0  # off already
    b.advance(9.0, 24.0, "compute")  # off: the load draws nothing
    assert b.energy_by_cause()["compute"] == pytest.approx(120.0)
    mains = Battery(BatterySpec(capacity_j=None))
    assert mains.time_empty(1e9, 1e6) == math.inf


def test_mains_window_recharge_time() -> None:
    spec = BatterySpec(
        capacity_j=1000.0,
        initial_fraction=0.0,
        resume_fraction=0.5,
        recharge=MainsCharging(windows=((10.0, 12.0),), power_w=10.0),
    )
    b = Battery(spec)
    assert b.depleted
    assert b.time_recharged(0.0) == pytest.approx(10 * 3600 + 50)
    assert b.depleted_at(10 * 3600 + 49.0) and not b.depleted_at(10 * 3600 + 50.0)
    wrap = Battery(spec.model_copy(update={"recharge": MainsCharging(windows=((23.0, 1.0),), power_w=1.0)}))
    assert wrap.time_recharged(0.0) == pytest.approx(500.0)  # the window wraps: 00:00-01:00 is in it
    late = Battery(spec.model_copy(update={"recharge": MainsCharging(windows=((23.0, 0.1),), power_w=0.1)}))
    # 500 J at 0.1 W: 36 J 00:00-00:06, 360 J 23:00-24:00, 36 J 00:00-00:06, then 680 s from 23:00 on day 1
    assert late.time_recharged(0.0) == pytest.approx(DAY_S + 23 * 3600 + 680)


def test_clear_sky_day_harvests_the_integral_of_the_curve() -> None:
    b = Battery(BatterySpec(capacity_j=1e9, initial_fraction=0.0, recharge=SolarHarvest(panel_w=2.0)))
    b.advance(DAY_S)
    assert b.energy_by_cause()["recharge"] == pytest.approx(2.0 * 12 * 3600 * 2 / math.pi, rel=1e-12)
    assert b.level_j(6 * 3600.0 + DAY_S) == pytest.approx(b.level_j(DAY_S))  # dark until sunrise


def test_full_battery_wastes_surplus_and_counts_only_what_it_uses() -> None:
    spec = BatterySpec(capacity_j=50.0, idle_power_w=1.0, recharge=MainsCharging(windows=ALWAYS, power_w=10.0))
    b = Battery(spec)
    b.advance(100.0)
    assert b.level_j(100.0) == 50.0
    assert b.energy_by_cause()["recharge"] == pytest.approx(100.0)
    assert b.energy_by_cause()["idle"] == pytest.approx(100.0)


def test_solar_device_dies_at_night_and_returns_in_the_day() -> None:
    spec = BatterySpec(
        capacity_j=2000.0, idle_power_w=0.1, resume_fraction=0.5, recharge=SolarHarvest(panel_w=1.0)
    )
    b = Battery(spec)
    # starts full at midnight: 2000 J last 20000 s of darkness, so it is off from 05:33
    assert b.depleted_at(6 * 3600.0) and not b.depleted_at(5 * 3600.0)
    back = b.time_recharged(6 * 3600.0)
    assert 6 * 3600.0 < back < 9 * 3600.0
    b.advance(back)
    assert b.level_j(back) == pytest.approx(1000.0)
    assert b.depletions == 1


def test_mains_powered_never_depletes_but_accounts() -> None:
    b = Battery(BatterySpec(capacity_j=None, idle_power_w=2.0))
    b.advance(10.0)
    b.advance(20.0, 1e11, "compute")
    assert b.level_j(20.0) == math.inf and not b.depleted_at(20.0)
    assert b.time_recharged(30.0) == 30.0
    b.advance(30.0)
    assert b.energy_by_cause() == {"idle": 60.0, "compute": 1e12, "crypto": 0.0, "tx": 0.0, "rx": 0.0, "recharge": 0.0}


def test_starting_empty_without_recharge_is_off_for_good() -> None:
    b = Battery(BatterySpec(capacity_j=10.0, initial_fraction=0.0))
    assert b.depleted and b.time_recharged(0.0) == math.inf


def test_bad_calls_name_the_problem() -> None:
    b = Battery(BatterySpec(capacity_j=10.0))
    b.advance(5.0)
    with pytest.raises(ValueError, match="time went backwards"):
        b.level_j(4.0)
    with pytest.raises(ValueError, match="must be finite"):
        b.level_j(math.inf)
    with pytest.raises(ValueError, match="unknown energy cause 'cpu'; use one of: idle, compute"):
        b.advance(6.0, 1.0, "cpu")
    with pytest.raises(ValueError, match="finite and >= 0"):
        b.advance(6.0, -1.0, "tx")


def test_random_start_day_must_be_a_day_of_the_trace(tmp_path) -> None:
    path = tmp_path / "sun.csv"
    path.write_text("a\n" + "\n".join(["0.5"] * 600), encoding="utf-8")  # 600 x 300 s: 2 whole days
    spec = BatterySpec(capacity_j=10.0, recharge=SolarHarvest(trace_path=path, random_start=True))
    assert start_days(spec.recharge) == 2
    with pytest.raises(ValueError, match=r"start_day must be in \[0, 2\)"):
        Battery(spec, start_day=2)
    assert Battery(spec, start_day=1).level_j(0.0) == 10.0


def _reference_level(spec: BatterySpec, t_end: float, dt: float = 2.0) -> tuple[float, bool]:
    """Brute-force time stepping of the same rules (on/off hysteresis, clamping)."""
    profile = recharge_profile(spec.recharge) if spec.recharge else None
    cap = spec.capacity_j
    level, target = cap * spec.initial_fraction, spec.resume_fraction * cap
    on = level > 0.0
    for k in range(int(t_end / dt)):
        p = profile.power_at(k * dt + dt / 2) if profile else 0.0
        if on:
            level = min(cap, level + (p - spec.idle_power_w) * dt)
            if level <= 0.0:
                level, on = 0.0, False
        else:
            level = min(cap, level + p * dt)
            on = level >= target
    return level, not on


@pytest.mark.parametrize("seed", range(8))
def test_lazy_integration_matches_time_stepping(seed: int) -> None:
    rng = np.random.default_rng(seed)
    recharge = [
        MainsCharging(windows=((float(rng.integers(0, 24)), float(rng.integers(0, 24)) + 0.5),), power_w=2.0),
        SolarHarvest(panel_w=float(rng.uniform(0.5, 3.0))),
    ][seed % 2]
    spec = BatterySpec(
        capacity_j=float(rng.uniform(5e3, 3e4)),
        initial_fraction=float(rng.uniform(0, 1)),
        idle_power_w=float(rng.uniform(0.1, 0.6)),
        resume_fraction=float(rng.uniform(0.1, 0.9)),
        recharge=recharge,
    )
    t_end = 2 * DAY_S
    expected, expected_off = _reference_level(spec, t_end)
    b = Battery(spec)
    for t in np.sort(rng.uniform(0, t_end, 5)):  # advancing in pieces changes nothing
        b.advance(float(t))
    assert b.level_j(t_end) == pytest.approx(expected, abs=3 * 2.0 * 3.6)
    assert b.depleted_at(t_end) == expected_off


@pytest.mark.parametrize("seed", range(6))
def test_long_spans_skip_whole_periods_and_agree_with_piece_by_piece(seed: int) -> None:
    """Integrating months at once (skipping periods that repeat or drift linearly) gives what days of
    small steps give, and is fast."""
    rng = np.random.default_rng(100 + seed)
    recharge = [MainsCharging(windows=((1.0, 2.0),), power_w=float(rng.uniform(0.5, 3.0))),
                SolarHarvest(panel_w=float(rng.uniform(0.05, 1.0)))][seed % 2]
    spec = BatterySpec(capacity_j=float(rng.uniform(2e3, 5e4)), initial_fraction=float(rng.uniform(0, 1)),
                       idle_power_w=float(rng.uniform(0.0, 0.1)), resume_fraction=0.5, recharge=recharge)
    horizon = 120 * DAY_S
    stepped = Battery(spec)
    for t in np.arange(DAY_S / 3, horizon, DAY_S / 3):  # spans shorter than two periods: piece by piece
        stepped.advance(float(t))
    stepped.advance(horizon)
    at_once = Battery(spec)
    at_once.advance(horizon)
    assert at_once.level_j(horizon) == pytest.approx(stepped.level_j(horizon), rel=1e-6, abs=1e-6 * spec.capacity_j)
    for cause, joules in stepped.energy_by_cause().items():
        assert at_once.energy_by_cause()[cause] == pytest.approx(joules, rel=1e-6, abs=1e-3)
    assert at_once.depletions == stepped.depletions


def test_ten_years_of_solar_idling_integrate_at_once() -> None:
    import time

    b = Battery(BatterySpec(capacity_j=1e4, idle_power_w=0.005, recharge=SolarHarvest(panel_w=0.5)))
    t0 = time.perf_counter()
    b.advance(3650 * DAY_S)
    assert time.perf_counter() - t0 < 0.5  # ~1 million profile pieces if walked one by one
    assert b.level_j(3650 * DAY_S) > 0 and b.energy_by_cause()["idle"] == pytest.approx(0.005 * 3650 * DAY_S)
