"""Outputs are written atomically, the manifest tells finished from unfinished, the cache is exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fl.result_cache import ResultCache
from fl.training import LocalResult, TrainConfig
from sim.cli import main
from sim.files import atomic_write
from sim.runner import OUTPUT_FILES, run_scenario
from sim.runner.rundir import RunDirError, open_run, ppafl_version, read_manifest
from sim.scenario import scenario_from_dict

TINY = {
    "name": "tiny",
    "data": {"dataset": "mnist5k", "max_test_samples": 100},
    "training": {"batch_size": 50},
    "fleet": {"num_devices": 3},
    "stop": {"max_time_s": 10},
}


# ------------------------------------------------------------------ atomic writes
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("old\n")

    def half_then_crash(p: Path) -> None:
        p.write_text("half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    atomic_write(tmp_path / "a.txt", lambda p: p.write_text("x"))
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_kill_during_a_write_never_leaves_a_partial_file(tmp_path):
    """kill -9 a process in the middle of writing: the target keeps its old content."""
    target = tmp_path / "summary.json"
    target.write_text('{"old": true}\n')
    atomic_py = Path(__file__).resolve().parents[1] / "sim" / "files.py"
    code = (  # loads sim/atomic.py alone: no torch import, so the test is quick
        "import importlib.util, time; from pathlib import Path\n"
        f"spec = importlib.util.spec_from_file_location('atomic', {str(atomic_py)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "def slow(p):\n"
        "    with open(p, 'w') as f:\n"
        "        f.write('{\"new\": '); f.flush(); print('writing', flush=True); time.sleep(60)\n"
        f"mod.atomic_write(Path({str(target)!r}), slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads(target.read_text()) == {"old": True}
    (leftover,) = [p for p in tmp_path.iterdir() if p != target]
    assert leftover.name.startswith(".summary.json.")  # a hidden temporary, cleaned when the run resumes


# ------------------------------------------------------------------ manifest and run directory
def test_a_finished_run_has_all_outputs_and_a_full_manifest(tmp_path):
    scenario = scenario_from_dict(TINY)
    result = run_scenario(scenario, tmp_path, command=["ppafl", "run", "x.yaml"])
    assert all((tmp_path / name).is_file() for name in OUTPUT_FILES)
    m = read_manifest(tmp_path)
    assert m == result.manifest
    assert m["status"] == "finished" and m["error"] is None and m["finished_at"] >= m["started_at"]
    assert m["scenario"] == scenario.to_dict() and m["seed"] == 0 and m["scenario_name"] == "tiny"
    assert m["ppafl_version"] == ppafl_version() != "unknown"
    assert m["command"] == ["ppafl", "run", "x.yaml"]
    assert m["wall_clock_s"] == result.summary["wall_clock_s"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*OUTPUT_FILES, "manifest.json", ".lock"])


def test_stale_temporaries_are_removed_when_a_run_resumes(tmp_path):
    scenario = scenario_from_dict(TINY)
    run = open_run(tmp_path, scenario, OUTPUT_FILES)
    run.close()  # what a kill -9 leaves: status running
    for name in (".metrics.csv.k1x2", ".manifest.json.zz", ".summary.json.q"):
        (tmp_path / name).write_text("half")
    (tmp_path / "notes.txt").write_text("mine")
    run = open_run(tmp_path, scenario, OUTPUT_FILES)
    run.close()
    assert run.resumed and run.manifest["attempts"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "manifest.json", "notes.txt"]


def test_a_legacy_finished_run_is_not_overwritten(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match="already holds a finished run; pass --overwrite"):
        open_run(tmp_path, scenario_from_dict(TINY), OUTPUT_FILES)


@pytest.mark.parametrize("content", ["{not json", '{"status": "done"}', "[]"])
def test_an_unreadable_manifest_is_reported(tmp_path, content):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(RunDirError, match="--overwrite"):
        open_run(tmp_path, scenario_from_dict(TINY), OUTPUT_FILES)
    run = open_run(tmp_path, scenario_from_dict(TINY), OUTPUT_FILES, overwrite=True)
    run.close()
    assert not run.resumed and read_manifest(tmp_path)["status"] == "running"


def test_out_must_be_a_directory(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        open_run(tmp_path / "file", scenario_from_dict(TINY), OUTPUT_FILES)


def test_overwrite_clears_only_the_runs_files(tmp_path):
    scenario = scenario_from_dict(TINY)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "x.npz").write_bytes(b"")
    for name in [*OUTPUT_FILES, "notes.txt"]:
        (tmp_path / name).write_text("old")
    run = open_run(tmp_path, scenario, OUTPUT_FILES, overwrite=True)
    run.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "manifest.json", "notes.txt"]


def test_cli_refuses_a_finished_run(tmp_path, capsys):
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(json.dumps(TINY))
    argv = ["run", str(scenario_file), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == 0
    before = (tmp_path / "o" / "summary.json").read_text()
    assert main(argv) == 2
    assert "already holds a finished run of 'tiny'" in capsys.readouterr().err
    assert (tmp_path / "o" / "summary.json").read_text() == before
    assert main([*argv, "--overwrite"]) == 0


# ------------------------------------------------------------------ the training-result cache
def _key(cache: ResultCache, **changes) -> str:
    args = {
        "model": "mnist_2nn", "train": TrainConfig(), "data_digest": "d", "shard": np.arange(5), "seed": 1,
        "base_params": np.zeros(4, np.float32),
    }
    return cache.key(**{**args, **changes})


def test_cache_round_trip_is_exact(tmp_path):
    cache = ResultCache(tmp_path)
    params = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    key = _key(cache)
    assert cache.get(key, 1000) is None
    cache.put(key, LocalResult(params, 17, 0.123456789))
    got = cache.get(key, 1000)
    assert got.params.tobytes() == params.tobytes() and got.num_samples == 17 and got.train_loss == 0.123456789
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    assert cache.get(key, 999) is None and len(cache) == 0  # wrong size: dropped, retrained


def test_cache_key_covers_every_input(tmp_path):
    cache = ResultCache(tmp_path)
    variants = [
        {},
        {"model": "mnist_cnn"},
        {"train": TrainConfig(lr=0.02)},
        {"train": TrainConfig(prox_mu=0.1)},
        {"data_digest": "e"},
        {"shard": np.arange(1, 6)},
        {"seed": 2},
        {"base_params": np.array([0, 0, 0, 1e-7], np.float32)},
    ]
    assert len({_key(cache, **v) for v in variants}) == len(variants)


def test_cache_removes_temporaries_of_interrupted_writes(tmp_path):
    (tmp_path / ".tmp-abc.bin").write_bytes(b"half")
    ResultCache(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["hmac.key"]


def test_data_digest_is_computed_once_per_data_set(tmp_path, monkeypatch):
    import torch

    import fl.result_cache

    hashed = []
    original = fl.result_cache._digest_tensor
    monkeypatch.setattr(fl.result_cache, "_digest_tensor", lambda h, t: (hashed.append(t), original(h, t)))
    cache = ResultCache(tmp_path)
    x, y = torch.zeros(3, 2), torch.arange(3)
    first = cache.data_digest(x, y)
    assert len(hashed) == 2
    assert cache.data_digest(x, y) == first and len(hashed) == 2  # the same tensors: not hashed again
    assert cache.data_digest(torch.ones(3, 2), y) != first and len(hashed) == 4


def test_a_base_model_is_hashed_once_for_all_the_jobs_on_it(tmp_path, monkeypatch):
    import fl.result_cache

    cache = ResultCache(tmp_path)
    calls = []
    sha256 = fl.result_cache.hashlib.sha256
    monkeypatch.setattr(fl.result_cache.hashlib, "sha256", lambda *a: (calls.append(len(a)), sha256(*a))[1])
    base = np.arange(1000, dtype=np.float32)
    keys = {_key(cache, seed=s, base_params=base) for s in range(5)}
    assert len(keys) == 5 and calls.count(1) == 1  # one digest of the base model's bytes for 5 jobs
    changed = base.copy()
    changed[0] = 1.0
    assert _key(cache, base_params=changed) != _key(cache, base_params=base)  # content, not identity


def test_an_entry_is_only_the_raw_parameters_a_header_and_a_tag(tmp_path):
    from fl.result_cache import ENTRY_OVERHEAD

    cache = ResultCache(tmp_path)
    cache.put(_key(cache), LocalResult(np.ones(1000, np.float32), 3, 0.5))
    (entry,) = tmp_path.glob("*.bin")
    assert entry.stat().st_size == 4 * 1000 + ENTRY_OVERHEAD == ResultCache.entry_nbytes(1000)


def test_run_times_are_the_only_difference_between_two_runs(tmp_path, assert_same_outputs):
    scenario = scenario_from_dict(TINY)
    run_scenario(scenario, tmp_path / "a")
    run_scenario(scenario, tmp_path / "b")
    assert_same_outputs(tmp_path / "a", tmp_path / "b")
