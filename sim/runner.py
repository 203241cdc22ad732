"""Run a scenario and write its outputs: metrics, events, device totals, summary, plots.

With an output directory a run is resumable: the directory gets a manifest (see
`sim.manifest`) and a cache of finished training jobs (see `fl.result_cache`). A run
killed at any moment is resumed by running it again: the deterministic simulation
replays from the start, taking the finished jobs from the cache, and ends with outputs
identical to those of an uninterrupted run (only `wall_clock_s` differs). Every output
is written atomically. The cache is deleted once the run has finished, and so is all the
run left behind when it failed before any training job finished (nothing to resume).
Console messages (resuming, the cache's projected size, warnings) go to the `ppafl`
logger; `summary.json` lists the warnings (`sim.diagnostics`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fl.executors import EXECUTORS
from fl.result_cache import ResultCache
from fl.secure import describe_encryption
from sim.atomic import atomic_write
from sim.diagnostics import preflight_warnings, run_warnings
from sim.engine import Simulation
from sim.fleet import INTERRUPTION_COUNTERS
from sim.limits import ResourceEstimate, ResourceLimitError, check_resources, machine_memory_bytes
from sim.manifest import RunDir, open_run
from sim.progress import RunProgress
from sim.scenario import FedBuffConfig, Scenario
from sim.watchdog import DEFAULT_MAX_EVENTS, RunBudget
from sim.workload import clients_per_round

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OUTPUT_FILES",
    "RunResult",
    "atomic_write",
    "projected_cache_bytes",
    "run_scenario",
    "time_to_accuracy",
    "write_outputs",
]

OUTPUT_FILES = (
    "metrics.csv", "events.csv", "events.parquet", "devices.csv", "summary.json", "accuracy_vs_time.png",
    "device_timeline.png",
)
log = logging.getLogger("ppafl")


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


def _with_failure_totals(metrics: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """metrics with a running total of each INTERRUPTION_COUNTERS kind up to each row's time (events at that time
    included): the per-round view of job failures."""
    out = metrics.copy()
    for col, name in INTERRUPTION_COUNTERS.items():
        hits = events.loc[events["event"] == name, "time_s"].to_numpy()
        out[col] = np.searchsorted(hits, out["time_s"].to_numpy(), side="right")
    return out


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
        **{name: fleet.counter(name) for name in INTERRUPTION_COUNTERS},
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
    trained = int(sim.server.version) > 0  # with no global version the "final" model is the initial one

    def _num(x: Any) -> float | None:
        return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)

    return {
        "scenario": sc.to_dict(),
        "seed": sc.seed,
        "stop_reason": sim.stop_reason,
        "simulated_time_s": sim.now,
        "versions": int(sim.server.version),
        "final_accuracy": _num(final["accuracy"]) if trained else None,
        "final_loss": _num(final["loss"]) if trained else None,
        "initial_accuracy": _num(metrics.iloc[0]["accuracy"]),
        "best_accuracy": _num(acc.max()) if acc.notna().any() and trained else None,
        "target_accuracy": target,
        "time_to_target_s": time_to_accuracy(metrics, target) if acc.notna().any() and trained else None,
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
        "job_failures": {name: int(devices[name].sum()) for name in INTERRUPTION_COUNTERS},
        "encryption": describe_encryption(sc.encryption.scheme, sim.workload.encryption_params, sim.workload.aggregator),
        "num_params": sim.workload.num_params,
        "update_nbytes": sim.workload.upload_nbytes,
        "events": int(sim.recorder.num_events),
        "wall_clock_s": round(wall_s, 3),
    }


def _simulate(
    scenario: Scenario,
    executor: str,
    progress: bool | RunProgress,
    cache: ResultCache | None,
    budget: RunBudget,
    warnings: list[str],
) -> RunResult:
    """Build and run the simulation; finished training jobs go through `cache`; `warnings` from before it ran."""
    t0 = time.perf_counter()
    sim = Simulation.from_scenario(scenario, executor=executor, progress=progress, cache=cache, budget=budget)
    try:
        sim.run()
    finally:
        if sim.workload.executor is not None:
            sim.workload.executor.close()
    devices = _device_table(sim)
    events = sim.recorder.events()
    metrics = _with_failure_totals(sim.recorder.metrics(), events)
    summary = _summary(scenario, sim, metrics, devices, time.perf_counter() - t0)
    summary["warnings"] = warnings + run_warnings(scenario, summary, events, devices)
    for w in summary["warnings"]:
        log.warning("warning: %s", w)
    return RunResult(metrics, events, devices, summary)


def _jobs_per_version(scenario: Scenario) -> int:
    """Training jobs one global version takes: a round of invitations, one arrival (fedasync) or a buffer."""
    strategy = scenario.strategy
    if strategy.name == "fedasync":
        return 1
    if isinstance(strategy, FedBuffConfig):
        return strategy.buffer_size
    return clients_per_round(scenario, scenario.fleet.num_devices)


def projected_cache_bytes(scenario: Scenario, num_params: int) -> tuple[int, int | None]:
    """(bytes per cached training job, bytes of all of them by the end, None when the run is time-limited)."""
    per_job = ResultCache.entry_nbytes(num_params)
    if scenario.time_only:
        return 0, 0
    versions = scenario.stop.max_versions
    if versions is None:
        return per_job, None
    jobs = versions * _jobs_per_version(scenario) + 2 * clients_per_round(scenario, scenario.fleet.num_devices)
    return per_job, jobs * per_job


def _check_disk(scenario: Scenario, est: ResourceEstimate, out: Path) -> str:
    """How large the resume cache may grow (a line to print); refuse a run whose cache would not fit on the disk."""
    per_job, total = projected_cache_bytes(scenario, est.num_params)
    if not per_job:
        return ""
    if total is None:
        return f"resume cache: {_size(per_job)} per training job in {out / 'cache'} (deleted when the run finishes)"
    where = next(p for p in (out, *out.absolute().parents) if p.exists())
    cached = sum(f.stat().st_size for f in (out / "cache").glob("*.bin")) if (out / "cache").is_dir() else 0
    free = shutil.disk_usage(where).free
    if total > free + cached:  # a resumed run's cached jobs already have their space
        raise ResourceLimitError(
            f"scenario {scenario.name!r}: its resume cache would grow to about {_size(total)} "
            f"({scenario.stop.max_versions:,} versions x {_jobs_per_version(scenario)} training jobs x {_size(per_job)}) "
            f"but {where} has {_size(free)} free{f' (and {_size(cached)} already cached)' if cached else ''}. "
            "Free some space, choose another --out, or run without the cache "
            "(--no-cache: an interrupted run then starts over)"
        )
    return (f"resume cache: up to {_size(total)} in {out / 'cache'} for {scenario.stop.max_versions:,} global versions "
            f"({_size(per_job)} per training job; deleted when the run finishes)")


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    executor: str = "sequential",
    progress: bool | RunProgress = False,
    *,
    overwrite: bool = False,
    command: list[str] | None = None,
    memory_limit: int | None = None,
    budget: RunBudget | None = None,
    cache: bool = True,
) -> RunResult:
    """Simulate `scenario`; with `out_dir`, resumably, writing the outputs there.

    Refuses up front, before anything is created: an unknown `executor` (ValueError), a
    scenario whose estimated memory exceeds `memory_limit` bytes (default: this machine's
    memory) or whose resume cache would not fit on the disk (`ResourceLimitError`), and one
    in which no device could deliver an update in time (`NoUpdatePossibleError`). With
    `out_dir`: a finished run there is refused unless `overwrite`; an unfinished run of the
    same scenario is resumed; the manifest ends `finished`, `failed` (with the error) or
    `interrupted`. `cache=False` keeps no resume cache (an interrupted run starts over).
    `budget` bounds the run as it goes (`RunBudget`: events, memory, steps without simulated
    progress); by default its memory limit is `memory_limit` (or this machine's memory) and a
    run over it stops with `BudgetExceeded`.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    est = check_resources(scenario, memory_limit)
    warnings = preflight_warnings(scenario, est.update_nbytes)
    if budget is None:
        limit = machine_memory_bytes() if memory_limit is None else int(memory_limit)
        budget = RunBudget(max_events=DEFAULT_MAX_EVENTS, max_memory_bytes=limit)
    if out_dir is None:
        return _simulate(scenario, executor, progress, None, budget, warnings)
    out = Path(out_dir)
    cache_note = _check_disk(scenario, est, out) if cache else ""
    created = not out.exists()
    run = open_run(out, scenario, OUTPUT_FILES, command=command, overwrite=overwrite)
    try:
        if cache_note:
            log.info("%s", cache_note)
        if run.resumed:
            entries = sum(1 for _ in run.cache_dir.glob("*.bin")) if run.cache_dir.is_dir() else 0
            log.info("resuming the run in %s (attempt %d): %d finished training jobs cached", out,
                     run.manifest["attempts"], entries)
        return _run_in(run, scenario, executor, progress, budget, cache, warnings, created)
    finally:
        run.close()


def _run_in(
    run: RunDir,
    scenario: Scenario,
    executor: str,
    progress: bool | RunProgress,
    budget: RunBudget,
    use_cache: bool,
    warnings: list[str],
    created: bool,
) -> RunResult:
    cache = None
    try:
        cache = ResultCache(run.cache_dir) if use_cache else None
        result = _simulate(scenario, executor, progress, cache, budget, warnings)
        write_outputs(result, run.path)
    except KeyboardInterrupt:
        run.mark("interrupted", error="interrupted (Ctrl-C or SIGTERM); run the same command again to resume",
                 training_cache=_cache_stats(cache))
        raise
    except BaseException as exc:
        run.mark("failed", error=f"{type(exc).__name__}: {exc}", training_cache=_cache_stats(cache))
        if cache is None or len(cache) == 0:
            run.discard(remove_folder=created)  # it failed before any training job finished: nothing to resume
        raise
    run.mark("finished", wall_clock_s=result.summary["wall_clock_s"], training_cache=_cache_stats(cache))
    shutil.rmtree(run.cache_dir, ignore_errors=True)  # only needed to resume an unfinished run
    result.manifest = run.manifest
    return result


def _cache_stats(cache: ResultCache | None) -> dict[str, Any] | str | None:
    """The manifest's training_cache: jobs reused and trained, entries rejected, why storing stopped."""
    if cache is None:
        return "off"
    stats: dict[str, Any] = {"jobs_reused": cache.hits, "jobs_trained": cache.misses} if cache.hits + cache.misses else {}
    if cache.rejected:
        stats["entries_rejected"] = cache.rejected
    if cache.write_error is not None:
        stats["write_error"] = cache.write_error
    return stats or None


def write_outputs(result: RunResult, out: Path) -> None:
    """Write metrics.csv, events.csv/.parquet, devices.csv, summary.json and the two figures into `out`, each
    atomically."""
    from sim.plots import plot_accuracy, plot_device_timeline

    def summary(p: Path) -> None:
        p.write_text(json.dumps(result.summary, indent=2) + "\n")

    untrained = "" if result.summary["versions"] else "no global version was made: this is the untrained initial model"

    def accuracy(p: Path) -> None:
        plot_accuracy({result.summary["scenario"]["name"]: result.metrics}, p, fmt="png", note=untrained)

    def timeline(p: Path) -> None:
        plot_device_timeline(result.events, p, fmt="png", end_s=float(result.summary["simulated_time_s"]))

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
