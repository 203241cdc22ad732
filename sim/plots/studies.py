"""Figures and tables of studies: sensitivity, accuracy bands over seeds, energy per device class, a comparison's
curves with their intervals (computed by `sim.studies`).

The sweep table (`sweep.csv`, one row per cell) names the swept fields in its columns.
The x axis of a study is its first swept field whose values are all numbers (else its
first swept field); the other swept fields make the lines (e.g. one per strategy).
Every statistic is over seeds: a line shows the mean, error bars one standard deviation,
accuracy bands the range from the lowest to the highest seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.transforms import blended_transform_factory
from matplotlib.typing import RcKeyType

from sim.plots.runs import time_unit

__all__ = [
    "band_over_seeds",
    "group_stats",
    "line_labels",
    "lined",
    "plot_accuracy_bands",
    "plot_compare_bands",
    "plot_energy_by_class",
    "plot_sensitivity",
    "sensitivity_table",
    "sweep_axes",
]

_STYLE: dict[RcKeyType, Any] = {"font.size": 10, "axes.titlesize": 10, "legend.fontsize": 9, "figure.dpi": 120}
_LABELS = {
    "final_accuracy": "final test accuracy (%)",
    "best_accuracy": "best test accuracy (%)",
    "time_to_target_s": "time to {target} accuracy",
    "energy_j": "fleet energy",
    "bytes_sent": "bytes sent (MB)",
    "updates_lost": "updates lost (count)",
    "aggregates_of_one": "aggregates of one (count)",
}


# --------------------------------------------------------------------- statistics
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def sweep_axes(table: pd.DataFrame, fields: list[str]) -> tuple[str | None, list[str]]:
    """The x field (first numeric swept field, else the first one; None if none) and the line fields."""
    if not fields:
        return None, []
    numeric = [f for f in fields if f in table and all(_is_number(v) for v in table[f])]
    x = numeric[0] if numeric else fields[0]
    return x, [f for f in fields if f != x]


def line_labels(table: pd.DataFrame, lines: list[str]) -> pd.Series:
    """One label per row from the line fields: `fedbuff`, or `name=fedbuff, epochs=2` for several."""
    if not lines:
        return pd.Series(["all"] * len(table), index=table.index)
    if len(lines) == 1:
        return table[lines[0]].astype(str)
    return table[lines].astype(str).apply(
        lambda r: ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in r.items()), axis=1
    )


def group_stats(table: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1) and count of `metric` over seeds for each `by` group.

    Missing values (e.g. a target never reached) are left out of the mean; `n` counts the
    seeds with a value, `total` all seeds. Groups keep the table's order.
    """
    g = table.groupby(by, sort=False, dropna=False)[metric]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count(), "total": g.size()})
    return out.reset_index()


def _fmt(metric: str, mean: float, std: float, n: int, total: int) -> str:
    if n == 0:
        return f"never (0/{total})"
    scale, digits = (100, 1) if "accuracy" in metric else (1, 0 if metric.endswith("_s") else 1)
    text = f"{mean * scale:.{digits}f}"
    if not math.isnan(std):
        text += f" ± {std * scale:.{digits}f}"
    return text + (f" ({n}/{total})" if n < total else "")


def sensitivity_table(table: pd.DataFrame, fields: list[str], metric: str) -> pd.DataFrame:
    """The sensitivity figure's numbers: rows = x values, columns = lines, cells `mean ± std`.

    Accuracies are in %, times in s; `(k/n)` marks a mean over the k of n seeds that have
    a value (e.g. reached the target).
    """
    t, x, by = lined(table, fields)
    stats = group_stats(t, by, metric)
    stats["text"] = [_fmt(metric, r["mean"], r["std"], r["n"], r["total"]) for _, r in stats.iterrows()]
    if x is None:
        return stats.set_index("line")[["text"]].rename(columns={"text": metric})
    pivot = stats.pivot(index=x, columns="line", values="text")
    return pivot.reindex(index=list(dict.fromkeys(t[x])), columns=list(dict.fromkeys(t["line"])))


def lined(table: pd.DataFrame, fields: list[str]) -> tuple[pd.DataFrame, str | None, list[str]]:
    """The table with its `line` column, the x field (None without one) and the grouping keys."""
    x, lines = sweep_axes(table, fields)
    return table.assign(line=line_labels(table, lines)), x, [c for c in (x, "line") if c]


