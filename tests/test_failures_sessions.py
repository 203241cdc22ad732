"""Churn (failures.churn) and availability traces (failures.availability_trace): session lengths, exact replay,
what going offline does to a running job, and safe trace reading."""

from __future__ import annotations

import itertools
import json
import math
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from devices import (
    ChurnSpec,
    CounterStream,
    Segment,
    TraceError,
    TraceSessions,
    assign_clients,
    read_availability_trace,
)
from devices.sessions import Churn
from sim.runner import run_scenario
from sim.scenario import ScenarioError, scenario_from_dict

# ----------------------------------------------------------------------------- churn: the sessions drawn


@pytest.mark.parametrize(("distribution", "shape"), [("exponential", 1.0), ("lognormal", 1.0), ("weibull", 0.7),
                                                     ("weibull", 2.5)])
def test_churn_sessions_match_their_distributions_means(distribution, shape):
    churn = Churn(ChurnSpec(enabled=True, distribution=distribution, shape=shape), 900.0, 300.0, CounterStream(17))
    sessions = churn.sessions(until=3.0e7)  # ~25,000 on/off cycles
    on = np.array([b - a for up, a, b in sessions if up])
    off = np.array([b - a for up, a, b in sessions if not up])
    assert len(on) > 20_000 and len(off) > 20_000
    assert on.mean() == pytest.approx(900.0, rel=0.03) and off.mean() == pytest.approx(300.0, rel=0.03)
    assert all(s[2] == t[1] and s[0] != t[0] for s, t in itertools.pairwise(sessions))  # alternating, no gaps


def test_churn_starts_online_with_the_long_run_share_of_online_time():
    starts = [Churn(ChurnSpec(enabled=True), 900.0, 300.0, CounterStream(i)).state(0.0)[0] for i in range(4000)]
    assert np.mean(starts) == pytest.approx(0.75, abs=4 * math.sqrt(0.75 * 0.25 / 4000))


def test_diurnal_modulation_makes_online_sessions_longer_near_the_peak_hour():
    spec = ChurnSpec(enabled=True, diurnal_amplitude=0.8, peak_hour=20.0)
    sessions = Churn(spec, 600.0, 600.0, CounterStream(2)).sessions(until=3.0e7)
    hour = np.array([(a % 86400.0) / 3600.0 for _up, a, _b in sessions])
    length = np.array([b - a for _up, a, b in sessions])
    up = np.array([s[0] for s in sessions])
    near = (np.abs(hour - 20.0) < 2.0)
    far = (np.abs(hour - 8.0) < 2.0)
    assert length[up & near].mean() > 3 * length[up & far].mean()
    assert length[~up & near].mean() < length[~up & far].mean() / 3


def test_churn_keeps_only_the_sessions_it_may_still_be_asked_about():
    churn = Churn(ChurnSpec(enabled=True), 60.0, 60.0, CounterStream(1))
    for t in np.arange(0.0, 1.0e6, 100.0):
        churn.available(float(t))
    assert len(churn._starts) < 10


# ----------------------------------------------------------------------------- going offline during a job

GROUPS = [{"device": "rpi4", "link": "wifi", "share": 0.5, "sessions": {"mean_on_s": 300.0}},
          {"device": "smartphone", "link": "lte", "share": 0.5}]


def _run(failures: dict, seed: int = 3, **over):
    raw = {"time_only": True, "seed": seed, "fleet": {"num_devices": 30, "groups": GROUPS}, "failures": failures,
           "strategy": {"name": "fedasync", "client_fraction": 0.3}, "encryption": {"mode": "modeled"},
           "evaluation": {"interval_s": 600}, "stop": {"max_time_s": 7200}}
    raw.update(over)
    return run_scenario(scenario_from_dict(raw))


