"""Engine speed and scale: time-only fleets of 1k to 1M devices, and where a full run's time goes.

Part 1 (time-only mode: no data, no gradient work, modeled crypto): FedAvg inviting 10% of
the fleet per round until a number of global versions. Each cell runs in its own process,
so its peak memory (max RSS) is its own. Reported: build and run CPU seconds, events,
device-updates (uploads that reached the server), microseconds of engine CPU per event and
per update (build + run), the device table's CPU seconds, peak RSS. Targets: 100,000 devices
x 10 versions in at most 25 s; 1,000,000 devices x 5 versions in at most 5 minutes and 6 GB;
microseconds per event within 1.3x between the 1k and the 1M fleet. CPU seconds are the
figures to trust on a shared, busy machine (wall seconds are printed too).

Part 2 (a full run: mnist5k, mnist_2nn, 20 devices, real SHE): the run's wall time split
into training (local SGD), crypto (encrypt, weighted sum, decrypt), evaluation and the
engine (everything else: SimPy, devices, server, recorder), as shares.

Part 3 (with --sweep): a 4-cell sweep (the quickstart scenario, its own 20 simulated
minutes, encryption set to modeled, dropout rate 0/0.2/0.4/0.6) with 1 and with 2 worker processes;
target: at least 1.7x faster with 2. Each worker first spends a few seconds starting (a
fresh interpreter importing torch), so much shorter cells show less of the gain.

The last line printed is one line of JSON holding the same figures.

Usage: python benchmarks/engine_bench.py [--quick] [--sweep] [--no-breakdown]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CELLS = [(1_000, 100), (10_000, 100), (100_000, 10), (1_000_000, 5)]
QUICK_CELLS = [(1_000, 10), (10_000, 10)]
IDLE_CELL = (1_000_000, 100, 100)  # the 1k cell's work (100 devices a round) on a fleet 1,000x larger
TARGET_S = {"100000x10": 25.0, "1000000x5": 300.0}  # CPU seconds, build + run
TARGET_PEAK_GB = {"1000000x5": 6.0}
TARGET_EVENT_RATIO = 1.3  # us per event, largest fleet / smallest


def time_only_scenario(devices: int, versions: int, per_round: int | None = None) -> dict[str, Any]:
    """The scale scenario: FedAvg, 10% of the fleet per round (or `per_round` devices), no evaluation, stop at
    `versions`."""
    return {
        "name": f"scale_{devices}",
        "time_only": True,
        "fleet": {"num_devices": devices},
        "strategy": {"name": "fedavg", "client_fraction": 0.1 if per_round is None else per_round / devices},
        "encryption": {"mode": "modeled"},
        "evaluation": {"interval_s": None},
        "stop": {"max_versions": versions, "max_time_s": 1e7},
    }


def run_cell(devices: int, versions: int, per_round: int | None = None) -> dict[str, Any]:
    """One time-only run in this process: build and run CPU, per-event and per-update cost, peak RSS."""
    from sim.engine import Simulation
    from sim.engine.result import _device_table
    from sim.scenario import scenario_from_dict

    scenario = scenario_from_dict(time_only_scenario(devices, versions, per_round))
    Simulation.from_scenario(scenario_from_dict(time_only_scenario(10, 1))).run()  # imports and caches warm
    cpu0, t0 = time.process_time(), time.perf_counter()
    sim = Simulation.from_scenario(scenario)
    cpu1, t1 = time.process_time(), time.perf_counter()
    sim.run()
    cpu2, t2 = time.process_time(), time.perf_counter()
    _device_table(sim.finished())
    cpu3 = time.process_time()
    updates = int(sim.fleet.counter("updates_sent").sum())
    events = sim.recorder.num_events
    engine_cpu = cpu2 - cpu0
    return {
        "devices": devices, "per_round": sim.server.clients_per_round, "versions": int(sim.server.version),
        "build_cpu_s": cpu1 - cpu0,
        "run_cpu_s": cpu2 - cpu1, "cpu_s": engine_cpu, "wall_s": t2 - t0, "build_wall_s": t1 - t0,
        "updates": updates, "events": events, "us_per_event": 1e6 * engine_cpu / events,
        "us_per_update": 1e6 * engine_cpu / updates, "device_table_cpu_s": cpu3 - cpu2,
        "devices_touched": len(sim.fleet.touched), "simulated_s": sim.now, "event_log_mb": sim.recorder.nbytes / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _cell_in_subprocess(devices: int, versions: int, per_round: int | None = None) -> dict[str, Any]:
    cell = f"{devices}x{versions}" + (f"@{per_round}" if per_round else "")
    out = subprocess.run([sys.executable, __file__, "--cell", cell], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- full-run breakdown
@contextmanager
def _timed(owner: Any, attr: str, bucket: str, spent: dict[str, float]) -> Iterator[None]:
    """Within the block, `owner.attr`'s wall time adds to `spent[bucket]`."""
    inner: Callable = getattr(owner, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[bucket] += time.perf_counter() - t0

    setattr(owner, attr, wrapper)
    try:
        yield
    finally:
        setattr(owner, attr, inner)


def breakdown() -> dict[str, Any]:
    """Shares of a full run's wall time: training, crypto, evaluation, engine."""
    import fl.jobs
    import fl.training
    from crypto.secure_agg import Aggregator, KeyHolder
    from sim.engine import Simulation
    from sim.scenario import scenario_from_dict

    spent = {"training": 0.0, "crypto": 0.0, "evaluation": 0.0}
    timed = [(fl.jobs, "local_update", "training")]
    timed += [(owner, attr, "crypto") for owner, attr in
              ((KeyHolder, "encrypt"), (KeyHolder, "decrypt_average"), (Aggregator, "weighted_sum"))]
    timed += [(fl.training, "evaluate", "evaluation")]
    raw = {
        "name": "breakdown", "seed": 0,
        "data": {"dataset": "mnist5k", "partition": "iid", "max_test_samples": 1000},
        "training": {"model": "mnist_2nn", "epochs": 2, "batch_size": 10, "lr": 0.05},
        "fleet": {"num_devices": 20, "groups": [{"device": "rpi4", "link": "wifi", "share": 0.5},
                                                {"device": "smartphone", "link": "lte", "share": 0.5}]},
        "strategy": {"name": "ppafl", "client_fraction": 0.3, "round_deadline_s": 30},
        "encryption": {"mode": "real", "params": "high_throughput"},
        "evaluation": {"interval_s": 30},
        "stop": {"max_time_s": 300},
    }
    with ExitStack() as stack:  # the wrappers go when the run ends: later parts time the real functions
        for owner, attr, bucket in timed:
            stack.enter_context(_timed(owner, attr, bucket, spent))
        t0 = time.perf_counter()
        simulation = Simulation.from_scenario(scenario_from_dict(raw))
        try:
            simulation.run()
        finally:
            simulation.workload.executor.close()
        total = time.perf_counter() - t0
    spent["engine"] = total - sum(spent.values())
    return {"total_s": total, "versions": int(simulation.server.version), "seconds": spent,
            "shares": {k: v / total for k, v in spent.items()}}


def sweep_speedup() -> dict[str, Any]:
    """Wall seconds of a 4-cell sweep with 1 and with 2 worker processes."""
    import tempfile

    from sim.studies.sweep import plan_sweep, run_sweep

    sets = ["failures.dropout_rate=0,0.2,0.4,0.6", "encryption.mode=modeled"]  # cells as long as the quickstart
    cells, fields = plan_sweep(ROOT / "scenarios" / "quickstart.yaml", sets)
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, 2):
            t0 = time.perf_counter()
            run_sweep(cells, fields, Path(tmp) / f"jobs{jobs}", jobs=jobs, progress=False)
            seconds[jobs] = time.perf_counter() - t0
    return {"cells": len(cells), "seconds_1": seconds[1], "seconds_2": seconds[2], "speedup": seconds[1] / seconds[2]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k devices, 10 versions")
    ap.add_argument("--sweep", action="store_true", help="also time a 4-cell sweep with 1 and 2 processes")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the full run's breakdown (part 2)")
    ap.add_argument("--cell", help=argparse.SUPPRESS)  # DEVICESxVERSIONS: one cell, in this process
    args = ap.parse_args(argv)
    if args.cell:  # DEVICESxVERSIONS[@PER_ROUND]
        size, _, per_round = args.cell.partition("@")
        devices, versions = (int(x) for x in size.split("x"))
        print(json.dumps(run_cell(devices, versions, int(per_round) if per_round else None)))
        return 0
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()
    print(f"engine_bench: time-only FedAvg, 10% of the fleet per round; {cores} cores; one process per cell; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    print(f"{'devices':>8} {'versions':>8} {'build_cpu':>9} {'run_cpu':>8} {'wall_s':>7} {'updates':>8} "
          f"{'events':>9} {'us/event':>8} {'us/upd':>7} {'table_s':>7} {'peak_MB':>8}")
    cells = []
    for devices, versions in QUICK_CELLS if args.quick else CELLS:
        c = _cell_in_subprocess(devices, versions)
        cells.append(c)
        print(f"{c['devices']:>8} {c['versions']:>8} {c['build_cpu_s']:>9.2f} {c['run_cpu_s']:>8.2f} "
              f"{c['wall_s']:>7.1f} {c['updates']:>8} {c['events']:>9} {c['us_per_event']:>8.2f} "
              f"{c['us_per_update']:>7.1f} {c['device_table_cpu_s']:>7.2f} {c['peak_rss_mb']:>8.0f}", flush=True)
    met: dict[str, bool] = {}
    for c in cells:
        key = f"{c['devices']}x{c['versions']}"
        if key in TARGET_S:
            met[key] = c["cpu_s"] <= TARGET_S[key]
            print(f"target {key} in at most {TARGET_S[key]:g} s: {c['cpu_s']:.1f} CPU s "
                  f"({c['wall_s']:.1f} wall s), {'met' if met[key] else 'MISSED'}")
        if key in TARGET_PEAK_GB:
            met[f"{key}_memory"] = c["peak_rss_mb"] / 1024 <= TARGET_PEAK_GB[key]
            print(f"target {key} in at most {TARGET_PEAK_GB[key]:g} GB: {c['peak_rss_mb'] / 1024:.2f} GB, "
                  f"{'met' if met[f'{key}_memory'] else 'MISSED'}")
    ratio = cells[-1]["us_per_event"] / cells[0]["us_per_event"]
    met["us_per_event_ratio"] = ratio <= TARGET_EVENT_RATIO
    print(f"us per event, {cells[-1]['devices']:,} devices / {cells[0]['devices']:,}: {ratio:.2f}x "
          f"(target {TARGET_EVENT_RATIO}x: {'met' if met['us_per_event_ratio'] else 'MISSED'})")
    idle = None
    if not args.quick:  # separates what idle devices cost from what more concurrent jobs cost
        idle = _cell_in_subprocess(*IDLE_CELL)
        idle["us_per_event_vs_first_cell"] = idle["us_per_event"] / cells[0]["us_per_event"]
        print(f"the first cell's work on {idle['devices']:,} devices ({idle['per_round']} a round, "
              f"{idle['versions']} versions): {idle['us_per_event']:.2f} us per event, "
              f"{idle['us_per_event_vs_first_cell']:.2f}x the first cell; build {idle['build_cpu_s']:.2f} CPU s, "
              f"{idle['devices_touched']:,} devices touched, peak {idle['peak_rss_mb']:.0f} MB")
    split = None
    if not args.no_breakdown:
        split = breakdown()
        print(f"full run (mnist5k, mnist_2nn, 20 devices, real SHE): {split['total_s']:.1f} s wall, "
              f"{split['versions']} versions; shares: "
              + ", ".join(f"{k} {100 * v:.0f}%" for k, v in split["shares"].items()))
    sweep = sweep_speedup() if args.sweep else None
    if sweep:
        met["sweep_2_workers_1.7x"] = sweep["speedup"] >= 1.7
        print(f"sweep of {sweep['cells']} cells: {sweep['seconds_1']:.1f} s with 1 process, {sweep['seconds_2']:.1f} s "
              f"with 2: {sweep['speedup']:.2f}x (target 1.7x: {'met' if met['sweep_2_workers_1.7x'] else 'MISSED'})")
    print(json.dumps({"cores": cores, "load_average": load, "cells": cells, "idle_fleet_cell": idle,
                      "targets_cpu_s": TARGET_S,
                      "targets_peak_gb": TARGET_PEAK_GB, "us_per_event_ratio": ratio, "targets_met": met,
                      "full_run": split, "sweep": sweep}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
