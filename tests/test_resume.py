"""Kill-and-resume: a run interrupted at any moment, started again, ends with identical outputs."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fl.jobs import ClientWorkload
from sim.runner import OUTPUT_FILES, run_scenario
from sim.runner.rundir import CACHE_DIR, RunDirError, read_manifest
from sim.scenario import scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"dataset": "mnist5k", "max_test_samples": 200},
    "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 20, "lr": 0.05},
    "fleet": {"num_devices": 4},
    "strategy": {"name": "fedasync", "client_fraction": 0.5},
    "encryption": {"mode": "modeled", "params": "high_throughput"},  # SHE's set: the job counts below assume it
    "evaluation": {"interval_s": 20},
    "stop": {"max_time_s": 60},
}


def _tiny(**stop):
    """TINY with larger batches (quicker) and the given stop settings."""
    training = {**TINY["training"], "batch_size": 50}
    return scenario_from_dict({**TINY, "training": training, "stop": {**TINY["stop"], **stop}})


@pytest.fixture(scope="module")
def ref20():
    """The metrics of an uninterrupted 20-simulated-second run (shared: every resume must end with them)."""
    return run_scenario(_tiny(max_time_s=20)).metrics


def _leftovers(d: Path) -> list[str]:
    """Temporary files of interrupted writes (there must be none)."""
    return sorted(p.name for p in d.rglob(".*") if p.name != ".lock")


class _Interrupt:
    """Raises KeyboardInterrupt in the n-th training job (what Ctrl-C does at that moment)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int) -> None:
        self.calls, self.after = 0, after
        original = ClientWorkload.train_cached

        def train_cached(workload, task, base):
            self.calls += 1
            if self.calls == self.after:
                raise KeyboardInterrupt
            return original(workload, task, base)

        monkeypatch.setattr(ClientWorkload, "train_cached", train_cached)


def test_interrupted_run_resumes_to_identical_outputs(tmp_path, monkeypatch, assert_same_outputs):
    scenario = _tiny(max_time_s=30)
    ref = run_scenario(scenario, tmp_path / "ref")
    assert ref.manifest["status"] == "finished" and ref.manifest["attempts"] == 1
    assert not (tmp_path / "ref" / CACHE_DIR).exists()  # the cache goes once the run has finished

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _Interrupt(m, after=12)
        with pytest.raises(KeyboardInterrupt):
            run_scenario(scenario, out)
    manifest = read_manifest(out)
    assert manifest["status"] == "interrupted" and "resume" in manifest["error"]
    assert not any((out / name).exists() for name in OUTPUT_FILES)  # nothing that looks finished
    assert len(list((out / CACHE_DIR).glob("*.bin"))) == 11
    assert _leftovers(out) == []

    resumed = run_scenario(scenario, out)
    assert resumed.manifest["status"] == "finished" and resumed.manifest["attempts"] == 2
    assert resumed.manifest["training_cache"]["jobs_reused"] == 11
    assert_same_outputs(tmp_path / "ref", out)


def test_failed_run_is_marked_and_resumable(tmp_path, monkeypatch):
    scenario = _tiny(max_time_s=20)
    def broken_seal(*_args):
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as m:
        m.setattr(ClientWorkload, "seal", broken_seal)
        with pytest.raises(RuntimeError):
            run_scenario(scenario, tmp_path)
    manifest = read_manifest(tmp_path)
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: disk on fire"
    assert run_scenario(scenario, tmp_path).manifest["status"] == "finished"


def test_finished_run_is_not_overwritten_unless_asked(tmp_path):
    scenario = _tiny(max_time_s=10)
    first = run_scenario(scenario, tmp_path)
    with pytest.raises(RunDirError, match="already holds a finished run of 'tiny'.*--overwrite"):
        run_scenario(scenario, tmp_path)
    again = run_scenario(scenario, tmp_path, overwrite=True)
    assert again.manifest["attempts"] == 1 and again.summary["versions"] == first.summary["versions"]


def test_unfinished_run_of_another_scenario_is_refused(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _Interrupt(m, after=2)
        with pytest.raises(KeyboardInterrupt):
            run_scenario(_tiny(max_time_s=20), tmp_path)
    with pytest.raises(RunDirError, match=r"another scenario \(stop.max_time_s: 20.0 -> 30.0\).*resume"):
        run_scenario(_tiny(max_time_s=30), tmp_path)
    assert read_manifest(tmp_path)["status"] == "interrupted"  # the refused run changed nothing


def test_a_second_process_cannot_write_into_a_running_directory(tmp_path):
    from sim.runner.rundir import open_run

    run = open_run(tmp_path, _tiny(), OUTPUT_FILES)
    try:
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}.*is writing to"):
            run_scenario(_tiny(), tmp_path)
    finally:
        run.close()


