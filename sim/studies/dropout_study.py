"""The dropout-sensitivity study: strategies x dropout rates x paired seeds, for each kind of dropout apart.

Two kinds, swept separately over their own rates:
- `job`: per-job dropout (`failures.job_dropout`): an invited device's job fails before its
  upload with that probability, and the device comes back (after `job_dropout_offline_s`);
- `permanent`: permanent departure (`failures.dropout_rate`): that share of the devices
  leaves for good at a uniform time in the dropout window.
Rate 0 is the same scenario for both, so its runs are shared. Every strategy runs on the
seeds `scenario.seed + 0 .. N-1` (paired, as in `sim.compare`: a seed fixes the fleet, the
data split and the training randomness). The runs are a sweep's cells (resumable, in
parallel workers, one run directory each under DIR/cells/). Per run it takes, with
`sim.compare.run_metrics` at equal simulated time (the horizon every run reached), the
final accuracy and the time to the target accuracy; per (kind, rate, strategy) the mean
over seeds with its t-based 95% interval (`sim.stats`), and the paired difference to the
baseline strategy. Outputs in DIR: study.csv (one row per kind, rate and strategy),
study_cells.csv (one row per run), study.md (the tables) and study.png (both metrics
against the rate, one panel row per kind: mean and 95% band over seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.errors import ScenarioError
from sim.studies.compare import run_metrics
from sim.studies.stats import Estimate, mean_ci, paired_difference
from sim.studies.sweep import Cell, plan_variants, run_sweep

__all__ = ["KINDS", "Study", "plan_study", "plot_study", "run_study", "study_markdown", "summarise_study"]

KINDS = {"job": "failures.job_dropout", "permanent": "failures.dropout_rate"}
"""Each kind of dropout and the scenario field its rate sets."""
KIND_TITLES = {"job": "per-job dropout (the device comes back)", "permanent": "permanent departure"}
_METRICS = {"final_accuracy": "time_final_accuracy", "time_to_target_s": "time_to_target"}


@dataclass(frozen=True)
class Point:
    """Where a run sits in the study: its strategy and, for each kind it belongs to, its rate."""

    strategy: str
    rates: dict[str, float]  # kind -> rate (rate 0 belongs to every kind)


def _label(kind: str, rate: float, strategy: str) -> str:
    return f"{strategy}__none" if rate == 0 else f"{strategy}__{kind}{rate:g}"


def plan_study(
    scenario_path: str | Path,
    strategies: dict[str, list[str]],
    rates: dict[str, list[float]],
    seeds: int,
    sets: list[str] | None = None,
) -> tuple[list[Cell], dict[str, Point]]:
    """The validated runs (every strategy x kind x rate x seed, rate 0 shared) and where each variant sits."""
    unknown = sorted(set(rates) - set(KINDS))
    if unknown:
        raise ScenarioError(f"unknown kind of dropout {', '.join(unknown)}; use {', '.join(KINDS)}")
    if any(not 0.0 <= r <= 1.0 for values in rates.values() for r in values):
        raise ScenarioError("dropout rates are probabilities: give values in [0, 1]")
    variants: dict[str, list[str]] = {}
    points: dict[str, Point] = {}
    for strategy, overrides in strategies.items():
        for kind, values in rates.items():
            for rate in values:
                label = _label(kind, rate, strategy)
                if label not in variants:
                    others = [f"{field}=0" for k, field in KINDS.items() if k != kind]
                    variants[label] = [*overrides, f"{KINDS[kind]}={rate!r}", *others]
                    points[label] = Point(strategy, {})
                points[label].rates[kind] = rate
    cells = plan_variants(scenario_path, list(sets or []), variants, seeds=seeds, field="variant")
    if any(c.scenario.time_only for c in cells):
        raise ScenarioError(f"{scenario_path}: time_only runs train nothing; the study needs time_only: false")
    return cells, points


@dataclass
class Study:
    """Per-run metrics, the summary per (kind, rate, strategy), and how they were cut."""

    runs: pd.DataFrame  # kind, rate, strategy, seed, final_accuracy, time_to_target_s, job failures
    summary: pd.DataFrame  # kind, rate, strategy, metric, mean, lo, hi, n, total, diff_* to the baseline
    horizon_s: float
    target: float
    baseline: str
    name: str


def summarise_study(out: str | Path, cells: list[Cell], points: dict[str, Point], baseline: str) -> Study:
    """The study of the finished runs under DIR/cells/ (every cell must have finished)."""
    out = Path(out)
    curves = {c.id: pd.read_csv(out / "cells" / c.id / "metrics.csv") for c in cells}
    horizon = min(float(m["time_s"].max()) for m in curves.values())
    target = cells[0].scenario.evaluation.target_accuracy
    cutoffs = {"rounds": math.inf, "time": horizon}
    rows = []
    for c in cells:
        point = points[c.values["variant"]]
        got = run_metrics(curves[c.id], cutoffs, target, last_k=1)
        last = curves[c.id].iloc[-1]
        for kind, rate in point.rates.items():
            rows.append({"kind": kind, "rate": rate, "strategy": point.strategy, "seed": c.seed,
                         **{name: got[col] for name, col in _METRICS.items()},
                         "jobs_failed": int(last["jobs_failed"]), "updates_received": int(last["updates_received"])})
    runs = pd.DataFrame(rows).sort_values(["kind", "rate", "strategy", "seed"], kind="stable").reset_index(drop=True)
    summary = []
    for (kind, rate), part in runs.groupby(["kind", "rate"], sort=True):
        base = part[part["strategy"] == baseline].set_index("seed")
        for strategy in dict.fromkeys(p.strategy for p in points.values()):
            mine = part[part["strategy"] == strategy].set_index("seed")
            for metric in _METRICS:
                est = mean_ci(mine[metric])
                diff = paired_difference(mine[metric].to_dict(), base[metric].to_dict())
                summary.append({"kind": kind, "rate": rate, "strategy": strategy, "metric": metric,
                                **_columns(est), **_columns(diff, "diff_"),
                                "diff_excludes_zero": diff.excludes_zero if strategy != baseline else False})
    return Study(runs, pd.DataFrame(summary), horizon, target, baseline, cells[0].scenario.name)


def _columns(e: Estimate, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}mean": e.mean, f"{prefix}lo": e.lo, f"{prefix}hi": e.hi, f"{prefix}n": e.n,
            f"{prefix}total": e.total}


def _estimate(row: Any, prefix: str = "") -> Estimate:
    return Estimate(row[f"{prefix}mean"], row[f"{prefix}lo"], row[f"{prefix}hi"], int(row[f"{prefix}n"]),
                    int(row[f"{prefix}total"]))


def study_markdown(study: Study) -> str:
    """study.md: per kind, final accuracy and time to target per rate and strategy, mean ± 95% half-width."""
    seeds = study.runs["seed"].nunique()
    target = f"{100 * study.target:g}%"
    lines = [f"# {study.name}: {study.runs['strategy'].nunique()} strategies x {seeds} paired seeds", "",
             (f"At equal simulated time ({study.horizon_s:g} s). Mean ± half-width of the t-based 95% interval over "
             f"seeds; `(k/n)`: only k of n seeds reached {target}. Δ: paired difference to `{study.baseline}` "
             "(percentage points), `*` where its interval excludes 0.")]
    s = study.summary
    strategies = list(dict.fromkeys(s["strategy"]))
    for kind in dict.fromkeys(s["kind"]):
        part = s[s["kind"] == kind]
        for metric, title, scale, digits in (("final_accuracy", "final accuracy (%)", 100, 1),
                                             ("time_to_target_s", f"simulated s to {target}", 1, 0)):
            lines += ["", f"## {KIND_TITLES[kind]}: {title}", "",
                      "| rate | " + " | ".join(strategies) + (f" | Δ {metric.split('_')[0]} vs {study.baseline}: "
                                                               + ", ".join(x for x in strategies if x != study.baseline)
                                                               if metric == "final_accuracy" else "") + " |",
                      "| --- |" + " --- |" * (len(strategies) + (metric == "final_accuracy"))]
            for rate in sorted(set(part["rate"])):
                rows = {r["strategy"]: r for _, r in part[(part["rate"] == rate) & (part["metric"] == metric)].iterrows()}
                cells = [_estimate(rows[x]).text(scale, digits) for x in strategies]
                if metric == "final_accuracy":
                    diffs = []
                    for x in strategies:
                        if x != study.baseline:
                            d = _estimate(rows[x], "diff_")
                            diffs.append(d.text(scale, digits, signed=True) + (" *" if d.excludes_zero else ""))
                    cells.append("; ".join(diffs))
                lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_study(study: Study, path: str | Path) -> Path:
    """study.png: final accuracy and time to target against the rate, one row of panels per kind; each line the
    mean over seeds, its band the 95% interval (for the time to target clipped to [0, horizon]); a hollow marker
    where not every seed reached the target (the mean is over those that did; none reached: no point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = study.summary
    kinds = list(dict.fromkeys(s["kind"]))
    strategies = list(dict.fromkeys(s["strategy"]))
    colours = {x: plt.get_cmap("tab10")(i % 10) for i, x in enumerate(strategies)}
    fig, axes = plt.subplots(len(kinds), 2, figsize=(10, 3.6 * len(kinds)), squeeze=False)
    for row, kind in enumerate(kinds):
        for col, (metric, label, scale) in enumerate((("final_accuracy", "final accuracy (%)", 100.0),
                                                      ("time_to_target_s", f"s to {100 * study.target:g}%", 1.0))):
            ax = axes[row][col]
            for x in strategies:
                part = s[(s["kind"] == kind) & (s["strategy"] == x) & (s["metric"] == metric)].sort_values("rate")
                c = colours[x]
                lo, hi = part["lo"], part["hi"]
                if metric == "time_to_target_s":  # a time to target lies in [0, horizon]: so does its band
                    lo, hi = lo.clip(0.0, study.horizon_s), hi.clip(0.0, study.horizon_s)
                ax.plot(part["rate"], part["mean"] * scale, "-", color=c, label=x)
                ax.fill_between(part["rate"], lo * scale, hi * scale, color=c, alpha=0.15, lw=0)
                full = part["n"] == part["total"]
                ax.plot(part["rate"][full], part["mean"][full] * scale, "o", color=c, ms=4)
                ax.plot(part["rate"][~full], part["mean"][~full] * scale, "o", mfc="white", color=c, ms=5)
            if metric == "time_to_target_s":
                ax.set_ylim(0, study.horizon_s)
            ax.set_xlabel(f"{KIND_TITLES[kind]}: rate")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    seeds = study.runs["seed"].nunique()
    fig.suptitle(f"{study.name}: mean and 95% band over {seeds} paired seeds, at {study.horizon_s:g} simulated s "
                 "(hollow: not every seed reached the target;\ntimes to target over the seeds that did, bands clipped to the horizon)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def run_study(
    scenario_path: str | Path,
    strategies: dict[str, list[str]],
    rates: dict[str, list[float]],
    out: str | Path,
    seeds: int = 5,
    sets: list[str] | None = None,
    baseline: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> tuple[Study, list[Path], list[Cell]]:
    """Plan, run (resumably) and summarise the study; write study.csv, study_cells.csv, study.md and study.png."""
    from sim.files import atomic_write

    cells, points = plan_study(scenario_path, strategies, rates, seeds, sets)
    baseline = baseline or next(iter(strategies))
    if baseline not in strategies:
        raise ScenarioError(f"baseline {baseline}: not one of the strategies ({', '.join(strategies)})")
    run_sweep(cells, ["variant"], out, jobs=jobs, progress=progress)
    study = summarise_study(out, cells, points, baseline)
    out = Path(out)
    atomic_write(out / "study.csv", lambda p: study.summary.to_csv(p, index=False))
    atomic_write(out / "study_cells.csv", lambda p: study.runs.to_csv(p, index=False))
    text = study_markdown(study)
    atomic_write(out / "study.md", lambda p: p.write_text(text))
    atomic_write(out / "study.png", lambda p: plot_study(study, p))
    return study, [out / "study.csv", out / "study_cells.csv", out / "study.md", out / "study.png"], cells
