"""Link: on/off outage statistics and schedule queries, bandwidth, radio power.

How a transfer behaves across outages (resume, restart, abandon) is simulated by the
device job: see tests/test_engine_jobs.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from devices import Link, LinkSpec


def _link(seed: int = 0, **kw) -> Link:
    return Link(LinkSpec(**kw), np.random.default_rng(seed))


def _outages(link: Link, horizon: float) -> np.ndarray:
    """(start, end) of every outage starting before `horizon`, walked with next_down/next_up."""
    spans, t = [], 0.0
    while (down := link.next_down(t)) < horizon:
        t = link.next_up(down)
        spans.append((down, t))
    return np.array(spans)


def test_without_outages_the_link_is_always_up() -> None:
    link = _link()
    assert not link.has_outages
    assert link.is_up(1e9) and link.next_up(5.0) == 5.0 and link.next_down(5.0) == math.inf


def test_outage_durations_match_the_configured_means() -> None:
    """Over ~20,000 on/off cycles the sample means are within 3% of the configured means
    (the standard error of an exponential mean over n samples is mean / sqrt(n) = 0.7%)."""
    mean_up, mean_down = 100.0, 20.0
    link = _link(7, mean_up_s=mean_up, mean_down_s=mean_down)
    horizon = 20_000 * (mean_up + mean_down)
    outages = _outages(link, horizon)
    downs = outages[:, 1] - outages[:, 0]
    ups = np.diff(np.concatenate(([0.0], outages[:, 0]))) - np.concatenate(([0.0], downs[:-1]))
    assert downs.mean() == pytest.approx(mean_down, rel=0.03)
    assert ups.mean() == pytest.approx(mean_up, rel=0.03)
    assert downs.std() == pytest.approx(mean_down, rel=0.05)  # exponential: sd == mean
    assert 1 - downs.sum() / outages[-1, 1] == pytest.approx(mean_up / (mean_up + mean_down), abs=0.01)


def test_is_up_next_up_and_next_down_agree() -> None:
    link = _link(3, mean_up_s=50.0, mean_down_s=10.0)
    outages = _outages(link, 2000.0)
    assert len(outages) > 10 and outages[0][0] > 0.0  # starts up
    for start, end in outages:
        mid = (start + end) / 2
        assert not link.is_up(mid) and link.next_up(mid) == end and link.next_down(mid) == mid
        assert link.is_up(end) and link.is_up(start - 1e-9) and link.next_down(start - 1e-9) == start


def test_schedule_does_not_depend_on_query_order() -> None:
    a, b = _link(5, mean_up_s=60.0, mean_down_s=6.0), _link(5, mean_up_s=60.0, mean_down_s=6.0)
    a.is_up(1e6)
    for _ in range(20):
        b.bandwidth("up")  # draws in between
    np.testing.assert_array_equal(_outages(a, 1e5), _outages(b, 1e5))


def test_bandwidth_cv_draws_lognormal_around_the_mean() -> None:
    link = _link(9, down_bps=1e6, bandwidth_cv=0.5)
    bw = np.array([link.bandwidth("down") for _ in range(20000)])
    assert bw.mean() == pytest.approx(1e6, rel=0.02)
    assert bw.std() / bw.mean() == pytest.approx(0.5, rel=0.05)
    assert bw.min() > 0
    assert _link(up_bps=3e5).bandwidth("up") == 3e5  # cv 0: the mean itself


def test_radio_power_is_energy_per_byte_times_bytes_per_second() -> None:
    link = _link(tx_j_per_byte=2e-6, rx_j_per_byte=1e-6)
    assert link.power_w("up", 8e6) == pytest.approx(2.0)
    assert link.power_w("down", 8e6) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'up' or 'down'"):
        link.bandwidth("sideways")
    with pytest.raises(ValueError, match="finite and >= 0 s, got inf"):
        _link(mean_down_s=5.0).is_up(math.inf)
