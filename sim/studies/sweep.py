"""Sweeps: run a scenario over a grid of field values and seeds, in parallel, resumably.

`--set failures.dropout_rate=0,0.2,0.4` sweeps a field (values separated by commas,
each parsed as YAML; commas inside `[...]`, `{...}` or quotes do not split); a single
value is a plain override. The grid is the cross product of the swept fields, times the
seeds `scenario.seed + 0 .. seeds-1`. Every cell's scenario is validated before any
runs. Each cell is a normal run directory `DIR/cells/<cell id>/`, built as
`DIR/cells/.partial-<cell id>/` and renamed when complete, so a cell is finished exactly
when its directory holds a `summary.json`. Running the sweep again skips finished cells,
resumes an interrupted cell's run (see `sim.runner`) and rebuilds `DIR/sweep.csv`, one
row per finished cell. Relative paths in the scenario file resolve from its folder, as
in `ppafl run`. Cells run on a backend (`sim.backends`): local worker processes, which
are spawned, so a script that calls `run_sweep` with `jobs > 1` needs the
`if __name__ == "__main__":` guard, or tasks on a Ray cluster.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sim.plugins import loaded_plugins
from sim.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    parse_override,
    read_scenario,
    scenario_from_dict,
)
from sim.studies.backends import PARTIAL_PREFIX, CellTask, SweepCellError, make_backend

__all__ = [
    "ACCURACY_FRACTIONS",
    "Cell",
    "SweepCellError",
    "SweepResult",
    "cell_row",
    "collect_table",
    "parse_sets",
    "plan_sweep",
    "plan_variants",
    "read_sweep",
    "run_sweep",
    "split_values",
    "sweep_figures",
]

ACCURACY_FRACTIONS = (0.25, 0.5, 0.75)
"""`accuracy_at_<p>pct` columns: accuracy at these fractions of stop.max_time_s."""

_CELLS = "cells"
_ID_SAFE = re.compile(r"[^A-Za-z0-9._+=-]")
_MAX_ID_LEN = 120


@dataclass(frozen=True)
class Cell:
    """One grid point: the swept values (dotted field -> value), its seed and its scenario."""

    id: str
    values: dict[str, Any]
    seed: int
    scenario: Scenario


@dataclass
class SweepResult:
    """What a sweep did: the table of finished cells, which ran now (and where) or before."""

    out: Path
    fields: list[str]
    table: pd.DataFrame
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # cell run now -> where (host; Ray: node id)


# --------------------------------------------------------------------- the grid
def split_values(text: str) -> list[str]:
    """Split a value list at top-level commas (not inside brackets, braces or quotes)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_sets(sets: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """Split `--set` arguments into plain overrides and swept fields (dotted key -> values)."""
    plain: list[str] = []
    swept: dict[str, list[Any]] = {}
    for text in sets:
        key, _, value = text.partition("=")
        pieces = split_values(value)
        if len(pieces) == 1:
            parse_override(text)  # fail early on a malformed override
            plain.append(text)
            continue
        if any(not p.strip() for p in pieces):
            raise ScenarioError(f"--set {text!r}: empty value in the list; write values like 0,0.2,0.4")
        values = [parse_override(f"{key}={p}")[1] for p in pieces]
        key = key.strip()
        if key in swept:
            raise ScenarioError(f"--set {key}: swept twice; give all its values in one --set")
        if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
            raise ScenarioError(f"--set {text!r}: a value appears twice; list each value once")
        swept[key] = values
    return plain, swept


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _short_keys(fields: list[str]) -> dict[str, str]:
    """Last part of each dotted key, or the whole key where two fields share a last part."""
    last = [f.rsplit(".", 1)[-1] for f in fields]
    return {f: (s if last.count(s) == 1 else f) for f, s in zip(fields, last)}


def _cell_id(values: dict[str, Any], seed: int, short: dict[str, str]) -> str:
    """A stable, readable, file-name-safe id, e.g. `dropout_rate=0.2__name=fedbuff__seed=1`."""
    readable = "__".join([*(f"{short[k]}={_format_value(v)}" for k, v in values.items()), f"seed={seed}"])
    safe = _ID_SAFE.sub("-", readable)
    if safe == readable and len(safe) <= _MAX_ID_LEN:
        return safe
    return f"{safe[:_MAX_ID_LEN]}-{_digest(values, seed)}"


def _digest(values: dict[str, Any], seed: int) -> str:
    return hashlib.sha1(json.dumps([values, seed], sort_keys=True).encode()).hexdigest()[:8]


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is valid YAML: the value round-trips exactly


def plan_sweep(scenario_path: str | Path, sets: list[str], seeds: int = 1) -> tuple[list[Cell], list[str]]:
    """The validated cells of a sweep (grid order) and the swept fields.

    Raises ScenarioError naming the field and value when any cell's scenario is invalid.
    """
    if seeds < 1:
        raise ScenarioError(f"--seeds {seeds}: need at least 1 seed")
    plain, swept = parse_sets(sets)
    raw = apply_overrides(read_scenario(scenario_path), plain)
    base = scenario_from_dict(raw, source=str(scenario_path))
    if "seed" in swept:
        if seeds != 1:
            raise ScenarioError("--set seed=... and --seeds both choose seeds; use one of them")
        seed_list = swept.pop("seed")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seed_list):
            raise ScenarioError(f"--set seed={seed_list}: seeds must be whole numbers >= 0")
    else:
        seed_list = [base.seed + i for i in range(seeds)]
    fields = list(swept)
    short = _short_keys(fields)
    cells: list[Cell] = []
    grid: list[dict[str, Any]] = [{}]
    for key in fields:
        grid = [{**g, key: v} for g in grid for v in swept[key]]
    for values in grid:
        for seed in seed_list:
            overrides = [_override(k, v) for k, v in values.items()] + [f"seed={seed}"]
            label = ", ".join(f"{k}={_format_value(v)}" for k, v in values.items()) or f"seed={seed}"
            scenario = scenario_from_dict(apply_overrides(raw, overrides), source=f"{scenario_path} with {label}")
            cells.append(Cell(_cell_id(values, seed, short), values, seed, scenario))
    if len({c.id for c in cells}) != len(cells):  # e.g. values 1 and "1": make every id unique
        cells = [Cell(f"{c.id}-{_digest(c.values, c.seed)}", c.values, c.seed, c.scenario) for c in cells]
    return cells, fields


