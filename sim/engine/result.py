"""What a run leaves: its metrics, event log, per-device table and summary, and the files they are saved as.

`collect(run, wall_s)` builds a `RunResult` from a finished simulation's parts (nothing is
written); `RunResult.save(dir)` writes exactly the files `ppafl run` writes, each
atomically: metrics.csv, events.csv and events.parquet, devices.csv, summary.json and the
two figures. The summary's `warnings` say in plain words what the outputs must not be read
as showing (no global version, no update ever arrived, rejected updates, aggregates of one,
groups that never delivered, a version or accuracy target not met).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fl.server import Server
from sim.engine.fleet import INTERRUPTION_COUNTERS, Fleet
from sim.engine.monitor import Monitor
from sim.engine.recorder import Recorder
from sim.engine.workload import Workload
from sim.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OUTPUT_FILES", "FinishedRun", "RunResult", "collect", "run_warnings", "time_to_accuracy"]

OUTPUT_FILES = (
    "metrics.csv", "events.csv", "events.parquet", "devices.csv", "summary.json", "accuracy_vs_time.png",
    "device_timeline.png",
)
_FAILURE_EVENTS = {
    "download_abandoned": "downloads abandoned after too many restarts",
    "upload_abandoned": "uploads abandoned after too many restarts",
    "battery_depleted": "batteries ran empty",
    "dropped_out": "devices left",
}


@dataclass
class RunResult:
    """A finished run: its tables (pandas DataFrames) and summary; `manifest` is its run directory's (if any)."""

    metrics: pd.DataFrame
    events: pd.DataFrame
    devices: pd.DataFrame
    summary: dict[str, Any]
    manifest: dict[str, Any] | None = None

    def save(self, out: str | Path) -> None:
        """Write metrics.csv, events.csv/.parquet, devices.csv, summary.json and the two figures into `out`, each
        atomically (`OUTPUT_FILES`; the accuracy figure only when accuracy was measured)."""
        from sim.plots.runs import plot_accuracy, plot_device_timeline

        def summary(p: Path) -> None:
            p.write_text(json.dumps(self.summary, indent=2) + "\n")

        untrained = "" if self.summary["versions"] else "no global version was made: this is the untrained initial model"
        name = (self.summary.get("scenario") or {}).get("name") or "run"

        def accuracy(p: Path) -> None:
            plot_accuracy({name: self.metrics}, p, fmt="png", note=untrained)

        def timeline(p: Path) -> None:
            plot_device_timeline(self.events, p, fmt="png", end_s=float(self.summary["simulated_time_s"]))

        import pyarrow as pa
        import pyarrow.csv
        import pyarrow.parquet

        events = pa.Table.from_pandas(self.events, preserve_index=False)  # the event log can be long: written by Arrow
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "metrics.csv", lambda p: self.metrics.to_csv(p, index=False))
        atomic_write(out / "events.csv", lambda p: pyarrow.csv.write_csv(events, p))
        atomic_write(out / "events.parquet", lambda p: pyarrow.parquet.write_table(events, p))
        atomic_write(out / "devices.csv", lambda p: self.devices.to_csv(p, index=False))
        atomic_write(out / "summary.json", summary)
        if self.metrics["accuracy"].notna().any():
            atomic_write(out / "accuracy_vs_time.png", accuracy)
        atomic_write(out / "device_timeline.png", timeline)


def time_to_accuracy(metrics: pd.DataFrame, target: float) -> float | None:
    """First simulated time (s) at which test accuracy reached `target`, or None."""
    hit = metrics[metrics["accuracy"] >= target]
    return float(hit["time_s"].iloc[0]) if len(hit) else None


@dataclass(frozen=True)
class FinishedRun:
    """What a finished simulation hands over to make its result: its parts and how it ended."""

    fleet: Fleet
    workload: Workload
    server: Server
    monitor: Monitor
    recorder: Recorder
    now: float  # simulated end [s]
    seed: int
    name: str | None
    stop_reason: str

    @property
    def models(self) -> Any:
        return self.workload.models


def collect(sim: FinishedRun, wall_s: float) -> RunResult:
    """The result of a finished simulation (`wall_s`: the wall-clock seconds it took)."""
    devices = _device_table(sim)
    events = sim.recorder.events()
    metrics = _with_failure_totals(sim.recorder.metrics(), events)
    summary = _summary(sim, metrics, devices, wall_s)
    summary["warnings"] = run_warnings(sim, summary, events, devices)
    return RunResult(metrics, events, devices, summary)


