"""Figures: accuracy versus simulated wall-clock, and a device timeline."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["plot_accuracy", "plot_device_timeline", "time_unit"]

# Spans drawn on the timeline: (start event, end event, label, colour).
_SPANS = [
    ("download_start", "download_end", "download", "tab:blue"),
    ("train_start", "train_end", "train", "tab:green"),
    ("decrypt_start", "decrypt_end", "crypto", "tab:purple"),
    ("encrypt_start", "encrypt_end", "crypto", "tab:purple"),
    ("upload_start", "upload_end", "upload", "tab:orange"),
    ("transfer_paused", "transfer_resumed", "link outage", "tab:red"),  # outages that cut a transfer
    ("battery_depleted", "battery_recharged", "battery empty", "black"),
]


def time_unit(t_max: float) -> tuple[float, str]:
    """Divisor and unit name for a time axis reaching `t_max` seconds: s, min or h."""
    return (3600, "h") if t_max > 3 * 3600 else (60, "min") if t_max > 3 * 60 else (1, "s")


def plot_accuracy(runs: dict[str, pd.DataFrame], path: str | Path, title: str = "", fmt: str | None = None) -> Path:
    """Test accuracy versus simulated time, one line per run (label -> metrics table)."""
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


def plot_device_timeline(events: pd.DataFrame, path: str | Path, max_devices: int = 25, fmt: str | None = None) -> Path:
    """What each device was doing over time: transfers, training, crypto, outages, empty battery."""
    t_end = float(events["time_s"].max()) if len(events) else 1.0
    devices = sorted(d for d in events["device"].unique() if d >= 0)[:max_devices]
    scale, unit = time_unit(t_end)
    fig, ax = plt.subplots(figsize=(9, 0.28 * max(len(devices), 4) + 1.4), dpi=120)
    seen: set[str] = set()
    for row, dev in enumerate(devices):
        ev = events[events["device"] == dev]
        for start, end, label, colour in _SPANS:
            spans = [(s / scale, d / scale) for s, d in _pairs(ev, start, end, t_end)]
            if spans:
                ax.broken_barh(spans, (row - 0.4, 0.8), color=colour, label=None if label in seen else label)
                seen.add(label)
        left = ev.loc[ev["event"] == "device_left", "time_s"]
        if len(left):
            ax.plot([left.iloc[0] / scale], [row], marker="x", color="black", label=None if "left" in seen else "left")
            seen.add("left")
    ax.set_yticks(range(len(devices)), [str(d) for d in devices], fontsize=7)
    ax.set_ylabel("device")
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_xlim(0, t_end / scale)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, frameon=False, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format=fmt)
    plt.close(fig)
    return Path(path)
