"""`ppafl compare`: strategies on paired seeds, compared at equal rounds and at equal simulated time.

Every strategy runs on the seeds `scenario.seed + 0 .. N-1`. A seed fixes the fleet, the
data split, the injected delays and every training job's randomness, so two strategies on
the same seed differ only by what they do: their difference is taken seed by seed. The
runs are a sweep's cells (`sim.sweep`): in parallel worker processes, resumable, one run
directory each under DIR/cells/. From their evaluations, on two axes -- equal rounds
(global versions, up to the most that every run reached, or `at_rounds`) and equal
simulated time (up to the longest that every run reached, or `at_time_s`) -- it reports
- final accuracy: the last evaluation at or before the cut-off;
- the mean accuracy of the last k evaluations up to the cut-off (steadier on non-IID data);
- the mean accuracy of all evaluations up to the cut-off (how fast it learns, as one number);
- rounds or simulated seconds to the target accuracy, over the seeds that reached it;
each as the mean over seeds with a t-based 95% interval (`sim.stats`), and the paired
difference to the baseline strategy with its interval. Outputs in DIR: compare.csv (one
row per strategy, axis and metric), compare_cells.csv (one row per run), compare.md (the
tables), compare.png (accuracy against rounds and time: mean and 95% band over seeds).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sim.errors import ScenarioError
from sim.studies.stats import Estimate, ci_band_over_seeds, mean_ci, paired_difference
from sim.studies.sweep import Cell, plan_variants, run_sweep, split_values

__all__ = ["AXES", "METRICS", "Comparison", "compare", "parse_strategies", "plan_compare", "summarise"]

AXES = {"rounds": "version", "time": "time_s"}
"""Each axis and the metrics.csv column it counts in."""
METRICS = ("final_accuracy", "last_k_accuracy", "mean_accuracy", "to_target")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


# --------------------------------------------------------------------- what is compared
def parse_strategies(specs: list[str]) -> dict[str, list[str]]:
    """Compared strategies from `--strategy` values: label -> scenario overrides.

    Each value is a comma-separated list of entries; an entry is a strategy or preset name
    (`asyfl`), or `{LABEL: SETTINGS}` where SETTINGS is a name or a mapping whose keys are
    strategy fields or dotted scenario paths, e.g. `{ppafl_lr0.02: {name: ppafl_reference, lr: 0.02}}`.
    """
    out: dict[str, list[str]] = {}
    for spec in specs:
        for piece in split_values(spec):
            try:
                entry = yaml.safe_load(piece)
            except yaml.YAMLError as exc:
                raise ScenarioError(f"--strategy {piece!r}: not valid YAML ({exc})") from None
            label, overrides = _entry(piece, entry)
            if label in out:
                raise ScenarioError(f"--strategy {label}: given twice; give each compared strategy once")
            out[label] = overrides
    if len(out) < 2:
        raise ScenarioError("ppafl compare needs at least two strategies, e.g. --strategy fedavg_straggler,ppafl_reference")
    return out


def _entry(piece: str, entry: Any) -> tuple[str, list[str]]:
    if isinstance(entry, str):
        label, body = entry, entry
    elif isinstance(entry, dict) and len(entry) == 1:
        label, body = next(iter(entry.items()))
    else:
        raise ScenarioError(f"--strategy {piece!r}: write a strategy name or {{LABEL: {{name: ..., FIELD: VALUE}}}}")
    if not isinstance(label, str) or not _LABEL.match(label):
        raise ScenarioError(f"--strategy {piece!r}: the label {label!r} must be letters, digits and ._+- only")
    settings = {"name": body} if isinstance(body, str) else body
    if not isinstance(settings, dict) or not settings:
        raise ScenarioError(f"--strategy {piece!r}: {label}'s settings must be a name or a mapping of fields")
    overrides = []
    for key, value in settings.items():
        path = str(key) if "." in str(key) else f"strategy.{key}"
        overrides.append(f"{path}={json.dumps(value)}")  # JSON is YAML: the value round-trips exactly
    return label, overrides


def plan_compare(scenario_path: str | Path, strategies: dict[str, list[str]], sets: list[str], seeds: int) -> list[Cell]:
    """The validated runs: every strategy on every seed (a bad value fails before anything runs)."""
    cells = plan_variants(scenario_path, sets, strategies, seeds=seeds, field="strategy")
    if any(c.scenario.time_only for c in cells):
        raise ScenarioError(f"{scenario_path}: time_only runs train nothing, so they have no accuracy to compare; "
                            "set time_only: false (or use ppafl sweep for timing and energy)")
    return cells


# --------------------------------------------------------------------- metrics of one run
def _evaluations(metrics: pd.DataFrame, column: str, cutoff: float) -> pd.DataFrame:
    """Evaluations with an accuracy at or before `cutoff` on `column`, one per value (the last)."""
    m = metrics.dropna(subset=["accuracy"])
    m = m[m[column] <= cutoff + 1e-9]
    return m.drop_duplicates(subset=[column], keep="last")


def run_metrics(metrics: pd.DataFrame, cutoffs: dict[str, float], target: float, last_k: int) -> dict[str, float]:
    """`<axis>_<metric>` of one run: final, last-k and mean accuracy up to each axis' cut-off, and when it
    reached `target`."""
    out: dict[str, float] = {}
    for axis, column in AXES.items():
        m = _evaluations(metrics, column, cutoffs[axis])
        acc = m["accuracy"]
        hit = m[acc >= target]
        out[f"{axis}_final_accuracy"] = float(acc.iloc[-1]) if len(m) else math.nan
        out[f"{axis}_last_k_accuracy"] = float(acc.iloc[-last_k:].mean()) if len(m) else math.nan
        out[f"{axis}_mean_accuracy"] = float(acc.mean()) if len(m) else math.nan
        out[f"{axis}_to_target"] = float(hit[column].iloc[0]) if len(hit) else math.nan
    return out


# --------------------------------------------------------------------- the comparison
@dataclass
class Comparison:
    """Per-run metrics, the summary over seeds and the paired differences, and how they were cut."""

    runs: pd.DataFrame  # strategy, seed, <axis>_<metric>
    summary: pd.DataFrame  # strategy, axis, metric, estimate columns, diff_* columns
    cutoffs: dict[str, float]
    baseline: str
    target: float
    last_k: int
    name: str
    asynchronous: tuple[str, ...] = ()  # labels whose versions are not rounds (fedasync, fedbuff)


def _cutoffs(curves: dict[str, pd.DataFrame], at_rounds: int | None, at_time_s: float | None) -> dict[str, float]:
    """Each axis' cut-off: what every run reached, or the one asked for (refused if some run stopped earlier)."""
    reached = {axis: min(float(m[col].max()) for m in curves.values()) for axis, col in AXES.items()}
    asked = {"rounds": at_rounds, "time": at_time_s}
    for axis, value in asked.items():
        if value is not None:
            if value > reached[axis] + 1e-9:
                unit = "global versions" if axis == "rounds" else "simulated s"
                raise ScenarioError(
                    f"compare at {value:g} {unit}: some runs stopped at {reached[axis]:g}; choose at most that, "
                    f"or run longer (stop.max_versions / stop.max_time_s)"
                )
            reached[axis] = float(value)
    return reached