def test_corrupt_cache_entries_are_retrained(tmp_path, monkeypatch, caplog, ref20):
    scenario = _tiny(max_time_s=20)
    with monkeypatch.context() as m:
        _Interrupt(m, after=6)
        with pytest.raises(KeyboardInterrupt):
            run_scenario(scenario, tmp_path)
    entries = sorted((tmp_path / CACHE_DIR).glob("*.bin"))
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # truncated
    entries[1].write_bytes(b"not an entry")
    with caplog.at_level("WARNING", logger="ppafl.cache"):
        resumed = run_scenario(scenario, tmp_path)
    assert resumed.manifest["training_cache"]["jobs_reused"] == len(entries) - 2
    assert resumed.manifest["training_cache"]["entries_rejected"] == 2
    assert "is not used: the job is trained again" in caplog.text
    assert resumed.metrics.equals(ref20)


def _cached_run(tmp_path: Path, monkeypatch, name: str, after: int = 6) -> Path:
    """An interrupted run of the tiny scenario in tmp_path/name, its cache holding after-1 entries."""
    out = tmp_path / name
    with monkeypatch.context() as m:
        _Interrupt(m, after=after)
        with pytest.raises(KeyboardInterrupt):
            run_scenario(_tiny(max_time_s=20), out)
    return out / CACHE_DIR


def test_a_rewritten_entry_is_rejected_never_used(tmp_path, monkeypatch, caplog, ref20):
    """The issue's case: an entry rewritten with other parameters under the same name, resumed."""
    cache = _cached_run(tmp_path, monkeypatch, "run")
    victim = min(cache.glob("*.bin"))
    data = bytearray(victim.read_bytes())
    data[200:204] = np.float32(123.0).tobytes()  # one parameter changed, header and tag kept
    victim.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="ppafl.cache"):
        resumed = run_scenario(_tiny(max_time_s=20), tmp_path / "run")
    assert f"{victim.name} failed its authentication check" in caplog.text
    assert resumed.manifest["training_cache"]["entries_rejected"] == 1
    assert resumed.metrics.equals(ref20)  # the job was retrained, the model is the right one


def test_entries_of_another_run_are_rejected(tmp_path, monkeypatch, caplog, ref20):
    """Copied from another run (same scenario, so the same names): that run's key did not sign them here."""
    theirs = _cached_run(tmp_path, monkeypatch, "theirs", after=8)
    ours = _cached_run(tmp_path, monkeypatch, "ours", after=2)
    copied = 0
    for entry in theirs.glob("*.bin"):
        if not (ours / entry.name).exists():
            (ours / entry.name).write_bytes(entry.read_bytes())
            copied += 1
    assert copied > 0
    with caplog.at_level("WARNING", logger="ppafl.cache"):
        resumed = run_scenario(_tiny(max_time_s=20), tmp_path / "ours")
    assert resumed.manifest["training_cache"]["entries_rejected"] == copied
    assert resumed.manifest["training_cache"]["jobs_reused"] == 1
    assert resumed.metrics.equals(ref20)


def test_the_cache_is_private_to_its_owner(tmp_path, monkeypatch, caplog):
    import stat as st

    cache = _cached_run(tmp_path, monkeypatch, "run")
    assert st.S_IMODE(cache.stat().st_mode) == 0o700
    key = cache / "hmac.key"
    assert st.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_size == 32
    assert all(st.S_IMODE(e.stat().st_mode) == 0o600 for e in cache.glob("*.bin"))
    key.chmod(0o644)  # readable by others: whoever read it could sign entries, so it is replaced
    with caplog.at_level("WARNING", logger="ppafl.cache"):
        resumed = run_scenario(_tiny(max_time_s=20), tmp_path / "run")
    assert "readable by others" in caplog.text
    assert resumed.manifest["training_cache"]["jobs_reused"] == 0
    assert resumed.manifest["training_cache"]["entries_rejected"] == 5


