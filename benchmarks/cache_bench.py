"""Resume-cache cost per training job: `fl.result_cache.ResultCache` against the floor of any on-disk cache.

A job's cache work is: compute its key (a digest of the base model, the client's shard and
the settings), store the trained parameters once, and read them back on a resume. Rounds
of 10 jobs share one base model, as in a run. The floor (the baseline, measured in the same
run, interleaved) is writing the raw float32 bytes to a file and reading them back, with
no key and no check. `--compare FILE` also times another implementation of `ResultCache`
(e.g. an older `fl/result_cache.py`, saved with `git show REV:fl/result_cache.py > FILE`),
interleaved with this one.

Columns (ms per job): key_ms, put_ms, get_ms, total_ms; x_floor = total_ms / the floor's.
The last line printed is the table as JSON.

Usage: python benchmarks/cache_bench.py [--jobs N] [--compare FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fl import result_cache
from fl.training import LocalResult, TrainConfig

MODELS = {"mnist_2nn": 199_210, "mnist_cnn": 1_663_370}  # parameters (fl.models)
JOBS_PER_ROUND = 10


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("compared_result_cache", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cache_run(module: ModuleType, directory: Path, bases: list[np.ndarray], results: list[LocalResult]) -> list[float]:
    """Seconds for (all keys, all puts, all gets) of len(results) jobs with a fresh cache."""
    cache = module.ResultCache(directory)
    shard = np.arange(600, dtype=np.int64)
    t0 = time.perf_counter()
    keys = [
        cache.key(model="m", train=TrainConfig(), data_digest="d", shard=shard + i, seed=i,
                  base_params=bases[i // JOBS_PER_ROUND])
        for i in range(len(results))
    ]
    t1 = time.perf_counter()
    for key, res in zip(keys, results):
        cache.put(key, res)
    t2 = time.perf_counter()
    got = [cache.get(key, res.params.size) for key, res in zip(keys, results)]
    t3 = time.perf_counter()
    assert all(g is not None and np.array_equal(g.params, r.params) for g, r in zip(got, results))
    return [t1 - t0, t2 - t1, t3 - t2]


def _floor_run(directory: Path, results: list[LocalResult]) -> list[float]:
    directory.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    for i, res in enumerate(results):
        (directory / f"{i}.raw").write_bytes(res.params.tobytes())
    t2 = time.perf_counter()
    for i, res in enumerate(results):
        np.frombuffer((directory / f"{i}.raw").read_bytes(), dtype=np.float32)
    t3 = time.perf_counter()
    return [0.0, t2 - t1, t3 - t2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="jobs per measurement (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best is kept (default 3)")
    parser.add_argument("--compare", help="another fl/result_cache.py to time alongside this one")
    args = parser.parse_args()
    subjects: dict[str, Any] = {"floor": None, "ResultCache": result_cache}
    if args.compare:
        subjects[f"compared ({Path(args.compare).name})"] = _load(args.compare)
    rng = np.random.default_rng(0)
    table = []
    for model, n in MODELS.items():
        bases = [rng.standard_normal(n).astype(np.float32) for _ in range(-(-args.jobs // JOBS_PER_ROUND))]
        results = [LocalResult(rng.standard_normal(n).astype(np.float32), 600, 0.5) for _ in range(args.jobs)]
        best: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for name, module in subjects.items():
                with tempfile.TemporaryDirectory() as tmp:
                    secs = _floor_run(Path(tmp), results) if module is None else _cache_run(
                        module, Path(tmp) / "cache", bases, results)
                best[name] = [min(a, b) for a, b in zip(best.get(name, secs), secs)]
        floor = sum(best["floor"])
        for name, secs in best.items():
            ms = [1e3 * s / args.jobs for s in secs]
            table.append({"model": model, "impl": name, "key_ms": round(ms[0], 3), "put_ms": round(ms[1], 3),
                          "get_ms": round(ms[2], 3), "total_ms": round(sum(ms), 3),
                          "x_floor": round(sum(secs) / floor, 2)})
    print(f"{'model':10} {'impl':40} {'key_ms':>8} {'put_ms':>8} {'get_ms':>8} {'total_ms':>9} {'x_floor':>8}")
    for r in table:
        print(f"{r['model']:10} {r['impl']:40} {r['key_ms']:8.3f} {r['put_ms']:8.3f} {r['get_ms']:8.3f} "
              f"{r['total_ms']:9.3f} {r['x_floor']:8.2f}")
    print(json.dumps(table))


if __name__ == "__main__":
    main()