def summarise(
    out: str | Path,
    cells: list[Cell],
    baseline: str,
    last_k: int = 5,
    target: float | None = None,
    at_rounds: int | None = None,
    at_time_s: float | None = None,
) -> Comparison:
    """The comparison of the finished runs under DIR/cells/ (every cell must have finished)."""
    out = Path(out)
    curves = {c.id: pd.read_csv(out / "cells" / c.id / "metrics.csv") for c in cells}
    if target is None:
        target = cells[0].scenario.evaluation.target_accuracy
    cutoffs = _cutoffs(curves, at_rounds, at_time_s)
    rows = [
        {"strategy": c.values["strategy"], "seed": c.seed, **run_metrics(curves[c.id], cutoffs, target, last_k)}
        for c in cells
    ]
    runs = pd.DataFrame(rows)
    labels = list(dict.fromkeys(runs["strategy"]))
    if baseline not in labels:
        raise ScenarioError(f"--baseline {baseline}: not one of the compared strategies ({', '.join(labels)})")
    summary = []
    base = runs[runs["strategy"] == baseline].set_index("seed")
    for label in labels:
        mine = runs[runs["strategy"] == label].set_index("seed")
        for axis in AXES:
            for metric in METRICS:
                col = f"{axis}_{metric}"
                est = mean_ci(mine[col])
                diff = paired_difference(mine[col].to_dict(), base[col].to_dict())
                summary.append({"strategy": label, "axis": axis, "metric": metric, "cutoff": cutoffs[axis],
                                **_columns(est), **_columns(diff, "diff_"),
                                "diff_excludes_zero": diff.excludes_zero if label != baseline else False})
    name = cells[0].scenario.name
    asynchronous = tuple(dict.fromkeys(
        c.values["strategy"] for c in cells if not c.scenario.strategy.build().round_based
    ))
    return Comparison(runs, pd.DataFrame(summary), cutoffs, baseline, target, last_k, name, asynchronous)


def _columns(e: Estimate, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}mean": e.mean, f"{prefix}lo": e.lo, f"{prefix}hi": e.hi, f"{prefix}n": e.n,
            f"{prefix}total": e.total}


def _estimate(row: pd.Series, prefix: str = "") -> Estimate:
    return Estimate(row[f"{prefix}mean"], row[f"{prefix}lo"], row[f"{prefix}hi"], int(row[f"{prefix}n"]),
                    int(row[f"{prefix}total"]))


