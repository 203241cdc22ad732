"""Wall-clock cost of one round of the paper's run, here and on N Ray nodes, and of 1,000 rounds.

The paper's run: scenarios/paper_mnist.yaml (full MNIST, non-IID shards, 100 clients, 10
per round, E=5, B=10, lr 0.01, FedProx mu 0.01, 40% of jobs delayed by 1..8 rounds, PPAFL)
with `--model` (default mnist_cnn) and SHE at the paper's parameters (`--crypto real`: real
ciphertexts). Everything is built by the engine's own code (`sim.engine.Simulation`).

- one round: 10 clients' jobs submitted to the executor (each trains E=5 epochs from the
  global model and encrypts its update in a worker), their uploads brought back, the
  server's weighted sum and the key holders' decryption -- the work of a round in the
  steady state (a 1,000-round time-only run of this scenario trains 9.0 jobs a round and
  sums 13.6 ciphertext vectors: the 40% delayed jobs are trained when released, agents are
  stored ciphertexts). Timed after a warm-up of one job per worker (start-up, imports).
  Subjects: `--executors` on this machine; `--ray-nodes 1,2`: the ray executor on a Ray
  cluster of that many one-CPU nodes started here (ray.cluster_utils: a raylet and an
  object store per node); `--ray-address`: on that cluster. `--repeats` interleaves the
  subjects (A B A B) and keeps each one's fastest round, as a busy machine slows any one.
- components, one process, one torch thread: a client's training, sealing one update, its
  pickled size and (un)pickling time, the server's sum of 10 and the decryption.
- projection to N one-CPU nodes and 1,000 rounds: r(N) = serial + ceil(10 / N) x job (10
  jobs a round: more than 10 nodes do not help), fitted to the measured N = 1, 2 rounds,
  and from CPU seconds (a job's pieces, the driver's CPU in the N = 1 round), which a busy
  machine inflates much less than wall seconds.
- `--engine-rounds R`: also the engine end to end (`Simulation.run`, R global versions) with
  the first of `--executors`; `--budget-s S` then runs as many rounds as fit in the rest of S
  seconds as a full run into `--out/paper_run` (the GPU script uses this).

The last line is JSON.

Usage: python benchmarks/round_bench.py --executors sequential,process --ray-nodes 1,2 --repeats 2
       python benchmarks/round_bench.py --quick        (mnist5k, mnist_2nn, modeled, E=1: a smoke run)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.scenario import Scenario, load_scenario

PAPER_ROUNDS = 1000
CLIENTS_PER_ROUND = 10
STORE_BYTES = 2 * 2**30  # object store per node: the data set and a few real-SHE uploads in flight


def paper_scenario(args: argparse.Namespace, rounds: int) -> Scenario:
    """The paper's scenario with this benchmark's model, crypto, data and rounds."""
    sets = [f"training.model={args.model}", f"encryption.mode={args.crypto}", "encryption.params=paper",
            f"stop.max_versions={rounds}"]
    if args.dataset == "mnist5k":  # the embedded subset: 40 samples per client instead of 600
        sets += ["data.dataset=mnist5k", "data.root=null"]
    elif args.data_root is not None:
        sets.append(f"data.root={args.data_root}")
    if args.quick:
        sets.append("training.epochs=1")
    return load_scenario(ROOT / "scenarios" / "paper_mnist.yaml", sets)


class Round:
    """One round's work on an executor: 10 jobs trained and sealed, the server's sum, the decryption."""

    def __init__(self, scenario: Scenario) -> None:
        from sim.engine import Simulation

        self.sim = Simulation(scenario, executor="sequential")  # the engine's data, partition, model and keys
        ex: Any = self.sim.workload.executor
        self.work, self.aggregator = ex.workload, cast(Any, self.sim.workload.aggregator)
        assert self.sim.models is not None
        self.base = self.sim.models.current
        self.weight_bits = scenario.encryption.weight_bits

    def time(self, executor: str, repeats: int) -> dict[str, Any]:
        """Seconds of the fastest of `repeats` timed rounds (after an untimed warm-up round)."""
        from fl.executors import make_executor, resolve_all
        from fl.jobs import TrainingTask
        from fl.ray_executor import RayExecutor
        from fl.secure import integer_weights

        t0 = time.perf_counter()
        ex = make_executor(executor, self.work)
        setup = time.perf_counter() - t0
        times = []
        try:
            t0 = time.perf_counter()  # warm-up: one job per worker (start-up, imports, the workload's transfer)
            resolve_all([ex.submit(TrainingTask(c, 0, c), self.base) for c in range(getattr(ex, "workers", 1))])
            warmup = time.perf_counter() - t0
            for rep in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                jobs = [ex.submit(TrainingTask(c, 0, 1000 * rep + c), self.base) for c in range(CLIENTS_PER_ROUND)]
                resolve_all(cast(list, jobs))
                uploads = [j.result() for j in jobs]
                weights = integer_weights([float(u.num_samples) for u in uploads], self.weight_bits)
                self.work.codec.decrypt_average(self.aggregator.weighted_sum([u.payload for u in uploads], weights))
                times.append((time.perf_counter() - t0, time.process_time() - c0))
        finally:
            ex.close()
        wall, cpu = min(times)
        row: dict[str, Any] = {"setup_s": setup, "warmup_s": warmup, "round_s": wall, "driver_cpu_s": cpu}
        if isinstance(ex, RayExecutor):
            row["jobs_per_node"] = sorted(ex.jobs_per_node.values())
        return row

    def components(self) -> dict[str, float]:
        """One process, one torch thread: training, sealing, pickling one update; the server's sum of 10 and
        decryption. Wall seconds (`_s`) and CPU seconds (`_cpu_s`: what a core of its own would take)."""
        import torch

        from fl.jobs import TrainingTask
        from fl.secure import integer_weights

        torch.set_num_threads(1)
        out: dict[str, float] = {}

        def timed(name: str, fn: Any, times: int = 1) -> Any:
            w, c = time.perf_counter(), time.process_time()
            result = [fn(i) for i in range(times)]
            out[f"{name}_s"] = (time.perf_counter() - w) / times
            out[f"{name}_cpu_s"] = (time.process_time() - c) / times
            return result

        trained = timed("train", lambda i: self.work.train_cached(TrainingTask(i, 0, 1000 + i), self.base), 2)
        uploads = timed("seal", lambda i: self.work.seal(trained[i].params, trained[i].num_samples, 0.0), 2)
        blob = timed("pickle", lambda _: pickle.dumps(uploads[0], protocol=5))[0]
        timed("unpickle", lambda _: pickle.loads(blob))
        payloads = [uploads[i % 2].payload for i in range(CLIENTS_PER_ROUND)]  # a round's worth (2 distinct)
        weights = integer_weights([600.0] * CLIENTS_PER_ROUND, self.weight_bits)
        total = timed("sum10", lambda _: self.aggregator.weighted_sum(payloads, weights))[0]
        timed("decrypt", lambda _: self.work.codec.decrypt_average(total))
        return {"upload_mb": len(blob) / 1e6, **out}


@contextmanager
def local_ray_cluster(nodes: int) -> Iterator[str]:
    """A Ray cluster of `nodes` one-CPU nodes on this machine in a private temp dir, as RAY_ADDRESS."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="ppafl-ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_ADDRESS")}
    os.environ["RAY_TMPDIR"] = temp
    node: dict[str, Any] = {"num_cpus": 1, "object_store_memory": STORE_BYTES}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        os.environ["RAY_ADDRESS"] = cluster.address
        yield cluster.address
    finally:
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp, ignore_errors=True)