def test_going_offline_fails_the_running_job_and_the_device_takes_no_job_while_offline():
    run = _run({"churn": {"enabled": True, "mean_off_s": 200.0}})
    ev, dev = run.events, run.devices
    cut = ev[ev["event"] == "went_offline"]
    assert len(cut) > 20 and dev["went_offline"].sum() == len(cut) == dev["jobs_failed"].sum()
    assert run.summary["job_failures"]["went_offline"] == len(cut)
    assert not (ev["event"] == "came_online").any()
    # A device's next job starts only once it is back: at least one offline session later (sessions are > 0 s).
    for _d, g in ev[ev["device"] >= 0].groupby("device"):
        names, times = g["event"].tolist(), g["time_s"].to_numpy()
        for i, name in enumerate(names):
            if name == "went_offline":
                nxt = [t for t, n in zip(times[i + 1:], names[i + 1:]) if n == "download_start"]
                assert not nxt or nxt[0] > times[i]


def test_the_group_session_means_override_the_class_defaults():
    from sim.assembly import fleet_from_scenario

    sc = scenario_from_dict({"fleet": {"num_devices": 4, "groups": GROUPS}, "failures": {"churn": {"enabled": True}}})
    fleet = fleet_from_scenario(sc, np.random.SeedSequence(0))
    means = {fleet.device(i).device_class: next(s for s in fleet.device(i).sources if isinstance(s, Churn))._means
             for i in range(4)}
    assert means["rpi4"] == (600.0, 300.0)  # (off, on): the class's offline mean, the group's online mean
    assert means["smartphone"] == (3 * 3600.0, 3600.0)


def test_a_paused_job_resumes_if_the_device_is_back_within_the_grace_period_else_fails():
    run = _run({"churn": {"enabled": True, "mean_off_s": 60.0, "on_offline": "pause", "grace_s": 60.0}})
    ev, dev = run.events, run.devices
    counts = ev["event"].value_counts()
    assert counts.get("came_online", 0) > 5 and counts.get("offline_too_long", 0) > 5
    assert counts["went_offline"] == counts["came_online"] + counts["offline_too_long"] + _paused_at_end(ev)
    assert dev["offline_resumes"].sum() == counts["came_online"]
    assert dev["offline_timeouts"].sum() == counts["offline_too_long"] == dev["jobs_failed"].sum()
    for _d, g in ev[ev["device"] >= 0].groupby("device"):
        names, times = g["event"].tolist(), g["time_s"].to_numpy()
        for i, name in enumerate(names):
            if name == "went_offline" and i + 1 < len(names):
                nxt, gap = names[i + 1], times[i + 1] - times[i]
                assert (nxt == "came_online" and gap <= 60.0 + 1e-9) or (nxt == "offline_too_long"
                                                                         and gap == pytest.approx(60.0))


def _paused_at_end(ev: pd.DataFrame) -> int:
    """Jobs still paused offline when the run ended."""
    n = 0
    for _d, g in ev[ev["device"] >= 0].groupby("device"):
        last = [e for e in g["event"] if e in ("went_offline", "came_online", "offline_too_long")]
        n += bool(last) and last[-1] == "went_offline"
    return n


def test_churn_runs_are_reproducible_and_depend_on_the_seed():
    a, b = _run({"churn": {"enabled": True}, "job_dropout": 0.2}), _run({"churn": {"enabled": True}, "job_dropout": 0.2})
    pd.testing.assert_frame_equal(a.events, b.events)
    c = _run({"churn": {"enabled": True}, "job_dropout": 0.2}, seed=4)
    assert not a.events.equals(c.events)


# ----------------------------------------------------------------------------- availability traces

FEDSCALE = {  # FedScale's client_behave_trace layout, as its pickle holds it
    1: {"duration": 500, "inactive": [120, 400], "finish_time": 500, "active": [20, 300], "model": "SM-G950F"},
    2: {"duration": 500, "inactive": [250], "finish_time": 500, "active": [0, 450], "model": "Pixel 3"},
    3: {"duration": 500, "inactive": [100, 200], "finish_time": 500, "active": [0, 100], "model": "iPhone"},
}
EXPECTED = {"1": ((20.0, 120.0), (300.0, 400.0)), "2": ((0.0, 250.0), (450.0, 500.0)), "3": ((0.0, 200.0),)}


