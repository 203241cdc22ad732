"""`python main.py` takes the paper's flags and runs the paper's setting through the core."""

import json

import pandas as pd

import main


def test_paper_flags_map_onto_the_scenario():
    args = main.build_parser().parse_args(
        ["-nc", "100", "-cf", "0.1", "-E", "5", "-B", "10", "-mn", "mnist_cnn", "-ncomm", "1000", "-iid", "0", "-lr", "0.01", "-vf", "20", "-g", "0"]
    )
    raw = main.paper_scenario(args)
    assert raw["fleet"]["num_devices"] == 100
    assert raw["strategy"]["client_fraction"] == 0.1 and raw["strategy"]["name"] == "ppafl"
    assert raw["training"] == {"model": "mnist_cnn", "epochs": 5, "batch_size": 10, "lr": 0.01, "prox_mu": 0.01}
    assert raw["data"]["partition"] == "shards" and raw["data"]["dataset"] == "mnist"
    assert raw["stop"]["max_versions"] == 1000 and raw["evaluation"]["every_versions"] == 20
    assert raw["injected_delay"] == {"fraction": 0.4, "max_rounds": 8}


def test_main_runs_a_small_paper_setting_end_to_end(tmp_path):
    out = tmp_path / "paper"
    argv = ["-nc", "10", "-cf", "0.3", "-E", "1", "-B", "20", "-mn", "mnist_2nn", "-ncomm", "4", "-iid", "1", "-lr", "0.05", "-vf", "2", "--dataset", "mnist5k"]
    assert main.main([*argv, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["versions"] == 4
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["version"]) == [0, 2, 4]
    assert metrics["accuracy"].iloc[-1] > 0.5


def test_bad_flag_value_is_a_clear_error(capsys):
    assert main.main(["-cf", "1.5", "--dataset", "mnist5k"]) == 2
    assert "strategy.client_fraction = 1.5" in capsys.readouterr().err


def test_every_strategy_and_preset_gives_a_valid_scenario():
    from sim.scenario import scenario_from_dict

    for name in main.build_parser()._option_string_actions["--strategy"].choices:
        raw = main.paper_scenario(main.build_parser().parse_args(["--strategy", name, "--dataset", "mnist5k"]))
        assert scenario_from_dict(raw).strategy.name == name  # delay_threshold goes to ppafl only


# ------------------------------------------------------------------ the same care as `ppafl run`
SMALL = ["-nc", "6", "-cf", "0.5", "-E", "1", "-B", "50", "-mn", "mnist_2nn", "-ncomm", "4", "-iid", "1",
         "-vf", "2", "--dataset", "mnist5k"]


def test_help_shows_the_defaults(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main.main(["--help"])
    text = capsys.readouterr().out
    assert "(default: 100)" in text and "(default: runs/paper)" in text and "Exit status: 0 finished" in text


def test_missing_data_is_one_line_naming_where_and_the_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PPAFL_DATA_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.setattr(main, "data_roots", lambda: [("$PPAFL_DATA_ROOT", tmp_path / "nowhere")])
    out = tmp_path / "paper"
    paper = ["-nc", "100", "-cf", "0.1", "-E", "5", "-B", "10", "-mn", "mnist_cnn", "-ncomm", "1000", "-iid", "0",
             "-lr", "0.01", "-vf", "20", "-g", "0"]
    assert main.main([*paper, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("main.py: error: mnist not found; looked in: $PPAFL_DATA_ROOT")
    assert "MNIST/raw/" in err and "--data-root ROOT" in err and "--dataset mnist5k" in err
    assert "download=True" not in err and not out.exists()


def test_a_broken_data_root_gets_main_py_advice(tmp_path, capsys):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    assert main.main(["-nc", "10", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Pass --data-root ROOT, or run on the embedded" in err and "download=True" not in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_the_default_data_root_finds_the_shared_data(shared_data_dir, monkeypatch):
    monkeypatch.setenv("PPAFL_DATA_ROOT", str(shared_data_dir))
    assert main.find_data_root("mnist") == shared_data_dir


def test_a_second_run_into_out_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "paper"
    assert main.main([*SMALL, "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "manifest.json").read_text())["command"] == ["main.py", *SMALL, "--out", str(out),
                                                                           "--quiet"]
    capsys.readouterr()
    assert main.main([*SMALL, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds a finished run" in err and "--overwrite" in err and "Traceback" not in err
    assert main.main([*SMALL, "--out", str(out), "--quiet", "--overwrite"]) == 0


def test_progress_is_in_rounds_with_the_accuracy_at_each_val_freq(tmp_path, capsys):
    assert main.main([*SMALL, "--out", str(tmp_path / "p")]) == 0
    out, err = capsys.readouterr()
    assert "2/4 rounds: test accuracy" in out and "4/4 rounds: test accuracy" in out  # the paper's -vf lines
    assert "/4 [" in err and "rounds/s" in err  # the bar counts rounds of -ncomm, with its ETA
    assert "resume cache: up to" in err and "for 4 global versions" in err


def test_ctrl_c_is_one_message_and_exit_130(tmp_path, monkeypatch, capsys):
    from fl.jobs import ClientWorkload

    def interrupted(*_a):
        raise KeyboardInterrupt

    monkeypatch.setattr(ClientWorkload, "train_cached", interrupted)
    out = tmp_path / "p"
    assert main.main([*SMALL, "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "main.py: interrupted; " in err and "Traceback" not in err and err.count("interrupted") == 1
    assert f"python main.py {' '.join(SMALL)} --out {out} --quiet" in err


def test_a_cache_that_would_not_fit_on_the_disk_is_refused_up_front(tmp_path, monkeypatch, capsys):
    import shutil

    import sim.runner.run

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(sim.runner.run.shutil, "disk_usage", lambda _p: usage._replace(free=1_000_000))
    out = tmp_path / "p"
    assert main.main([*SMALL, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "its resume cache would grow to about" in err and "--no-cache" in err and not out.exists()
    assert main.main([*SMALL, "--out", str(out), "--quiet", "--no-cache"]) == 0


def test_an_unexpected_error_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    import sim.runner.run

    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(sim.runner.run, "write_outputs", broken)
    assert main.main([*SMALL, "--out", str(tmp_path / "p"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "main.py: internal error: RuntimeError: boom" in err and "Traceback" not in err
