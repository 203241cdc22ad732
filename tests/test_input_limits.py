"""Hostile input ends in one clear error: field ranges, booleans for numbers, YAML size/depth/duplicates, typos."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import typing
from pathlib import Path

import annotated_types as at
import pytest
from pydantic import BaseModel

from devices import BatterySpec, ComputeSpec, LinkSpec, MainsCharging, SolarHarvest
from sim.plugins import STRATEGIES
from sim.scenario import (
    DataConfig,
    EncryptionConfig,
    EvaluationConfig,
    FailuresConfig,
    FleetConfig,
    FleetGroup,
    InjectedDelayConfig,
    Scenario,
    ScenarioError,
    StopConfig,
    TrainingConfig,
    load_scenario,
    safe_yaml,
    scenario_from_dict,
)

ROOT = Path(__file__).resolve().parents[1]
# Every section with numbers.
BOUNDED = [DataConfig, TrainingConfig, FleetGroup, FleetConfig, FailuresConfig, *dict.fromkeys(cls for _, cls in STRATEGIES.items()),
           InjectedDelayConfig, EncryptionConfig, EvaluationConfig, StopConfig, Scenario, ComputeSpec, BatterySpec,
           LinkSpec, MainsCharging, SolarHarvest]


def _numeric_fields(model: type[BaseModel]) -> list[tuple[str, typing.Any]]:
    out = []
    for name, field in model.model_fields.items():
        args = set(typing.get_args(field.annotation)) | {field.annotation}
        if args & {int, float} and bool not in args:
            out.append((name, field))
    return out


@pytest.mark.parametrize("model", BOUNDED, ids=lambda m: m.__name__)
def test_every_number_has_a_finite_lower_and_upper_bound(model):
    for name, field in _numeric_fields(model):
        kinds = {type(m) for m in field.metadata}
        assert kinds & {at.Ge, at.Gt}, f"{model.__name__}.{name} has no lower bound"
        assert kinds & {at.Le, at.Lt}, f"{model.__name__}.{name} has no upper bound"


def _sections(model: type[BaseModel] = Scenario, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted field, numeric field name) for every number of the scenario, nested sections included."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _sections(ann, f"{prefix}{name}.")
        elif (name, field) in _numeric_fields(model):
            out.append((f"{prefix}{name}", name))
    return out


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "true"])
@pytest.mark.parametrize("path", [p for p, _ in _sections()])
def test_no_number_takes_inf_nan_or_a_boolean(path, value):
    with pytest.raises(ScenarioError, match=re.escape(f"--set {path}={value}: {path} = ")):
        load_scenario(ROOT / "scenarios" / "quickstart.yaml", [f"{path}={value}"])


@pytest.mark.parametrize("value", [".inf", ".nan", "true", "1e-6", "-1", "1e300"])
@pytest.mark.parametrize(
    "spec, section",
    [(ComputeSpec, "compute"), (BatterySpec, "battery"), (LinkSpec, "link_overrides")],
    ids=["compute", "battery", "link"],
)
def test_every_device_number_refuses_absurd_values(spec, section, value):
    for name, _ in _numeric_fields(spec):
        if value == "1e-6" and name not in ("up_bps", "down_bps", "flops_per_s", "mean_up_s", "capacity_j"):
            continue
        raw = {"fleet": {"groups": [{"device": "smartphone", "link": "lte", section: {name: _num(value)}}]}}
        with pytest.raises(ScenarioError, match=rf"fleet\.groups\.0\.{section}\.{name}"):
            scenario_from_dict(raw)


def _num(text: str) -> object:
    return {".inf": float("inf"), ".nan": float("nan"), "true": True}.get(text, text)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("stop.max_time_s=.inf", r"stop\.max_time_s = inf: Input should be a finite number"),
        ("stop.max_time_s=2e9", r"less than or equal to 1000000000 \(Simulated time limit in s; at most 1e9"),
        ("fleet.groups=[{device: rpi4, link_overrides: {mean_up_s: .inf}}]", r"mean_up_s = inf"),
        ("fleet.groups=[{device: rpi4, link_overrides: {mean_down_s: .inf}}]", r"mean_down_s = inf"),
        ("fleet.groups=[{device: rpi4, link_overrides: {up_bps: 0.000001}}]", r"up_bps = 1e-06: .*1 bit/s"),
        ("evaluation.interval_s=0.001", r"1\.2e\+06 evaluations .* use interval_s >= 0\.012"),
        ("training.model=cifar_cnn", r"takes cifar10 inputs, not 'mnist5k'"),
        ("fleet.num_devices=5000", r"mnist5k has 4,000"),
        ("stop.target_accuracy=0.9", None),
        ("fleet.groups=[{device: rpi4, share: 0.99}, {device: mcu, share: 0.01}]", r"groups\[1\] .* no device of 20"),
        ("fleet.groups=[]", r"groups is empty"),
        ("failures.daily_window=[25, 3]", r"out of range"),
        ("seed=4294967296", r"seed = 4294967296"),
        ("name=" + "x" * 300, r"at most 200 characters"),
        ("fleet.groups.0.compute.flops_per_s=1", r"fleet\.groups\.0\.compute\.flops_per_s = 1: .*1000"),
        ("fleet.groups.1.battery.recharge={kind: solar, step_s: 0.001}", r"recharge\.step_s = 0\.001: .*1 s to a day"),
    ],
)
def test_absurd_but_typed_values_are_refused_with_the_reason(override, expected):
    path = ROOT / "scenarios" / "quickstart.yaml"
    if expected is None:
        load_scenario(path, [override])  # valid: stop at a target accuracy with evaluation on
        return
    with pytest.raises(ScenarioError, match=expected) as err:
        load_scenario(path, [override])
    assert f"--set {override[:40]}" in str(err.value)  # blamed on the override, not the file


def test_stop_target_needs_evaluation_and_training():
    with pytest.raises(ScenarioError, match="evaluation is off"):
        scenario_from_dict({"stop": {"target_accuracy": 0.5}, "evaluation": {"interval_s": None}})
    with pytest.raises(ScenarioError, match="time_only runs train nothing"):
        scenario_from_dict({"stop": {"target_accuracy": 0.5}, "time_only": True})


def test_a_bad_override_is_one_problem_blamed_on_the_override(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("fleet:\n  num_devices: 10\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p, ["fleet.groups=[{device: rpi4, share: 2}]"])
    text = str(err.value)
    assert text.startswith(f"{p}: invalid --set (1 problem):") and text.count("\n  - ") == 1
    assert "--set fleet.groups=[{device: rpi4, share: 2}]: fleet.groups.0.share = 2" in text
    with pytest.raises(ScenarioError) as err:
        load_scenario(p, ["fleet.groups=[{device: rpi4, compute: {flops_per_s: -1}}]"])
    assert "(1 problem)" in str(err.value) and "fleet.groups.0.compute.flops_per_s = -1" in str(err.value)
    with pytest.raises(ScenarioError) as err:
        load_scenario(p, ["seed=3"] + ["stop.max_time_s=-1"])
    assert "--set stop.max_time_s=-1: stop.max_time_s = -1" in str(err.value) and "--set seed" not in str(err.value)


def test_a_problem_in_the_file_is_not_blamed_on_an_override(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("stop:\n  max_time_s: -1\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p, ["seed=3"])
    assert str(err.value).startswith(f"{p}: invalid scenario (1 problem)") and "--set" not in str(err.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("fleet:\n  num_device: 3\n", r"fleet\.num_device: unknown key; did you mean 'num_devices'\?"),
        ("fleeet:\n  num_devices: 3\n", r"fleeet: unknown key; did you mean 'fleet'\?"),
        ("stop:\n  max_time: 3\n", r"did you mean 'max_time_s'\?"),
        ("fleet:\n  groups:\n    - {device: rpi4, link_overrides: {up_bsp: 1}}\n", r"did you mean 'up_bps'\?"),
        ("fleet:\n  groups:\n    - {device: rpi4, battery: {capacity_j: 100, recharge: {kind: solar, panelw: 1}}}\n",
         r"battery\.recharge\.panelw: unknown setting; did you mean 'panel_w'\?"),
        ("fleet:\n  groups:\n    - {device: raspberry}\n", r"unknown device class 'raspberry'"),
        ("fleet:\n  groups:\n    - {device: rpi4, link: wiif}\n", r"did you mean 'wifi'\?"),
        ("data:\n  zzz: 1\n", r"data\.zzz: unknown key; known: dataset, root"),
    ],
)
def test_a_typo_gets_the_nearest_name(tmp_path, text, expected):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError, match=expected):
        load_scenario(p)


# ------------------------------------------------------------------ YAML limits
def _time_load(path: Path) -> tuple[str, float]:
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    return str(err.value), time.perf_counter() - t0


def test_deep_nesting_is_one_line_fast(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    msg, seconds = _time_load(p)
    assert "nested more than 32 levels deep" in msg and "\n" not in msg and seconds < 2


def test_a_24_mb_list_is_refused_before_parsing(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("fleet:\n  groups:\n" + "    - {device: rpi4, share: 0.000001}\n" * 650_000)
    assert p.stat().st_size > 24e6
    msg, seconds = _time_load(p)
    assert "MiB is more than a scenario file may hold (1 MiB)" in msg and "\n" not in msg and seconds < 1


def test_a_repeated_section_is_refused(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("stop:\n  max_time_s: 60\nfleet:\n  num_devices: 4\nstop:\n  max_versions: 3\n")
    msg, _ = _time_load(p)
    assert "line 5: duplicate key 'stop' (first on line 1)" in msg and "\n" not in msg


def test_repeated_keys_in_a_flow_mapping_and_in_an_override_are_refused():
    with pytest.raises(safe_yaml.YAMLLimitError, match="duplicate key 'a'"):
        safe_yaml.load("{a: 1, a: 2}")
    with pytest.raises(ScenarioError, match=r"--set 'fleet=\{num_devices: 2, num_devices: 3\}': line 1: duplicate"):
        load_scenario(ROOT / "scenarios" / "quickstart.yaml", ["fleet={num_devices: 2, num_devices: 3}"])


def test_an_alias_bomb_and_a_self_reference_are_refused():
    bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh")
    )
    with pytest.raises(safe_yaml.YAMLLimitError, match="expands to more than 100,000 values"):
        safe_yaml.load(bomb)
    with pytest.raises(safe_yaml.YAMLLimitError, match="refers to the node that contains it"):
        safe_yaml.load("a: &x [1, *x]")


def test_merge_keys_may_be_overridden():
    assert safe_yaml.load("b: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n")["d"] == {"x": 3, "y": 2}


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", None),
        (b"\xef\xbb\xbfseed: 4\n", None),  # a UTF-8 byte-order mark
        ("name: \"caf\u00e9 \u4e2d \U0001f600\"\n".encode(), None),
        (b"\xff\xfe\x00s", r"not a UTF-8 text file"),
        (b"seed: 1\x00\n", r"not valid YAML: character 8"),
        (b"seed: !!python/object/apply:os.system [ls]\n", r"could not determine a constructor"),
        (b"42\n", r"must be a mapping of sections, got int"),
        (b"seed: [1, 2\n", r"not valid YAML: line 2"),
        (b"\tseed: 1\n", r"not valid YAML"),
        (b"name: \"a\\x07b\"\n", r"control characters \(0x07\)"),
    ],
)
def test_odd_files_end_in_one_clear_line(tmp_path, content, expected):
    p = tmp_path / "odd.yaml"
    p.write_bytes(content)
    if expected is None:
        load_scenario(p)
        return
    with pytest.raises(ScenarioError, match=expected) as err:
        load_scenario(p)
    assert "\n" not in str(err.value).split("invalid scenario")[0]


def test_a_folder_or_an_unreadable_file_is_named(tmp_path, monkeypatch):
    with pytest.raises(ScenarioError, match="is a folder, not a scenario file"):
        load_scenario(tmp_path)
    p = tmp_path / "locked.yaml"
    p.write_text("seed: 1\n")

    def denied(_self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ScenarioError, match=r"locked\.yaml: cannot read the scenario file \(Permission denied\)"):
        load_scenario(p)


def test_override_into_a_list_entry(tmp_path):
    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml", ["fleet.groups.0.link=ethernet"])
    assert sc.fleet.groups[0].link == "ethernet"
    with pytest.raises(ScenarioError, match="fleet.groups has 4 entries, numbered 0 to 3; '7' is not one of them"):
        load_scenario(ROOT / "scenarios" / "quickstart.yaml", ["fleet.groups.7.link=ethernet"])


def test_cli_prints_one_line_for_a_hostile_file(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("[" * 10_000 + "]" * 10_000)
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(p), "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_evaluations_per_version_are_bounded_too():
    with pytest.raises(ScenarioError, match=r"every_versions 1 makes 1,000,000 evaluations .* every_versions >= 10"):
        scenario_from_dict({"evaluation": {"every_versions": 1}, "stop": {"max_versions": 1_000_000}})


def test_a_device_or_pipe_is_not_a_scenario_file():
    with pytest.raises(ScenarioError, match="/dev/null: is not a regular file"):
        load_scenario("/dev/null")


def test_a_huge_override_is_shown_short():
    with pytest.raises(ScenarioError) as err:
        load_scenario(ROOT / "scenarios" / "quickstart.yaml", [".".join(["a"] * 5000) + "=1"])
    assert len(str(err.value)) < 400


def test_json_escaped_emoji_is_one_character_and_a_lone_surrogate_is_refused(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"name": "caf\\u00e9 \\ud83d\\ude00"}')  # what json.dumps writes by default
    assert load_scenario(p).name == "café \U0001f600"
    with pytest.raises(safe_yaml.YAMLLimitError, match="unpaired UTF-16 surrogate"):
        safe_yaml.load('name: "\\ud83d"')


def test_an_entry_of_a_list_the_file_does_not_have(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("fleet:\n  num_devices: 4\n")
    with pytest.raises(ScenarioError, match=r"fleet\.groups is not in the scenario file, so it has no entry 3"):
        load_scenario(p, ["fleet.groups.3.share=1"])


def test_a_problem_with_a_whole_override_section_shows_no_dump_of_it(tmp_path):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict({"fleet": {"groups": [{"device": "rpi4", "link_overrides": {"bandwidth_trace": "/no.csv"}}]}})
    line = str(err.value).splitlines()[1]
    assert line.startswith("  - fleet.groups.0.link_overrides: bandwidth trace file not found: '/no.csv'")