def markdown(comp: Comparison) -> str:
    """compare.md: one table per axis; `*` marks a paired difference whose 95% interval excludes 0."""
    seeds = comp.runs["seed"].nunique()
    k, target = comp.last_k, f"{100 * comp.target:g}%"
    lines = [
        f"# {comp.name}: {comp.runs['strategy'].nunique()} strategies x {seeds} paired seeds",
        "",
        (f"Mean ± half-width of the t-based 95% interval over seeds; Δ: the paired difference to "
        f"`{comp.baseline}` (percentage points; rounds or seconds to the target), `*` where its interval excludes 0; "
        f"`(k/n)`: k of n seeds "
        f"have a value (reached the target)."),
    ]
    for axis in AXES:
        cut = comp.cutoffs[axis]
        where = f"{cut:g} global versions" if axis == "rounds" else f"{cut:.4g} simulated s"
        unit = "rounds" if axis == "rounds" else "simulated s"
        digits = 0 if axis == "rounds" or cut >= 100 else 1 if cut >= 10 else 3  # of rounds or seconds to target
        lines += ["", f"## At equal {'rounds' if axis == 'rounds' else 'simulated time'} ({where})", "",
                  (f"| strategy | final accuracy (%) | mean of last {k} evaluations (%) | mean of all evaluations (%) "
                   f"| {unit} to {target} | Δ final | Δ last {k} | Δ mean of all | Δ {unit} to {target} |"),
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        part = comp.summary[comp.summary["axis"] == axis]
        for label in dict.fromkeys(part["strategy"]):
            rows = {r["metric"]: r for _, r in part[part["strategy"] == label].iterrows()}
            formats = [("final_accuracy", 100, 1), ("last_k_accuracy", 100, 1), ("mean_accuracy", 100, 1),
                       ("to_target", 1, digits)]
            cells = [_estimate(rows[metric]).text(scale, places) for metric, scale, places in formats]
            if label == comp.baseline:
                cells += ["baseline"] * len(formats)
            else:
                for metric, scale, places in formats:
                    d = _estimate(rows[metric], "diff_")
                    cells.append(d.text(scale, places, signed=True) + (" *" if d.excludes_zero else ""))
            mark = " †" if axis == "rounds" and label in comp.asynchronous else ""
            lines.append(f"| {label}{mark} | " + " | ".join(cells) + " |")
        if axis == "rounds" and comp.asynchronous:
            lines += ["", "† asynchronous: its global versions are not rounds; compare it at equal simulated time."]
    return "\n".join(lines) + "\n"


def write(comp: Comparison, out: str | Path, cells: list[Cell]) -> list[Path]:
    """compare.csv, compare_cells.csv, compare.md and compare.png in `out`."""
    from sim.files import atomic_write
    from sim.plots.studies import plot_compare_bands

    out = Path(out)
    atomic_write(out / "compare.csv", lambda p: comp.summary.to_csv(p, index=False))
    atomic_write(out / "compare_cells.csv", lambda p: comp.runs.to_csv(p, index=False))
    text = markdown(comp)

    def write_table(p: Path) -> None:
        p.write_text(text)

    atomic_write(out / "compare.md", write_table)
    frames = [pd.read_csv(out / "cells" / c.id / "metrics.csv").assign(line=c.values["strategy"], seed=c.seed)
              for c in cells]
    curves = pd.concat(frames, ignore_index=True)
    bands = {line: {x: ci_band_over_seeds(curves[curves["line"] == line], x) for x in ("version", "time_s")}
             for line in dict.fromkeys(curves["line"])}
    figure = plot_compare_bands(bands, curves["seed"].nunique(), out / "compare.png", comp.cutoffs, comp.name)
    return [out / "compare.csv", out / "compare_cells.csv", out / "compare.md", figure]


def compare(
    scenario_path: str | Path,
    strategies: dict[str, list[str]],
    out: str | Path,
    seeds: int = 5,
    sets: list[str] | None = None,
    baseline: str | None = None,
    jobs: int | None = None,
    executor: str = "sequential",
    progress: bool = True,
    backend: str = "local",
    address: str | None = None,
    **options: Any,
) -> tuple[Comparison, list[Path], Any]:
    """Plan, run (resumably: finished runs are kept) and summarise a comparison; `options` go to `summarise`.

    `jobs`, `backend` and `address` say where the runs go, as for `sim.sweep.run_sweep`.
    """
    cells = plan_compare(scenario_path, strategies, list(sets or []), seeds)
    baseline = baseline or next(iter(strategies))
    if baseline not in strategies:
        raise ScenarioError(f"--baseline {baseline}: not one of the compared strategies ({', '.join(strategies)})")
    result = run_sweep(
        cells, ["strategy"], out, jobs=jobs, executor=executor, progress=progress, backend=backend, address=address
    )
    comp = summarise(out, cells, baseline, **options)
    return comp, write(comp, out, cells), result
