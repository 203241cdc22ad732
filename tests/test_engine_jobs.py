"""Device jobs as SimPy processes that failures interrupt: energy, transfers across outages, event order.

The fleets here use constant powers (no jitter, fixed bandwidth, no set-up latency), so the
energy a device drew can be recomputed from the event log alone: power x the time each
phase actually ran (a transfer draws nothing while paused by an outage).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from devices import resolve_profile
from sim.runner import run_scenario
from sim.scenario import scenario_from_dict

END = 1800.0
CONSTANT = {"compute": {"jitter_sigma": 0.0}}
RADIO = {"latency_s": 0.0, "bandwidth_cv": 0.0, "mean_up_s": 60.0, "mean_down_s": 20.0}
GROUPS = [
    {"device": "rpi4", "link": "ltem", "share": 0.4, **CONSTANT, "link_overrides": {**RADIO, "on_outage": "resume"}},
    {"device": "rpi3", "link": "ltem", "share": 0.3, **CONSTANT,
     "link_overrides": {**RADIO, "on_outage": "restart", "max_restarts": 2}},
    {"device": "smartphone", "link": "lte", "share": 0.3, **CONSTANT,
     "battery": {"capacity_j": 100.0, "initial_fraction": 1.0, "recharge": None},
     "link_overrides": {**RADIO, "on_outage": "resume", "up_bps": 2e5, "down_bps": 2e5}},
]


def _scenario(**over) -> dict:
    raw = {
        "time_only": True,
        "seed": 4,
        "fleet": {"num_devices": 30, "groups": GROUPS},
        "failures": {"dropout_rate": 0.5},
        "strategy": {"name": "fedasync", "client_fraction": 0.5},
        "encryption": {"mode": "modeled"},
        "evaluation": {"interval_s": None},
        "stop": {"max_time_s": END},
    }
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def run():
    return run_scenario(scenario_from_dict(_scenario()))


def _spans(ev: pd.DataFrame, start: str, ends: tuple[str, ...], t_end: float) -> list[tuple[float, float]]:
    """(from, to) of each `start` event to the next of `ends` (or t_end) in one device's log."""
    out, opened = [], None
    for t, name in zip(ev["time_s"], ev["event"]):
        if name == start and opened is None:
            opened = t
        elif name in ends and opened is not None:
            out.append((opened, t))
            opened = None
    if opened is not None:
        out.append((opened, t_end))
    return out


def _busy(ev: pd.DataFrame, phase: str, t_end: float) -> float:
    """Seconds a compute phase ran in one device's log."""
    return sum(b - a for a, b in _spans(ev, f"{phase}_start", (f"{phase}_end",), t_end))


def _transfer_s(ev: pd.DataFrame, phase: str, t_end: float) -> float:
    """Seconds a transfer phase sent data: its spans minus the link pauses inside them."""
    total = 0.0
    for a, b in _spans(ev, f"{phase}_start", (f"{phase}_end",), t_end):
        inside = ev[(ev["time_s"] >= a) & (ev["time_s"] <= b)]
        pauses = _spans(inside, "transfer_paused", ("transfer_resumed", f"{phase}_end"), b)
        total += (b - a) - sum(y - x for x, y in pauses)
    return total


def test_energy_by_cause_is_power_times_the_time_each_phase_really_ran(run):
    ev, dev = run.events, run.devices.set_index("device")
    t_end = run.summary["simulated_time_s"]
    assert ev["cause"].notna().any() and (ev["event"] == "transfer_paused").any()  # cut phases and outages happen
    for d, g in ev[ev["device"] >= 0].groupby("device"):
        group = GROUPS[[x["device"] for x in GROUPS].index(dev.loc[d, "device_class"])]
        p = resolve_profile(group["device"], group["link"], {"compute": group["compute"],
                                                             "battery": group.get("battery", {}),
                                                             "link": group["link_overrides"]})
        c, link = p.compute, p.link
        train_w = c.energy_per_flop_j * c.flops_per_s
        tx_w, rx_w = link.tx_j_per_byte * link.up_bps / 8, link.rx_j_per_byte * link.down_bps / 8
        row = dev.loc[d]
        assert row["energy_compute_j"] == pytest.approx(train_w * _busy(g, "train", t_end), rel=1e-9, abs=1e-9)
        crypto = _busy(g, "decrypt", t_end) + _busy(g, "encrypt", t_end)
        assert row["energy_crypto_j"] == pytest.approx(c.active_power_w * crypto, rel=1e-9, abs=1e-9)
        assert row["energy_tx_j"] == pytest.approx(tx_w * _transfer_s(g, "upload", t_end), rel=1e-9, abs=1e-9)
        assert row["energy_rx_j"] == pytest.approx(rx_w * _transfer_s(g, "download", t_end), rel=1e-9, abs=1e-9)
        if p.battery.capacity_j is None:  # mains: idle the whole run
            assert row["energy_idle_j"] == pytest.approx(p.battery.idle_power_w * t_end, rel=1e-12)


