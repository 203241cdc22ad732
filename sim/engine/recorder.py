"""Event log and evaluation metrics, kept in columns while the simulation runs.

Each event appends to typed arrays (time, event code, device, version: 18 bytes) plus,
for the few events with details, one entry per detail to that detail's column (row
number and value, 16 bytes; strings are stored once and referred to by code). So memory
per event is bounded and small, and a million events cost tens of megabytes. The log
becomes a pandas DataFrame (sorted by time, one column per detail) only when asked
for; pandas is imported then.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EVENT_COLUMNS", "Recorder"]

EVENT_COLUMNS = ["time_s", "event", "device", "version"]


class _Detail:
    """One detail column: the rows that have it and their values (numbers, or codes of strings)."""

    __slots__ = ("codes", "kind", "rows", "strings", "values")

    def __init__(self, value: Any) -> None:
        self.rows = array("q")
        self.kind = "str" if isinstance(value, str) else "float" if isinstance(value, float) else "int"
        self.values: array[Any] = array("d" if self.kind == "float" else "q")
        self.codes: dict[str, int] = {}
        self.strings: list[str] = []

    def add(self, row: int, value: Any) -> None:
        self.rows.append(row)
        if self.kind == "str":
            text = str(value)
            code = self.codes.get(text)
            if code is None:
                code = self.codes[text] = len(self.strings)
                self.strings.append(text)
            self.values.append(code)
        elif self.kind == "int" and not isinstance(value, (int, np.integer)):
            self.kind, self.values = "float", array("d", self.values)  # a float among ints: the column is float
            self.values.append(float(value))
        else:
            self.values.append(value)

    def column(self, n: int) -> Any:
        """The full-length column: missing rows are <NA> (numbers) or None (strings)."""
        import pandas as pd

        rows = np.frombuffer(self.rows, dtype=np.int64)
        values = np.frombuffer(self.values, dtype=np.float64 if self.kind == "float" else np.int64)
        if self.kind == "str":
            out = np.full(n, None, dtype=object)
            out[rows] = np.array(self.strings, dtype=object)[values]
            return out
        if self.kind == "float":
            col = np.full(n, np.nan)
            col[rows] = values
            return col
        mask = np.ones(n, dtype=bool)
        mask[rows] = False
        data = np.zeros(n, dtype=np.int64)
        data[rows] = values
        return pd.arrays.IntegerArray(data, mask)


class Recorder:
    """Collects events (time-stamped, per device or server) and evaluation rows."""

    def __init__(self) -> None:
        self._time = array("d")
        self._code = array("H")
        self._device = array("i")
        self._version = array("i")
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        self._details: dict[str, _Detail] = {}
        self._metrics: list[dict[str, Any]] = []

    def _code_of(self, event: str) -> int:
        code = self._codes.get(event)
        if code is None:
            code = self._codes[event] = len(self._names)
            self._names.append(event)
        return code

    def event(self, time: float, event: str, device: int = -1, version: int = -1, **info: Any) -> None:
        """Log one event; `device` -1 means the server."""
        code = self._codes.get(event)
        if code is None:
            code = self._code_of(event)
        if info:
            row = len(self._time)
            for key, value in info.items():
                if value is None:
                    continue
                detail = self._details.get(key)
                if detail is None:
                    detail = self._details[key] = _Detail(value)
                detail.add(row, value)
        self._time.append(time)
        self._code.append(code)
        self._device.append(device)
        self._version.append(version)

    def events_at(self, times: Iterable[float], event: str, devices: Iterable[int], version: int = -1) -> None:
        """Log one `event` per (time, device) pair, without details (e.g. every departure at once)."""
        times, devices = list(times), list(devices)
        code = self._code_of(event)
        self._time.extend(array("d", times))
        self._device.extend(array("i", devices))
        self._code.extend(array("H", [code]) * len(times))
        self._version.extend(array("i", [version]) * len(times))

    def metric(self, **row: Any) -> None:
        """Log one evaluation row (time_s, version, accuracy, loss, counters...)."""
        self._metrics.append(row)

    @property
    def num_events(self) -> int:
        return len(self._time)

    @property
    def nbytes(self) -> int:
        """Memory held by the event log [bytes]."""
        cols: list[array[Any]] = [self._time, self._code, self._device, self._version]
        cols += [c for d in self._details.values() for c in (d.rows, d.values)]
        return sum(c.itemsize * len(c) for c in cols)

    def recent(self, n: int) -> dict[str, int]:
        """How often each event occurs among the last `n` logged, most frequent first."""
        codes = np.frombuffer(self._code, dtype=np.uint16)[-n:]
        counts = np.bincount(codes, minlength=len(self._names))
        order = np.argsort(-counts, kind="stable")
        return {self._names[i]: int(counts[i]) for i in order if counts[i]}

    def events(self) -> pd.DataFrame:
        """All events ordered by time (ties keep logging order); detail keys become columns."""
        import pandas as pd

        n = len(self._time)
        time = np.frombuffer(self._time, dtype=np.float64)
        columns: dict[str, Any] = {
            "time_s": time,
            "event": np.array(self._names, dtype=object)[np.frombuffer(self._code, dtype=np.uint16)],
            "device": np.frombuffer(self._device, dtype=np.int32).astype(np.int64),
            "version": np.frombuffer(self._version, dtype=np.int32).astype(np.int64),
        }
        for key, detail in self._details.items():
            columns[key] = detail.column(n)
        order = np.argsort(time, kind="stable")
        return pd.DataFrame(columns).iloc[order].reset_index(drop=True)

    def metrics(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self._metrics)
