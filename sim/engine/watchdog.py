"""Run budgets and the watchdog that enforces them: no run hangs, loops in zero time or grows without bound.

The engine steps SimPy in chunks and, between chunks, asks the watchdog whether the run
is still within its `RunBudget`:

- progress: simulated time must advance; a run that takes `max_steps_at_one_time` steps
  at one simulated instant is looping (e.g. jobs that fail the moment they start, so
  rounds open and close at the same time); and something must happen: a run that takes
  `max_steps_without_events` steps without logging a single event only spins timers
  (e.g. a server polling for devices that never come);
- events: at most `max_events` logged events;
- memory: this process's resident memory at most `max_memory_bytes`.

A run over budget stops with `BudgetExceeded`, whose message names the cause, what the
run was doing (the most frequent recent events) and the fix.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sim.errors import PpaflError

__all__ = ["DEFAULT_MAX_EVENTS", "BudgetExceeded", "RunBudget", "Watchdog", "resident_bytes"]

DEFAULT_MAX_EVENTS = 200_000_000  # ~4 GiB of event log at ~20 bytes an event
DEFAULT_MAX_STEPS_WITHOUT_EVENTS = 1_000_000  # a 30 s poll that finds no device for a simulated year
_STEPS_AT_ONE_TIME_BASE, _STEPS_AT_ONE_TIME_PER_DEVICE = 200_000, 50
_MEMORY_EVERY = 16  # chunks between memory readings


class BudgetExceeded(PpaflError):
    """A run went over its budget; `cause` is "no_progress", "events" or "memory"."""

    def __init__(self, message: str, cause: Literal["no_progress", "events", "memory"]) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class RunBudget:
    """What one run may spend (None: the default named on each field)."""

    max_events: int | None = DEFAULT_MAX_EVENTS  # logged events; None: no limit
    max_memory_bytes: int | None = None  # resident memory of this process; None: no limit
    max_steps_at_one_time: int | None = None  # SimPy steps at one simulated instant; None: 200,000 + 50 per device
    max_steps_without_events: int | None = DEFAULT_MAX_STEPS_WITHOUT_EVENTS  # SimPy steps logging nothing; None: any

    def __post_init__(self) -> None:
        for name in ("max_events", "max_memory_bytes", "max_steps_at_one_time", "max_steps_without_events"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"RunBudget.{name} must be a whole number >= 1 or None, got {value!r}")


def resident_bytes() -> int:
    """Resident memory of this process now [bytes] (peak resident memory where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


class Watchdog:
    """Checks a run against its budget between chunks of SimPy steps (see the module docstring).

    `events()` gives the number of events logged so far, `recent(n)` the counts of the last n
    events by name; `what` names the run in messages.
    """

    def __init__(
        self,
        budget: RunBudget,
        num_devices: int,
        events: Callable[[], int],
        recent: Callable[[int], dict[str, int]],
        what: str,
    ) -> None:
        self.budget = budget
        self.max_at_one_time = budget.max_steps_at_one_time or (
            _STEPS_AT_ONE_TIME_BASE + _STEPS_AT_ONE_TIME_PER_DEVICE * num_devices
        )
        self._events, self._recent, self._what = events, recent, what
        self._time = -1.0
        self._steps_at_time = 0
        self._events_seen, self._silent_steps, self._silent_since = -1, 0, 0.0
        self._checks = 0
        self.peak_memory_bytes = 0

    def check(self, now: float, steps: int) -> None:
        """After `steps` more SimPy steps at simulated time `now`: raise BudgetExceeded if over budget."""
        if now == self._time:
            self._steps_at_time += steps
            if self._steps_at_time > self.max_at_one_time:
                self._stop_no_progress(now)
        else:
            self._time, self._steps_at_time = now, steps
        budget = self.budget
        events = self._events()
        if events != self._events_seen:
            self._events_seen, self._silent_steps, self._silent_since = events, 0, now
        else:
            self._silent_steps += steps
            if budget.max_steps_without_events is not None and self._silent_steps > budget.max_steps_without_events:
                self._stop_silent(now)
        if budget.max_events is not None and events > budget.max_events:
            raise BudgetExceeded(
                f"{self._what}: stopped at {now:.6g} simulated s after {self._events():,} events, over the event "
                f"budget of {budget.max_events:,} ({self._doing()}). Shorten the run (stop.max_time_s, "
                "stop.max_versions) or use fewer devices; if the run really needs more events, raise the budget "
                "(run_scenario(..., budget=RunBudget(max_events=...)))",
                "events",
            )
        self._checks += 1
        if budget.max_memory_bytes is not None and self._checks % _MEMORY_EVERY == 0:
            self.check_memory(now)

    def check_memory(self, now: float) -> None:
        """Raise BudgetExceeded if this process holds more memory than the budget."""
        limit = self.budget.max_memory_bytes
        rss = resident_bytes()
        self.peak_memory_bytes = max(self.peak_memory_bytes, rss)
        if limit is not None and rss > limit:
            raise BudgetExceeded(
                f"{self._what}: stopped at {now:.6g} simulated s holding {_mib(rss)} of memory, over the budget of "
                f"{_mib(limit)}, after {self._events():,} events ({self._doing()}). Shorten the run "
                "(stop.max_time_s, stop.max_versions), use fewer devices, a smaller model or encryption.mode "
                "modeled; or raise the limit (ppafl run --memory-limit-gb)",
                "memory",
            )

    def _doing(self) -> str:
        recent = self._recent(10_000)
        top = ", ".join(f"{name} {count:,}" for name, count in list(recent.items())[:4])
        return f"most frequent of the last events: {top}" if top else "no events logged"

    def _stop_silent(self, now: float) -> None:
        raise BudgetExceeded(
            f"{self._what}: nothing happens: {self._silent_steps:,} simulation steps from t = {self._silent_since:.6g} "
            f"to {now:.6g} s without a single event (only timers run, e.g. the server polling for devices that are "
            f"never available); stopped after {self._events():,} events. Make devices available (failures."
            "unavailability, failures.daily_window, failures.dropout_rate) or shorten the run (stop.max_time_s); if "
            "this is expected, raise the limit (run_scenario(..., budget=RunBudget(max_steps_without_events=...)))",
            "no_progress",
        )

    def _stop_no_progress(self, now: float) -> None:
        recent = self._recent(10_000)
        hint = ""
        if recent.get("round_open", 0) > 100:
            hint = (
                " Rounds open and close at the same instant because every invited job ends at once: see what ends "
                "them in the events (failures, declined invitations) and let the devices finish a job."
            )
        raise BudgetExceeded(
            f"{self._what}: no simulated progress: {self._steps_at_time:,} simulation steps at t = {now:.6g} s "
            f"without time passing ({self._doing()}); stopped after {self._events():,} events.{hint} If this "
            "is expected, raise the limit (run_scenario(..., budget=RunBudget(max_steps_at_one_time=...)))",
            "no_progress",
        )