def test_no_event_after_the_event_that_ended_a_job_or_after_the_device_left(run):
    ev = run.events
    t_end = run.summary["simulated_time_s"]
    assert ev["time_s"].max() <= t_end and ev["time_s"].is_monotonic_increasing
    left = ev[ev["event"] == "device_left"].set_index("device")["time_s"]
    assert len(left) > 5
    for d, g in ev[ev["device"] >= 0].groupby("device"):
        if d in left.index:
            assert (g["time_s"] <= left[d]).all()
            assert g["event"].iloc[-1] == "device_left"
        names = g["event"].tolist()
        for i, (name, cause) in enumerate(zip(names, g["cause"])):
            if name.endswith("_end") and isinstance(cause, str):  # a job ended here
                later = [n for n in names[i + 1:] if n not in ("device_left", "battery_recharged")]
                assert not later or later[0] in ("download_start", "invitation_declined"), (d, names[i:i + 3])


def test_dropouts_cut_phases_and_devices_that_leave_idle_are_logged_at_their_time(run):
    ev, dev = run.events, run.devices
    cut = ev[ev["event"] == "dropped_out"]
    assert len(cut) > 0 and set(cut["phase"]) <= {"download", "decrypt", "train", "encrypt", "upload"}
    assert (ev["event"] == "device_left").sum() == dev["dropped_out"].sum() == run.summary["devices_dropped_out"]
    failed = ev[ev["event"].str.endswith("_end") & ev["cause"].notna()]
    assert len(failed) == dev["jobs_failed"].sum() == run.summary["server"]["jobs_failed"]


def test_an_empty_battery_ends_the_job_and_the_device_stays_off():
    res = run_scenario(scenario_from_dict(_scenario(failures={"dropout_rate": 0.0})))
    ev, dev = res.events, res.devices
    phones = dev[dev["device_class"] == "smartphone"].set_index("device")
    depleted = ev[ev["event"] == "battery_depleted"]
    assert set(depleted["phase"]) <= {"download", "decrypt", "train", "encrypt", "upload"}
    assert depleted["device"].nunique() >= 5 and set(depleted["device"]) <= set(phones.index)
    drawn = phones[[f"energy_{c}_j" for c in ("idle", "compute", "crypto", "tx", "rx")]].sum(axis=1)
    emptied = phones.index.isin(depleted["device"])
    np.testing.assert_allclose(drawn[emptied], 100.0, rtol=1e-9)  # all of it, never more
    assert (drawn[~emptied] < 100.0).all()
    assert (phones.loc[emptied, "battery_depletions"] == 1).all()
    for d, t in depleted.groupby("device")["time_s"].min().items():
        later = ev[(ev["device"] == d) & (ev["time_s"] >= t)]
        assert later["event"].tolist()[:2] == ["battery_depleted", f"{later['phase'].iloc[0]}_end"]
        assert len(later) == 2  # no recharge: it never works again


def _one_device(**link) -> dict:
    group = {"device": "rpi4", "link": "ltem", "share": 1.0, **CONSTANT,
             "link_overrides": {"latency_s": 0.0, "bandwidth_cv": 0.0, "up_bps": 8e4, "down_bps": 8e6, **link}}
    return _scenario(fleet={"num_devices": 1, "groups": [group]}, failures={"dropout_rate": 0.0},
                     strategy={"name": "fedasync", "client_fraction": 1.0}, stop={"max_time_s": 20_000.0})


