"""Study figures: the statistics they plot, and that each figure is written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.plots.studies import (
    band_over_seeds,
    group_stats,
    line_labels,
    plot_accuracy_bands,
    plot_energy_by_class,
    plot_sensitivity,
    sensitivity_table,
    sweep_axes,
)

FIELDS = ["strategy.name", "failures.dropout_rate"]


@pytest.fixture
def table() -> pd.DataFrame:
    rows = []
    for name, base in (("ppafl", 0.9), ("fedavg", 0.8)):
        for rate in (0.0, 0.4):
            for seed in (0, 1):
                ttt = None if (name == "fedavg" and rate == 0.4 and seed == 1) else 100.0 + 50 * seed + 100 * rate
                rows.append({"cell": f"{name}{rate}{seed}", "strategy.name": name, "failures.dropout_rate": rate,
                             "seed": seed, "final_accuracy": base - rate / 4 + 0.01 * seed,
                             "time_to_target_s": np.nan if ttt is None else ttt, "target_accuracy": 0.85,
                             "energy_j": 1000.0 + seed})
    return pd.DataFrame(rows)


def test_axes_pick_the_numeric_field_for_x_and_the_rest_for_lines(table: pd.DataFrame) -> None:
    assert sweep_axes(table, FIELDS) == ("failures.dropout_rate", ["strategy.name"])
    assert sweep_axes(table, ["strategy.name"]) == ("strategy.name", [])
    assert sweep_axes(table, []) == (None, [])
    assert line_labels(table, ["strategy.name", "seed"]).iloc[0] == "name=ppafl, seed=0"


def test_group_stats_are_over_seeds_and_skip_missing_values(table: pd.DataFrame) -> None:
    stats = group_stats(table, ["strategy.name", "failures.dropout_rate"], "time_to_target_s")
    row = stats[(stats["strategy.name"] == "ppafl") & (stats["failures.dropout_rate"] == 0.4)].iloc[0]
    assert row["mean"] == pytest.approx(165.0) and row["std"] == pytest.approx(math.sqrt(2) * 25)
    assert (row["n"], row["total"]) == (2, 2)
    missing = stats[(stats["strategy.name"] == "fedavg") & (stats["failures.dropout_rate"] == 0.4)].iloc[0]
    assert (missing["mean"], missing["n"], missing["total"]) == (140.0, 1, 2)


def test_sensitivity_table_holds_the_figure_numbers(table: pd.DataFrame) -> None:
    acc = sensitivity_table(table, FIELDS, "final_accuracy")
    assert list(acc.columns) == ["ppafl", "fedavg"] and list(acc.index) == [0.0, 0.4]
    assert acc.loc[0.4, "ppafl"] == "80.5 ± 0.7"
    ttt = sensitivity_table(table, FIELDS, "time_to_target_s")
    assert ttt.loc[0.4, "fedavg"] == "140 (1/2)"
    assert ttt.loc[0.0, "ppafl"] == "125 ± 35"


def test_band_holds_each_seed_between_its_evaluations() -> None:
    curves = pd.DataFrame(
        {"seed": [0, 0, 0, 1, 1], "time_s": [0, 10, 20, 0, 15], "accuracy": [0.1, 0.5, 0.7, 0.2, 0.6]}
    )
    band = band_over_seeds(curves)
    assert band["time_s"].tolist() == [0, 10, 15, 20]
    # at 10 s seed 1 still holds its 0 s value 0.2; at 15 s seed 0 holds 0.5
    assert band["lo"].tolist() == pytest.approx([0.1, 0.2, 0.5, 0.6])
    assert band["hi"].tolist() == pytest.approx([0.2, 0.5, 0.6, 0.7])
    assert band["mean"].iloc[1] == pytest.approx(0.35)


def test_figures_are_written(table: pd.DataFrame, tmp_path: Path) -> None:
    assert plot_sensitivity(table, FIELDS, tmp_path / "s.png").stat().st_size > 10_000
    curves = pd.DataFrame({"line": ["a"] * 4 + ["b"] * 4, "seed": [0, 0, 1, 1] * 2, "rate": [0.0] * 8,
                           "time_s": [0, 60, 0, 60] * 2, "accuracy": [0.1, 0.8, 0.1, 0.9, 0.1, 0.7, 0.1, 0.75]})
    assert plot_accuracy_bands(curves, tmp_path / "b.png", facet="rate").stat().st_size > 10_000
    devices = pd.DataFrame({"line": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "rate": [0.0] * 4,
                            "device_class": ["rpi4", "rpi4", "mcu", "mcu"], "energy_j": [5.0, 6.0, 1.0, 2.0]})
    assert plot_energy_by_class(devices, tmp_path / "e.png", x="rate").stat().st_size > 10_000


def test_a_line_that_never_reached_the_target_is_marked_not_dropped(table: pd.DataFrame, tmp_path: Path,
                                                                       monkeypatch) -> None:
    import matplotlib.axes

    never = table.assign(time_to_target_s=np.where(table["strategy.name"] == "fedavg", np.nan,
                                                   table["time_to_target_s"]))
    notes: list[str] = []
    original = matplotlib.axes.Axes.annotate
    monkeypatch.setattr(matplotlib.axes.Axes, "annotate",
                        lambda ax, text, *a, **k: (notes.append(text), original(ax, text, *a, **k))[1])
    plot_sensitivity(never, FIELDS, tmp_path / "s.png")
    assert notes.count("0/2") == 2  # fedavg at both dropout rates: none of its 2 seeds reached the target
    assert any("no seed has a value" in n for n in notes)