def plan_variants(
    scenario_path: str | Path, sets: list[str], variants: dict[str, list[str]], seeds: int = 1, field: str = "variant"
) -> list[Cell]:
    """The validated cells of named variants (label -> overrides) times seeds, e.g. `ppafl compare`'s strategies.

    Each cell's `values` is `{field: label}`; `sets` are plain overrides applied to every cell.
    """
    if seeds < 1:
        raise ScenarioError(f"--seeds {seeds}: need at least 1 seed")
    plain, swept = parse_sets(sets)
    if swept:
        raise ScenarioError(f"--set {next(iter(swept))}: give one value here; sweep several with `ppafl sweep`")
    raw = apply_overrides(read_scenario(scenario_path), plain)
    base = scenario_from_dict(raw, source=str(scenario_path))
    cells = []
    for label, overrides in variants.items():
        for seed in range(base.seed, base.seed + seeds):
            scenario = scenario_from_dict(
                apply_overrides(raw, [*overrides, f"seed={seed}"]), source=f"{scenario_path} with {field} {label}"
            )
            cells.append(Cell(_cell_id({field: label}, seed, {field: field}), {field: label}, seed, scenario))
    if len({c.id for c in cells}) != len(cells):
        raise ScenarioError(f"two {field}s have the same name once made file-safe: {', '.join(variants)}")
    return cells


# --------------------------------------------------------------------- running
def _clear_stale_partials(cells_dir: Path, cells: list[Cell]) -> None:
    """Delete the partial cell directories that cannot finish (see `_can_finish`)."""
    from sim.runner.rundir import ppafl_version

    wanted = {f"{PARTIAL_PREFIX}{c.id}": c.scenario for c in cells}
    version = ppafl_version()
    for partial in cells_dir.glob(f"{PARTIAL_PREFIX}*"):
        if not _can_finish(partial, wanted.get(partial.name), version):
            shutil.rmtree(partial, ignore_errors=True)


