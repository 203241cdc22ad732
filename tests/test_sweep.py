"""Sweeps: grid expansion, cell ids, up-front validation, the table, resume and kill-resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from harness import finished_cells, kill_after_first_cell

from sim.cli import main
from sim.runner import OUTPUT_FILES, run_scenario
from sim.runner.rundir import open_run
from sim.scenario import ScenarioError, load_scenario
from sim.studies.backends import SweepCellError, _check_node
from sim.studies.sweep import cell_row, parse_sets, plan_sweep, read_sweep, run_sweep, split_values

ROOT = Path(__file__).resolve().parents[1]

# A cell of a couple of seconds: 10 devices, 8 simulated s, plaintext, 200 test images.
TINY = {
    "name": "tiny",
    "data": {"dataset": "mnist5k", "max_test_samples": 200},
    "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 50, "lr": 0.1},
    "fleet": {"num_devices": 10},
    "strategy": {"client_fraction": 0.2, "round_deadline_s": 30},
    "encryption": {"mode": "off"},
    "evaluation": {"interval_s": 2},
    "stop": {"max_time_s": 8},
}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_split_values_keeps_brackets_and_quotes_whole() -> None:
    assert split_values("0,0.2,0.4") == ["0", "0.2", "0.4"]
    assert split_values("[8, 18],[9,17]") == ["[8, 18]", "[9,17]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    assert split_values("{x: 1, y: 2}") == ["{x: 1, y: 2}"]


def test_parse_sets_separates_plain_overrides_from_swept_fields() -> None:
    plain, swept = parse_sets(["stop.max_time_s=60", "failures.dropout_rate=0,0.5", "failures.daily_window=[8,18]"])
    assert plain == ["stop.max_time_s=60", "failures.daily_window=[8,18]"]
    assert swept == {"failures.dropout_rate": [0, 0.5]}
    with pytest.raises(ScenarioError, match="appears twice"):
        parse_sets(["strategy.name=ppafl,ppafl"])
    with pytest.raises(ScenarioError, match="empty value"):
        parse_sets(["failures.dropout_rate=0,,0.2"])


def test_grid_is_the_cross_product_times_seeds_with_readable_stable_ids(tiny: Path) -> None:
    cells, fields = plan_sweep(tiny, ["failures.dropout_rate=0,0.5", "strategy.name=ppafl,fedbuff"], seeds=2)
    assert fields == ["failures.dropout_rate", "strategy.name"]
    assert len(cells) == 8
    assert cells[0].id == "dropout_rate=0__name=ppafl__seed=0"
    assert cells[-1].id == "dropout_rate=0.5__name=fedbuff__seed=1"
    assert len({c.id for c in cells}) == 8
    c = cells[-1]
    assert (c.scenario.failures.dropout_rate, c.scenario.strategy.name, c.scenario.seed) == (0.5, "fedbuff", 1)
    again, _ = plan_sweep(tiny, ["failures.dropout_rate=0,0.5", "strategy.name=ppafl,fedbuff"], seeds=2)
    assert [x.id for x in again] == [x.id for x in cells]


def test_seeds_start_at_the_scenario_seed_and_seed_can_be_swept(tiny: Path) -> None:
    cells, _ = plan_sweep(tiny, ["seed=5"], seeds=3)
    assert [c.seed for c in cells] == [5, 6, 7]
    cells, fields = plan_sweep(tiny, ["seed=3,9"])
    assert fields == [] and [c.id for c in cells] == ["seed=3", "seed=9"]
    with pytest.raises(ScenarioError, match="--seeds"):
        plan_sweep(tiny, ["seed=3,9"], seeds=2)


def test_ids_stay_unique_and_file_safe_for_awkward_values(tiny: Path) -> None:
    cells, _ = plan_sweep(tiny, ["failures.daily_window=[8,18],[9,17]", "name=a/b,'1'"])
    ids = [c.id for c in cells]
    assert len(set(ids)) == 4
    assert all("/" not in i and "[" not in i and len(i) < 140 for i in ids)


def test_a_bad_value_fails_before_any_cell_runs_naming_field_and_value(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"failures\.dropout_rate = 1\.5") as err:
        plan_sweep(tiny, ["failures.dropout_rate=0,1.5"])
    assert "dropout_rate=1.5" in str(err.value)
    rc = main(["sweep", str(tiny), "--set", "strategy.name=ppafl,fedsgd", "--out", str(tmp_path / "s"), "--quiet"])
    assert rc == 2
    assert not (tmp_path / "s").exists()


def test_cell_row_reads_accuracy_at_fixed_times_and_losses() -> None:
    metrics = pd.DataFrame({"time_s": [0.0, 30.0, 60.0, 90.0], "accuracy": [0.1, 0.5, 0.7, 0.8]})
    summary = {
        "scenario": {"stop": {"max_time_s": 100.0}},
        "final_accuracy": 0.8, "best_accuracy": 0.8, "target_accuracy": 0.6, "time_to_target_s": 60.0,
        "energy_j": 12.5, "bytes_sent": 1000, "aggregates_of_one": 2, "versions": 9, "devices_dropped_out": 1,
        "simulated_time_s": 100.0, "wall_clock_s": 1.0,
        "server": {"jobs_failed": 3, "updates_discarded": 1, "updates_aggregated": 20},
    }
    row = cell_row({"strategy.name": "fedbuff"}, 4, summary, metrics)
    assert row["strategy.name"] == "fedbuff" and row["seed"] == 4
    # 25 s -> the evaluation at 0 s; 50 s -> 30 s; 75 s -> 60 s
    assert (row["accuracy_at_25pct"], row["accuracy_at_50pct"], row["accuracy_at_75pct"]) == (0.1, 0.5, 0.7)
    assert row["updates_lost"] == 4 and row["updates_rejected"] == 0
    assert row["time_to_target_s"] == 60.0


def test_a_second_run_computes_nothing_new(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    sets = ["failures.dropout_rate=0,0.5", "strategy.name=ppafl,fedasync"]
    cells, fields = plan_sweep(tiny, sets)
    first = run_sweep(cells, fields, out, jobs=1, progress=False)
    assert len(first.ran) == 4 and first.skipped == []
    stamps = finished_cells(out)
    assert len(stamps) == 4
    second = run_sweep(*plan_sweep(tiny, sets), out, jobs=1, progress=False)
    assert second.ran == [] and len(second.skipped) == 4
    assert finished_cells(out) == stamps
    table, read_fields = read_sweep(out)
    assert read_fields == fields and len(table) == 4
    assert list(table[["failures.dropout_rate", "strategy.name"]].itertuples(index=False, name=None)) == [
        (0.0, "ppafl"), (0.0, "fedasync"), (0.5, "ppafl"), (0.5, "fedasync")
    ]
    assert table["final_accuracy"].between(0.3, 1.0).all()
    wanted = ("accuracy_at_50pct", "time_to_target_s", "energy_j", "bytes_sent", "updates_lost", "aggregates_of_one")
    assert set(wanted) <= set(table.columns)
    # FedAsync aggregates every update alone; the table says so
    assert (table.loc[table["strategy.name"] == "fedasync", "aggregates_of_one"] > 0).all()
    assert set(first.nodes) == set(first.ran) and set(first.nodes.values()) == {socket.gethostname()}


def test_each_cell_equals_a_plain_run_of_its_scenario(tiny: Path, tmp_path: Path, assert_same_outputs) -> None:
    cells, fields = plan_sweep(tiny, ["strategy.name=ppafl,fedbuff"])
    run_sweep(cells, fields, tmp_path / "sweep", jobs=1, progress=False)
    run_scenario(cells[1].scenario, tmp_path / "plain")  # the sweep adds no randomness of its own
    assert_same_outputs(tmp_path / "sweep" / "cells" / cells[1].id, tmp_path / "plain")


def test_relative_paths_in_the_file_resolve_from_its_folder_as_in_a_run(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "study"
    (folder / "traces").mkdir(parents=True)
    (folder / "traces" / "bw.csv").write_text("down_kbps,up_kbps\n8000,4000\n6000,3000\n")
    group = {"device": "rpi4", "link": "wifi", "share": 1.0, "link_overrides": {"bandwidth_trace": "traces/bw.csv"}}
    raw = {**TINY, "data": {**TINY["data"], "root": "data"}, "fleet": {"num_devices": 10, "groups": [group]}}
    (folder / "s.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)  # not the file's folder: the trace is not found from here
    cells, _ = plan_sweep(Path("study/s.yaml"), ["seed=0,1"])
    run = load_scenario(Path("study/s.yaml"))
    for cell in cells:
        assert cell.scenario.data.root == run.data.root == str((folder / "data").resolve())
        trace = cell.scenario.fleet.groups[0].link_overrides["bandwidth_trace"]
        assert trace == run.fleet.groups[0].link_overrides["bandwidth_trace"] == str(folder / "traces" / "bw.csv")


def test_a_partial_cell_of_another_ppafl_version_is_recomputed_not_refused(tiny: Path, tmp_path: Path) -> None:
    cells, fields = plan_sweep(tiny, ["seed=0"])
    partial = tmp_path / "sweep" / "cells" / f".partial-{cells[0].id}"
    run = open_run(partial, cells[0].scenario, OUTPUT_FILES)  # an interrupted run of the same scenario ...
    run.mark("interrupted")
    run.close()
    manifest = json.loads((partial / "manifest.json").read_text())
    (partial / "manifest.json").write_text(json.dumps({**manifest, "ppafl_version": "0.0.1"}))  # ... by another version
    result = run_sweep(cells, fields, tmp_path / "sweep", jobs=1, progress=False)
    assert result.ran == [cells[0].id] and len(result.table) == 1
    assert not partial.exists()


def test_backend_choices_are_checked_before_anything_is_written(tiny: Path, tmp_path: Path) -> None:
    plan = plan_sweep(tiny, ["seed=0"])
    with pytest.raises(ValueError, match=r"--address 1\.2\.3\.4:6379 names a Ray cluster; add --backend ray"):
        run_sweep(*plan, tmp_path / "s", address="1.2.3.4:6379", progress=False)
    with pytest.raises(ValueError, match="use --executor ray to spread each cell's training"):
        run_sweep(*plan, tmp_path / "s", backend="ray", executor="process", progress=False)
    with pytest.raises(ValueError, match="unknown backend 'slurm'; known: local, ray"):
        run_sweep(*plan, tmp_path / "s", backend="slurm", progress=False)
    with pytest.raises(ValueError, match="need at least 1"):
        run_sweep(*plan, tmp_path / "s", backend="ray", jobs=0, progress=False)
    assert not (tmp_path / "s").exists()
    rc = main(["sweep", str(tiny), "--out", str(tmp_path / "s"), "--address", "auto", "--quiet"])
    assert rc == 2 and not (tmp_path / "s").exists()


def test_ray_backend_without_ray_says_how_to_install_it(tiny: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install \.\[ray\]"):
        run_sweep(*plan_sweep(tiny, ["seed=0"]), tmp_path / "s", backend="ray", progress=False)
    assert main(["sweep", str(tiny), "--out", str(tmp_path / "s"), "--backend", "ray", "--quiet"]) == 2
    assert "pip install .[ray]" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_ray_node_that_cannot_see_the_sweep_or_runs_another_version_refuses(tmp_path: Path) -> None:
    from sim.runner.rundir import ppafl_version

    cells = tmp_path / "cells"
    cells.mkdir()
    with pytest.raises(SweepCellError, match="cannot see the sweep directory .* mounts at the same path"):
        _check_node(cells, "token", ppafl_version(), "Ray node n1", "seed=0")  # the driver's token is not here
    (cells / ".ray-visible").write_text("another sweep's token")
    with pytest.raises(SweepCellError, match="cannot see the sweep directory"):
        _check_node(cells, "token", ppafl_version(), "Ray node n1", "seed=0")
    (cells / ".ray-visible").write_text("token")
    _check_node(cells, "token", ppafl_version(), "Ray node n1", "seed=0")
    with pytest.raises(SweepCellError, match=r"Ray node n1 runs ppafl .*, the sweep's driver ppafl 0\.0\.1; install"):
        _check_node(cells, "token", "0.0.1", "Ray node n1", "seed=0")


def test_a_changed_scenario_is_refused_rather_than_mixed_with_old_cells(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    run_sweep(*plan_sweep(tiny, ["seed=0"]), out, jobs=1, progress=False)
    with pytest.raises(ScenarioError, match=r"stop\.max_time_s was 8\.0, is 6\.0 now"):
        run_sweep(*plan_sweep(tiny, ["seed=0", "stop.max_time_s=6"]), out, jobs=1, progress=False)


def test_a_cell_finished_before_a_field_was_added_is_still_the_same_run(tiny: Path, tmp_path: Path) -> None:
    # A field added to the schema later (with a default that keeps the old behaviour) is absent from the
    # stored scenario: the finished cell is that scenario, not a different one.
    out = tmp_path / "sweep"
    run_sweep(*plan_sweep(tiny, ["seed=0"]), out, jobs=1, progress=False)
    (summary_path,) = (out / "cells").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    del summary["scenario"]["failures"]["job_dropout"], summary["scenario"]["failures"]["churn"]
    summary_path.write_text(json.dumps(summary))
    again = run_sweep(*plan_sweep(tiny, ["seed=0"]), out, jobs=1, progress=False)
    assert again.ran == [] and len(again.skipped) == 1


def test_process_executor_needs_one_sweep_worker_and_says_so(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use --jobs 1 --executor process"):
        run_sweep(*plan_sweep(tiny, ["seed=0"]), tmp_path / "s", jobs=2, executor="process", progress=False)
    assert not (tmp_path / "s").exists()  # refused before anything was written


@pytest.mark.slow
def test_worker_processes_give_the_same_numbers(tiny: Path, tmp_path: Path) -> None:
    sets = ["strategy.name=ppafl,fedbuff"]
    here = run_sweep(*plan_sweep(tiny, sets), tmp_path / "one", jobs=1, progress=False).table
    pool = run_sweep(*plan_sweep(tiny, sets), tmp_path / "two", jobs=2, progress=False).table
    pd.testing.assert_frame_equal(here.drop(columns="wall_clock_s"), pool.drop(columns="wall_clock_s"))


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_recomputing_finished_cells(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sim.cli", "sweep", str(tiny), "--set", "failures.dropout_rate=0,0.4",
           "--out", str(out), "--jobs", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kill_after_first_cell(cmd, out, ROOT, env)
    first = finished_cells(out)
    assert len(first) == 1, "the sweep should have been killed after its first cell"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "ran 1 cells, 1 were finished before" in done.stdout
    after = finished_cells(out)
    assert len(after) == 2
    assert {k: after[k] for k in first} == first
    assert not list((out / "cells").glob(".partial-*"))
    assert len(pd.read_csv(out / "sweep.csv")) == 2
    assert (out / "sensitivity.png").is_file()
