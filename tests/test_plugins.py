"""A researcher's own components without a fork: registries, `--plugin` files and modules, entry points, data
files without code, and the worked example (examples/my_plugins.py) run from YAML, from Python, on every local
executor, with real BFV, in sweeps and comparisons with worker processes. (Ray: tests/test_ray_cluster.py.)"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import sim.plugins.registry
from devices import resolve_profile
from fl.models import ModelSpec
from fl.partition import partition
from fl.server import Server
from fl.training import TrainConfig
from sim.cli import main
from sim.engine import OUTPUT_FILES, DeviceGroup, Monitor, Simulation, build_fleet, learning_workload
from sim.plugins import DATASETS, MODELS, STRATEGIES, PluginError, register_device_class, register_failure_source
from sim.runner import run_scenario
from sim.runner.rundir import RunDirError
from sim.scenario import ScenarioError, load_scenario, scenario_from_dict
from sim.testing import ScriptedInterruptions, plugins_loaded

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "my_plugins.py")
# The example's scenario, shrunk: 6 devices, 6 global versions, real BFV.
SMALL = ["fleet.num_devices=6", "stop.max_versions=6", "evaluation.interval_s=20", "training.epochs=1"]


@pytest.fixture
def example():
    """The example's plugins, loaded for one test only."""
    with plugins_loaded([EXAMPLE]) as sources:
        yield sources


def _small(**more: object) -> dict:
    raw = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    raw["fleet"]["num_devices"], raw["stop"]["max_versions"], raw["training"]["epochs"] = 6, 6, 1
    raw["evaluation"]["interval_s"] = 20
    return {**raw, **more}


# ------------------------------------------------------------------ registries and loading
def test_an_unknown_name_lists_the_known_ones_and_how_to_register(tmp_path):
    for raw, where in [
        ({"strategy": {"name": "fedsgd"}}, r"strategy\.name = 'fedsgd': unknown strategy"),
        ({"training": {"model": "resnet"}}, r"training\.model = 'resnet': unknown model"),
        ({"data": {"dataset": "imagenet"}}, r"data\.dataset = 'imagenet': unknown dataset"),
        ({"failures": {"sources": [{"name": "meteor"}]}}, r"failures\.sources\.0\.name = 'meteor': unknown failure"),
        ({"encryption": {"scheme": "ckks"}}, r"unknown privacy scheme 'ckks'"),
        ({"fleet": {"groups": [{"device": "toaster"}]}}, r"unknown device class 'toaster'"),
    ]:
        with pytest.raises(ScenarioError, match=where) as err:
            scenario_from_dict(raw)
        if "device class" not in where:
            assert "--plugin" in str(err.value) and "docs/extending.md" in str(err.value)


def test_a_plugin_section_is_validated_by_its_own_class(example):
    with pytest.raises(ScenarioError, match=r"strategy\.decay = -1: Input should be greater than or equal to 0"):
        scenario_from_dict(_small(strategy={"name": "decayed_buffer", "decay": -1}))
    with pytest.raises(ScenarioError, match=r"strategy\.buffer_size = True: a boolean where a number belongs"):
        scenario_from_dict(_small(strategy={"name": "decayed_buffer", "buffer_size": True}))
    with pytest.raises(ScenarioError, match=r"strategy\.alpha: not a setting of decayed_buffer; it belongs to fedasync"):
        scenario_from_dict(_small(strategy={"name": "decayed_buffer", "alpha": 0.5}))
    with pytest.raises(ScenarioError, match=r"training\.model_options\.hiden: unknown key; did you mean 'hidden'"):
        scenario_from_dict(_small(training={"model": "tiny_mlp", "model_options": {"hiden": 3}}))
    with pytest.raises(ScenarioError, match=r"training\.model 'mnist_2nn' takes mnist5k or mnist inputs, not 'digits'"):
        scenario_from_dict(_small(training={"model": "mnist_2nn"}))