@contextmanager
def ray_address(address: str) -> Iterator[str]:
    saved = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = address
    try:
        yield address
    finally:
        if saved is None:
            os.environ.pop("RAY_ADDRESS")
        else:
            os.environ["RAY_ADDRESS"] = saved


NODES = (1, 2, 3, 4, 5, 10)


def _rounds(serial: float, job: float) -> dict[str, Any]:
    """r(N) = serial + ceil(10 / N) x job on N one-CPU nodes (10 jobs a round: more nodes do not help)."""
    rounds = {n: serial + math.ceil(CLIENTS_PER_ROUND / n) * job for n in NODES}
    return {"serial_s": serial, "job_s": job, "round_s": rounds,
            "paper_run_h": {n: r * PAPER_ROUNDS / 3600 for n, r in rounds.items()}}


def projection(ray: dict[int, dict[str, Any]], parts: dict[str, float]) -> dict[str, Any]:
    """Rounds on N one-CPU Ray nodes: fitted to the measured N = 1, 2 rounds, and from CPU seconds
    (the one-process pieces for a job; the driver's measured CPU for the rest), as on dedicated cores."""
    out: dict[str, Any] = {}
    if {1, 2} <= set(ray):
        job = (ray[1]["round_s"] - ray[2]["round_s"]) / (CLIENTS_PER_ROUND / 2)  # 10 jobs deep vs 5
        out["fit"] = _rounds(ray[1]["round_s"] - CLIENTS_PER_ROUND * job, job) if job > 0 else {
            "note": "a second node did not make rounds faster: the machine is busy, or rounds are not bound by jobs"}
    if 1 in ray:
        job_cpu = parts["train_cpu_s"] + parts["seal_cpu_s"] + parts["pickle_cpu_s"]
        out["cpu"] = _rounds(ray[1]["driver_cpu_s"], job_cpu)
    return out