def band_over_seeds(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean, lowest and highest accuracy over seeds at every evaluation time.

    `curves` has columns seed, time_s, accuracy. Each seed's accuracy holds from one
    evaluation to its next, so seeds evaluated at different times still line up.
    """
    wide = curves.dropna(subset=["accuracy"]).pivot_table(index="time_s", columns="seed", values="accuracy")
    wide = wide.sort_index().ffill()
    return pd.DataFrame(
        {"time_s": wide.index, "mean": wide.mean(axis=1), "lo": wide.min(axis=1), "hi": wide.max(axis=1),
         "n": wide.count(axis=1)}
    ).reset_index(drop=True)


# --------------------------------------------------------------------- figures
def _colours(labels: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {lab: cmap(i % 10) for i, lab in enumerate(labels)}


def _x_positions(values: list[Any]) -> tuple[list[float], list[str] | None]:
    """Numeric x values as they are; anything else at 0, 1, 2, ... with the values as tick labels."""
    if all(_is_number(v) for v in values):
        return [float(v) for v in values], None
    return list(range(len(values))), [str(v) for v in values]


def _field_label(field: str | None) -> str:
    if field is None:
        return ""
    name = field.rsplit(".", 1)[-1].replace("_", " ")
    return name + (" (share of devices)" if field.endswith("dropout_rate") else " (s)" if field.endswith("_s") else "")


def _error_lines(ax: Any, stats: pd.DataFrame, x: str | None, colours: dict[str, Any], scale: float = 1.0) -> None:
    """One line per `line` group through the mean, with ±std error bars; `k/n` where seeds lack a value."""
    xs_all = list(dict.fromkeys(stats[x])) if x else ["all"]
    pos, ticks = _x_positions(xs_all)
    where = dict(zip(map(str, xs_all), pos))
    groups = list(stats.groupby("line", sort=False))
    step = 0.012 * ((max(pos) - min(pos)) or 1.0)  # dodge the lines so error bars do not hide each other
    top = blended_transform_factory(ax.transData, ax.transAxes)  # x in data, y as a share of the panel
    any_never = False
    for i, (line, group) in enumerate(groups):
        s, never = group[group["n"] > 0], group[group["n"] == 0]
        dodge = (i - (len(groups) - 1) / 2) * step
        xs = [where[str(v)] + dodge for v in (s[x] if x else ["all"] * len(s))]
        if len(s):
            ax.errorbar(xs, s["mean"] / scale, yerr=s["std"].fillna(0) / scale, color=colours[line], marker="o",
                        markersize=4, linewidth=1.6, capsize=3, label=line)
        for xv, (_, r) in zip(xs, s.iterrows()):
            if r["n"] < r["total"]:
                ax.annotate(f"{int(r['n'])}/{int(r['total'])}", (xv, r["mean"] / scale), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, color=colours[line])
        # No seed has a value here (e.g. none reached the target): a marker at the top, never a silent gap.
        xs_never = [where[str(v)] + dodge for v in (never[x] if x else ["all"] * len(never))]
        if xs_never:
            any_never = True
            ax.plot(xs_never, [0.96] * len(xs_never), transform=top, linestyle="none", marker="v", markersize=6,
                    color=colours[line], clip_on=False, label=None if len(s) else line)
            for xv, (_, r) in zip(xs_never, never.iterrows()):
                ax.annotate(f"0/{int(r['total'])}", (xv, 0.96), xycoords=top, textcoords="offset points",
                            xytext=(0, -11), ha="center", fontsize=7, color=colours[line])
    if any_never:
        ax.annotate("\u25bc 0/n: no seed has a value (never reached)", (0.0, 1.01), xycoords="axes fraction",
                    va="bottom", fontsize=7, color="0.3")
    if ticks is not None:
        ax.set_xticks(pos, ticks)
    ax.grid(alpha=0.3)


def _save(fig, path: str | Path, title: str, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Title, lay out, write and close a figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=rect)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_sensitivity(
    table: pd.DataFrame,
    fields: list[str],
    path: str | Path,
    metrics: tuple[str, ...] = ("final_accuracy", "time_to_target_s"),
    title: str = "",
) -> Path:
    """One panel per metric against the x field, one line per strategy (or other field), mean ± std over seeds."""
    t, x, by = lined(table, fields)
    colours = _colours(list(dict.fromkeys(t["line"])))
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False, sharex=True)
        for ax, metric in zip(axes[0], metrics):
            stats = group_stats(t, by, metric)
            scale, ylabel = _metric_scale(metric, t)
            _error_lines(ax, stats, x, colours, scale)
            ax.set_xlabel(_field_label(x))
            ax.set_ylabel(ylabel)
        axes[0][0].legend(frameon=False)
        return _save(fig, path, title)


def _metric_scale(metric: str, table: pd.DataFrame) -> tuple[float, str]:
    """Divisor and axis label for a metric: accuracy in %, times in s/min/h, energy in J/kJ."""
    label = _LABELS.get(metric, metric.replace("_", " "))
    if "accuracy" in metric and not metric.startswith("time"):
        return 0.01, label
    if metric.endswith("_s"):
        scale, unit = time_unit(float(table[metric].max()) if table[metric].notna().any() else 0.0)
        target = table["target_accuracy"].iloc[0] if "target_accuracy" in table and len(table) else None
        text = label.format(target=f"{100 * target:g}%" if target is not None else "target")
        return scale, f"{text} ({unit}, simulated)"
    if metric == "bytes_sent":
        return 1e6, label
    if metric.startswith("energy"):
        big = table[metric].abs().max() > 1e4 if len(table) else False
        return (1e3, f"{label} (kJ)") if big else (1.0, f"{label} (J)")
    return 1.0, label


def _facet_grid(n: int, width: float = 3.6, height: float = 3.0) -> tuple[Any, list[Any]]:
    cols = n if n <= 3 else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, sharey=True)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_accuracy_bands(curves: pd.DataFrame, path: str | Path, facet: str | None = None, title: str = "") -> Path:
    """Accuracy versus simulated time, one line per `line` (mean over seeds, band = lowest..highest seed).

    `curves` is long: line, seed, time_s, accuracy (and the `facet` column: one panel per value).
    """
    facets = list(dict.fromkeys(curves[facet])) if facet else [None]
    labels = list(dict.fromkeys(curves["line"]))
    colours = _colours(labels)
    scale, unit = time_unit(float(curves["time_s"].max()) if len(curves) else 0.0)
    seeds = curves["seed"].nunique()
    with plt.rc_context(_STYLE):
        fig, axes = _facet_grid(len(facets))
        for ax, value in zip(axes, facets):
            part = curves if facet is None else curves[curves[facet] == value]
            for line in labels:
                band = band_over_seeds(part[part["line"] == line])
                if not len(band):
                    continue
                t = band["time_s"] / scale
                ax.plot(t, 100 * band["mean"], color=colours[line], linewidth=1.6, label=line)
                if seeds > 1:
                    ax.fill_between(t, 100 * band["lo"], 100 * band["hi"], color=colours[line], alpha=0.18, linewidth=0)
            if facet is not None:
                ax.set_title(f"{_field_label(facet).split(' (')[0]} = {value}")
            ax.set_xlabel(f"simulated wall-clock time ({unit})")
            ax.grid(alpha=0.3)
        for ax in (a for a in axes if a.get_subplotspec().is_first_col()):
            ax.set_ylabel("test accuracy (%)")
        band_note = f"line: mean of {seeds} seeds, band: lowest to highest seed" if seeds > 1 else ""
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(labels), 6), frameon=False,
                   title=band_note or None, title_fontsize=8)
        return _save(fig, path, title, rect=(0, 0.1 if len(axes) <= 3 else 0.06, 1, 1))


def plot_compare_bands(
    bands: dict[str, dict[str, pd.DataFrame]], seeds: int, path: str | Path, cutoffs: dict[str, float], title: str = ""
) -> Path:
    """`ppafl compare`'s figure: accuracy against rounds and against simulated time, one line per
    strategy (mean over `seeds` paired seeds, band = its 95% interval), a dotted line at each cut-off.

    `bands[line][x]` (x: "version" or "time_s") has columns x, mean, lo, hi
    (`sim.studies.stats.ci_band_over_seeds`).
    """
    labels = list(bands)
    colours = _colours(labels)
    top = max((float(b["time_s"]["time_s"].max()) for b in bands.values() if len(b["time_s"])), default=0.0)
    scale, unit = time_unit(top)
    panels = (("version", "rounds", "global versions (rounds)", 1.0), ("time_s", "time", f"simulated time ({unit})", scale))
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), sharey=True)
        for ax, (x, axis, xlabel, div) in zip(axes, panels):
            for line in labels:
                band = bands[line][x]
                xs = band[x] / div
                ax.plot(xs, 100 * band["mean"], color=colours[line], linewidth=1.5, label=line, drawstyle="steps-post")
                lo, hi = (100 * band[k].clip(0, 1) for k in ("lo", "hi"))
                ax.fill_between(xs, lo, hi, color=colours[line], alpha=0.18, linewidth=0, step="post")
            ax.axvline(cutoffs[axis] / div, color="0.4", linestyle=":", linewidth=1)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test accuracy (%)")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(labels), 5), frameon=False,
                   title=f"line: mean of {seeds} paired seeds, band: 95% interval; dotted: where the tables cut",
                   title_fontsize=8)
        return _save(fig, path, title, rect=(0, 0.14, 1, 1))


def plot_energy_by_class(devices: pd.DataFrame, path: str | Path, x: str | None = None, title: str = "") -> Path:
    """Mean energy per device of each class (one panel per class) against `x`, one line per `line`.

    `devices` is long: line, seed, device_class, energy_j (and `x`). Error bars: std over seeds
    of each cell's mean over its devices of that class.
    """
    keys = [c for c in (x, "line", "seed", "device_class") if c]
    per_cell = devices.groupby(keys, sort=False)["energy_j"].mean().reset_index()
    classes = list(dict.fromkeys(per_cell["device_class"]))
    colours = _colours(list(dict.fromkeys(per_cell["line"])))
    scale, ylabel = _metric_scale("energy_j", per_cell)
    with plt.rc_context(_STYLE):
        fig, axes = _facet_grid(len(classes), width=3.4, height=2.9)
        for ax, cls in zip(axes, classes):
            part = per_cell[per_cell["device_class"] == cls]
            stats = group_stats(part, [c for c in (x, "line") if c], "energy_j")
            _error_lines(ax, stats, x, colours, scale)
            ax.set_title(cls)
            ax.set_xlabel(_field_label(x))
        for ax in (a for a in axes if a.get_subplotspec().is_first_col()):
            ax.set_ylabel(ylabel.replace("fleet energy", "energy per device"))
        axes[0].legend(frameon=False)
        return _save(fig, path, title)
