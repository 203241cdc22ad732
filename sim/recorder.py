"""Event log, evaluation metrics and per-device totals, as pandas DataFrames.

Events are kept as compact tuples while the simulation runs and turned into a
DataFrame (one column per detail key) only when asked for.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["EVENT_COLUMNS", "Recorder"]

EVENT_COLUMNS = ["time_s", "event", "device", "version"]


class Recorder:
    """Collects events (time-stamped, per device or server) and evaluation rows."""

    def __init__(self) -> None:
        self._events: list[tuple[float, str, int, int, dict[str, Any] | None]] = []
        self._metrics: list[dict[str, Any]] = []

    def event(self, time: float, event: str, device: int = -1, version: int = -1, **info: Any) -> None:
        """Log one event; `device` -1 means the server."""
        self._events.append((float(time), event, int(device), int(version), info or None))

    def metric(self, **row: Any) -> None:
        """Log one evaluation row (time_s, version, accuracy, loss, counters...)."""
        self._metrics.append(row)

    @property
    def num_events(self) -> int:
        return len(self._events)

    def events(self) -> pd.DataFrame:
        """All events ordered by time (ties keep logging order); detail keys become columns."""
        base = pd.DataFrame([e[:4] for e in self._events], columns=EVENT_COLUMNS)
        details = pd.DataFrame.from_records([e[4] or {} for e in self._events], index=base.index)
        df = pd.concat([base, details], axis=1)
        return df.sort_values("time_s", kind="stable", ignore_index=True)

    def metrics(self) -> pd.DataFrame:
        return pd.DataFrame(self._metrics)