def test_a_resumed_upload_takes_its_data_time_plus_exactly_the_outages_it_waited_through():
    res = run_scenario(scenario_from_dict(_one_device(mean_up_s=40.0, mean_down_s=10.0, on_outage="resume")))
    ev = res.events
    need = 8 * res.summary["update_nbytes"] / 8e4  # seconds of data per upload
    paused = 0
    for a, b in _spans(ev, "upload_start", ("upload_end",), math.inf)[:-1]:  # the last may run past the end
        inside = ev[(ev["time_s"] >= a) & (ev["time_s"] <= b)]
        waits = _spans(inside, "transfer_paused", ("transfer_resumed",), b)
        assert b - a == pytest.approx(need + sum(y - x for x, y in waits), abs=1e-6)
        paused += bool(waits)
    assert paused > 5 and res.devices["transfer_restarts"].sum() == 0
    dev, n = res.devices.iloc[0], res.summary["update_nbytes"]
    assert 0 <= dev["bytes_sent"] - dev["updates_sent"] * n < n  # plus what the upload cut by the end had sent


def test_a_restarted_upload_needs_one_unbroken_stretch_and_its_lost_attempts_cost_bytes():
    res = run_scenario(scenario_from_dict(_one_device(mean_up_s=400.0, mean_down_s=10.0, on_outage="restart")))
    ev, dev = res.events, res.devices.iloc[0]
    need = 8 * res.summary["update_nbytes"] / 8e4
    for a, b in _spans(ev, "upload_start", ("upload_end",), math.inf)[:-1]:  # the last may run past the end
        resumed = ev[(ev["event"] == "transfer_resumed") & (ev["time_s"] >= a) & (ev["time_s"] <= b)]
        last_start = resumed["time_s"].max() if len(resumed) else a
        assert b - last_start == pytest.approx(need, abs=1e-6)  # the last attempt ran unbroken
    assert dev["transfer_restarts"] > 0
    assert dev["bytes_sent"] > dev["updates_sent"] * res.summary["update_nbytes"]  # wasted attempts were sent


def test_a_hopeless_restarting_transfer_is_abandoned_after_its_restarts_and_time_passes():
    res = run_scenario(scenario_from_dict(_one_device(mean_up_s=5.0, mean_down_s=5.0, on_outage="restart",
                                                      max_restarts=3)))
    ev = res.events
    abandoned = ev[ev["event"].str.endswith("_abandoned")]
    assert len(abandoned) > 0 and "abandoned after 3 restarts" in abandoned["reason"].iloc[0]
    assert res.summary["versions"] == 0
    starts = ev[ev["event"] == "download_start"]["time_s"].to_numpy()
    assert np.all(np.diff(starts) > 0)  # every attempt took simulated time: no loop at one instant
    assert res.summary["simulated_time_s"] == 20_000.0


def test_the_run_end_charges_running_phases_only_up_to_the_end():
    # One upload fits in the horizon (a run that could deliver none is refused up front); the next is cut by the end.
    end = 1.2 * 8 * run_scenario(scenario_from_dict(_one_device(mean_down_s=0.0))).summary["update_nbytes"] / 8e4
    short = run_scenario(scenario_from_dict(_one_device(mean_down_s=0.0) | {"stop": {"max_time_s": end}}))
    dev, ev = short.devices.iloc[0], short.events
    starts = ev.loc[ev["event"] == "upload_start", "time_s"].to_numpy()
    ends = ev.loc[ev["event"] == "upload_end", "time_s"].to_numpy()
    assert len(starts) == 2 and len(ends) == 1 and starts[0] < ends[0] < starts[1]  # the second is cut by the end
    profile = resolve_profile("rpi4", "ltem")
    tx_w = profile.link.tx_j_per_byte * 8e4 / 8
    sent_s = (ends[0] - starts[0]) + (end - starts[1])
    assert dev["energy_tx_j"] == pytest.approx(tx_w * sent_s, rel=1e-9)
    assert dev["bytes_sent"] == short.summary["update_nbytes"] + round((end - starts[1]) * 8e4 / 8)