def _as_validated_now(scenario: dict[str, Any]) -> dict[str, Any]:
    """A stored run's scenario as today's schema reads it: fields added since it ran take their defaults
    (which keep the old behaviour), so a finished run is not mistaken for a different one."""
    try:
        return scenario_from_dict(scenario).to_dict()
    except ScenarioError:
        return scenario  # no longer valid: it differs, and the comparison will say where


def _can_finish(partial: Path, scenario: Scenario | None, version: str) -> bool:
    """A finished run of this cell's scenario, or an unfinished one `sim.manifest` resumes
    (same scenario, same ppafl version: another version's would refuse to resume)."""
    from sim.runner.rundir import RunDirError, _check_resumable, read_manifest

    try:
        manifest = read_manifest(partial)
        if manifest is None or scenario is None:
            return False
        if manifest["status"] == "finished":
            return bool(_as_validated_now(manifest.get("scenario") or {}) == scenario.to_dict())
        _check_resumable(partial, manifest, scenario, version)
    except RunDirError:
        return False
    return True


def _check_finished(cell: Cell, summary_path: Path) -> None:
    """A finished cell must have run this cell's scenario; otherwise its numbers would mislead."""
    from sim.runner.rundir import differences

    done = _as_validated_now(json.loads(summary_path.read_text())["scenario"])
    diffs = [f"{f} was {a!r}, is {b!r} now" for f, a, b in differences(done, cell.scenario.to_dict())]
    if diffs:
        raise ScenarioError(
            f"{summary_path.parent} was run with a different scenario ({'; '.join(diffs[:3])}); "
            f"sweep into another --out, or delete that folder to recompute it"
        )


def run_sweep(
    cells: list[Cell],
    fields: list[str],
    out: str | Path,
    jobs: int | None = None,
    executor: str = "sequential",
    progress: bool = True,
    backend: str = "local",
    address: str | None = None,
) -> SweepResult:
    """Run every unfinished cell, then write sweep.csv.

    `backend` "local": `jobs` worker processes (default: one per CPU; 1 = in this process);
    "ray": Ray tasks on the cluster at `address` (default RAY_ADDRESS, else a Ray started
    here), at most `jobs` at once. See `sim.backends`.
    """
    from tqdm import tqdm

    runner = make_backend(backend, jobs=jobs, address=address)
    runner.check(executor)  # refused before anything is written
    out = Path(out)
    cells_dir = out / _CELLS
    cells_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_partials(cells_dir, cells)
    todo, skipped = [], []
    for cell in cells:
        summary = cells_dir / cell.id / "summary.json"
        if summary.is_file():
            _check_finished(cell, summary)
            skipped.append(cell.id)
        else:
            todo.append(cell)
    nodes: dict[str, str] = {}
    desc = f"sweep: {len(skipped)} of {len(cells)} cells done before" if skipped else "sweep"
    with tqdm(total=len(todo), desc=desc, unit="cell", disable=not progress or not todo, file=sys.stderr) as bar:

        def finished(cell_id: str, node: str) -> None:
            nodes[cell_id] = node
            bar.update()

        if todo:
            plugins = loaded_plugins()
            runner.run([CellTask(c.scenario.to_dict(), str(cells_dir), c.id, executor, plugins) for c in todo], finished)
    table = collect_table(cells, fields, out)
    return SweepResult(out, fields, table, [c.id for c in todo], skipped, nodes)


