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
from typing import Any

import numpy as np
import pandas as pd

from fl.result_cache import ResultCache
from fl.secure import describe_encryption
from sim.atomic import atomic_write
from sim.engine import Simulation
from sim.limits import check_resources
from sim.manifest import RunDir, open_run
from sim.plots import plot_accuracy, plot_device_timeline
from sim.scenario import Scenario

__all__ = ["OUTPUT_FILES", "RunResult", "atomic_write", "run_scenario", "time_to_accuracy", "write_outputs"]

OUTPUT_FILES = ("metrics.csv", "events.csv", "devices.csv", "summary.json", "accuracy_vs_time.png", "device_timeline.png")


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
    rows = []
    end = sim.now
    for dev, tot in zip(sim.devices, sim.totals):
        energy = dev.battery.energy_by_cause()
        outages = dev.link.outages_between(0.0, end)
        rows.append(
            {
                "device": dev.id,
                "device_class": dev.device_class,
                "link_class": dev.link_class,
                "num_samples": sim.workload.num_samples(dev.id),
                "energy_j": sum(v for k, v in energy.items() if k != "recharge"),
                **{f"energy_{k}_j": v for k, v in sorted(energy.items())},
                "bytes_sent": tot.bytes_sent,
                "bytes_received": tot.bytes_received,
                "outages": len(outages),
                "outage_s": float(sum(min(e, end) - s for s, e in outages)),
                "transfer_restarts": tot.transfer_restarts,
                "jobs": tot.jobs,
                "updates_sent": tot.updates_sent,
                "jobs_failed": tot.jobs_failed,
                "invitations_declined": tot.declined,
                "battery_depletions": tot.depletions,
                "dropped_out": bool(dev.availability.dropout_time <= end),
            }
        )
    return pd.DataFrame(rows)


def _summary(sim: Simulation, metrics: pd.DataFrame, devices: pd.DataFrame, wall_s: float) -> dict[str, Any]:
    sc = sim.scenario
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
        "encryption": describe_encryption(sc.encryption.scheme, sc.encryption.param_set, sim.workload.aggregator),
        "num_params": sim.workload.num_params,
        "update_nbytes": sim.workload.upload_nbytes,
        "events": int(sim.recorder.num_events),
        "wall_clock_s": round(wall_s, 3),
    }


def _simulate(scenario: Scenario, executor: str, progress: bool, cache: ResultCache | None) -> RunResult:
    """Build and run the simulation; finished training jobs go through `cache`."""
    t0 = time.perf_counter()
    sim = Simulation(scenario, executor=executor, progress=progress, cache=cache)
    try:
        sim.run()
    finally:
        if sim.workload.executor is not None:
            sim.workload.executor.close()
    metrics = sim.recorder.metrics()
    devices = _device_table(sim)
    return RunResult(metrics, sim.recorder.events(), devices, _summary(sim, metrics, devices, time.perf_counter() - t0))


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    executor: str = "sequential",
    progress: bool = False,
    *,
    overwrite: bool = False,
    command: list[str] | None = None,
    memory_limit: int | None = None,
) -> RunResult:
    """Simulate `scenario`; with `out_dir`, resumably, writing the outputs there.

    Refuses up front (`ResourceLimitError`) a scenario whose estimated memory exceeds
    `memory_limit` bytes (default: this machine's memory). With `out_dir`: a finished run
    there is refused unless `overwrite`; an unfinished run of the same scenario is resumed;
    the manifest ends `finished`, `failed` (with the error) or `interrupted`.
    """
    check_resources(scenario, memory_limit)
    if out_dir is None:
        return _simulate(scenario, executor, progress, None)
    run = open_run(out_dir, scenario, OUTPUT_FILES, command=command, overwrite=overwrite)
    try:
        return _run_in(run, scenario, executor, progress)
    finally:
        run.close()


def _run_in(run: RunDir, scenario: Scenario, executor: str, progress: bool) -> RunResult:
    try:
        cache = ResultCache(run.cache_dir)
        result = _simulate(scenario, executor, progress, cache)
        write_outputs(result, run.path)
    except KeyboardInterrupt:
        run.mark("interrupted", error="interrupted (Ctrl-C or SIGTERM); run the same command again to resume")
        raise
    except BaseException as exc:
        run.mark("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    stats = {"jobs_reused": cache.hits, "jobs_trained": cache.misses} if cache.hits + cache.misses else None
    if cache.write_error is not None:
        stats = {**(stats or {}), "write_error": cache.write_error}
    run.mark("finished", wall_clock_s=result.summary["wall_clock_s"], training_cache=stats)
    shutil.rmtree(run.cache_dir, ignore_errors=True)  # only needed to resume an unfinished run
    result.manifest = run.manifest
    return result


def write_outputs(result: RunResult, out: Path) -> None:
    """Write metrics.csv, events.csv, devices.csv, summary.json and the two figures into `out`, each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.csv", lambda p: result.metrics.to_csv(p, index=False))
    atomic_write(out / "events.csv", lambda p: result.events.to_csv(p, index=False))
    atomic_write(out / "devices.csv", lambda p: result.devices.to_csv(p, index=False))
    atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(result.summary, indent=2) + "\n"))
    name = result.summary["scenario"]["name"]
    if result.metrics["accuracy"].notna().any():
        atomic_write(out / "accuracy_vs_time.png", lambda p: plot_accuracy({name: result.metrics}, p, fmt="png"))
    atomic_write(out / "device_timeline.png", lambda p: plot_device_timeline(result.events, p, fmt="png"))