@pytest.fixture()
def fedscale_pickle(tmp_path):
    path = tmp_path / "client_behave_trace"
    path.write_bytes(pickle.dumps(FEDSCALE, protocol=4))
    return path


def test_fedscale_pickle_and_json_read_to_the_same_intervals(fedscale_pickle, tmp_path):
    as_json = tmp_path / "trace.json"
    as_json.write_text(json.dumps(FEDSCALE))
    for path in (fedscale_pickle, as_json):
        trace = read_availability_trace(path)
        assert dict(zip(trace.clients, trace.intervals)) == EXPECTED  # touching intervals merged, trailing active kept
        assert trace.periods == (500.0, 500.0, 500.0)


def test_a_trace_replays_its_exact_online_intervals_repeating_every_finish_time(fedscale_pickle):
    trace = read_availability_trace(fedscale_pickle)
    k = trace.clients.index("1")
    source = TraceSessions(trace.intervals[k], trace.periods[k], grace_s=None)
    online, t, changes = source.state(0.0)[0], 0.0, []
    while t < 1500.0:
        up, t = source.state(t)
        changes.append((up, t))
    assert not online
    assert changes[:6] == [(False, 20.0), (True, 120.0), (False, 300.0), (True, 400.0), (False, 520.0), (True, 620.0)]
    k2 = trace.clients.index("2")  # online across the wrap: [450, 500) then [0, 250) is one session
    wrap = TraceSessions(trace.intervals[k2], 500.0, None)
    assert wrap.state(470.0) == (True, 750.0)


def test_a_trace_interrupts_a_job_exactly_where_its_interval_ends():
    source = TraceSessions([(0.0, 100.0), (130.0, 300.0)], None, grace_s=None)
    hit = source.first_interruption(Segment("train", 50.0, 200.0, 1.0, False))
    assert hit is not None and hit.time == 100.0 and hit.event == "went_offline" and hit.resume_at is None
    pausing = TraceSessions([(0.0, 100.0), (130.0, 300.0)], None, grace_s=30.0)
    hit = pausing.first_interruption(Segment("train", 50.0, 200.0, 1.0, False))
    assert hit is not None and (hit.time, hit.resume_at, hit.resume_event) == (100.0, 130.0, "came_online")
    assert source.state(400.0) == (False, math.inf)  # played once: offline after its last interval