# --------------------------------------------------------------------- the table
def _accuracy_at(metrics: pd.DataFrame, t: float) -> float:
    """Accuracy of the last evaluation at or before simulated time `t` (NaN if none)."""
    m = metrics.dropna(subset=["accuracy"])
    m = m[m["time_s"] <= t + 1e-9]
    return float(m["accuracy"].iloc[-1]) if len(m) else math.nan


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def cell_row(values: dict[str, Any], seed: int, summary: dict[str, Any], metrics: pd.DataFrame) -> dict[str, Any]:
    """One sweep.csv row: swept values, seed, accuracy, time to target, energy, bytes, losses."""
    server = summary["server"]
    lost = {k: int(server.get(k, 0)) for k in ("jobs_failed", "updates_discarded", "updates_rejected")}
    max_time = summary["scenario"]["stop"]["max_time_s"]
    return {
        **{k: v if isinstance(v, (int, float, str)) else _format_value(v) for k, v in values.items()},
        "seed": seed,
        "final_accuracy": _nan(summary["final_accuracy"]),
        "best_accuracy": _nan(summary["best_accuracy"]),
        **{f"accuracy_at_{round(100 * f)}pct": _accuracy_at(metrics, f * max_time) for f in ACCURACY_FRACTIONS},
        "target_accuracy": summary["target_accuracy"],
        "time_to_target_s": _nan(summary["time_to_target_s"]),
        "energy_j": summary["energy_j"],
        "bytes_sent": summary["bytes_sent"],
        "updates_lost": sum(lost.values()),
        **lost,
        "updates_aggregated": int(server.get("updates_aggregated", 0)),
        "aggregates_of_one": summary["aggregates_of_one"],
        "versions": summary["versions"],
        "devices_dropped_out": summary["devices_dropped_out"],
        "simulated_time_s": summary["simulated_time_s"],
        "wall_clock_s": summary["wall_clock_s"],
    }


def collect_table(cells: list[Cell], fields: list[str], out: str | Path) -> pd.DataFrame:
    """Rebuild DIR/sweep.csv (and DIR/sweep.json, the grid) from every finished cell, in grid order."""
    from sim.files import atomic_write

    out = Path(out)
    rows = []
    for cell in cells:
        d = out / _CELLS / cell.id
        if (d / "summary.json").is_file():
            summary = json.loads((d / "summary.json").read_text())
            row = cell_row(cell.values, cell.seed, summary, pd.read_csv(d / "metrics.csv"))
            rows.append({"cell": cell.id, **row})
    table = pd.DataFrame(rows)
    atomic_write(out / "sweep.csv", lambda p: table.to_csv(p, index=False))
    spec = {"fields": fields, "seeds": sorted({c.seed for c in cells}), "cells": [c.id for c in cells]}

    def write_spec(path: Path) -> None:
        path.write_text(json.dumps(spec, indent=2) + "\n")

    atomic_write(out / "sweep.json", write_spec)
    return table


def read_sweep(out: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The table and swept fields of a sweep directory written by `run_sweep`."""
    out = Path(out)
    if not (out / "sweep.csv").is_file() or not (out / "sweep.json").is_file():
        raise FileNotFoundError(f"{out}: no sweep.csv/sweep.json here; pass a directory written by `ppafl sweep`")
    spec = json.loads((out / "sweep.json").read_text())
    return pd.read_csv(out / "sweep.csv"), list(spec["fields"])


# --------------------------------------------------------------------- figures
def _cell_frames(out: Path, table: pd.DataFrame, name: str, columns: list[str]) -> pd.DataFrame:
    """One cell file (metrics.csv, devices.csv) of every row, tagged with the row's `columns`."""
    frames = []
    for _, row in table.iterrows():
        f = pd.read_csv(out / "cells" / row["cell"] / name)
        frames.append(f.assign(**{c: row[c] for c in columns}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def sweep_figures(out: str | Path, table: pd.DataFrame, fields: list[str]) -> list[Path]:
    """Write a sweep directory's figures: sensitivity.png, accuracy_bands.png, energy_by_class.png."""
    from sim.plots.studies import lined, plot_accuracy_bands, plot_energy_by_class, plot_sensitivity

    out = Path(out)
    if not len(table):
        return []
    t, x, by = lined(table, fields)
    cols = [*by, "seed"]
    name = json.loads((out / "cells" / t["cell"].iloc[0] / "summary.json").read_text())["scenario"]["name"]
    written = []
    if t["final_accuracy"].notna().any():
        if x is not None:
            written.append(plot_sensitivity(t, fields, out / "sensitivity.png", title=name))
        curves = _cell_frames(out, t, "metrics.csv", cols)
        written.append(plot_accuracy_bands(curves, out / "accuracy_bands.png", facet=x, title=name))
    devices = _cell_frames(out, t, "devices.csv", cols)
    written.append(plot_energy_by_class(devices, out / "energy_by_class.png", x=x, title=name))
    return written
