"""Per-job dropout (failures.job_dropout, job_hazard_per_s): how often jobs fail, where, what they cost, and that
the device comes back."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from devices import CounterStream, JobDropout, Segment, WorkHazard, resolve_profile
from sim.runner import run_scenario
from sim.scenario import ScenarioError, scenario_from_dict

CONSTANT = {"compute": {"jitter_sigma": 0.0}, "link_overrides": {"bandwidth_cv": 0.0}}
GROUPS = [{"device": "rpi4", "link": "wifi", "share": 0.5, **CONSTANT},
          {"device": "smartphone", "link": "lte", "share": 0.5, **CONSTANT}]
PHASES = ("download", "decrypt", "train", "encrypt", "upload")


def _scenario(failures: dict, **over) -> dict:
    raw = {
        "time_only": True,
        "seed": 7,
        "fleet": {"num_devices": 40, "groups": GROUPS},
        "failures": failures,
        "strategy": {"name": "fedasync", "client_fraction": 0.5},
        "encryption": {"mode": "modeled"},
        "evaluation": {"interval_s": 600},
        "stop": {"max_time_s": 7200},
    }
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def dropped():
    return run_scenario(scenario_from_dict(_scenario({"job_dropout": 0.3, "job_dropout_offline_s": 45.0})))


def test_a_job_dropout_of_p_fails_p_of_the_jobs_within_sampling_error(dropped):
    dev, p = dropped.devices, 0.3
    jobs, failed = int(dev["jobs"].sum()), int(dev["job_dropouts"].sum())
    assert jobs > 3000
    running_at_end = jobs - int(dev["updates_sent"].sum()) - int(dev["jobs_failed"].sum())
    assert 0 <= running_at_end <= 20
    decided = jobs - running_at_end  # a job still running at the end may yet have failed
    assert abs(failed / decided - p) < 4 * math.sqrt(p * (1 - p) / decided)
    assert (dev["jobs_failed"] == dev["job_dropouts"]).all()  # nothing else fails jobs here
    assert dropped.summary["job_failures"]["job_dropouts"] == failed == dropped.summary["server"]["jobs_failed"]


def test_dropouts_strike_in_every_phase_about_equally_often(dropped):
    ev = dropped.events
    where = ev[ev["event"] == "job_dropout"]["phase"].value_counts()
    assert set(where.index) == set(PHASES)
    share = where / where.sum()
    assert (share - 0.2).abs().max() < 0.05


def test_a_dropped_device_returns_to_the_pool_after_its_offline_period(dropped):
    ev = dropped.events
    back = []
    for _d, g in ev[ev["device"] >= 0].groupby("device"):
        times, names = g["time_s"].to_numpy(), g["event"].tolist()
        for i, name in enumerate(names):
            if name == "job_dropout":
                later = [t for t, n in zip(times[i + 1:], names[i + 1:]) if n == "download_start"]
                if later:
                    back.append(later[0] - times[i])
    assert len(back) > 100 and min(back) >= 45.0 - 1e-9  # back in the pool, never earlier than the offline period
    assert dropped.devices["jobs"].min() > 1


def test_per_evaluation_totals_count_the_dropouts_so_far(dropped):
    m, ev = dropped.metrics, dropped.events
    hits = ev[ev["event"] == "job_dropout"]["time_s"].to_numpy()
    assert (np.diff(m["job_dropouts"]) >= 0).all()
    for t, total in zip(m["time_s"], m["job_dropouts"]):
        assert total == int((hits <= t).sum())
    per_version = ev[ev["event"] == "job_dropout"].groupby("version").size()  # per round, from the event log
    assert per_version.sum() == m["job_dropouts"].iloc[-1]


def _spans(g: pd.DataFrame, phase: str, t_end: float) -> float:
    """Seconds phase `phase` ran in one device's log (from its *_start to its *_end)."""
    total, opened = 0.0, None
    for t, name in zip(g["time_s"], g["event"]):
        if name == f"{phase}_start":
            opened = t
        elif name == f"{phase}_end" and opened is not None:
            total, opened = total + t - opened, None
    return total + (t_end - opened if opened is not None else 0.0)


