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
