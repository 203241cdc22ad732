"""Executors: every one gives the same global models as the sequential loop."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from harness import simulate

from fl.batched import batchable, batched_local_update
from fl.executors import (
    EXECUTORS,
    BatchedExecutor,
    ProcessExecutor,
    SequentialExecutor,
    make_executor,
    resolve_all,
)
from fl.jobs import ClientUpload, ClientWorkload, TrainingTask
from fl.models import build_model
from fl.params import get_flat
from fl.result_cache import ResultCache
from fl.secure import PlainVector, make_codec
from fl.spool import Spooled, ship, spool_directory, unship
from fl.training import TrainConfig, local_update
from sim.engine import Simulation

# Batched kernels add in another order than the one-client loop: a few float32 ULPs per
# step (one update: <= 1e-6), then the 2^-16 fixed-point step may round either way and a
# ReLU input near zero may flip sign, moving that neuron's weights by a few 1e-4 over a run.
BATCHED_ATOL = 1e-4  # one job
RUN_ATOL, RUN_REL_L2 = 2e-3, 1e-3  # a short run: largest difference, relative L2 distance

SCENARIO = {
    "seed": 3,
    "data": {"dataset": "mnist5k", "partition": "iid", "max_test_samples": 500},
    "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 20, "lr": 0.05, "prox_mu": 0.01},
    "fleet": {"num_devices": 8, "groups": [{"device": "rpi4", "link": "wifi", "share": 1.0,
                                             "link_overrides": {"mean_up_s": 1.0, "mean_down_s": 0.2}}]},
    "failures": {"dropout_rate": 0.5, "dropout_window_s": 8.0},  # jobs cut by departures and outages too
    "strategy": {"name": "ppafl", "client_fraction": 0.5, "round_deadline_s": 60},
    "encryption": {"mode": "modeled"},
    "evaluation": {"interval_s": None, "every_versions": 1},
    "stop": {"max_versions": 3, "max_time_s": 3600},
}


def _simulate(executor: str) -> Simulation:
    return simulate(SCENARIO, executor)


@pytest.fixture(scope="module")
def reference() -> Simulation:
    return _simulate("sequential")


@pytest.fixture()
def forced_batched(monkeypatch):
    """The batched executor, made to batch on CPU too (by default it batches only where faster)."""
    monkeypatch.setitem(EXECUTORS, "batched_forced", lambda w, _setup=None: BatchedExecutor(w, device="cpu", force=True))
    return "batched_forced"


def _workload(mnist5k, clients: int = 4, n: int = 50) -> ClientWorkload:
    shards = [np.arange(i * n, (i + 1) * n) for i in range(clients)]
    codec, _ = make_codec("modeled", num_values=get_flat(build_model("mnist_2nn")).size, max_clients=clients)
    cfg = TrainConfig(epochs=1, batch_size=10, lr=0.05)
    return ClientWorkload("mnist_2nn", mnist5k.x_train, mnist5k.y_train, shards, cfg, codec)


@pytest.mark.slow
def test_process_pool_gives_bit_identical_models(reference):
    sim = _simulate("process")
    assert sim.server.version == reference.server.version == 3
    np.testing.assert_array_equal(sim.models.current, reference.models.current)
    assert sim.recorder.metrics().equals(reference.recorder.metrics())
    pd.testing.assert_frame_equal(sim.recorder.events(), reference.recorder.events())  # the same event log


def test_the_reference_run_meets_outages_and_departures(reference):
    events = reference.recorder.events()
    assert {"transfer_paused", "dropped_out", "device_left"} <= set(events["event"])


def test_batched_matches_within_float_tolerance(reference, forced_batched):
    sim = _simulate(forced_batched)
    assert sim.workload.executor.batching
    assert sim.server.version == reference.server.version
    got, want = sim.models.current, reference.models.current
    np.testing.assert_allclose(got, want, rtol=0, atol=RUN_ATOL)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < RUN_REL_L2
    assert not np.array_equal(sim.models.current, get_flat(build_model("mnist_2nn")))
    acc_a, acc_b = sim.recorder.metrics()["accuracy"], reference.recorder.metrics()["accuracy"]
    np.testing.assert_allclose(acc_a, acc_b, atol=0.01)
    pd.testing.assert_frame_equal(sim.recorder.events(), reference.recorder.events())  # the same event log


@pytest.mark.slow
def test_ray_gives_bit_identical_models(reference):
    import ray  # in the test extra: a missing Ray fails here, it is not skipped

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running cluster
    try:
        sim = _simulate("ray")
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(sim.models.current, reference.models.current)
    assert sum(sim.workload.executor.jobs_per_node.values()) > 0  # the jobs did run as Ray tasks


def test_ray_address_where_no_cluster_answers_fails_fast_naming_it(monkeypatch):
    import ray

    from fl.ray_executor import connect_ray

    monkeypatch.setattr(ray, "init", lambda **_: pytest.fail("ray.init would wait forever here"))
    with pytest.raises(ConnectionError, match=r"no Ray cluster answers at 127\.0\.0\.1:1 .*ray start --head"):
        connect_ray("127.0.0.1:1")
    monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:1")
    with pytest.raises(ConnectionError, match=r"ray://127\.0\.0\.1:1"):
        connect_ray()


@pytest.mark.parametrize("prox_mu", [0.0, 0.1])
def test_batched_local_update_matches_local_update(mnist5k, prox_mu):
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, prox_mu=prox_mu)
    bases = [get_flat(build_model("mnist_2nn", seed=s)) for s in range(3)]
    data = [(mnist5k.x_train[i * 60 : (i + 1) * 60], mnist5k.y_train[i * 60 : (i + 1) * 60]) for i in range(3)]
    seeds = [11, 12, 13]
    batched = batched_local_update("mnist_2nn", bases, data, cfg, seeds)
    for base, (x, y), seed, got in zip(bases, data, seeds, batched):
        want = local_update("mnist_2nn", base, x, y, cfg, seed)
        np.testing.assert_allclose(got.params, want.params, rtol=0, atol=1e-6)
        assert got.train_loss == pytest.approx(want.train_loss, abs=1e-5)
        assert got.num_samples == want.num_samples == 60


def test_batched_refuses_unequal_sizes_and_dropout(mnist5k):
    cfg = TrainConfig(epochs=1, batch_size=10)
    base = get_flat(build_model("mnist_2nn"))
    x, y = mnist5k.x_train, mnist5k.y_train
    with pytest.raises(ValueError, match="same number of samples"):
        batched_local_update("mnist_2nn", [base, base], [(x[:20], y[:20]), (x[:30], y[:30])], cfg, [1, 2])
    assert not batchable("cifar_cnn3", torch.device("cuda"))  # dropout
    assert batchable("mnist_cnn", torch.device("cuda"))


def test_resolve_all_hands_each_executor_its_jobs_once(mnist5k):
    work = _workload(mnist5k)
    calls = []

    class Counting(SequentialExecutor):
        def resolve(self, jobs):
            calls.append(len(jobs))
            super().resolve(jobs)

    ex = Counting(work)
    base = get_flat(build_model("mnist_2nn"))
    jobs = [ex.submit(TrainingTask(c, 0, 100 + c), base) for c in range(4)]
    resolve_all([*jobs, None])
    assert calls == [4] and all(j.done for j in jobs)
    resolve_all(jobs)
    assert calls == [4]  # nothing left to do


def test_batched_executor_tops_up_batches_with_waiting_jobs(mnist5k):
    work = _workload(mnist5k)
    ex = BatchedExecutor(work, device="cpu", force=True)
    base = get_flat(build_model("mnist_2nn"))
    jobs = [ex.submit(TrainingTask(c, 0, 200 + c), base) for c in range(4)]
    ex.resolve([jobs[0]])
    assert all(j.done for j in jobs)  # the other waiting jobs rode along in the same batch
    for c, job in enumerate(jobs):
        want = local_update("mnist_2nn", base, *work.client_data(c), work.train, 200 + c).params
        np.testing.assert_allclose(job.result().payload.body[: want.size] / 2.0**16, want, atol=BATCHED_ATOL)


def test_batched_executor_reuses_and_fills_the_result_cache(mnist5k, tmp_path, monkeypatch):
    work = _workload(mnist5k)
    work.cache = ResultCache(tmp_path)
    base = get_flat(build_model("mnist_2nn"))
    first = BatchedExecutor(work, device="cpu", force=True)
    jobs = [first.submit(TrainingTask(c, 0, 400 + c), base) for c in range(3)]
    resolve_all(jobs)
    assert len(work.cache) == 3
    trained = []

    def counting(*args):
        trained.append(args)
        return batched_local_update(*args)

    monkeypatch.setattr("fl.executors.batched_local_update", counting)
    again = BatchedExecutor(work, device="cpu", force=True)
    reruns = [again.submit(TrainingTask(c, 0, 400 + c), base) for c in range(4)]  # client 3 is new
    resolve_all(reruns)
    assert len(trained) == 1 and len(trained[0][1]) == 1  # only the job missing from the cache trained
    assert work.cache.hits == 3 and len(work.cache) == 4
    for old, new in zip(jobs, reruns):
        n = old.result().payload.layout.num_values - 8  # the update's values, before its integrity tags
        np.testing.assert_array_equal(old.result().payload.body[:n], new.result().payload.body[:n])


def test_process_executor_prefetches_live_jobs_only(mnist5k):
    work = _workload(mnist5k)
    ex = ProcessExecutor(work, workers=2)
    try:
        base = get_flat(build_model("mnist_2nn"))
        jobs = [ex.submit(TrainingTask(c, 0, 300 + c), base) for c in range(4)]
        dead = ex.submit(TrainingTask(0, 0, 999), base)
        del dead  # the engine drops the job of a device that failed
        gc.collect()
        ex.resolve([jobs[3]])
        assert len(ex._running) == 3 and len(ex._waiting) == 0  # the three live jobs were sent ahead
        resolve_all(jobs)
        assert not any(Path(ex._spool).iterdir())  # every upload that came back through a file was read
        seq = SequentialExecutor(work)
        for c, job in enumerate(jobs):
            want = seq.submit(TrainingTask(c, 0, 300 + c), base).result()
            n = want.payload.layout.num_values - 8  # the update's values, before its integrity tags
            np.testing.assert_array_equal(job.result().payload.body[:n], want.payload.body[:n])
            assert job.result().train_loss == want.train_loss
    finally:
        ex.close()
    assert not Path(ex._spool).exists()


def test_large_uploads_travel_through_a_file_and_fall_back_to_the_pipe(tmp_path):
    big = ClientUpload(PlainVector(np.arange(1 << 19, dtype=np.float32)), 60, 0.5)  # 2 MiB
    small = ClientUpload(PlainVector(np.ones(10, dtype=np.float32)), 60, 0.5)
    assert ship(small, str(tmp_path)) is small
    shipped = ship(big, str(tmp_path))
    assert isinstance(shipped, Spooled) and Path(shipped.path).parent == tmp_path
    back = unship(shipped)
    np.testing.assert_array_equal(back.payload.values, big.payload.values)
    assert not any(tmp_path.iterdir())
    assert ship(big, str(tmp_path / "missing")) is big  # the file cannot be written: the pipe carries it


def test_spool_directories_of_killed_runs_are_removed(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f"ppafl-spool-{int(gone.stdout)}-abc"
    live = tmp_path / f"ppafl-spool-{os.getpid()}-def"
    for d in (stale, live):
        d.mkdir()
        (d / "x.upload").write_bytes(b"left behind")
    fresh = Path(spool_directory(tmp_path))
    assert not stale.exists() and live.exists() and fresh.is_dir()
    assert fresh.name.startswith(f"ppafl-spool-{os.getpid()}-")


def test_unknown_executor_names_the_known_ones(mnist5k):
    with pytest.raises(ValueError, match="unknown executor 'gpu'; known: sequential, batched, process, ray"):
        make_executor("gpu", _workload(mnist5k))


def test_ray_missing_says_how_to_install(monkeypatch, mnist5k):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install \.\[ray\]"):
        make_executor("ray", _workload(mnist5k))


_DRIVER = """
import time
import numpy as np
from fl.executors import ProcessExecutor
from fl.jobs import ClientWorkload
from fl.models import build_model
from fl.params import get_flat
from fl.secure import make_codec
from fl.training import TrainConfig
from fl.data import load_dataset
if __name__ == "__main__":
    ds = load_dataset("mnist5k")
    codec, _ = make_codec("modeled", num_values=get_flat(build_model("mnist_2nn")).size, max_clients=2)
    work = ClientWorkload("mnist_2nn", ds.x_train, ds.y_train, [np.arange(50), np.arange(50, 100)],
                          TrainConfig(epochs=1), codec)
    ex = ProcessExecutor(work, workers=2)
    for ready in ex._starting:
        ready.result()
    print(" ".join(str(p) for p in ex._pool._processes), flush=True)
    time.sleep(600)
"""


def test_workers_end_when_their_driver_is_killed(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        driver.kill()  # SIGKILL: no handler, no cleanup in the driver
        driver.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "process workers outlived their driver"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited (it waits for its parent to reap it)
        return f.read().split(") ")[1][0] != "Z"