def _with_failure_totals(metrics: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """metrics with a running total of each INTERRUPTION_COUNTERS kind up to each row's time (events at that time
    included): the per-round view of job failures."""
    out = metrics.copy()
    for col, name in INTERRUPTION_COUNTERS.items():
        hits = events.loc[events["event"] == name, "time_s"].to_numpy()
        out[col] = np.searchsorted(hits, out["time_s"].to_numpy(), side="right")
    return out


def _device_table(sim: FinishedRun) -> pd.DataFrame:
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


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _summary(sim: FinishedRun, metrics: pd.DataFrame, devices: pd.DataFrame, wall_s: float) -> dict[str, Any]:
    """The headline numbers; `scenario` holds only the run's name here (a run of a scenario gets the whole
    scenario from `sim.runner`)."""
    acc = metrics["accuracy"]
    final = metrics.iloc[-1]
    stats = dict(sim.server.stats)
    target = sim.monitor.target_to_report
    trained = int(sim.server.version) > 0  # with no global version the "final" model is the initial one
    w = sim.workload
    return {
        "scenario": {"name": sim.name} if sim.name else None,
        "seed": sim.seed,
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
            if w.encrypted and stats.get("aggregates_of_one", 0)
            else ""
        ),
        "server": {k: int(v) for k, v in sorted(stats.items())},
        "energy_j": float(devices["energy_j"].sum()),
        "bytes_sent": int(devices["bytes_sent"].sum()),
        "bytes_received": int(devices["bytes_received"].sum()),
        "devices_dropped_out": int(devices["dropped_out"].sum()),
        "job_failures": {name: int(devices[name].sum()) for name in INTERRUPTION_COUNTERS},
        "encryption": w.privacy,
        "num_params": w.num_params,
        "update_nbytes": w.upload_nbytes,
        "events": int(sim.recorder.num_events),
        "wall_clock_s": round(wall_s, 3),
    }


def run_warnings(sim: FinishedRun, summary: dict[str, Any], events: pd.DataFrame, devices: pd.DataFrame) -> list[str]:
    """What this run's outputs must not be read as showing, in plain words (empty when nothing is wrong)."""
    out: list[str] = []
    time_only = sim.models is None
    server = summary.get("server", {})
    versions, received = summary["versions"], server.get("updates_received", 0)
    if versions == 0:
        why = _no_update_reason(devices, events) if received == 0 else (
            f"{received} update(s) arrived but none was aggregated ({server.get('updates_discarded', 0)} discarded "
            f"as too late or stale, {server.get('updates_rejected', 0)} rejected)")
        model = "" if time_only else (
            "; the model was never trained, so final_accuracy is null (initial_accuracy is the untrained model's)")
        out.append(f"no global version was made: {why}{model}")
    elif received == 0:
        out.append("no update ever arrived at the server")
    rejected = server.get("updates_rejected", 0)
    if rejected:
        out.append(f"{rejected} update(s) were rejected (non-finite or out-of-range parameters; events.csv "
                   "has each as update_rejected)")
    diverged = server.get("aggregates_rejected", 0)
    if diverged:
        out.append(f"{diverged} aggregate(s) were refused because the new global model would not be finite (the "
                   "server's step diverged: lower strategy.server_lr or training.lr); events.csv has each as "
                   "aggregate_rejected")
    ones = summary.get("aggregates_of_one", 0)
    if ones and sim.workload.encrypted:
        out.append(f"{ones} of {versions} global versions were built from a single client's update: the key holders "
                   "could decrypt that client's model")
    if versions > 0 and len(devices):
        for (cls, link), g in devices.groupby(["device_class", "link_class"], sort=False):
            if int(g["updates_sent"].sum()) == 0 and int(g["jobs"].sum()) > 0:
                out.append(f"no {cls} device on {link} delivered an update ({len(g)} devices, {int(g['jobs'].sum())} "
                           f"jobs, {int(g['jobs_failed'].sum())} failed)")
    monitor = sim.monitor
    if monitor.max_versions is not None and versions < monitor.max_versions:
        out.append(f"the run made {versions} of the {monitor.max_versions} global versions asked for "
                   f"(stop.max_versions) before it stopped: {summary['stop_reason']}")
    if monitor.target_accuracy is not None and not time_only and summary.get("best_accuracy") is not None:
        best = summary["best_accuracy"]
        if best < monitor.target_accuracy:
            out.append(f"stop.target_accuracy {monitor.target_accuracy:g} was not reached (best {best:.4f})")
    return out


def _no_update_reason(devices: pd.DataFrame, events: pd.DataFrame) -> str:
    import pandas as pd

    jobs = int(devices["jobs"].sum()) if len(devices) else 0
    failed = int(devices["jobs_failed"].sum()) if len(devices) else 0
    if jobs == 0:
        return "no device ever started a job (all declined, were offline, or the run ended first)"
    counts = events["event"].value_counts() if "event" in events else pd.Series(dtype=int)
    causes = [f"{int(counts[e])} {what}" for e, what in _FAILURE_EVENTS.items() if counts.get(e, 0)]
    held = int(counts.get("update_held", 0))
    if held:
        causes.append(f"{held} held back by the injected delay (injected_delay.fraction) for a version that never "
                      "came")
    unfinished = jobs - failed - (int(devices["updates_sent"].sum()) if len(devices) else 0)
    if unfinished > 0:
        causes.append(f"{unfinished} still running when the run ended")
    return (f"no update ever arrived ({jobs} jobs started, {failed} failed"
            + (f": {', '.join(causes)}" if causes else "") + ")")
