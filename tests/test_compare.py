"""`ppafl compare`: the statistics, what is compared, the metrics at equal rounds and time, resume after a kill."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from harness import finished_cells, kill_after_first_cell

from sim.cli import main
from sim.scenario import ScenarioError
from sim.studies.compare import parse_strategies, plan_compare, run_metrics, summarise
from sim.studies.stats import mean_ci, paired_difference

ROOT = Path(__file__).resolve().parents[1]

# A run of a second or two: 6 laptops on three slots, non-IID shards, the reference code's batch delays.
TINY = {
    "name": "tiny-compare",
    "data": {"dataset": "mnist5k", "partition": "shards", "max_test_samples": 200},
    "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 50, "lr": 0.05},
    "fleet": {"num_devices": 6, "groups": [{"device": "laptop", "link": "ethernet", "share": 1.0}]},
    "strategy": {"name": "ppafl_reference", "client_fraction": 0.5, "round_deadline_s": 600, "participation": "slots"},
    "injected_delay": {"fraction": 0.67, "model": "batch", "min_rounds": 0, "max_rounds": 2},
    "encryption": {"mode": "off"},
    "evaluation": {"interval_s": None, "every_versions": 1, "target_accuracy": 0.3},
    "stop": {"max_time_s": 1e6, "max_versions": 4},
}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


# ------------------------------------------------------------------ statistics
def test_mean_ci_is_the_t_interval():
    e = mean_ci([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * sd / sqrt(n)
    assert (e.mean, e.n, e.total) == (3.0, 5, 5)
    assert e.lo == pytest.approx(3 - half) and e.hi == pytest.approx(3 + half)
    assert e.excludes_zero and e.text() == f"3.0 ± {half:.1f}"
    one = mean_ci([0.7, math.nan])  # one value: no interval; the missing one is counted
    assert one.mean == 0.7 and math.isnan(one.lo) and not one.excludes_zero and one.text(100) == "70.0 (1/2)"
    assert mean_ci([]).text() == "n/a (0/0)"


def test_paired_difference_is_taken_seed_by_seed():
    a, b = {0: 1.0, 1: 2.0, 2: 4.0, 3: math.nan}, {0: 0.0, 1: 1.0, 2: 1.0, 3: 5.0}
    d = paired_difference(a, b)  # differences 1, 1, 3 (seed 3 has no pair)
    half = 4.302652729911275 * math.sqrt(4 / 3) / math.sqrt(3)
    assert d.mean == pytest.approx(5 / 3) and d.hi - d.mean == pytest.approx(half)
    assert (d.n, d.total) == (3, 4) and not d.excludes_zero  # 5/3 - 2.87 < 0


# ------------------------------------------------------------------ what is compared
def test_strategies_are_names_or_labelled_settings():
    got = parse_strategies(["fedavg_straggler,asyfl", "{lr02: {name: ppafl_reference, lr: 0.02, injected_delay.model: topup}}"])
    assert got == {
        "fedavg_straggler": ["strategy.name=\"fedavg_straggler\""],
        "asyfl": ["strategy.name=\"asyfl\""],
        "lr02": ["strategy.name=\"ppafl_reference\"", "strategy.lr=0.02", "injected_delay.model=\"topup\""],
    }


@pytest.mark.parametrize(
    "specs, message",
    [
        (["ppafl"], "at least two strategies"),
        (["ppafl,ppafl"], "given twice"),
        (["{bad/label: ppafl}", "asyfl"], "letters, digits"),
        (["[1, 2]", "asyfl"], "write a strategy name"),
        (["{x: []}", "asyfl"], "must be a name or a mapping"),
    ],
)
def test_bad_strategy_lists_are_refused(specs, message):
    with pytest.raises(ScenarioError, match=message):
        parse_strategies(specs)


def test_every_run_is_validated_before_any_runs(tiny: Path):
    with pytest.raises(ScenarioError, match=r"strategy\.buffer_size: not a setting of ppafl"):
        plan_compare(tiny, parse_strategies(["asyfl,{x: {name: ppafl, buffer_size: 3}}"]), [], seeds=2)
    with pytest.raises(ScenarioError, match=r"strategy\.participation: not a setting of fedbuff"):
        plan_compare(tiny, parse_strategies(["asyfl,fedbuff"]), [], seeds=2)  # the file's slots are round-based
    with pytest.raises(ScenarioError, match="sweep several with `ppafl sweep`"):
        plan_compare(tiny, parse_strategies(["fedavg_straggler,asyfl"]), ["training.lr=0.1,0.2"], seeds=2)
    with pytest.raises(ScenarioError, match="time_only runs train nothing"):
        plan_compare(tiny, parse_strategies(["fedavg_straggler,asyfl"]), ["time_only=true"], seeds=2)
    cells = plan_compare(tiny, parse_strategies(["fedavg_straggler,asyfl"]), ["seed=3"], seeds=2)
    assert [(c.id, c.seed, c.scenario.strategy.name) for c in cells] == [
        ("strategy=fedavg_straggler__seed=3", 3, "fedavg_straggler"), ("strategy=fedavg_straggler__seed=4", 4,
         "fedavg_straggler"), ("strategy=asyfl__seed=3", 3, "asyfl"), ("strategy=asyfl__seed=4", 4, "asyfl")]


# ------------------------------------------------------------------ metrics
def _metrics(versions, times, accs) -> pd.DataFrame:
    return pd.DataFrame({"version": versions, "time_s": times, "accuracy": accs})


def test_run_metrics_cut_each_axis_and_average_the_last_k():
    m = _metrics([0, 1, 2, 2, 3, 4], [0, 10, 20, 25, 30, 40], [0.1, 0.5, 0.6, 0.6, 0.8, 0.9])
    got = run_metrics(m, {"rounds": 3, "time": 25}, target=0.55, last_k=2)
    assert got["rounds_final_accuracy"] == 0.8 and got["rounds_last_k_accuracy"] == pytest.approx(0.7)
    assert got["rounds_mean_accuracy"] == pytest.approx((0.1 + 0.5 + 0.6 + 0.8) / 4)  # version 2 counted once
    assert got["rounds_to_target"] == 2 and got["time_to_target"] == 20
    assert got["time_final_accuracy"] == 0.6 and got["time_last_k_accuracy"] == pytest.approx(0.6)
    assert math.isnan(run_metrics(m, {"rounds": 1, "time": 10}, 0.95, 2)["rounds_to_target"])


def test_summary_pairs_seeds_and_cuts_where_every_run_got(tiny: Path, tmp_path: Path):
    cells = plan_compare(tiny, parse_strategies(["fedavg_straggler,asyfl"]), [], seeds=3)
    accs = {("fedavg_straggler", 0): 0.50, ("fedavg_straggler", 1): 0.60, ("fedavg_straggler", 2): 0.55,
            ("asyfl", 0): 0.60, ("asyfl", 1): 0.62, ("asyfl", 2): 0.70}
    for c in cells:
        d = tmp_path / "out" / "cells" / c.id
        d.mkdir(parents=True)
        last = 5 if c.seed else 4  # one run stopped a round earlier: the equal-rounds cut is at 4
        acc = accs[c.values["strategy"], c.seed]
        versions = list(range(last + 1))
        _metrics(versions, [10.0 * v for v in versions], [acc] * len(versions)).to_csv(d / "metrics.csv", index=False)
    comp = summarise(tmp_path / "out", cells, "fedavg_straggler", last_k=2)
    assert comp.cutoffs == {"rounds": 4.0, "time": 40.0}
    row = comp.summary.set_index(["strategy", "axis", "metric"]).loc[("asyfl", "rounds", "final_accuracy")]
    assert row["mean"] == pytest.approx(np.mean([0.60, 0.62, 0.70]))
    assert row["diff_mean"] == pytest.approx(np.mean([0.10, 0.02, 0.15]))
    assert row["diff_n"] == 3 and bool(row["diff_excludes_zero"]) == (row["diff_lo"] > 0)
    with pytest.raises(ScenarioError, match="some runs stopped at 4"):
        summarise(tmp_path / "out", cells, "fedavg_straggler", at_rounds=5)
    with pytest.raises(ScenarioError, match="not one of the compared strategies"):
        summarise(tmp_path / "out", cells, "ppafl")


# ------------------------------------------------------------------ the command
def test_compare_runs_and_writes_its_tables(tiny: Path, tmp_path: Path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", str(tiny), "--strategy", "fedavg_straggler,ppafl_reference", "--seeds", "2",
               "--out", str(out), "--jobs", "1", "--quiet", "--last-k", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ran 4 runs, 0 were finished before" in printed and "## At equal rounds (4 global versions)" in printed
    for name in ("compare.csv", "compare_cells.csv", "compare.md", "compare.png", "sweep.csv"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "compare.csv")
    assert set(summary["axis"]) == {"rounds", "time"} and len(summary) == 2 * 2 * 4
    assert main(["compare", str(tiny), "--strategy", "fedavg_straggler,ppafl_reference", "--seeds", "2",
                 "--out", str(out), "--baseline", "fedbuff", "--quiet"]) == 2
    assert "--baseline fedbuff: not one of the compared strategies" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_compare_resumes_without_recomputing_finished_runs(tiny: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "sim.cli", "compare", str(tiny), "--strategy", "fedavg_straggler,asyfl",
           "--seeds", "2", "--out", str(out), "--jobs", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kill_after_first_cell(cmd, out, ROOT, env)
    first = finished_cells(out)
    assert len(first) == 1, "the comparison should have been killed after its first run"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "ran 3 runs, 1 were finished before" in done.stdout
    after = finished_cells(out)
    assert len(after) == 4 and {k: after[k] for k in first} == first
    fresh = tmp_path / "fresh"
    uninterrupted = [*cmd[:cmd.index("--out") + 1], str(fresh), "--jobs", "1", "--quiet"]
    subprocess.run(uninterrupted, cwd=ROOT, env=env, capture_output=True, timeout=180, check=True)
    pd.testing.assert_frame_equal(pd.read_csv(out / "compare.csv"), pd.read_csv(fresh / "compare.csv"))


def test_the_rounds_table_marks_asynchronous_strategies(tmp_path: Path):
    raw = {**TINY, "strategy": {"name": "ppafl", "client_fraction": 0.5}, "injected_delay": {"fraction": 0.0}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    cells = plan_compare(tmp_path / "s.yaml", parse_strategies(["fedavg_straggler,fedbuff"]), [], seeds=2)
    for c in cells:
        d = tmp_path / "out" / "cells" / c.id
        d.mkdir(parents=True)
        _metrics([0, 1, 2], [0.0, 5.0, 10.0], [0.1, 0.4, 0.5 + 0.01 * c.seed]).to_csv(d / "metrics.csv", index=False)
    from sim.studies.compare import markdown

    text = markdown(summarise(tmp_path / "out", cells, "fedavg_straggler", last_k=2))
    assert "| fedbuff † |" in text and "† asynchronous: its global versions are not rounds" in text
    assert text.count("†") == 2  # the rounds table only
