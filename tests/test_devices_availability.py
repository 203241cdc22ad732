"""Availability: dropout probability and timing, declined invitations, daily windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devices import DAY_S, Availability, AvailabilitySpec, draw_dropout_times


def test_dropout_rate_and_uniform_leaving_time() -> None:
    spec = AvailabilitySpec(dropout_rate=0.3, dropout_window_s=1000.0)
    times = draw_dropout_times(spec, 4000, np.random.default_rng(0), math.inf)
    left = times[np.isfinite(times)]
    assert len(left) / len(times) == pytest.approx(0.3, abs=0.03)
    assert left.min() >= 0 and left.max() < 1000.0
    assert left.mean() == pytest.approx(500.0, rel=0.05)


def test_dropped_after_the_dropout_time() -> None:
    (when,) = draw_dropout_times(AvailabilitySpec(dropout_rate=1.0), 1, np.random.default_rng(0), horizon_s=100.0)
    assert 0 <= when < 100.0
    a = Availability(AvailabilitySpec(dropout_rate=1.0), np.random.default_rng(0), when)
    assert not a.dropped(when - 1e-9) and a.dropped(when)
    assert math.isinf(Availability(AvailabilitySpec(), np.random.default_rng(0)).dropout_time)
    assert np.isinf(draw_dropout_times(AvailabilitySpec(), 3, np.random.default_rng(0), math.inf)).all()


def test_dropout_needs_a_window() -> None:
    with pytest.raises(ValueError, match="set dropout_window_s or pass the run's horizon_s"):
        draw_dropout_times(AvailabilitySpec(dropout_rate=0.1), 5, np.random.default_rng(0), math.inf)


def test_declines_invitations_at_the_configured_rate() -> None:
    a = Availability(AvailabilitySpec(unavailability=0.25), np.random.default_rng(1))
    share = np.mean([a.declines_invitation() for _ in range(20000)])
    assert share == pytest.approx(0.25, abs=0.015)
    assert a.state()["invitations_declined"] == round(share * 20000)
    never = Availability(AvailabilitySpec(), np.random.default_rng(1))
    assert not any(never.declines_invitation() for _ in range(100))


@pytest.mark.parametrize(
    ("window", "t_hours", "inside"),
    [
        ((9.0, 17.0), 8.0, False),
        ((9.0, 17.0), 9.0, True),
        ((9.0, 17.0), 17.0, False),
        ((22.0, 6.0), 23.0, True),
        ((22.0, 6.0), 24 + 3.0, True),
        ((22.0, 6.0), 6.0, False),
        ((22.0, 6.0), 24 + 12.0, False),
    ],
)
def test_daily_window(window, t_hours: float, inside: bool) -> None:
    a = Availability(AvailabilitySpec(daily_window=window), np.random.default_rng(0))
    assert a.in_window(t_hours * 3600) == inside


def test_no_window_means_always() -> None:
    a = Availability(AvailabilitySpec(), np.random.default_rng(0))
    assert a.in_window(12345.0) and a.in_window(3 * DAY_S + 1.0)