def test_a_failed_start_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    bad = _tiny(max_time_s=20).model_copy(update={"data": _tiny().data.model_copy(
        update={"dataset": "mnist", "root": str(tmp_path / "no-data")})})
    with pytest.raises(Exception, match="MNIST"):
        run_scenario(bad, out)
    assert not out.exists()  # so the corrected command is not refused
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(Exception, match="MNIST"):
        run_scenario(bad, tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    assert run_scenario(_tiny(max_time_s=10), out).manifest["status"] == "finished"


def test_a_failure_after_cached_jobs_keeps_them_for_the_resume(tmp_path, monkeypatch):
    scenario = _tiny(max_time_s=20)
    original = ClientWorkload.seal
    calls = []

    def seal_then_fail(workload, *args):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("worker lost")
        return original(workload, *args)

    with monkeypatch.context() as m:
        m.setattr(ClientWorkload, "seal", seal_then_fail)
        with pytest.raises(RuntimeError):
            run_scenario(scenario, tmp_path)
    manifest = read_manifest(tmp_path)
    assert manifest["status"] == "failed" and len(list((tmp_path / CACHE_DIR).glob("*.bin"))) >= 3
    resumed = run_scenario(scenario, tmp_path)
    assert resumed.manifest["training_cache"]["jobs_reused"] >= 3


def test_a_full_disk_stops_caching_but_not_the_run(tmp_path, monkeypatch, caplog, ref20):
    scenario = _tiny(max_time_s=20)
    import fl.result_cache

    writes = []
    write_entry = fl.result_cache._write_entry

    def write_until_full(path, parts):
        writes.append(1)
        if len(writes) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_entry(path, parts)

    monkeypatch.setattr(fl.result_cache, "_write_entry", write_until_full)
    with caplog.at_level("WARNING", logger="ppafl.cache"):
        done = run_scenario(scenario, tmp_path)
    assert "stopped storing results" in caplog.text and "No space left on device" in caplog.text
    assert done.metrics.equals(ref20) and done.manifest["status"] == "finished"
    assert "No space left" in done.manifest["training_cache"]["write_error"]
    assert len(writes) == 4  # storing stopped at the first failure
    assert _leftovers(tmp_path) == []


def test_no_cache_runs_and_says_so(tmp_path):
    done = run_scenario(_tiny(max_time_s=10), tmp_path, cache=False)
    assert done.manifest["training_cache"] == "off" and not (tmp_path / CACHE_DIR).exists()


# ------------------------------------------------------------------ a real process, really killed
def _start(scenario_file: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sim.cli", "run", str(scenario_file), "--out", str(out), "--quiet"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_when_cached(proc: subprocess.Popen, out: Path, entries: int, sig: int) -> tuple[int, str]:
    """Send `sig` once the run has `entries` finished training jobs on disk."""
    deadline = time.monotonic() + 240
    while len(list((out / CACHE_DIR).glob("*.bin"))) < entries:
        assert proc.poll() is None, f"the run ended before it could be stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_sigterm_stops_the_cli_cleanly(tmp_path, monkeypatch, capsys):
    """SIGTERM (in this process, as `kill` would send it) mid-run: exit 143, resume hint, no outputs."""
    from sim.cli import main

    scenario_file = tmp_path / "tiny.yaml"
    scenario_file.write_text(json.dumps({**TINY, "stop": {"max_time_s": 20}}))
    original = ClientWorkload.train_cached
    calls = []

    def train_cached(workload, task, base):
        calls.append(task)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(workload, task, base)

    monkeypatch.setattr(ClientWorkload, "train_cached", train_cached)
    handler_before = signal.getsignal(signal.SIGTERM)
    argv = ["run", str(scenario_file), "--out", str(tmp_path / "out"), "--quiet", "--overwrite"]
    assert main(argv) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "terminated (SIGTERM)" in err and "Resume with the same command" in err
    assert f"ppafl run {scenario_file} --out {tmp_path / 'out'} --quiet" in err  # without --overwrite
    assert read_manifest(tmp_path / "out")["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the handler was only there for the run
    assert main(argv[:-1]) == 0  # resumes


@pytest.mark.slow
def test_killed_process_resumes_to_identical_outputs(tmp_path, assert_same_outputs):
    """A real `ppafl run` process: SIGKILL, then SIGINT at a later point; the third start finishes."""
    scenario_file = tmp_path / "tiny.yaml"
    scenario_file.write_text(json.dumps(TINY))  # JSON is YAML
    ref, out = tmp_path / "ref", tmp_path / "run"
    run_scenario(scenario_from_dict(TINY), ref)  # one torch thread here, as in the subprocesses

    rc, _ = _stop_when_cached(_start(scenario_file, out), out, 10, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert read_manifest(out)["status"] == "running"  # what a kill -9 leaves: not finished

    rc, err = _stop_when_cached(_start(scenario_file, out), out, 30, signal.SIGINT)
    assert rc == 130, err
    assert "Resume with the same command" in err and "Traceback" not in err
    assert read_manifest(out)["status"] == "interrupted"
    assert not any((out / name).exists() for name in OUTPUT_FILES)
    assert _leftovers(out) == []

    final = _start(scenario_file, out)
    stdout, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert "resuming the run in" in err and "(attempt 3)" in err and "resumed (attempt 3)" in stdout
    manifest = read_manifest(out)
    assert manifest["status"] == "finished" and manifest["training_cache"]["jobs_reused"] >= 30
    assert_same_outputs(ref, out)