def test_plugin_loading_errors_name_the_plugin_and_the_cause(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nraise RuntimeError('no GPU here')\n")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    with plugins_loaded():
        for spec, message in [
            (str(tmp_path / "missing.py"), "no such file"),
            (str(broken), r"failed while loading \(line 2\): RuntimeError: no GPU here"),
            (str(syntax), r"failed while loading \(line 1\): SyntaxError"),
            ("no_such_module_ppafl", "no module of that name is installed"),
            ("not a name!", "neither a .py file nor a module name"),
        ]:
            with pytest.raises(PluginError, match=message):
                sim.plugins.load_plugins([spec])


def test_a_name_taken_by_another_component_is_refused_and_a_rerun_cell_replaces_its_own(tmp_path):
    with plugins_loaded():
        with pytest.raises(PluginError, match="'fedavg' is registered already"):
            from fl.strategies import FedAvgConfig

            class Mine(FedAvgConfig):
                pass

            STRATEGIES.register("fedavg", Mine)
        register_device_class("toaster", {"flops_per_s": 2e6}, {"capacity_j": 500}, sessions=(600, 60))
        register_device_class("toaster", {"flops_per_s": 2e6}, {"capacity_j": 500}, sessions=(600, 60))  # again: fine
        assert scenario_from_dict({"fleet": {"groups": [{"device": "toaster"}]}, "time_only": True}).fleet
    with pytest.raises(ScenarioError, match="unknown device class 'toaster'"):  # gone after the block
        scenario_from_dict({"fleet": {"groups": [{"device": "toaster"}]}})


def test_an_installed_package_registers_through_its_entry_point(tmp_path, monkeypatch):
    pkg = tmp_path / "acme_fl"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from sim.plugins import register_link_class\n"
        "register_link_class('sat', {'down_bps': 2e5, 'up_bps': 5e4, 'latency_s': 0.6})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint("acme", "acme_fl", sim.plugins.registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [ep] if group == ep.group else [])
    monkeypatch.setattr(sim.plugins.registry, "_entry_points_loaded", False)
    with plugins_loaded():
        sc = scenario_from_dict({"fleet": {"groups": [{"link": "sat"}]}, "time_only": True})
        assert sc.fleet.groups[0].profile().link.latency_s == 0.6
    sys.modules.pop("acme_fl", None)


# ------------------------------------------------------------------ data sets from files, without code
@pytest.mark.parametrize("kind", ["npz", "csv"])
def test_a_data_file_runs_without_code(tmp_path, kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + 2 * (x[:, 2] > 0.5)  # 4 classes a small MLP can learn
    if kind == "npz":
        np.savez(tmp_path / "data.npz", x=x.astype(np.float32), y=y)
        options = {"path": "data.npz"}
    else:
        pd.DataFrame(x, columns=[f"f{i}" for i in range(6)]).assign(label=y).to_csv(tmp_path / "data.csv", index=False)
        options = {"path": "data.csv"}
    scenario = {"data": {"dataset": kind, "options": options}, "training": {"model": "mlp", "lr": 0.1, "epochs": 3,
                "model_options": {"hidden": [16]}}, "fleet": {"num_devices": 5}, "encryption": {"mode": "off"},
                "strategy": {"name": "fedavg", "client_fraction": 1.0}, "stop": {"max_versions": 8}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario))
    sc = load_scenario(path)  # the relative data path starts at the scenario's folder
    assert sc.data.info().sample_shape == (6,) and sc.data.info().num_classes == 4
    result = run_scenario(sc)
    assert result.summary["versions"] == 8 and result.summary["final_accuracy"] > 0.6


def test_a_bad_data_file_is_named_with_the_fix(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.zeros((10, 2)), y=np.zeros(10))
    with pytest.raises(ScenarioError, match=r"no array named 'x' \(it holds features, y\); set data.options x_key"):
        scenario_from_dict({"data": {"dataset": "npz", "options": {"path": str(tmp_path / "d.npz")}}})
    (tmp_path / "d.csv").write_text("a,b,label\n1,x,0\n2,y,1\n")
    with pytest.raises(ScenarioError, match=r"feature column\(s\) b are not numbers"):
        scenario_from_dict({"data": {"dataset": "csv", "options": {"path": str(tmp_path / "d.csv")}}})
    with pytest.raises(ScenarioError, match=r"data\.options\.path: Field required"):
        scenario_from_dict({"data": {"dataset": "csv"}})


# ------------------------------------------------------------------ the worked example
def test_the_example_runs_from_yaml_with_plugin_and_real_bfv(tmp_path):
    out = tmp_path / "digits"
    with plugins_loaded():
        rc = main(["run", str(ROOT / "examples" / "digits.yaml"), "--plugin", EXAMPLE, "--out", str(out), "--quiet",
                   *(a for s in SMALL for a in ("--set", s))])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"]["strategy"]["name"] == "decayed_buffer" and summary["versions"] == 6
    assert summary["encryption"]["scheme"] == "bfv" and summary["encryption"]["mode"] == "real"
    assert summary["final_accuracy"] > summary["initial_accuracy"] + 0.2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plugins"][0]["sha256"] and manifest["plugins"][0]["plugin"] == EXAMPLE


def test_the_example_composes_in_python_and_saves_what_ppafl_run_writes(tmp_path, example):
    module = sys.modules[example[0].module]
    digits = module.load_digits()
    spec = ModelSpec.of("tiny_mlp", module.tiny_mlp, {"input_shape": (64,), "num_classes": 10, "hidden": 16})
    n = 8
    shards = partition(digits.y_train.numpy(), n, "iid", seed=0)
    workload = learning_workload(digits, spec, shards, TrainConfig(epochs=1, batch_size=16, lr=0.1))
    groups = [DeviceGroup("rpi4", "wifi", resolve_profile("rpi4", "wifi"))]
    fleet = build_fleet(groups, [1.0], n, np.random.SeedSequence(0))
    strategy = module.DecayedBufferConfig(client_fraction=0.5, buffer_size=2).build()
    server = Server(strategy, workload.aggregator, n, clients_per_round=4, round_deadline_s=30.0, weight_bits=8,
                    rng=np.random.default_rng(0))
    result = Simulation(fleet, workload, server, Monitor(600.0, max_versions=10, eval_interval_s=20.0),
                        name="composed").run()
    assert result.summary["versions"] == 10 and result.summary["final_accuracy"] > 0.5
    assert result.summary["scenario"] == {"name": "composed"} and result.metrics["version"].iloc[0] == 0
    result.save(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUT_FILES)


@pytest.mark.parametrize("executor", ["batched", "process"])
def test_every_local_executor_runs_the_plugin_with_the_same_numbers(executor, example):
    sc = scenario_from_dict(_small(encryption={"scheme": "bfv", "mode": "real"}))
    reference = run_scenario(sc)
    other = run_scenario(sc, executor=executor)
    if executor == "process":  # the workers load the plugin's source before anything else
        pd.testing.assert_frame_equal(other.metrics, reference.metrics)
    else:  # batched trains one after another on the CPU, or vmapped within float rounding
        np.testing.assert_allclose(other.metrics["accuracy"], reference.metrics["accuracy"], atol=0.02)
    pd.testing.assert_frame_equal(other.events[["time_s", "event", "device"]], reference.events[["time_s", "event", "device"]])


def test_sweep_and_compare_find_the_plugin_in_worker_processes(tmp_path):
    scenario = tmp_path / "digits.yaml"
    raw = _small(encryption={"mode": "modeled"}, stop={"max_versions": 4, "max_time_s": 600})
    scenario.write_text(yaml.safe_dump(raw))
    with plugins_loaded():
        rc = main(["sweep", str(scenario), "--plugin", EXAMPLE, "--set", "strategy.decay=0,1", "--out",
                   str(tmp_path / "sweep"), "--jobs", "2", "--quiet"])
        assert rc == 0
        table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
        assert len(table) == 2 and (table["versions"] == 4).all()
        rc = main(["compare", str(scenario), "--plugin", EXAMPLE, "--strategy",
                   "decayed_buffer,{steep: {name: decayed_buffer, decay: 3.0}}",
                   "--seeds", "2", "--out", str(tmp_path / "cmp"), "--jobs", "2", "--quiet"])
        assert rc == 0
        assert "steep" in (tmp_path / "cmp" / "compare.md").read_text()


def test_a_failure_source_plugin_interrupts_jobs(tmp_path):
    with plugins_loaded():
        from pydantic import BaseModel

        class Storm(BaseModel):
            at_s: float = 5.0

        register_failure_source("storm", lambda cfg, ctx: (lambda d: ScriptedInterruptions([(cfg.at_s, "storm", None)])),
                                config=Storm, description="Every running job fails at one moment.")
        sc = scenario_from_dict({"time_only": True, "fleet": {"num_devices": 6}, "failures": {"sources": [
            {"name": "storm", "at_s": 3.0}]}, "evaluation": {"interval_s": None}, "stop": {"max_time_s": 60}})
        events = run_scenario(sc).events
    storms = events[events["event"] == "storm"]
    assert len(storms) > 0 and (storms["time_s"] == 3.0).all()


def test_a_resume_refuses_other_plugin_code(tmp_path):
    plugin = tmp_path / "p.py"
    plugin.write_text("from sim.plugins import register_link_class\nregister_link_class('slow', {'up_bps': 1e5})\n")
    sc = {"time_only": True, "fleet": {"groups": [{"link": "slow"}]}, "encryption": {"mode": "off"},
          "stop": {"max_time_s": 300}}
    with plugins_loaded([str(plugin)]):
        scenario = scenario_from_dict(sc)
        out = tmp_path / "o"
        run_scenario(scenario, out)
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["status"] = "interrupted"
        manifest["plugins"][0]["sha256"] = "0" * 64
        (out / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(RunDirError, match="made with other plugin code"):
            run_scenario(scenario, out)
    assert MODELS.names()[:4] == ["mnist_2nn", "mnist_cnn", "cifar_cnn", "cifar_cnn3"] and "digits" not in DATASETS


def test_the_notebook_cell_of_docs_extending_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "extending.md").read_text()
    section = text[text.index("## Composing a run in code"):]
    code = section[section.index("```python") + len("```python"): section.index("```", section.index("```python") + 9)]
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.chdir(tmp_path)
    import matplotlib

    matplotlib.use("Agg")
    with plugins_loaded():
        namespace: dict = {}
        exec(compile(code, "docs/extending.md", "exec"), namespace)  # noqa: S102  (the documented cell, as written)
        sys.modules.pop("my_plugins", None)
    assert namespace["result"].summary["versions"] == 10
    assert (tmp_path / "runs" / "composed" / "metrics.csv").is_file()
