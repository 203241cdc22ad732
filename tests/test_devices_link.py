"""Link: on/off outage statistics, transfers across outages (resume/restart), bandwidth, energy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devices import Link, LinkSpec

MB = 1_000_000


def _link(seed: int = 0, **kw) -> Link:
    return Link(LinkSpec(**kw), np.random.default_rng(seed))


def test_without_outages_time_is_latency_plus_bytes_over_bandwidth() -> None:
    link = _link(up_bps=8e6, latency_s=0.5, tx_j_per_byte=1e-6)
    tr = link.transfer(10.0, 2 * MB, "up")
    assert tr.end == pytest.approx(10.0 + 0.5 + 2.0)
    assert (tr.outages, tr.restarts, tr.bytes_on_air, tr.completed) == ((), 0, 2 * MB, True)
    assert tr.energy_j == pytest.approx(2.0)
    assert link.is_up(1e9) and link.next_up(5.0) == 5.0 and link.outages_between(0, 1e9) == ()


def test_outage_durations_match_the_configured_means() -> None:
    """Over ~20,000 on/off cycles the sample means are within 3% of the configured means
    (the standard error of an exponential mean over n samples is mean / sqrt(n) = 0.7%)."""
    mean_up, mean_down = 100.0, 20.0
    link = _link(7, mean_up_s=mean_up, mean_down_s=mean_down)
    horizon = 20_000 * (mean_up + mean_down)
    outages = np.array(link.outages_between(0.0, horizon))
    downs = outages[:-1, 1] - outages[:-1, 0]  # the last one may be clipped at the horizon
    ups = outages[1:, 0] - outages[:-1, 1]
    assert downs.mean() == pytest.approx(mean_down, rel=0.03)
    assert ups.mean() == pytest.approx(mean_up, rel=0.03)
    assert downs.std() == pytest.approx(mean_down, rel=0.05)  # exponential: sd == mean
    assert 1 - downs.sum() / horizon == pytest.approx(mean_up / (mean_up + mean_down), abs=0.01)


def test_is_up_and_next_up_agree_with_the_outages() -> None:
    link = _link(3, mean_up_s=50.0, mean_down_s=10.0)
    outages = link.outages_between(0.0, 2000.0)[:-1]  # the last may be clipped at 2000 s
    assert outages and outages[0][0] > 0.0  # starts up
    for start, end in outages:
        mid = (start + end) / 2
        assert not link.is_up(mid) and link.next_up(mid) == end
        assert link.is_up(end) and link.is_up(start - 1e-9)


def test_schedule_does_not_depend_on_query_order() -> None:
    a, b = _link(5, mean_up_s=60.0, mean_down_s=6.0), _link(5, mean_up_s=60.0, mean_down_s=6.0)
    a.is_up(1e6)
    for _ in range(20):
        b.transfer(0.0, MB, "up")  # draws bandwidths in between
    assert a.outages_between(0.0, 1e5) == b.outages_between(0.0, 1e5)


def test_resumed_transfer_ends_later_by_exactly_the_outages_it_spans() -> None:
    link = _link(11, up_bps=8e5, latency_s=0.2, mean_up_s=30.0, mean_down_s=15.0, on_outage="resume")
    need = 0.2 + 8.0 * MB / 8e5  # 10.2 s of up time
    spanned = 0
    for start in np.linspace(0.0, 5000.0, 400):
        tr = link.transfer(float(start), MB, "up")
        waited = sum(e - s for s, e in tr.outages)
        assert tr.end == pytest.approx(start + need + waited, abs=1e-9)
        assert tr.bytes_on_air == MB and tr.restarts == 0
        spanned += bool(tr.outages)
    assert spanned > 50  # the scenario really exercises outages


def test_a_transfer_spanning_one_known_outage() -> None:
    link = _link(2, up_bps=8e5, latency_s=0.0, mean_up_s=100.0, mean_down_s=40.0)
    (o_start, o_end), *_ = link.outages_between(0.0, 1e6)
    start = o_start - 4.0  # 4 s before the drop; needs 10 s
    tr = link.transfer(start, MB, "up")
    assert tr.outages == ((o_start, o_end),)
    assert tr.end == pytest.approx(start + 10.0 + (o_end - o_start))


def test_starting_during_an_outage_waits_for_the_link() -> None:
    link = _link(2, up_bps=8e5, latency_s=0.0, mean_up_s=100.0, mean_down_s=40.0)
    (o_start, o_end), *_ = link.outages_between(0.0, 1e6)
    start = (o_start + o_end) / 2
    tr = link.transfer(start, MB, "up")
    assert tr.outages[0] == (start, o_end)
    assert tr.end >= o_end + 10.0


def test_restarted_transfer_needs_one_long_enough_up_period() -> None:
    link = _link(4, up_bps=8e5, latency_s=1.0, mean_up_s=20.0, mean_down_s=5.0, on_outage="restart")
    need = 1.0 + 10.0
    restarted = 0
    for start in np.linspace(0.0, 3000.0, 300):
        tr = link.transfer(float(start), MB, "up")
        assert tr.completed and tr.end >= start + need
        assert link.is_up(tr.end - need) and link.outages_between(tr.end - need, tr.end) == ()
        assert tr.bytes_on_air >= MB and len(tr.outages) >= tr.restarts
        restarted += tr.restarts > 0
    assert restarted > 20
    total = link.state()
    assert total["restarts"] > 0 and total["bytes_up_on_air"] >= 300 * MB


def test_restart_counts_the_wasted_bytes() -> None:
    link = _link(2, up_bps=8e5, latency_s=0.0, mean_up_s=100.0, mean_down_s=40.0, on_outage="restart")
    (o_start, o_end), *_ = link.outages_between(0.0, 1e6)
    tr = link.transfer(o_start - 4.0, MB, "up")  # 4 s sent, then the drop
    assert tr.restarts == 1
    assert tr.bytes_on_air == MB + 400_000
    assert tr.end == pytest.approx(o_end + 10.0)


def test_hopeless_restart_is_abandoned_with_a_reason() -> None:
    link = _link(1, up_bps=8e3, mean_up_s=1.0, mean_down_s=1.0, on_outage="restart", max_restarts=50)
    tr = link.transfer(0.0, MB, "up")  # needs 1000 s unbroken; up periods average 1 s
    assert tr.end == math.inf and not tr.completed
    assert tr.restarts == 50 and "abandoned after 50 restarts" in tr.reason
    assert 0 < tr.bytes_on_air < 51 * MB and tr.energy_j == tr.bytes_on_air * link.spec.tx_j_per_byte


def test_bandwidth_cv_draws_lognormal_around_the_mean() -> None:
    link = _link(9, down_bps=1e6, bandwidth_cv=0.5, latency_s=0.0)
    bw = np.array([link.transfer(0.0, 1000, "down").bandwidth_bps for _ in range(20000)])
    assert bw.mean() == pytest.approx(1e6, rel=0.02)
    assert bw.std() / bw.mean() == pytest.approx(0.5, rel=0.05)
    assert bw.min() > 0


def test_energy_and_direction() -> None:
    link = _link(tx_j_per_byte=2e-6, rx_j_per_byte=1e-6)
    assert link.transfer(0.0, 1000, "up").energy_j == pytest.approx(2e-3)
    assert link.transfer(0.0, 1000, "down").energy_j == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="'up' or 'down'"):
        link.transfer(0.0, 1000, "sideways")
    with pytest.raises(ValueError, match=">= 0 bytes"):
        link.transfer(0.0, -1, "up")
    with pytest.raises(ValueError, match="finite and >= 0 s, got inf"):
        _link(mean_down_s=5.0).outages_between(0.0, math.inf)
