"""Trace readers (user files and the real traces in ../shared/data/traces) and calibration."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from devices import (
    DAY_S,
    Battery,
    BatterySpec,
    Link,
    LinkSpec,
    SolarHarvest,
    TraceError,
    TraceNotFoundError,
    read_bandwidth_trace,
    read_solar_trace,
    resolve_profile,
)

_DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def traces_dir() -> Path:
    """../shared/data/traces (or $PPAFL_SHARED_DATA/traces); skips when absent."""
    root = Path(os.environ.get("PPAFL_SHARED_DATA", _DEFAULT_SHARED_DATA)) / "traces"
    if not (root / "solar_normalized_300s.csv").is_file():
        pytest.skip(f"real traces not found at {root}; put the shared data folder beside the checkout")
    return root


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- solar CSV
def test_solar_csv_with_time_column(tmp_path: Path) -> None:
    p = _write(tmp_path / "s.csv", "time,a\n100,0.0\n400,0.5\n700,1.0\n")
    tr = read_solar_trace(p)
    assert tr.column == "a"
    np.testing.assert_array_equal(tr.times_s, [0, 300, 600, 900])
    np.testing.assert_array_equal(tr.values, [0.0, 0.5, 1.0])
    assert tr.period_s == 900


def test_solar_csv_iso_times(tmp_path: Path) -> None:
    p = _write(tmp_path / "s.csv", "time,a\n2024-01-01T00:00:00Z,0.1\n2024-01-01T01:00:00Z,0.2\n")
    np.testing.assert_array_equal(read_solar_trace(p).times_s, [0, 3600, 7200])


def test_solar_csv_without_time_uses_step(tmp_path: Path) -> None:
    p = _write(tmp_path / "s.csv", "a\n0.2\n0.4\n")
    np.testing.assert_array_equal(read_solar_trace(p, step_s=60).times_s, [0, 60, 120])


def test_solar_csv_needs_a_column_choice_when_several(tmp_path: Path) -> None:
    p = _write(tmp_path / "s.csv", "time,a,b\n0,0.1,0.2\n")
    with pytest.raises(TraceError, match="choose one with 'column'"):
        read_solar_trace(p)
    with pytest.raises(TraceError, match="its value columns are: a, b"):
        read_solar_trace(p, column="c")
    assert read_solar_trace(p, column="b").values[0] == 0.2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,a\n0,0.5\n300,1.5\n", r"row 3 holds 1\.5, outside \[0, 1\]"),
        ("time,a\n0,0.5\n300,abc\n", "row 3 .*'abc', not a finite number"),
        ("time,a\n0,0.5\n0,0.5\n", "strictly increasing"),
        ("time\n0\n", "no value column"),
        ("", "not a readable CSV"),
    ],
)
def test_bad_solar_csv_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        read_solar_trace(_write(tmp_path / "s.csv", text))


def test_missing_trace_file_says_path_and_format(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "sun.csv"
    with pytest.raises(TraceNotFoundError, match="solar trace file not found.*sun.csv.*Expected a CSV") as info:
        read_solar_trace(missing)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    with pytest.raises(TraceNotFoundError, match="bandwidth trace file not found.*Expected either a JSON"):
        read_bandwidth_trace(tmp_path / "bw.json")


def test_missing_trace_fails_when_the_spec_is_built(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="solar trace file not found"):
        SolarHarvest(trace_path=tmp_path / "sun.csv")
    with pytest.raises(ValidationError, match="bandwidth trace file not found"):
        LinkSpec(bandwidth_trace=tmp_path / "bw.csv")


def test_edited_file_is_read_again(tmp_path: Path) -> None:
    p = _write(tmp_path / "s.csv", "a\n0.1\n")
    assert read_solar_trace(p).values[0] == 0.1
    _write(p, "a\n0.25\n0.5\n")
    os.utime(p, ns=(1, 1))  # a different modification time
    assert read_solar_trace(p).values[0] == 0.25


# ---------------------------------------------------------------------- bandwidth
def test_bandwidth_json_in_kbps_becomes_bps(tmp_path: Path) -> None:
    rec = {"a": {"down_u": 1000, "down_sigma": 100, "up_u": 500, "up_sigma": 0}}
    tr = read_bandwidth_trace(_write(tmp_path / "b.json", json.dumps(rec)))
    assert tr.kind == "devices"
    assert (tr.down_bps[0], tr.down_sd_bps[0], tr.up_bps[0], tr.up_sd_bps[0]) == (1e6, 1e5, 5e5, 0.0)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"a": {"down_u": 1, "up_u": 1, "up_sigma": 0}}, "device 'a' lacks down_sigma"),
        ({"a": {"down_u": -1, "down_sigma": 0, "up_u": 1, "up_sigma": 0}}, "down_u = -1; must be a number > 0"),
        ({"a": {"down_u": 1, "down_sigma": "x", "up_u": 1, "up_sigma": 0}}, "down_sigma = 'x'"),
        ([], "non-empty JSON object"),
    ],
)
def test_bad_bandwidth_json_names_the_problem(tmp_path: Path, payload: object, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        read_bandwidth_trace(_write(tmp_path / "b.json", json.dumps(payload)))


def test_bandwidth_csv_samples(tmp_path: Path) -> None:
    tr = read_bandwidth_trace(_write(tmp_path / "b.csv", "down_kbps,up_kbps\n100,50\n200,70\n"))
    assert tr.kind == "samples"
    np.testing.assert_array_equal(tr.up_bps, [5e4, 7e4])
    with pytest.raises(TraceError, match="lacks column.*up_kbps"):
        read_bandwidth_trace(_write(tmp_path / "c.csv", "down_kbps\n100\n"))
    with pytest.raises(TraceError, match="row 2 holds 0; must be > 0"):
        read_bandwidth_trace(_write(tmp_path / "d.csv", "down_kbps,up_kbps\n0,1\n"))
    with pytest.raises(TraceError, match="must end in .json or .csv"):
        read_bandwidth_trace(_write(tmp_path / "e.txt", "x"))


def test_link_draws_csv_samples(tmp_path: Path) -> None:
    p = _write(tmp_path / "b.csv", "down_kbps,up_kbps\n100,50\n200,70\n")
    link = Link(LinkSpec(bandwidth_trace=p, latency_s=0.0), np.random.default_rng(0))
    seen = {link.bandwidth("up") for _ in range(50)}
    assert seen == {5e4, 7e4}


# ---------------------------------------------------------------------- real traces
def test_real_solar_trace_reads_and_drives_a_battery(traces_dir: Path) -> None:
    path = traces_dir / "solar_normalized_300s.csv"
    tr = read_solar_trace(path, column="Berlin")
    assert 28 * DAY_S < tr.period_s < 30 * DAY_S
    assert tr.values.min() >= 0 and tr.values.max() <= 1
    spec = BatterySpec(capacity_j=1e9, initial_fraction=0.0, recharge=SolarHarvest(trace_path=path, column="Berlin"))
    battery = Battery(spec)
    battery.advance(tr.period_s)
    step = np.diff(tr.times_s)
    assert battery.energy_by_cause()["recharge"] == pytest.approx(float(np.sum(tr.values * step)), rel=1e-9)


def test_real_solar_random_start_shifts_by_whole_days(traces_dir: Path) -> None:
    spec = SolarHarvest(trace_path=traces_dir / "solar_normalized_300s.csv", column="Sydney", random_start=True)
    battery_spec = BatterySpec(capacity_j=1e9, initial_fraction=0.0, recharge=spec)
    harvests = set()
    for seed in range(6):
        b = Battery(battery_spec, start_day=seed)
        b.advance(DAY_S)
        harvests.add(round(b.energy_by_cause()["recharge"], 6))
    assert len(harvests) > 1  # different days of weather


def test_real_phone_trace_gives_each_link_one_phone(traces_dir: Path) -> None:
    path = traces_dir / "phone_link_speed_kbps.json"
    tr = read_bandwidth_trace(path)
    assert tr.kind == "devices" and len(tr.down_bps) == 19
    link = Link(LinkSpec(bandwidth_trace=path, latency_s=0.0), np.random.default_rng(3))
    draws = np.array([link.bandwidth("down") for _ in range(4000)])
    means = tr.down_bps
    row = int(np.argmin(np.abs(means - draws.mean())))
    assert draws.mean() == pytest.approx(means[row], rel=0.05)
    assert draws.std() == pytest.approx(tr.down_sd_bps[row], rel=0.15)


def test_smartphone_and_lte_profiles_match_their_calibration(traces_dir: Path) -> None:
    bench = json.loads((traces_dir / "phone_ai_benchmark.json").read_text(encoding="utf-8"))
    scores = np.array([float(p["CPU_F_AI_Score"]) for p in bench])
    sd855 = np.array([float(p["CPU_F_AI_Score"]) for p in bench if p["CPU"].strip() == "Snapdragon 855"])
    expected_flops = 1e10 * np.median(scores) / np.median(sd855)
    profile = resolve_profile("smartphone", "lte")
    assert profile.compute.flops_per_s == pytest.approx(expected_flops, rel=0.01)

    phones = read_bandwidth_trace(traces_dir / "phone_link_speed_kbps.json")
    assert profile.link.down_bps == pytest.approx(np.median(phones.down_bps), rel=0.01)
    assert profile.link.up_bps == pytest.approx(np.median(phones.up_bps), rel=0.01)
    cv = (np.median(phones.down_sd_bps / phones.down_bps) + np.median(phones.up_sd_bps / phones.up_bps)) / 2
    assert profile.link.bandwidth_cv == pytest.approx(cv, abs=0.01)