def test_a_failed_jobs_energy_is_the_power_integral_up_to_the_failure():
    # No set-up latency, no outages, constant powers: each device's energy per cause is power x the time its phases really ran,
    # whether they completed or a dropout cut them.
    groups = [{**g, "link_overrides": {"bandwidth_cv": 0.0, "latency_s": 0.0, "mean_down_s": 0.0}} for g in GROUPS]
    run = run_scenario(scenario_from_dict(_scenario({"job_dropout": 0.6}, fleet={"num_devices": 12, "groups": groups},
                                                    stop={"max_time_s": 1200})))
    ev, dev = run.events, run.devices.set_index("device")
    t_end = run.summary["simulated_time_s"]
    assert (ev["event"] == "job_dropout").sum() > 50
    for d, g in ev[ev["device"] >= 0].groupby("device"):
        spec = next(x for x in groups if x["device"] == dev.loc[d, "device_class"])
        p = resolve_profile(spec["device"], spec["link"], {"compute": spec["compute"], "link": spec["link_overrides"]})
        c, link = p.compute, p.link
        row = dev.loc[d]
        assert row["energy_compute_j"] == pytest.approx(c.energy_per_flop_j * c.flops_per_s * _spans(g, "train", t_end),
                                                        rel=1e-9, abs=1e-9)
        crypto = _spans(g, "decrypt", t_end) + _spans(g, "encrypt", t_end)
        assert row["energy_crypto_j"] == pytest.approx(c.active_power_w * crypto, rel=1e-9, abs=1e-9)
        tx_w, rx_w = link.tx_j_per_byte * link.up_bps / 8, link.rx_j_per_byte * link.down_bps / 8
        assert row["energy_tx_j"] == pytest.approx(tx_w * _spans(g, "upload", t_end), rel=1e-9, abs=1e-9)
        assert row["energy_rx_j"] == pytest.approx(rx_w * _spans(g, "download", t_end), rel=1e-9, abs=1e-9)
        uploads = int((g["event"] == "upload_start").sum())  # each transfer's bytes are rounded to a whole byte
        assert row["bytes_sent"] == pytest.approx(link.up_bps / 8 * _spans(g, "upload", t_end), abs=0.5 * uploads + 1e-6)


def _run_jobs(source, works: list[tuple[str, float]], jobs: int) -> tuple[int, list[tuple[str, float]]]:
    """Drive `source` through `jobs` jobs of phases `works` [(phase, work s)], one segment per phase: the
    number that failed, and (phase, fraction of the phase done) at each failure."""
    failed, where = 0, []
    t = 0.0
    for _ in range(jobs):
        source.job_started(t)
        for phase, work in works:
            source.phase_started(phase, work)
            seg = Segment(phase, t, t + work, 1.0, phase in ("download", "upload"))
            hit = source.first_interruption(seg)
            stop = hit.time if hit is not None else seg.end
            source.segment_ended(seg, stop)
            if hit is not None:
                failed += 1
                where.append((phase, (stop - t) / work))
                t = stop
                break
            t = stop
        t += 1000.0  # past any offline period
    return failed, where


def test_the_failure_point_is_uniform_within_the_phase():
    source = JobDropout(0.5, ("download", "train", "upload"), CounterStream(11))
    failed, where = _run_jobs(source, [("download", 3.0), ("train", 50.0), ("upload", 2.0)], 20_000)
    assert abs(failed / 20_000 - 0.5) < 4 * math.sqrt(0.25 / 20_000)
    fractions = np.array([f for _p, f in where])
    assert fractions.min() >= 0.0 and fractions.max() < 1.0
    assert np.histogram(fractions, bins=5, range=(0, 1))[0].min() > 0.8 * len(fractions) / 5


def test_a_hazard_per_second_of_work_fails_1_minus_exp_of_rate_times_work():
    works = [("download", 3.0), ("train", 50.0), ("upload", 2.0)]
    rate = 0.01
    failed, where = _run_jobs(WorkHazard(rate, CounterStream(5)), works, 20_000)
    p = 1 - math.exp(-rate * 55.0)
    assert abs(failed / 20_000 - p) < 4 * math.sqrt(p * (1 - p) / 20_000)
    by_phase = pd.Series([ph for ph, _f in where]).value_counts(normalize=True)
    assert by_phase["train"] > 0.8  # it strikes where the work is


def test_the_offline_period_keeps_the_device_out_of_the_pool():
    source = JobDropout(1.0, ("train",), CounterStream(3), offline_s=100.0)
    source.job_started(0.0)
    source.phase_started("train", 10.0)
    seg = Segment("train", 0.0, 10.0, 1.0, False)
    hit = source.first_interruption(seg)
    assert hit is not None and hit.resume_at is None and 0.0 <= hit.time < 10.0
    source.segment_ended(seg, hit.time)
    assert not source.available(hit.time + 99.9) and source.available(hit.time + 100.0)


def test_waiting_does_not_count_as_work():
    source = WorkHazard(1.0, CounterStream(9))
    source.job_started(0.0)
    assert source.first_interruption(Segment("upload", 0.0, 1e6, 0.0, True, waiting=True)) is None


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("job_dropout", 1.5, "less than or equal to 1"),
    ("job_dropout", -0.1, "greater than or equal to 0"),
    ("job_hazard_per_s", float("inf"), "finite"),
    ("job_dropout_offline_s", -1, "greater than or equal to 0"),
    ("job_dropout", True, "boolean"),
])
def test_bad_job_dropout_settings_are_refused_with_the_field_named(field, value, needle):
    with pytest.raises(ScenarioError, match=f"failures.{field}") as err:
        scenario_from_dict({"failures": {field: value}})
    assert needle in str(err.value)
