"""Figures of runs: accuracy versus simulated wall-clock, and a device timeline; the file a figure goes to."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["image_path", "plot_accuracy", "plot_device_timeline", "time_unit"]

_IMAGE_TYPES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff")

# Spans drawn on the timeline: (start event, end event, label, colour).
_SPANS = [
    ("download_start", "download_end", "download", "tab:blue"),
    ("train_start", "train_end", "train", "tab:green"),
    ("decrypt_start", "decrypt_end", "crypto", "tab:purple"),
    ("encrypt_start", "encrypt_end", "crypto", "tab:purple"),
    ("upload_start", "upload_end", "upload", "tab:orange"),
    ("transfer_paused", "transfer_resumed", "link outage", "tab:red"),  # outages that cut a transfer
    ("battery_depleted", "battery_recharged", "battery empty", "black"),
    ("went_offline", "came_online", "offline, job paused", "tab:gray"),  # churn or a trace (on_offline: pause)
]
# Moments marked on the timeline: (event, marker, colour, label).
_MARKS = [
    ("job_dropout", "v", "tab:red", "job dropped out"),
    ("device_left", "x", "black", "left"),
]


def time_unit(t_max: float) -> tuple[float, str]:
    """Divisor and unit name for a time axis reaching `t_max` seconds: s, min or h."""
    return (3600, "h") if t_max > 3 * 3600 else (60, "min") if t_max > 3 * 60 else (1, "s")


def plot_accuracy(
    runs: dict[str, pd.DataFrame], path: str | Path, title: str = "", fmt: str | None = None, note: str = ""
) -> Path:
    """Test accuracy versus simulated time, one line per run (label -> metrics table); `note` is printed on it."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    top = max((float(m["time_s"].max()) for m in runs.values() if len(m)), default=0.0)
    scale, unit = time_unit(top)
    for label, m in runs.items():
        m = m.dropna(subset=["accuracy"])
        ax.plot(m["time_s"] / scale, 100 * m["accuracy"], marker="o", markersize=2.5, linewidth=1.6, label=label)
    ax.set_xlabel(f"simulated wall-clock time ({unit})")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    if note:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="tab:red",
                wrap=True)
    fig.tight_layout()
    fig.savefig(path, format=fmt)
    plt.close(fig)
    return Path(path)


def _pairs(ev: pd.DataFrame, start: str, end: str, t_end: float) -> list[tuple[float, float]]:
    """Match each start event with the next end event (open spans end at t_end)."""
    starts = ev.loc[ev["event"] == start, "time_s"].tolist()
    ends = ev.loc[ev["event"] == end, "time_s"].tolist()
    spans, j = [], 0
    for s in starts:
        while j < len(ends) and ends[j] < s:
            j += 1
        e = ends[j] if j < len(ends) else t_end
        j += j < len(ends)
        spans.append((s, e - s))
    return spans


def image_path(path: Path) -> Path:
    """The file a figure is written to: `path`, with `.png` added when it has no extension.

    ValueError for an extension matplotlib cannot write or a folder that does not exist.
    """
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    if path.suffix.lower() not in _IMAGE_TYPES:
        raise ValueError(f"{path}: cannot write a {path.suffix} image; use one of {', '.join(_IMAGE_TYPES)}")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the folder {path.parent} does not exist")
    return path


def _shown_devices(ids: list[int], most: int) -> tuple[list[int], str]:
    """The devices a timeline draws: all up to `most`, else `most` spread evenly over the ids; and a note."""
    if len(ids) <= most:
        return ids, ""
    picks = sorted({ids[i] for i in np.linspace(0, len(ids) - 1, most).round().astype(int)})
    return picks, f"{len(picks)} of {len(ids)} devices shown, spread evenly over the ids; devices.csv has all"


def plot_device_timeline(
    events: pd.DataFrame, path: str | Path, max_devices: int = 60, fmt: str | None = None, end_s: float = 0.0
) -> Path:
    """What each device was doing over time, up to `end_s` (the run's end) or the last event:
    transfers, training, crypto, outages, empty battery, offline pauses; job dropouts and departures marked.

    More than `max_devices` devices: that many, spread evenly over the ids, and the figure says so.
    """
    t_end = max(float(events["time_s"].max()) if len(events) else 0.0, end_s) or 1.0
    devices, note = _shown_devices(sorted(int(d) for d in events["device"].unique() if d >= 0), max_devices)
    scale, unit = time_unit(t_end)
    fig, ax = plt.subplots(figsize=(9, 0.22 * max(len(devices), 4) + 1.6), dpi=120)
    if note:
        ax.set_title(note, fontsize=8)
    seen: set[str] = set()
    for row, dev in enumerate(devices):
        ev = events[events["device"] == dev]
        for start, end, label, colour in _SPANS:
            spans = [(s / scale, d / scale) for s, d in _pairs(ev, start, end, t_end)]
            if spans:
                ax.broken_barh(spans, (row - 0.4, 0.8), color=colour, label=None if label in seen else label)
                seen.add(label)
        for event, marker, colour, label in _MARKS:
            at = ev.loc[ev["event"] == event, "time_s"].to_numpy() / scale
            if len(at):
                ax.plot(at, np.full(len(at), row), marker, color=colour, ms=4, label=None if label in seen else label)
                seen.add(label)
    ax.set_yticks(range(len(devices)), [str(d) for d in devices], fontsize=7 if len(devices) <= 30 else 5)
    ax.set_ylabel("device")
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_xlim(0, t_end / scale)
    if seen:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, frameon=False, fontsize=8)
    else:  # nothing happened on any device (e.g. all offline): say so instead of an empty legend
        ax.text(0.5, 0.5, "no device activity in this run", transform=ax.transAxes, ha="center", va="center",
                fontsize=9, color="tab:red")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format=fmt)
    plt.close(fig)
    return Path(path)
