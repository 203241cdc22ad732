"""Availability traces: per-client online intervals read from a file, replayed by `devices.sessions.TraceSessions`.

Two layouts (`AVAILABILITY_FORMAT`):

- FedScale's `client_behave_trace`: a mapping {client_id: {"active": [s, ...], "inactive":
  [s, ...], "finish_time": s, "duration": s, "model": str}}, client i online on
  [active[k], inactive[k]) and the whole schedule repeating every finish_time seconds (as
  FedScale replays it: time modulo finish_time). FedScale ships it as a pickle; it is read
  with a restricted unpickler that rebuilds plain containers, numbers and strings only (any
  other object in the file is refused, so a tampered file cannot run code), or as the same
  mapping in JSON (`.json`). `duration` and `model` are checked but not used. Intervals
  past finish_time are clipped to it (FedScale never reaches them either); touching
  intervals are merged; an `active` list one longer than `inactive` ends online until
  finish_time.
- This project's own table (`.csv` or `.parquet`): one row per online interval, columns
  `client` (an id), `start_s`, `end_s` (seconds from the run's start, start < end), and
  optionally `period_s` (the client's schedule repeats every period_s seconds; one value per
  client; absent or empty: it plays once, then the client stays offline).

Devices are mapped to trace clients by a seeded draw (`assign_clients`). Files are read once
per (path, modification time) and cached. Every problem raises `devices.traces.TraceError`
naming the file, the client and what is wrong.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from devices.traces import TraceError, _stat_key

__all__ = ["AVAILABILITY_FORMAT", "MAX_TRACE_BYTES", "AvailabilityTrace", "assign_clients", "read_availability_trace"]

AVAILABILITY_FORMAT = (
    "FedScale's client_behave_trace ({client_id: {active: [s], inactive: [s], finish_time: s, duration, model}}) "
    "as its pickle or as JSON (.json), or a table (.csv or .parquet) with one row per online interval: columns "
    "client, start_s, end_s and optionally period_s (docs/devices.md)"
)
MAX_TRACE_BYTES = 1 << 30  # FedScale's trace of 107,749 phones is ~25 MB


@dataclass(frozen=True)
class AvailabilityTrace:
    """Per-client online intervals: client k is online on `intervals[k]` [(start, end), ...] [s], repeating
    every `periods[k]` seconds (None: once)."""

    path: Path
    clients: tuple[str, ...]
    intervals: tuple[tuple[tuple[float, float], ...], ...]
    periods: tuple[float | None, ...]

    def __len__(self) -> int:
        return len(self.clients)


def read_availability_trace(path: str | Path) -> AvailabilityTrace:
    """Read an availability trace (`AVAILABILITY_FORMAT`); raises TraceError (TraceNotFoundError if missing)."""
    try:
        return _read_cached(*_stat_key(path, "availability", AVAILABILITY_FORMAT))
    except TraceError:
        raise
    except (OSError, ValueError) as exc:  # unreadable (permissions, a NUL in the name, ...)
        raise TraceError(f"cannot read the availability trace {str(path)!r}: {exc}") from None


def assign_clients(trace: AvailabilityTrace, num_devices: int, seed: np.random.SeedSequence) -> np.ndarray:
    """Trace client index of each device: a seeded permutation of the clients, device i taking the
    (i mod clients)-th (distinct clients while the fleet is no larger than the trace)."""
    order = np.random.default_rng(seed).permutation(len(trace))
    return order[np.arange(num_devices) % len(trace)]


class _PlainUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, tuples, numbers and strings only: any class or function in the file is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"the file asks for {module}.{name}; an availability trace holds plain containers, numbers and strings only"
        )


@lru_cache(maxsize=8)
def _read_cached(path_s: str, _mtime: int, size: int) -> AvailabilityTrace:
    path = Path(path_s)
    if size > MAX_TRACE_BYTES:
        raise TraceError(f"availability trace {path} is {size / 2**20:.0f} MiB, more than the {MAX_TRACE_BYTES >> 20} "
                         "MiB allowed; split the trace")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        return _read_table(path, suffix)
    if suffix == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TraceError(f"availability trace {path} is not valid JSON ({exc}); expected {AVAILABILITY_FORMAT}") from None
    else:
        try:
            raw = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            raise TraceError(f"availability trace {path} is not a readable FedScale pickle ({exc}); expected "
                             f"{AVAILABILITY_FORMAT}") from None
    return _from_fedscale(path, raw)


def _from_fedscale(path: Path, raw: Any) -> AvailabilityTrace:
    if not isinstance(raw, dict) or not raw:
        raise TraceError(f"availability trace {path} holds {type(raw).__name__}, not a non-empty mapping of clients; "
                         f"expected {AVAILABILITY_FORMAT}")
    clients, intervals, periods = [], [], []
    for client, entry in raw.items():
        where = f"availability trace {path}, client {client!r}"
        if not isinstance(entry, dict) or not {"active", "inactive", "finish_time"} <= set(entry):
            raise TraceError(f"{where}: expected a mapping with active, inactive and finish_time; got "
                             f"{sorted(entry) if isinstance(entry, dict) else type(entry).__name__}")
        active, inactive = _seconds(entry["active"], where, "active"), _seconds(entry["inactive"], where, "inactive")
        finish = _seconds([entry["finish_time"]], where, "finish_time")[0]
        if not finish > 0:
            raise TraceError(f"{where}: finish_time {finish:g} must be positive (the schedule's period in seconds)")
        if "model" in entry and not isinstance(entry["model"], str):
            raise TraceError(f"{where}: model must be a text, got {type(entry['model']).__name__}")
        if "duration" in entry:
            _seconds([entry["duration"]], where, "duration")
        if len(active) == len(inactive) + 1:
            inactive.append(finish)
        if len(active) != len(inactive):
            raise TraceError(f"{where}: {len(active)} active but {len(inactive)} inactive times; they come in pairs")
        pairs = [(min(a, finish), min(b, finish)) for a, b in zip(active, inactive)]
        clients.append(str(client))
        intervals.append(_intervals(pairs, where))
        periods.append(finish)
    return AvailabilityTrace(path, tuple(clients), tuple(intervals), tuple(periods))


def _seconds(values: Any, where: str, name: str) -> list[float]:
    if not isinstance(values, list | tuple) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                       for v in values):
        raise TraceError(f"{where}: {name} must be a list of numbers of seconds")
    out = [float(v) for v in values]
    if not all(math.isfinite(v) and v >= 0 for v in out):
        raise TraceError(f"{where}: {name} holds a negative or non-finite time; times are seconds >= 0")
    return out


def _intervals(pairs: list[tuple[float, float]], where: str) -> tuple[tuple[float, float], ...]:
    """Sorted, disjoint intervals, touching ones merged and empty ones dropped; TraceError if any overlap or
    runs backwards."""
    out: list[tuple[float, float]] = []
    for a, b in pairs:
        if b < a:
            raise TraceError(f"{where}: the interval [{a:g}, {b:g}) ends before it starts")
        if b == a:
            continue
        if out and a < out[-1][1]:
            raise TraceError(f"{where}: the interval [{a:g}, {b:g}) starts before the previous one "
                             f"[{out[-1][0]:g}, {out[-1][1]:g}) ends; intervals must be sorted and disjoint")
        if out and a == out[-1][1]:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


def _read_table(path: Path, suffix: str) -> AvailabilityTrace:
    import pandas as pd  # only when a trace is read: importing devices stays light

    try:
        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, dtype={"client": str})
    except (OSError, ValueError) as exc:  # pandas' and pyarrow's errors for a broken file derive from these
        raise TraceError(f"availability trace {path} is not a readable {suffix[1:]} table ({exc}); expected "
                         f"{AVAILABILITY_FORMAT}") from None
    missing = [c for c in ("client", "start_s", "end_s") if c not in frame.columns]
    if missing or frame.empty:
        raise TraceError(f"availability trace {path} lacks {', '.join(missing) or 'rows'}; expected {AVAILABILITY_FORMAT}")
    extra = sorted(set(frame.columns) - {"client", "start_s", "end_s", "period_s"})
    if extra:
        raise TraceError(f"availability trace {path} has unknown columns {', '.join(map(str, extra))}; expected "
                         f"{AVAILABILITY_FORMAT}")
    for col in ("start_s", "end_s", *(("period_s",) if "period_s" in frame else ())):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() if col != "period_s" else values.isna() & frame[col].notna()
        if bad.any() or not np.isfinite(values.dropna()).all() or (values.dropna() < 0).any():
            row = int(np.flatnonzero(bad.to_numpy() | ~np.isfinite(values.fillna(0)) | (values.fillna(0) < 0))[0])
            raise TraceError(f"availability trace {path}: column {col} row {row + 2} (the header is row 1) holds "
                             f"{frame[col].iloc[row]!r}, not a number of seconds >= 0")
        frame[col] = values
    frame["client"] = frame["client"].astype(str)
    clients, intervals, periods = [], [], []
    for client, rows in frame.groupby("client", sort=True):
        where = f"availability trace {path}, client {client!r}"
        rows = rows.sort_values("start_s", kind="stable")
        ivals = _intervals(list(zip(rows["start_s"].tolist(), rows["end_s"].tolist())), where)
        period = None
        if "period_s" in rows and rows["period_s"].notna().any():
            given = set(rows["period_s"].tolist())
            if len(given) != 1:
                raise TraceError(f"{where}: period_s must be one value for all of its rows, got {sorted(given)}")
            period = float(given.pop())
            if not period > 0 or (ivals and ivals[-1][1] > period):
                raise TraceError(f"{where}: period_s {period:g} must be positive and hold every interval (the last "
                                 f"ends at {ivals[-1][1] if ivals else 0:g} s)")
        clients.append(str(client))
        intervals.append(ivals)
        periods.append(period)
    return AvailabilityTrace(path, tuple(clients), tuple(intervals), tuple(periods))
