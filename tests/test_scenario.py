"""Scenario files: defaults, overrides, and a clear error for each kind of bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

from sim.scenario import ScenarioError, apply_overrides, load_scenario, scenario_from_dict
from sim.scenario.reference import END, START, scenario_reference

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_empty_file_gives_all_defaults(tmp_path):
    sc = load_scenario(_write(tmp_path, ""))
    assert sc.data.dataset == "mnist5k" and sc.strategy.name == "ppafl" and sc.fleet.num_devices == 20


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_scenario_validates(path):
    load_scenario(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("strategy:\n  nmae: ppafl\n", r"strategy\.nmae: unknown key"),
        ("fleet:\n  num_devices: many\n", r"fleet\.num_devices = 'many'"),
        ("strategy:\n  round_deadline_s: -5\n", r"strategy\.round_deadline_s = -5: .*greater than or equal to 0.001"),
        (
            "fleet:\n  groups:\n    - {device: rpi4, share: 0.5}\n    - {device: laptop, share: 0.4}\n",
            r"shares must sum to 1, got 0.9",
        ),
        ("fleet:\n  groups:\n    - {device: toaster}\n", r"unknown device class 'toaster'; known: .*rpi4"),
        ("strategy:\n  name: fedsgd\n", r"strategy\.name = 'fedsgd'.*'ppafl'"),
        ("- a\n- b\n", r"must be a mapping"),
        ("data: [unclosed\n", r"not valid YAML"),
    ],
)
def test_bad_input_names_file_field_value_and_fix(tmp_path, text, expected):
    p = _write(tmp_path, text)
    with pytest.raises(ScenarioError, match=expected) as err:
        load_scenario(p)
    assert str(p) in str(err.value)


def test_missing_file_says_where_to_look(tmp_path):
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_missing_trace_file_is_reported(tmp_path):
    text = (
        "fleet:\n  groups:\n    - device: rpi4\n      battery:\n"
        "        capacity_j: 1000\n        recharge: {kind: solar, trace_path: /no/such/solar.csv, panel_w: 2}\n"
    )
    with pytest.raises(ScenarioError, match=r"/no/such/solar\.csv"):
        load_scenario(_write(tmp_path, text))


def test_overrides_are_validated_like_the_file(tmp_path):
    p = _write(tmp_path, "failures:\n  dropout_rate: 0.1\n")
    assert load_scenario(p, ["failures.dropout_rate=0.4"]).failures.dropout_rate == 0.4
    assert load_scenario(p, ["strategy.name=fedbuff", "seed=3"]).seed == 3
    with pytest.raises(ScenarioError, match=r"failures\.dropout_rate = 1\.5"):
        load_scenario(p, ["failures.dropout_rate=1.5"])
    with pytest.raises(ScenarioError, match="expected KEY.PATH=VALUE"):
        load_scenario(p, ["dropout_rate"])
    with pytest.raises(ScenarioError, match="is a value, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_scenario_round_trips_through_its_dict():
    sc = scenario_from_dict({"strategy": {"name": "fedasync"}, "fleet": {"num_devices": 7}})
    assert scenario_from_dict(sc.to_dict()) == sc


def test_readme_scenario_reference_is_generated_from_the_schema():
    readme = (ROOT / "README.md").read_text()
    block = readme.split(START)[1].split(END)[0].strip()
    assert block == scenario_reference().strip(), "run: python -m sim.reference --write README.md"


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    trace = tmp_path / "solar.csv"
    trace.write_text("value\n0.0\n0.5\n1.0\n0.5\n")
    p = tmp_path / "sub" / "s.yaml"
    p.write_text(
        "data: {root: ../data}\nfleet:\n  groups:\n    - device: rpi4\n      battery:\n        capacity_j: 1000\n"
        "        recharge: {kind: solar, trace_path: ../solar.csv, panel_w: 2}\n"
    )
    sc = load_scenario(p)
    assert sc.data.root == str((tmp_path / "data").resolve())
    assert Path(sc.fleet.groups[0].battery["recharge"]["trace_path"]) == trace.resolve()


def test_bare_off_means_encryption_off(tmp_path):
    p = _write(tmp_path, "encryption:\n  mode: off\n")
    assert load_scenario(p).encryption.mode == "off"
    assert load_scenario(p, ["encryption.mode=real"]).encryption.mode == "real"


def test_a_bad_scenario_is_reported_before_torch_loads(tmp_path):
    bad = _write(tmp_path, "training: {model: mnist_cnnn}\n")
    code = (
        "import sys; from sim.cli import main; "
        f"rc = main(['run', {str(bad)!r}, '--out', {str(tmp_path / 'out')!r}]); "
        "print(rc, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "training.model = 'mnist_cnnn'" in done.stderr
