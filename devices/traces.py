"""Readers for user-supplied trace files: solar output (CSV) and link bandwidth (JSON/CSV).

Files are read once per (path, modification time) and cached; the returned arrays are
read-only. Every problem raises `TraceError` (a ValueError) naming the file, the bad
column/row/value and the expected format; a missing file raises `TraceNotFoundError`
(also a FileNotFoundError).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BANDWIDTH_FORMAT",
    "SOLAR_FORMAT",
    "BandwidthTrace",
    "SolarTrace",
    "TraceError",
    "TraceNotFoundError",
    "read_bandwidth_trace",
    "read_solar_trace",
]

SOLAR_FORMAT = (
    "a CSV with a header row: an optional 'time' column (seconds, strictly increasing, or ISO date-times) "
    "and one or more value columns of normalised solar output in [0, 1]; without a 'time' column the rows "
    "are step_s seconds apart"
)
BANDWIDTH_FORMAT = (
    "either a JSON object {device_id: {down_u, down_sigma, up_u, up_sigma}} of per-device mean and "
    "standard deviation in kbit/s, or a CSV with columns 'down_kbps' and 'up_kbps', one sample per row"
)
_PHONE_KEYS = ("down_u", "down_sigma", "up_u", "up_sigma")


class TraceError(ValueError):
    """A trace file is unreadable or malformed; the message names the problem and the format."""


class TraceNotFoundError(TraceError, FileNotFoundError):
    """A trace file does not exist."""


@dataclass(frozen=True)
class SolarTrace:
    """Normalised solar output, piecewise constant: values[i] holds on [times_s[i], times_s[i+1]).

    times_s starts at 0 and has one more entry than values (the last is the period, after
    which the trace repeats).
    """

    path: Path
    column: str
    times_s: np.ndarray
    values: np.ndarray

    @property
    def period_s(self) -> float:
        """Length of the trace; it repeats after this [s]."""
        return float(self.times_s[-1])


@dataclass(frozen=True)
class BandwidthTrace:
    """Bandwidth samples in bit/s.

    kind "devices": row i is one real device's (mean, sd) per direction; a link adopts one
    row and draws each transfer from a lognormal with that mean and sd.
    kind "samples": rows are observed (down, up) pairs; each transfer draws one row.
    down_sd/up_sd are zeros for "samples".
    """

    path: Path
    kind: Literal["devices", "samples"]
    down_bps: np.ndarray
    up_bps: np.ndarray
    down_sd_bps: np.ndarray
    up_sd_bps: np.ndarray


def _stat_key(path: str | Path, what: str, fmt: str) -> tuple[str, int, int]:
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise TraceNotFoundError(
            f"{what} trace file not found: {str(path)!r} (looked at {p.resolve()}); check the path. "
            f"Expected {fmt}"
        ) from None
    if not p.is_file():
        raise TraceError(f"{what} trace path {str(path)!r} is not a file; expected {fmt}")
    return str(p.resolve()), st.st_mtime_ns, st.st_size


def _read_csv(path: Path, what: str, fmt: str) -> pd.DataFrame:
    import pandas as pd  # only when a trace is read: importing devices stays light

    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TraceError(f"{what} trace {path} is not a readable CSV ({exc}); expected {fmt}") from None
    if frame.empty:
        raise TraceError(f"{what} trace {path} has no data rows; expected {fmt}")
    return frame


def _numeric(frame: pd.DataFrame, col: str, path: Path, what: str) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = int(bad[0])
        raise TraceError(
            f"{what} trace {path}: column {col!r} row {row + 2} (counting the header as row 1) "
            f"holds {frame[col].iloc[row]!r}, not a finite number"
        )
    return values


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=float)
    a.setflags(write=False)
    return a


def read_solar_trace(path: str | Path, column: str | None = None, step_s: float = 300.0) -> SolarTrace:
    """Read a normalised solar-output CSV (format: `SOLAR_FORMAT`)."""
    return _read_solar_cached(*_stat_key(path, "solar", SOLAR_FORMAT), column, float(step_s))


@lru_cache(maxsize=32)
def _read_solar_cached(path_s: str, _mtime: int, _size: int, column: str | None, step_s: float) -> SolarTrace:
    path = Path(path_s)
    frame = _read_csv(path, "solar", SOLAR_FORMAT)
    value_cols = [c for c in frame.columns if c != "time"]
    if not value_cols:
        raise TraceError(f"solar trace {path} has no value column besides 'time'; expected {SOLAR_FORMAT}")
    if column is None:
        if len(value_cols) > 1:
            raise TraceError(
                f"solar trace {path} has {len(value_cols)} value columns ({', '.join(value_cols)}); "
                f"choose one with 'column'"
            )
        column = value_cols[0]
    elif column not in value_cols:
        raise TraceError(f"solar trace {path} has no column {column!r}; its value columns are: {', '.join(value_cols)}")
    values = _numeric(frame, column, path, "solar")
    out = np.flatnonzero((values < 0.0) | (values > 1.0))
    if out.size:
        row = int(out[0])
        raise TraceError(
            f"solar trace {path}: column {column!r} row {row + 2} holds {float(values[row]):g}, outside [0, 1]; "
            f"normalise the output by the panel's peak (the panel's watts go in panel_w)"
        )
    if "time" in frame.columns:
        times = _time_column(frame["time"], path)
    else:
        times = np.arange(len(values), dtype=float) * step_s
    last_step = times[-1] - times[-2] if len(times) > 1 else step_s
    edges = np.append(times - times[0], times[-1] - times[0] + last_step)
    return SolarTrace(path, column, _readonly(edges), _readonly(values))


def _time_column(col: pd.Series, path: Path) -> np.ndarray:
    import pandas as pd

    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().all():
        times = numeric.to_numpy(dtype=float)
    else:
        try:
            stamps = pd.to_datetime(col, utc=True)
        except (ValueError, TypeError) as exc:
            raise TraceError(
                f"solar trace {path}: the 'time' column must be seconds or ISO date-times ({exc})"
            ) from None
        times = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy(dtype=float)
    steps = np.diff(times)
    bad = np.flatnonzero(~(steps > 0))
    if bad.size or not np.isfinite(times).all():
        row = int(bad[0]) + 1 if bad.size else 0
        raise TraceError(
            f"solar trace {path}: 'time' must be finite and strictly increasing; row {row + 2} "
            f"({col.iloc[row]!r}) does not come after the row before it"
        )
    return times


def read_bandwidth_trace(path: str | Path) -> BandwidthTrace:
    """Read a bandwidth trace (format: `BANDWIDTH_FORMAT`); values are returned in bit/s."""
    return _read_bandwidth_cached(*_stat_key(path, "bandwidth", BANDWIDTH_FORMAT))


@lru_cache(maxsize=32)
def _read_bandwidth_cached(path_s: str, _mtime: int, _size: int) -> BandwidthTrace:
    path = Path(path_s)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_bandwidth_json(path)
    if suffix == ".csv":
        return _read_bandwidth_csv(path)
    raise TraceError(f"bandwidth trace {path} must end in .json or .csv (got {suffix!r}); expected {BANDWIDTH_FORMAT}")


def _read_bandwidth_json(path: Path) -> BandwidthTrace:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TraceError(f"bandwidth trace {path} is not valid JSON ({exc}); expected {BANDWIDTH_FORMAT}") from None
    if not isinstance(data, dict) or not data:
        raise TraceError(f"bandwidth trace {path} must be a non-empty JSON object; expected {BANDWIDTH_FORMAT}")
    rows = []
    for dev_id, rec in data.items():
        if not isinstance(rec, dict) or any(k not in rec for k in _PHONE_KEYS):
            missing = [k for k in _PHONE_KEYS if not isinstance(rec, dict) or k not in rec]
            raise TraceError(f"bandwidth trace {path}: device {dev_id!r} lacks {', '.join(missing)}")
        row = []
        for key in _PHONE_KEYS:
            value = rec[key]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0 or (key.endswith("_u") and value == 0):
                need = "> 0" if key.endswith("_u") else ">= 0"
                raise TraceError(
                    f"bandwidth trace {path}: device {dev_id!r} {key} = {value!r}; must be a number {need}"
                )
            row.append(float(value) * 1e3)
        rows.append(row)
    a = np.array(rows)
    down, down_sd, up, up_sd = (_readonly(a[:, k]) for k in range(4))
    return BandwidthTrace(path, "devices", down, up, down_sd, up_sd)


def _read_bandwidth_csv(path: Path) -> BandwidthTrace:
    frame = _read_csv(path, "bandwidth", BANDWIDTH_FORMAT)
    missing = [c for c in ("down_kbps", "up_kbps") if c not in frame.columns]
    if missing:
        raise TraceError(
            f"bandwidth trace {path} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))}); "
            f"expected {BANDWIDTH_FORMAT}"
        )
    cols = []
    for col in ("down_kbps", "up_kbps"):
        values = _numeric(frame, col, path, "bandwidth")
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            row = int(bad[0])
            raise TraceError(
                f"bandwidth trace {path}: column {col!r} row {row + 2} holds {float(values[row]):g}; must be > 0"
            )
        cols.append(values * 1e3)
    zeros = np.zeros(len(frame))
    return BandwidthTrace(path, "samples", _readonly(cols[0]), _readonly(cols[1]), _readonly(zeros), _readonly(zeros))
