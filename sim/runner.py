"""Run a scenario and write its outputs: metrics, events, device totals, summary, plots."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from sim.engine import Simulation
from sim.plots import plot_accuracy, plot_device_timeline
from sim.scenario import Scenario

__all__ = ["RunResult", "run_scenario", "write_outputs", "atomic_write", "time_to_accuracy"]


@dataclass
class RunResult:
    metrics: pd.DataFrame
    events: pd.DataFrame
    devices: pd.DataFrame
    summary: dict[str, Any]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
        "num_params": sim.workload.num_params,
        "update_nbytes": sim.workload.upload_nbytes,
        "events": int(sim.recorder.num_events),
        "wall_clock_s": round(wall_s, 3),
    }


def run_scenario(
    scenario: Scenario, out_dir: str | Path | None = None, executor: str = "sequential", progress: bool = False
) -> RunResult:
    """Simulate `scenario`; write the outputs to `out_dir` if given."""
    t0 = time.perf_counter()
    sim = Simulation(scenario, executor=executor, progress=progress)
    try:
        sim.run()
    finally:
        if sim.workload.executor is not None:
            sim.workload.executor.close()
    metrics = sim.recorder.metrics()
    devices = _device_table(sim)
    result = RunResult(metrics, sim.recorder.events(), devices, _summary(sim, metrics, devices, time.perf_counter() - t0))
    if out_dir is not None:
        write_outputs(result, Path(out_dir))
    return result


def write_outputs(result: RunResult, out: Path) -> None:
    """Write metrics.csv, events.csv, devices.csv, summary.json and the two figures into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.csv", lambda p: result.metrics.to_csv(p, index=False))
    atomic_write(out / "events.csv", lambda p: result.events.to_csv(p, index=False))
    atomic_write(out / "devices.csv", lambda p: result.devices.to_csv(p, index=False))
    atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(result.summary, indent=2) + "\n"))
    name = result.summary["scenario"]["name"]
    if result.metrics["accuracy"].notna().any():
        atomic_write(out / "accuracy_vs_time.png", lambda p: plot_accuracy({name: result.metrics}, p, fmt="png"))
    atomic_write(out / "device_timeline.png", lambda p: plot_device_timeline(result.events, p, fmt="png"))