def engine_rounds(scenario: Scenario, executor: str) -> dict[str, Any]:
    """The engine end to end: build (timed apart) and run; seconds per global version."""
    from sim.engine import Simulation

    t0 = time.perf_counter()
    sim = Simulation(scenario, executor=executor)
    t1 = time.perf_counter()
    ex: Any = sim.workload.executor
    try:
        sim.run()
    finally:
        ex.close()
    t2 = time.perf_counter()
    versions = max(1, int(sim.server.version))
    return {"executor": executor, "setup_s": t1 - t0, "run_s": t2 - t1, "versions": versions,
            "version_s": (t2 - t1) / versions, "server": dict(sim.server.stats)}


def budget_run(args: argparse.Namespace, executor: str, version_s: float, started: float) -> dict[str, Any]:
    """As many paper rounds as fit in the rest of the budget, as a full run into `--out/paper_run`."""
    from sim.runner import run_scenario

    left = args.budget_s - (time.perf_counter() - started) - 30  # set-up and writing the outputs
    rounds = int(0.7 * left / version_s)  # evaluations every 10 versions and the event log cost a little more
    if rounds < 1:
        return {"rounds": 0, "note": f"{left:.0f} s left, a round takes {version_s:.0f} s"}
    out = args.out / "paper_run"
    result = run_scenario(paper_scenario(args, rounds), out, executor=executor, overwrite=True)
    s = result.summary
    return {"rounds": s["versions"], "wall_s": s["wall_clock_s"], "final_accuracy": s["final_accuracy"],
            "out": str(out), "version_s": s["wall_clock_s"] / max(1, s["versions"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--executors", default="process", help="comma-separated: sequential, process, batched, ray")
    ap.add_argument("--ray-nodes", default="", help="e.g. 1,2: the ray executor on local clusters of that many nodes")
    ap.add_argument("--ray-address", default=None, help="the ray executor on this cluster as well")
    ap.add_argument("--repeats", type=int, default=1, help="timed rounds per subject, interleaved (fastest kept)")
    ap.add_argument("--model", default="mnist_cnn")
    ap.add_argument("--crypto", default="real", choices=["real", "modeled", "off"])
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "mnist5k"],
                    help="full MNIST (default; mnist5k where it is missing) or mnist5k")
    ap.add_argument("--data-root", default=None, help="full MNIST root (default: the scenario's ../shared/data)")
    ap.add_argument("--engine-rounds", type=int, default=0, help="also run the engine this many global versions")
    ap.add_argument("--budget-s", type=float, default=None, help="then run as many rounds as fit in this budget")
    ap.add_argument("--out", type=Path, default=Path("runs/round_bench"))
    ap.add_argument("--quick", action="store_true", help="mnist5k, mnist_2nn, modeled, E=1")
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.crypto, args.dataset = "mnist_2nn", "modeled", "mnist5k"
    started = time.perf_counter()
    scenario = paper_scenario(args, max(1, args.engine_rounds))
    if scenario.data.dataset == "mnist" and not (Path(scenario.data.root or "") / "MNIST" / "raw").is_dir():
        print(f"round_bench: no full MNIST under {scenario.data.root}: the embedded mnist5k instead", flush=True)
        args.dataset = "mnist5k"
        scenario = paper_scenario(args, max(1, args.engine_rounds))
    print(f"round_bench: {scenario.training.model}, {scenario.data.dataset}, E={scenario.training.epochs}, "
          f"crypto {args.crypto} (paper SHE), {CLIENTS_PER_ROUND} clients a round; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    bench = Round(scenario)
    parts = bench.components()
    print("  one process, 1 thread: " + ", ".join(f"{k} {v:.3g}" for k, v in parts.items()), flush=True)
    subjects: list[tuple[str, Any]] = [(name, nullcontext()) for name in filter(None, args.executors.split(","))]
    subjects += [(f"ray, {n} node{'s' * (n != '1')}", n) for n in filter(None, args.ray_nodes.split(","))]
    subjects += [(f"ray at {args.ray_address}", args.ray_address)] if args.ray_address else []
    found: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in subjects}
    for _ in range(args.repeats):
        for name, where in subjects:
            place = where if isinstance(where, nullcontext) else (
                local_ray_cluster(int(where)) if where.isdigit() else ray_address(where))
            with place:
                row = bench.time("ray" if name.startswith("ray") else name, 1)
            found[name].append(row)
            print(f"  {name:>14}: {row['round_s']:7.2f} s/round (warm-up {row['warmup_s']:.1f} s, load "
                  f"{os.getloadavg()[0]:.1f})", flush=True)
    rows = []
    for name, where in subjects:
        best = min(found[name], key=lambda r: r["round_s"])
        nodes = int(where) if isinstance(where, str) and where.isdigit() else None
        rows.append({"subject": name, "ray_nodes": nodes, **best, "all_s": [r["round_s"] for r in found[name]],
                     "paper_run_h": best["round_s"] * PAPER_ROUNDS / 3600})
        print(f"  {name:>14}: best {best['round_s']:7.2f} s/round (driver CPU {best['driver_cpu_s']:.1f} s) "
              f"-> 1,000 rounds {rows[-1]['paper_run_h']:.1f} h")
    proj = projection({r["ray_nodes"]: r for r in rows if r["ray_nodes"] is not None}, parts)
    for basis, p in proj.items():
        print(f"  projected ({basis}): " + ("; ".join(
            f"{n} nodes {r:.1f} s/round, {p['paper_run_h'][n]:.1f} h" for n, r in p["round_s"].items())
            if "round_s" in p else p["note"]))
    report: dict[str, Any] = {"model": scenario.training.model, "data": scenario.data.dataset, "crypto": args.crypto,
                              "cpus": os.cpu_count(), "components": parts, "rows": rows, "projection": proj}
    first = next(iter(filter(None, args.executors.split(","))), None)
    if args.engine_rounds and first:
        engine = report["engine"] = engine_rounds(scenario, first)
        print(f"  engine, {engine['executor']}: {engine['version_s']:.2f} s per global version "
              f"({engine['versions']} versions, setup {engine['setup_s']:.1f} s)", flush=True)
        if args.budget_s:  # a short run's first versions train fewer jobs (delayed ones come later): take the larger
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "measured.json").write_text(json.dumps(report) + "\n")  # kept if the budget run is cut short
            steady = max(engine["version_s"], next(r["round_s"] for r in rows if r["subject"] == first))
            report["budget_run"] = budget_run(args, first, steady, started)
            print(f"  budget run: {report['budget_run']}", flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
