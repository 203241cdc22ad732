"""The dropout study: its plan (kinds apart, rate 0 shared, paired seeds), its statistics and its outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.scenario import ScenarioError
from sim.studies.compare import parse_strategies
from sim.studies.dropout_study import plan_study, run_study
from sim.studies.stats import mean_ci

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "dropout_study.yaml"
TINY = ["fleet.num_devices=6", "fleet.groups=[{device: rpi4, link: wifi, share: 1.0}]", "stop.max_time_s=8",
        "failures.dropout_window_s=4", "evaluation.interval_s=2", "data.max_test_samples=200", "training.batch_size=50",
        "evaluation.target_accuracy=0.3"]


def test_the_plan_sweeps_each_kind_apart_and_shares_rate_zero():
    cells, points = plan_study(SCENARIO, parse_strategies(["ppafl,fedasync"]), {"job": [0, 0.4], "permanent": [0, 0.6]},
                               seeds=3)
    assert len(cells) == 2 * 3 * 3  # strategies x (rate 0, job 0.4, permanent 0.6) x seeds
    by_id = {c.values["variant"]: c.scenario for c in cells}
    assert by_id["ppafl__job0.4"].failures.job_dropout == 0.4 and by_id["ppafl__job0.4"].failures.dropout_rate == 0
    assert by_id["ppafl__permanent0.6"].failures.dropout_rate == 0.6
    assert by_id["ppafl__permanent0.6"].failures.job_dropout == 0
    assert points["fedasync__none"].rates == {"job": 0, "permanent": 0}
    assert {c.seed for c in cells} == {0, 1, 2}


@pytest.mark.parametrize(("rates", "needle"), [({"churn": [0.1]}, "unknown kind"), ({"job": [1.5]}, "in \\[0, 1\\]")])
def test_bad_study_settings_are_refused(rates, needle):
    with pytest.raises(ScenarioError, match=needle):
        plan_study(SCENARIO, parse_strategies(["ppafl,fedasync"]), rates, seeds=2)


@pytest.mark.slow
def test_a_small_study_runs_and_its_table_is_the_mean_and_t_interval_of_its_runs(tmp_path):
    study, files, cells = run_study(SCENARIO, parse_strategies(["ppafl,fedasync"]), {"job": [0, 0.5], "permanent": [0]},
                                    tmp_path, seeds=2, sets=TINY, jobs=1, progress=False)
    assert len(cells) == 8 and all(p.is_file() for p in files)
    runs, s = study.runs, study.summary
    assert len(runs) == 2 * 2 * 2 + 2 * 2  # job rates 0 and 0.5, and rate 0 again as the permanent kind's
    cut = runs[(runs["kind"] == "job") & (runs["rate"] == 0.5) & (runs["strategy"] == "fedasync")]
    row = s[(s["kind"] == "job") & (s["rate"] == 0.5) & (s["strategy"] == "fedasync") & (s["metric"] == "final_accuracy")]
    est = mean_ci(cut["final_accuracy"])
    assert row["mean"].item() == pytest.approx(est.mean) and row["lo"].item() == pytest.approx(est.lo)
    assert (cut["jobs_failed"] > 0).all()  # half the jobs fail
    for c in cells:  # the per-run numbers are the runs' own: final accuracy = the last evaluation's
        m = pd.read_csv(tmp_path / "cells" / c.id / "metrics.csv")
        mine = runs[(runs["seed"] == c.seed) & (runs["strategy"] == c.values["variant"].split("__")[0])]
        assert (mine.loc[mine["kind"] == "job", "final_accuracy"].isin([m["accuracy"].iloc[-1]])).any()
    text = (tmp_path / "study.md").read_text()
    assert "## per-job dropout (the device comes back): final accuracy (%)" in text and "| 0.5 |" in text
    assert "## permanent departure: final accuracy (%)" in text
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"