def test_own_csv_and_parquet_layouts(tmp_path):
    frame = pd.DataFrame({"client": ["a", "a", "b"], "start_s": [300.0, 0.0, 10.0], "end_s": [400.0, 100.0, 50.0],
                          "period_s": [1000.0, 1000.0, None]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        trace = read_availability_trace(tmp_path / name)
        assert trace.clients == ("a", "b")
        assert trace.intervals == (((0.0, 100.0), (300.0, 400.0)), ((10.0, 50.0),))
        assert trace.periods == (1000.0, None)


@pytest.mark.parametrize(("rows", "needle"), [
    ("client,start_s,end_s\na,0,100\na,50,150\n", "starts before the previous one"),
    ("client,start_s,end_s\na,100,50\n", "ends before it starts"),
    ("client,start_s\na,0\n", "lacks end_s"),
    ("client,start_s,end_s,colour\na,0,1,red\n", "unknown columns colour"),
    ("client,start_s,end_s\na,0,soon\n", r"column end_s row 2 \(the header is row 1\) holds 'soon'"),
    ("client,start_s,end_s,period_s\na,0,100,50\n", "must be positive and hold every interval"),
])
def test_malformed_tables_are_refused_with_the_reason(tmp_path, rows, needle):
    path = tmp_path / "bad.csv"
    path.write_text(rows)
    with pytest.raises(TraceError, match=needle):
        read_availability_trace(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(("content", "needle"), [
    (pickle.dumps({1: _Exploit()}), "asks for posix.system"),
    (pickle.dumps([1, 2]), "not a non-empty mapping"),
    (pickle.dumps({1: {"active": [0], "inactive": [5]}}), "finish_time"),
    (pickle.dumps({1: {"active": [0, 1, 2], "inactive": [5], "finish_time": 10}}), "3 active but 1 inactive"),
    (b"not a pickle", "not a readable FedScale pickle"),
])
def test_a_fedscale_pickle_with_anything_but_plain_data_is_refused(tmp_path, content, needle):
    path = tmp_path / "client_behave_trace"
    path.write_bytes(content)
    with pytest.raises(TraceError, match=needle):
        read_availability_trace(path)


def test_devices_map_to_distinct_trace_clients_by_a_seeded_draw(fedscale_pickle):
    trace = read_availability_trace(fedscale_pickle)
    a = assign_clients(trace, 3, np.random.SeedSequence(5))
    assert sorted(a) == [0, 1, 2]
    assert (a == assign_clients(trace, 3, np.random.SeedSequence(5))).all()
    assert any((assign_clients(trace, 3, np.random.SeedSequence(s)) != a).any() for s in range(6, 12))


def test_a_run_on_a_trace_works_only_inside_the_trace_intervals(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for c in range(8):
        t = float(rng.uniform(0, 200))
        while t < 7000:
            on, off = float(rng.uniform(100, 600)), float(rng.uniform(50, 300))
            rows.append((f"c{c}", t, t + on))
            t += on + off
    pd.DataFrame(rows, columns=["client", "start_s", "end_s"]).to_csv(tmp_path / "trace.csv", index=False)
    run = _run({"availability_trace": {"path": str(tmp_path / "trace.csv")}}, fleet={"num_devices": 8, "groups": GROUPS})
    trace = read_availability_trace(tmp_path / "trace.csv")
    ev = run.events
    assert (ev["event"] == "went_offline").sum() > 5
    from sim.assembly import fleet_from_scenario

    fleet = fleet_from_scenario(scenario_from_dict(run.summary["scenario"]), np.random.SeedSequence(3).spawn(3)[0])
    for d, g in ev[ev["device"] >= 0].groupby("device"):
        ivals = next(s for s in fleet.device(int(d)).sources if isinstance(s, TraceSessions))._bounds
        assert tuple(ivals) in {tuple(x for iv in ivs for x in iv) for ivs in trace.intervals}
        for t in g.loc[g["event"] == "download_start", "time_s"]:
            assert any(a <= t < b for a, b in zip(ivals[::2], ivals[1::2]))
        for t in g.loc[g["event"] == "went_offline", "time_s"]:
            assert t in ivals[1::2]  # cut exactly where an interval ends


def test_a_missing_trace_file_is_refused_when_the_scenario_is_read(tmp_path):
    with pytest.raises(ScenarioError, match="availability trace file not found"):
        scenario_from_dict({"failures": {"availability_trace": {"path": str(tmp_path / "nope.pkl")}}})


def test_a_relative_trace_path_is_taken_from_the_scenario_files_folder(tmp_path, fedscale_pickle):
    from sim.scenario import load_scenario

    (tmp_path / "s.yaml").write_text("failures:\n  availability_trace:\n    path: client_behave_trace\n")
    sc = load_scenario(tmp_path / "s.yaml")
    assert sc.failures.availability_trace.path == str(fedscale_pickle.resolve())


def test_an_unreadable_trace_path_is_a_clear_error_not_a_traceback(tmp_path):
    with pytest.raises(ScenarioError, match="availability trace"):
        scenario_from_dict({"failures": {"availability_trace": {"path": str(tmp_path)}}})  # a folder
    with pytest.raises(ScenarioError, match="availability trace"):
        scenario_from_dict({"failures": {"availability_trace": {"path": "a\0b"}}})
