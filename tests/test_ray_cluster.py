"""A real Ray cluster on this machine: a head and one more node, each with its own raylet,
object store and CPU. A sweep and a run spread over both nodes and give exactly the local
backend's numbers; a killed sweep driver resumes from the finished cells.

Ray is in the test extra: where it is missing or no cluster starts, these tests fail with
the reason; they never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fl.executors import EXECUTORS
from sim.cli import main
from sim.studies.sweep import plan_sweep, run_sweep

# One cluster per module: xdist keeps the module's tests on one worker (setup.cfg: --dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray_cluster")]

ROOT = Path(__file__).resolve().parents[1]
NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}  # small stores: the machine is shared
# About two seconds a cell: 8 devices, FedBuff over pairs of modeled-SHE updates, 12 simulated s.
SCENARIO = {
    "name": "cluster",
    "data": {"dataset": "mnist5k", "max_test_samples": 200},
    "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 50, "lr": 0.1},
    "fleet": {"num_devices": 8},
    "strategy": {"name": "fedbuff", "client_fraction": 0.5, "buffer_size": 2},
    "encryption": {"mode": "modeled"},
    "evaluation": {"interval_s": 4},
    "stop": {"max_time_s": 12},
}
SETS = ["failures.dropout_rate=0,0.3", "seed=0,1"]  # 4 cells


@pytest.fixture(scope="module")
def cluster():
    """A head node and one more node (one CPU each), in a private temp dir, shut down afterwards."""
    try:
        from ray.cluster_utils import Cluster
    except ImportError as exc:
        pytest.fail(f"Ray is not installed ({exc}); it is part of the test extra: pip install -e '.[test]'")
    temp = tempfile.mkdtemp(prefix="ppafl-ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = pytest.MonkeyPatch()
    env.setenv("RAY_TMPDIR", temp)  # this cluster's sessions and address file stay out of /tmp/ray
    nodes = None
    try:
        try:
            nodes = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
            nodes.add_node(**NODE)
            nodes.wait_for_nodes()
        except Exception as exc:  # noqa: BLE001  (the reason goes into the failure)
            pytest.fail(f"could not start a two-node Ray cluster on this machine: {type(exc).__name__}: {exc}")
        yield nodes
    finally:
        if nodes is not None:
            nodes.shutdown()
        env.undo()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "cluster.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    return path


@pytest.fixture(scope="module")
def local_sweep(scenario_file, tmp_path_factory) -> Path:
    """The same sweep on the local backend, in this process: the numbers to match."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    run_sweep(*plan_sweep(scenario_file, SETS), out, jobs=1, progress=False)
    return out


def _science(sweep_csv: Path) -> str:
    """sweep.csv's text without its one column that is not science (wall_clock_s)."""
    table = pd.read_csv(sweep_csv, dtype=str, keep_default_na=False)  # the cells' text as written
    return table.drop(columns="wall_clock_s").to_csv(index=False)


def test_a_sweep_spreads_over_both_nodes_with_the_local_numbers(
    cluster, scenario_file, local_sweep, tmp_path, monkeypatch, assert_same_outputs
):
    cells, fields = plan_sweep(scenario_file, SETS)
    monkeypatch.chdir(tmp_path)  # a relative --out means the driver's folder on every node too
    result = run_sweep(cells, fields, Path("ray"), backend="ray", address=cluster.address, progress=False)
    assert sorted(result.ran) == sorted(c.id for c in cells)
    assert set(result.nodes.values()) == {cluster.head_node.node_id, *(n.node_id for n in cluster.worker_nodes)}
    assert _science(tmp_path / "ray" / "sweep.csv") == _science(local_sweep / "sweep.csv")
    for cell in cells:
        assert_same_outputs(tmp_path / "ray" / "cells" / cell.id, local_sweep / "cells" / cell.id)
    assert not list((tmp_path / "ray" / "cells").glob(".*"))  # no partial cell, no storage check file left


def _finished_cells(out: Path) -> dict[str, int]:
    found = (out / "cells").glob("*/summary.json")
    return {p.parent.name: p.stat().st_mtime_ns for p in found if not p.parent.name.startswith(".")}


def test_a_killed_driver_resumes_from_the_finished_cells(cluster, scenario_file, local_sweep, tmp_path):
    out = tmp_path / "ray"
    sets = [arg for s in SETS for arg in ("--set", s)]
    cmd = [sys.executable, "-m", "sim.cli", "sweep", str(scenario_file), *sets, "--out", str(out),
           "--backend", "ray", "--address", cluster.address, "--jobs", "1", "--quiet"]  # one cell at a time
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not _finished_cells(out) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    log = driver.communicate()[0].decode(errors="replace")
    first = _finished_cells(out)
    assert len(first) == 1, f"the driver should have been killed after its first cell:\n{log}"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ran 3 cells on " in done.stdout and "1 were finished before" in done.stdout
    after = _finished_cells(out)
    assert len(after) == 4 and {k: after[k] for k in first} == first  # the finished cell was not recomputed
    assert _science(out / "sweep.csv") == _science(local_sweep / "sweep.csv")


def test_a_run_with_the_ray_executor_trains_on_both_nodes_bit_identically(
    cluster, scenario_file, tmp_path, monkeypatch, assert_same_outputs
):
    from fl.ray_executor import RayExecutor

    made: list[RayExecutor] = []

    def ray_executor(workload, setup=None):
        made.append(RayExecutor(workload, setup))
        return made[-1]

    monkeypatch.setitem(EXECUTORS, "ray", ray_executor)  # the same executor, kept for a look afterwards
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    assert main(["run", str(scenario_file), "--out", str(tmp_path / "ray"), "--executor", "ray", "--quiet"]) == 0
    assert main(["run", str(scenario_file), "--out", str(tmp_path / "here"), "--quiet"]) == 0
    assert len(made) == 1 and len(made[0].jobs_per_node) == 2, made[0].jobs_per_node  # both nodes trained
    assert_same_outputs(tmp_path / "ray", tmp_path / "here")


def test_a_plugin_travels_to_the_ray_nodes_in_sweeps_and_runs(cluster, tmp_path, monkeypatch, assert_same_outputs):
    """The example's strategy, model and data set (examples/my_plugins.py) on both nodes: the file's source goes
    with every cell and every training task, so no node needs the file."""
    from sim.testing import plugins_loaded

    example = str(ROOT / "examples" / "my_plugins.py")
    raw = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    raw.update(fleet={"num_devices": 6}, encryption={"mode": "modeled"}, stop={"max_versions": 4, "max_time_s": 600})
    scenario = tmp_path / "digits.yaml"
    scenario.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    with plugins_loaded():
        assert main(["sweep", str(scenario), "--plugin", example, "--set", "strategy.decay=0,1", "--out", "ray",
                     "--backend", "ray", "--address", cluster.address, "--quiet"]) == 0
        assert main(["sweep", str(scenario), "--plugin", example, "--set", "strategy.decay=0,1", "--out", "here",
                     "--jobs", "1", "--quiet"]) == 0
        assert _science(tmp_path / "ray" / "sweep.csv") == _science(tmp_path / "here" / "sweep.csv")
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        assert main(["run", str(scenario), "--plugin", example, "--set", "strategy.decay=1", "--out", "run_ray",
                     "--executor", "ray", "--quiet"]) == 0
    assert_same_outputs(tmp_path / "run_ray", tmp_path / "here" / "cells" / "decay=1__seed=0")
