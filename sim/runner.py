"""Run a scenario and write its outputs: metrics, events, device totals, summary, plots.

With an output directory a run is resumable: the directory gets a manifest (see
`sim.manifest`) and a cache of finished training jobs (see `fl.result_cache`). A run
killed at any moment is resumed by running it again: the deterministic simulation
replays from the start, taking the finished jobs from the cache, and ends with outputs
identical to those of an uninterrupted run (only `wall_clock_s` differs). Every output
is written atomically; the cache is deleted once the run has finished.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fl.result_cache import ResultCache
from sim.atomic import atomic_write
from sim.engine import Simulation
from sim.limits import check_resources, machine_memory_bytes
from sim.manifest import RunDir, open_run
from sim.scenario import Scenario
from sim.watchdog import DEFAULT_MAX_EVENTS, RunBudget

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OUTPUT_FILES", "RunResult", "atomic_write", "run_scenario", "time_to_accuracy", "write_outputs"]

OUTPUT_FILES = (
    "metrics.csv", "events.csv", "events.parquet", "devices.csv", "summary.json", "accuracy_vs_time.png",
    "device_timeline.png",
)


@dataclass
class RunResult:
    metrics: pd.DataFrame
    events: pd.DataFrame
    devices: pd.DataFrame
    summary: dict[str, Any]
    manifest: dict[str, Any] | None = None  # the run directory's manifest (runs with an output directory)


def time_to_accuracy(metrics: pd.DataFrame, target: float) -> float | None:
    """First simulated time (s) at which test accuracy reached `target`, or None."""
    hit = metrics[metrics["accuracy"] >= target]
    return float(hit["time_s"].iloc[0]) if len(hit) else None


def _device_table(sim: Simulation) -> pd.DataFrame:
    """One row per device, built from the fleet's arrays (a device never touched only idled)."""
    import pandas as pd

    fleet, end = sim.fleet, sim.now
    energy = fleet.energy_by_cause(end)
    depletions = energy.pop("depletions")
    groups = fleet.groups
    table: dict[str, Any] = {
        "device": np.arange(len(fleet)),
        "device_class": np.array([g.device_class for g in groups], dtype=object)[fleet.group_of],
        "link_class": np.array([g.link_class for g in groups], dtype=object)[fleet.group_of],
        "num_samples": np.asarray(sim.workload.samples, dtype=np.int64),
        "energy_j": sum(v for k, v in energy.items() if k != "recharge"),
        **{f"energy_{k}_j": v for k, v in sorted(energy.items())},
        "bytes_sent": fleet.counter("bytes_sent"),
        "bytes_received": fleet.counter("bytes_received"),
        "outages": fleet.counter("outages"),
        "outage_s": fleet.counter("outage_s"),
        "transfer_restarts": fleet.counter("transfer_restarts"),
        "jobs": fleet.counter("jobs"),
        "updates_sent": fleet.counter("updates_sent"),
        "jobs_failed": fleet.counter("jobs_failed"),
        "invitations_declined": fleet.counter("invitations_declined"),
        "battery_depletions": depletions,
        "dropped_out": fleet.dropout_s <= end,
    }
    return pd.DataFrame({k: np.array(v, copy=True) for k, v in table.items()})


def _summary(
    sc: Scenario, sim: Simulation, metrics: pd.DataFrame, devices: pd.DataFrame, wall_s: float
) -> dict[str, Any]:
    acc = metrics["accuracy"]
    final = metrics.iloc[-1]
    stats = dict(sim.server.stats)
    target = sc.evaluation.target_accuracy

    def _num(x: Any) -> float | None:
        return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)

    return {
        "scenario": sc.to_dict(),
        "seed": sc.seed,
        "stop_reason": sim.stop_reason,
        "simulated_time_s": sim.now,
        "versions": int(sim.server.version),
        "final_accuracy": _num(final["accuracy"]),
        "final_loss": _num(final["loss"]),
        "best_accuracy": _num(acc.max()) if acc.notna().any() else None,
        "target_accuracy": target,
        "time_to_target_s": time_to_accuracy(metrics, target) if acc.notna().any() else None,
        "aggregates_of_one": int(stats.get("aggregates_of_one", 0)),
        "aggregates_of_one_note": (
            "each of these let the key holders decrypt a single client's update"
            if sc.encryption.mode != "off" and stats.get("aggregates_of_one", 0)
            else ""
        ),
        "server": {k: int(v) for k, v in sorted(stats.items())},
        "energy_j": float(devices["energy_j"].sum()),
        "bytes_sent": int(devices["bytes_sent"].sum()),
        "bytes_received": int(devices["bytes_received"].sum()),
        "devices_dropped_out": int(devices["dropped_out"].sum()),
        "num_params": sim.workload.num_params,
        "update_nbytes": sim.workload.upload_nbytes,
        "events": int(sim.recorder.num_events),
        "wall_clock_s": round(wall_s, 3),
    }


