"""The command line and its outputs never claim what did not happen, and never leave a failed start behind."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.axes
import numpy as np
import pandas as pd
import pytest

from sim.cli import EXECUTOR_NAMES, main
from sim.cli.labels import run_labels
from sim.plots.runs import _shown_devices, image_path, plot_device_timeline
from sim.runner import run_scenario
from sim.runner.preflight import NoUpdatePossibleError
from sim.scenario import scenario_from_dict

TINY = {
    "name": "tiny",
    "data": {"dataset": "mnist5k", "max_test_samples": 100},
    "training": {"batch_size": 50},
    "fleet": {"num_devices": 4},
    "strategy": {"name": "fedasync", "client_fraction": 0.5},
    "evaluation": {"interval_s": 10},
    "stop": {"max_time_s": 30},
}
NOBODY_STAYS = {**TINY, "failures": {"dropout_rate": 1.0, "dropout_window_s": 0.001}}  # all leave within 1 ms


def _file(tmp_path: Path, raw: dict, name: str = "s.yaml") -> str:
    (tmp_path / name).write_text(json.dumps(raw))  # JSON is YAML
    return str(tmp_path / name)


def test_the_executor_choices_are_the_executors():
    from fl.executors import EXECUTORS

    assert tuple(EXECUTORS) == EXECUTOR_NAMES


def test_a_bad_executor_leaves_no_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", _file(tmp_path, TINY), "--out", str(tmp_path / "o"), "--executor", "gpu"])
    assert exit_.value.code == 2 and "invalid choice: 'gpu'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown executor 'gpu'"):
        run_scenario(scenario_from_dict(TINY), tmp_path / "o", executor="gpu")
    assert not (tmp_path / "o").exists()


def test_a_run_with_no_aggregation_says_so_everywhere(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", _file(tmp_path, NOBODY_STAYS), "--out", str(out), "--quiet"]) == 3
    std, err = capsys.readouterr()
    assert "final accuracy none (no global version was made)" in std
    assert "ppafl: warning: no global version was made: no update ever arrived" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["versions"] == 0 and summary["final_accuracy"] is None and summary["best_accuracy"] is None
    assert summary["initial_accuracy"] is not None  # the untrained model's, named as such
    assert summary["time_to_target_s"] is None
    (first,) = [w for w in summary["warnings"] if w.startswith("no global version")]
    assert "devices left" in first and "final_accuracy is null" in first


def test_no_aggregation_is_flagged_for_every_reason(tmp_path):
    rejected = run_scenario(scenario_from_dict({**TINY, "training": {"batch_size": 50, "lr": 10.0},
                                                "encryption": {"mode": "modeled"}}))
    warnings = rejected.summary["warnings"]
    assert any("were rejected" in w for w in warnings)
    asked = run_scenario(scenario_from_dict({**TINY, "stop": {"max_time_s": 5, "max_versions": 1000}}))
    assert any("of the 1000 global versions asked for" in w for w in asked.summary["warnings"])
    assert any("built from a single client's update" in w for w in asked.summary["warnings"])  # fedasync


def test_a_scenario_in_which_no_update_can_arrive_is_refused_up_front(tmp_path, capsys):
    slow = {**TINY, "fleet": {"num_devices": 4, "groups": [{"device": "rpi4", "link_overrides": {"up_bps": 1}}]}}
    with pytest.raises(NoUpdatePossibleError, match=r"no device can deliver an update before stop.max_time_s = 30 s"):
        run_scenario(scenario_from_dict(slow), tmp_path / "o")
    assert main(["run", _file(tmp_path, slow), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    upload = float(err.split("upload ")[1].split(" s")[0])
    assert 1e6 < upload < 1.3e7 and not (tmp_path / "o").exists()  # 1.3e7 s at the mean 1 bit/s, less if lucky


def test_a_group_that_cannot_deliver_is_warned_about(tmp_path):
    mixed = {**TINY, "fleet": {"num_devices": 4, "groups": [
        {"device": "rpi4", "share": 0.5}, {"device": "mcu", "link": "lora", "share": 0.5}]}}
    done = run_scenario(scenario_from_dict(mixed))
    assert any(w.startswith("groups[1] (mcu/lora, 2 devices) cannot deliver an update") for w in
               done.summary["warnings"])


# ------------------------------------------------------------------ ppafl plot
def _fake_run(d: Path, name: str, **scenario: object) -> Path:
    d.mkdir(parents=True)
    pd.DataFrame({"time_s": [0.0, 10.0], "version": [0, 1], "accuracy": [0.1, 0.5]}).to_csv(d / "metrics.csv")
    (d / "summary.json").write_text(json.dumps({"scenario": {"name": name, "seed": 0, **scenario}}))
    return d


def test_every_curve_gets_a_label_that_tells_it_apart(tmp_path):
    a = _fake_run(tmp_path / "a", "quick", seed=0, strategy={"name": "ppafl"})
    b = _fake_run(tmp_path / "b", "quick", seed=1, strategy={"name": "fedbuff"})
    c = _fake_run(tmp_path / "c", "other")
    d = _fake_run(tmp_path / "x" / "c", "other")  # same name, same scenario, same folder name
    labels = run_labels([a, b, c, d])
    assert labels[0] == "quick (seed=0, name=ppafl)" and labels[1] == "quick (seed=1, name=fedbuff)"
    assert labels[2] == f"other ({c})" and labels[3] == f"other ({d})"
    assert len(set(labels)) == 4


def test_plot_prints_the_file_it_really_wrote(tmp_path, capsys, monkeypatch):
    a, b = _fake_run(tmp_path / "a", "q", seed=0), _fake_run(tmp_path / "b", "q", seed=1)
    assert main(["plot", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'cmp.png'}" and (tmp_path / "cmp.png").is_file()
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(a)]) == 0
    assert "(the working directory: choose another place with --out)" in capsys.readouterr().out
    assert main(["plot", str(a), "--out", str(tmp_path / "x.docx")]) == 2
    assert "cannot write a .docx image" in capsys.readouterr().err
    assert main(["plot", str(a), "--out", str(tmp_path / "no" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_image_path_adds_png_only_when_there_is_no_extension(tmp_path):
    assert image_path(tmp_path / "fig") == tmp_path / "fig.png"
    assert image_path(tmp_path / "fig.pdf") == tmp_path / "fig.pdf"


# ------------------------------------------------------------------ the device timeline
def test_a_large_fleet_timeline_says_which_devices_it_shows(tmp_path, monkeypatch):
    assert _shown_devices(list(range(40)), 60) == (list(range(40)), "")
    shown, note = _shown_devices(list(range(1000)), 60)
    assert len(shown) == 60 and shown[0] == 0 and shown[-1] == 999 and "60 of 1000 devices shown" in note
    titles = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda ax, t, **k: (titles.append(t), original(ax, t, **k)))
    events = pd.DataFrame({"time_s": np.arange(200.0), "event": ["train_start", "train_end"] * 100,
                           "device": np.repeat(np.arange(100), 2), "version": 0})
    plot_device_timeline(events, tmp_path / "t.png")
    assert any("60 of 100 devices shown" in t for t in titles)


@pytest.mark.parametrize("argv, expected", [
    (["--out", ""], "argument --out: is empty"),
    (["--out", "o", "--seed", "-3"], "argument --seed: -3 is out of range"),
    (["--out", "o", "--seed", "x"], "argument --seed: 'x' is not an integer"),
])
def test_bad_flags_are_usage_errors(tmp_path, capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["run", _file(tmp_path, TINY), *argv])
    assert exit_.value.code == 2 and expected in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # nothing written into the working directory


@pytest.mark.parametrize("event", ["battery_depleted", "round_open"])  # a mark; nothing a device shows
def test_a_timeline_draws_without_warnings_even_with_no_device_activity(tmp_path, event):
    import warnings

    events = pd.DataFrame({"time_s": [0.0, 0.0], "event": [event, "dropped_out" if event != "round_open" else event],
                           "device": [0, 1] if event != "round_open" else [-1, -1], "version": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_device_timeline(events, tmp_path / "t.png", end_s=30.0)


def test_a_missing_optional_package_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import fl.ray_executor

    def no_ray():
        raise ImportError("the ray executor needs Ray: pip install .[ray]")

    monkeypatch.setattr(fl.ray_executor, "import_ray", no_ray)
    monkeypatch.setattr(fl.ray_executor, "RayExecutor", lambda *_args: no_ray())
    out = tmp_path / "o"
    assert main(["run", _file(tmp_path, TINY), "--out", str(out), "--executor", "ray", "--quiet"]) == 2
    assert "ppafl: error: the ray executor needs Ray: pip install .[ray]" in capsys.readouterr().err
    assert not out.exists()


def test_a_transfer_across_millions_of_outages_is_refused_not_drawn(tmp_path):
    from sim.runner.preflight import EndlessTransferError

    endless = {**TINY, "time_only": True, "evaluation": {"interval_s": None}, "fleet": {"num_devices": 4, "groups": [
        {"device": "rpi4", "share": 0.5},
        {"device": "rpi4", "share": 0.5, "link_overrides": {"up_bps": 1, "mean_up_s": 1, "mean_down_s": 1}}]}}
    with pytest.raises(EndlessTransferError, match=r"groups\[1\] \(rpi4/wifi\) takes .* more than the 100,000"):
        run_scenario(scenario_from_dict(endless), tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", ["", "a,b\n1,2\n", "\xff\xfe"])
def test_plot_names_a_broken_metrics_file(tmp_path, capsys, content):
    d = tmp_path / "run"
    d.mkdir()
    (d / "metrics.csv").write_bytes(content.encode("latin-1"))
    assert main(["plot", str(d), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"{d / 'metrics.csv'}" in err and "metrics.csv written by `ppafl run`" in err
