"""What the simulator costs over a plain federated-learning loop doing identical work.

The work: full MNIST split IID over 100 clients (600 samples each), 10 clients a round,
E local epochs (1 and 5), mini-batches of 10, SGD at lr 0.01, the paper's mnist_2nn,
FedAvg, 10 rounds, no encryption, one evaluation at the end on the 10,000 test images.

- the plain loop is written here in plain PyTorch: read the IDX files, an nn.Sequential
  MLP, torch.optim.SGD, average the clients' state dicts; one torch thread, as every
  ppafl executor trains;
- ppafl does the same work as a scenario (a mains-powered fleet on Ethernet, so no job
  fails and every round waits for its ten clients), with the sequential and the process
  executor.

Each is measured two ways, repeats interleaved (loop, sequential, process, loop, ...):
- whole process: a fresh interpreter does everything, from imports and reading the data
  to the result (for ppafl, `ppafl run` with all its outputs and its resume cache);
  wall seconds and CPU seconds of it and every process it started (this benchmark reaps
  them as a child subreaper, so the process workers' CPU is counted);
- in process: the work alone, in this interpreter after a warm-up (no imports, no output
  files; `run_scenario` without an output directory).

Reported: medians over the repeats and ratios to the loop. Targets: ppafl sequential at
most 1.10x the loop's CPU (whole process, E = 1); the process executor faster than the
sequential one in wall time at E = 5 (2 cores). The machine may be shared: the load
average is printed; compare ratios, not seconds. The last line printed is one line of JSON.

Usage: python benchmarks/overhead_bench.py [--data ROOT] [--repeats N] [--epochs 1,5]
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENTS, PER_ROUND, ROUNDS, BATCH, LR = 100, 10, 10, 10, 0.01
TARGET_CPU_RATIO = 1.10
_PR_SET_CHILD_SUBREAPER = 36


# ----------------------------------------------------------------------------- the plain loop
def _idx(path: Path) -> Any:
    """An IDX file (gzipped) as a numpy array."""
    import numpy as np

    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def plain_fedavg(root: Path, epochs: int, seed: int = 0) -> float:
    """FedAvg as a user would write it; the final test accuracy."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"

    def images(name: str) -> torch.Tensor:
        x = torch.from_numpy(_idx(raw / name).astype(np.float32) / 255.0)
        return ((x - 0.1307) / 0.3081).reshape(-1, 784)

    x_train, x_test = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    y_train = torch.from_numpy(_idx(raw / "train-labels-idx1-ubyte.gz").astype(np.int64))
    y_test = torch.from_numpy(_idx(raw / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    shards = np.array_split(rng.permutation(len(y_train)), CLIENTS)
    model = nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(ROUNDS):
        states, weights = [], []
        for c in rng.choice(CLIENTS, PER_ROUND, replace=False):
            model.load_state_dict(global_state)
            opt = torch.optim.SGD(model.parameters(), lr=LR)
            idx = torch.from_numpy(shards[c])
            x, y = x_train[idx], y_train[idx]
            for _ in range(epochs):
                perm = torch.randperm(len(y))
                for i in range(0, len(y), BATCH):
                    b = perm[i : i + BATCH]
                    opt.zero_grad()
                    F.cross_entropy(model(x[b]), y[b]).backward()
                    opt.step()
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            weights.append(len(y))
        total = sum(weights)
        global_state = {k: sum(w * s[k] for w, s in zip(weights, states)) / total for k in states[0]}
    model.load_state_dict(global_state)
    with torch.inference_mode():
        return float((model(x_test).argmax(dim=1) == y_test).float().mean())


# ----------------------------------------------------------------------------- ppafl on the same work
def scenario(root: Path, epochs: int) -> dict[str, Any]:
    return {
        "name": f"overhead_e{epochs}",
        "seed": 0,
        "data": {"dataset": "mnist", "root": str(root), "partition": "iid"},
        "training": {"model": "mnist_2nn", "epochs": epochs, "batch_size": BATCH, "lr": LR},
        "fleet": {"num_devices": CLIENTS, "groups": [{"device": "rpi4", "link": "ethernet", "share": 1.0}]},
        "strategy": {"name": "fedavg", "client_fraction": PER_ROUND / CLIENTS, "round_deadline_s": 1.0e6},
        "encryption": {"mode": "off"},
        "evaluation": {"interval_s": None},
        "stop": {"max_versions": ROUNDS, "max_time_s": 1.0e7},
    }


def _ppafl_in_process(root: Path, epochs: int, executor: str) -> float:
    from sim.runner import run_scenario
    from sim.scenario import scenario_from_dict

    result = run_scenario(scenario_from_dict(scenario(root, epochs)), executor=executor)
    assert result.summary["versions"] == ROUNDS
    return float(result.summary["final_accuracy"])


# ----------------------------------------------------------------------------- measuring
def _reap_orphans() -> None:
    """Wait for processes left to this subreaper (e.g. a fork server and its workers), counting their CPU."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def whole_process(argv: list[str]) -> dict[str, float]:
    """Wall and CPU seconds of a fresh interpreter running `argv` and everything it starts."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    _reap_orphans()
    return {"wall_s": wall, "cpu_s": _children_cpu() - cpu0}


def in_process(fn: Any, *args: Any) -> dict[str, float]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    accuracy = fn(*args)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0, "accuracy": accuracy}


def _commands(root: Path, epochs: int, tmp: Path) -> dict[str, list[str]]:
    import yaml

    path = tmp / f"overhead_e{epochs}.yaml"
    path.write_text(yaml.safe_dump(scenario(root, epochs)))
    ppafl = [sys.executable, "-m", "sim.cli", "run", str(path), "--quiet", "--overwrite"]
    return {
        "loop": [sys.executable, __file__, "--child-loop", str(epochs), "--data", str(root)],
        "sequential": [*ppafl, "--out", str(tmp / f"seq_e{epochs}"), "--executor", "sequential"],
        "process": [*ppafl, "--out", str(tmp / f"proc_e{epochs}"), "--executor", "process"],
    }


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_root = Path(os.environ.get("PPAFL_SHARED_DATA", ROOT.parent / "shared" / "data"))
    ap.add_argument("--data", type=Path, default=default_root, help="data root holding MNIST/raw")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", default="1,5", help="comma-separated local epochs (default 1,5)")
    ap.add_argument("--child-loop", type=int, help=argparse.SUPPRESS)  # run the plain loop with E epochs
    args = ap.parse_args(argv)
    if args.child_loop is not None:
        print(plain_fedavg(args.data, args.child_loop))
        return 0
    if not (args.data / "MNIST" / "raw").is_dir():
        print(f"overhead_bench: full MNIST not found under {args.data / 'MNIST' / 'raw'}; pass --data", file=sys.stderr)
        return 2
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphaned workers become ours: their CPU is counted
    epochs = [int(e) for e in args.epochs.split(",")]
    kinds = ("loop", "sequential", "process")
    load = os.getloadavg()
    print(f"overhead_bench: {ROUNDS} rounds of {PER_ROUND}/{CLIENTS} clients, full MNIST, mnist_2nn, B={BATCH}, "
          f"{args.repeats} interleaved repeats; {len(os.sched_getaffinity(0))} cores; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    whole: dict[int, dict[str, list[dict[str, float]]]] = {e: {k: [] for k in kinds} for e in epochs}
    inside: dict[int, dict[str, list[dict[str, float]]]] = {e: {k: [] for k in kinds} for e in epochs}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for e in epochs:
            commands = _commands(args.data, e, tmp)
            for r in range(args.repeats):
                for kind in kinds:
                    whole[e][kind].append(whole_process(commands[kind]))
                    print(f"  E={e} repeat {r + 1} whole process {kind:>10}: {whole[e][kind][-1]['wall_s']:6.2f} s wall, "
                          f"{whole[e][kind][-1]['cpu_s']:6.2f} s CPU", flush=True)
        plain_fedavg(args.data, 1)  # warm-up: imports, caches, the process pool's fork server
        _ppafl_in_process(args.data, 1, "process")
        for e in epochs:
            for r in range(args.repeats):
                inside[e]["loop"].append(in_process(plain_fedavg, args.data, e))
                inside[e]["sequential"].append(in_process(_ppafl_in_process, args.data, e, "sequential"))
                inside[e]["process"].append(in_process(_ppafl_in_process, args.data, e, "process"))
                for kind in kinds:
                    row = inside[e][kind][-1]
                    print(f"  E={e} repeat {r + 1} in process {kind:>10}: {row['wall_s']:6.2f} s wall, "
                          f"{row['cpu_s']:6.2f} s CPU (this process), accuracy {row['accuracy']:.4f}", flush=True)
    summary: dict[str, Any] = {}
    print(f"\n{'E':>2} {'figure':>13} {'kind':>10} {'wall_s':>7} {'cpu_s':>7} {'wall/loop':>9} {'cpu/loop':>8}")
    for e in epochs:
        for figure, table in (("whole_process", whole[e]), ("in_process", inside[e])):
            base_wall, base_cpu = _median(table["loop"], "wall_s"), _median(table["loop"], "cpu_s")
            for kind in kinds:
                wall, cpu = _median(table[kind], "wall_s"), _median(table[kind], "cpu_s")
                summary[f"e{e}_{figure}_{kind}"] = {"wall_s": wall, "cpu_s": cpu, "wall_ratio": wall / base_wall,
                                                    "cpu_ratio": cpu / base_cpu}
                print(f"{e:>2} {figure:>13} {kind:>10} {wall:>7.2f} {cpu:>7.2f} {wall / base_wall:>9.2f} "
                      f"{cpu / base_cpu:>8.2f}")
    met: dict[str, bool] = {}
    if 1 in epochs:
        ratio = summary["e1_whole_process_sequential"]["cpu_ratio"]
        met["sequential_cpu_at_most_1.10x_loop"] = ratio <= TARGET_CPU_RATIO
        print(f"target: ppafl sequential <= {TARGET_CPU_RATIO}x the loop's CPU (whole process, E=1): {ratio:.2f}x, "
              f"{'met' if met['sequential_cpu_at_most_1.10x_loop'] else 'MISSED'}")
    if 5 in epochs:
        seq, proc = summary["e5_whole_process_sequential"]["wall_s"], summary["e5_whole_process_process"]["wall_s"]
        met["process_faster_than_sequential_e5"] = proc < seq
        print(f"target: process faster than sequential in wall time (whole process, E=5): {proc:.2f} s vs {seq:.2f} s, "
              f"{'met' if proc < seq else 'MISSED'}")
    print(json.dumps({"load_average": load, "repeats": args.repeats, "figures": summary, "targets_met": met,
                      "raw": {"whole_process": whole, "in_process": inside}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