def _simulate(
    scenario: Scenario, executor: str, progress: bool, cache: ResultCache | None, budget: RunBudget
) -> RunResult:
    """Build and run the simulation; finished training jobs go through `cache`."""
    t0 = time.perf_counter()
    sim = Simulation.from_scenario(scenario, executor=executor, progress=progress, cache=cache, budget=budget)
    try:
        sim.run()
    finally:
        if sim.workload.executor is not None:
            sim.workload.executor.close()
    metrics = sim.recorder.metrics()
    devices = _device_table(sim)
    summary = _summary(scenario, sim, metrics, devices, time.perf_counter() - t0)
    return RunResult(metrics, sim.recorder.events(), devices, summary)


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    executor: str = "sequential",
    progress: bool = False,
    *,
    overwrite: bool = False,
    command: list[str] | None = None,
    memory_limit: int | None = None,
    budget: RunBudget | None = None,
    cache: bool = True,
) -> RunResult:
    """Simulate `scenario`; with `out_dir`, resumably, writing the outputs there.

    Refuses up front (`ResourceLimitError`) a scenario whose estimated memory exceeds
    `memory_limit` bytes (default: this machine's memory). `budget` bounds the run as it
    goes (`RunBudget`: events, memory, steps without simulated progress); by default its
    memory limit is `memory_limit` (or this machine's memory) and a run over it stops with
    `BudgetExceeded`. With `out_dir`: a finished run there is refused unless `overwrite`;
    an unfinished run of the same scenario is resumed, taking finished training jobs from
    the run's cache (`cache=False` keeps none: a resumed run then retrains every job);
    the manifest ends `finished`, `failed` (with the error) or `interrupted`.
    """
    check_resources(scenario, memory_limit)
    if budget is None:
        limit = machine_memory_bytes() if memory_limit is None else int(memory_limit)
        budget = RunBudget(max_events=DEFAULT_MAX_EVENTS, max_memory_bytes=limit)
    if out_dir is None:
        return _simulate(scenario, executor, progress, None, budget)
    run = open_run(out_dir, scenario, OUTPUT_FILES, command=command, overwrite=overwrite)
    try:
        return _run_in(run, scenario, executor, progress, budget, cache)
    finally:
        run.close()


def _run_in(
    run: RunDir, scenario: Scenario, executor: str, progress: bool, budget: RunBudget, use_cache: bool
) -> RunResult:
    cache = ResultCache(run.cache_dir) if use_cache else None
    try:
        result = _simulate(scenario, executor, progress, cache, budget)
        write_outputs(result, run.path)
    except KeyboardInterrupt:
        run.mark("interrupted", error="interrupted (Ctrl-C or SIGTERM); run the same command again to resume")
        raise
    except BaseException as exc:
        run.mark("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    stats: dict[str, Any] | None = None
    if cache is not None:
        stats = {"jobs_reused": cache.hits, "jobs_trained": cache.misses} if cache.hits + cache.misses else None
        if cache.write_error is not None:
            stats = {**(stats or {}), "write_error": cache.write_error}
    run.mark("finished", wall_clock_s=result.summary["wall_clock_s"], training_cache=stats)
    shutil.rmtree(run.cache_dir, ignore_errors=True)  # only needed to resume an unfinished run
    result.manifest = run.manifest
    return result


def write_outputs(result: RunResult, out: Path) -> None:
    """Write metrics.csv, events.csv/.parquet, devices.csv, summary.json and the two figures into `out`, each
    atomically."""
    from sim.plots import plot_accuracy, plot_device_timeline

    def summary(p: Path) -> None:
        p.write_text(json.dumps(result.summary, indent=2) + "\n")

    def accuracy(p: Path) -> None:
        plot_accuracy({result.summary["scenario"]["name"]: result.metrics}, p, fmt="png")

    def timeline(p: Path) -> None:
        plot_device_timeline(result.events, p, fmt="png")

    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    events = pa.Table.from_pandas(result.events, preserve_index=False)  # the event log can be long: written by Arrow
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.csv", lambda p: result.metrics.to_csv(p, index=False))
    atomic_write(out / "events.csv", lambda p: pyarrow.csv.write_csv(events, p))
    atomic_write(out / "events.parquet", lambda p: pyarrow.parquet.write_table(events, p))
    atomic_write(out / "devices.csv", lambda p: result.devices.to_csv(p, index=False))
    atomic_write(out / "summary.json", summary)
    if result.metrics["accuracy"].notna().any():
        atomic_write(out / "accuracy_vs_time.png", accuracy)
    atomic_write(out / "device_timeline.png", timeline)
