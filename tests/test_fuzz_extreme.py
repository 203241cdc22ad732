"""Extreme valid-schema fuzzing: scenarios that pass validation but sit at the edges of every range.

hypothesis (derandomized, so CI sees the same inputs) builds scenarios from a small valid
base by setting fields to values at, just inside and between their bounds (read from the
schema itself, so a new bound is fuzzed at once), through device and link overrides too,
and adds combinations where a simulator breaks: every device offline, links that never
finish a transfer, batteries that die at once, jobs that take no time or forever. Each
runs in-process under a small `RunBudget` (events, memory, steps at one instant) and a
wall-clock alarm, and is sorted:

- ran: it ended with a stated stop reason and outputs that hold together (below);
- clear error: a `ScenarioError` (budget, preflight and resource refusals included) or a
  `CryptoError` with a one-paragraph message;
- crash: any other exception; hang: the alarm fired;
- wrong: the outputs claim what did not happen (accuracy with no aggregation, events after
  the run's end or after a device left, negative or non-finite energy, NaN in a training
  run's metrics, a final time past the horizon, counts that do not add up).

Zero crashes, hangs and wrongs are asserted. `PPAFL_FUZZ_EXAMPLES=N` runs N examples per
target instead of the CI's few; the counts go to stdout (`pytest -s`) and to
`fuzz_extreme_report.json` in pytest's temporary folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
import traceback
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
import numpy as np
import pytest
import yaml
from harness import Hang, time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from crypto import CryptoError
from devices.specs import BatterySpec, ChurnSpec, ComputeSpec, LinkSpec
from fl.strategies import PRESETS
from sim.cli import main as ppafl_main
from sim.engine.watchdog import BudgetExceeded, RunBudget, resident_bytes
from sim.errors import PpaflError
from sim.plugins import STRATEGIES
from sim.runner import RunResult, run_scenario
from sim.runner.preflight import FlickeringBatteryError
from sim.scenario import (
    DataConfig,
    EncryptionConfig,
    EvaluationConfig,
    FailuresConfig,
    FleetConfig,
    InjectedDelayConfig,
    Scenario,
    ScenarioError,
    StopConfig,
    TrainingConfig,
    scenario_from_dict,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("PPAFL_FUZZ_EXAMPLES", "0"))
_WALL_S = 60.0  # a run still going after this is a hang: the budget below ends any honest run well before
_MEMORY_LIMIT = 3 * 2**30  # the up-front estimate's limit: bigger scenarios are refused before they start
_FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
_DEVICES = ["jetson_nano", "laptop", "mcu", "rpi3", "rpi4", "smartphone"]
_LINKS = ["ethernet", "lora", "lte", "ltem", "nbiot", "wifi"]


# ------------------------------------------------------------------ counting
class Tally:
    """Outcomes of one fuzz target: ran, clear_error, crash, hang, wrong (and schema_rejected)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []
        self.errors: Counter[str] = Counter()  # clear errors by kind and first words, to see what was reached

    def record(self, outcome: str, detail: str = "") -> None:
        self.counts["inputs"] += 1
        self.counts[outcome] += 1
        if outcome in ("crash", "hang", "wrong"):
            self.problems.append(f"{outcome}: {detail[:1500]}")
            print(f"\n{self.problems[-1]}", flush=True)  # at once: a long run may be stopped before its report

    def check(self, minimum: int) -> None:
        assert self.problems == [], f"{len(self.problems)} problem(s); first: {self.problems[0]}"
        assert self.counts["inputs"] >= minimum
        assert self.counts["ran"] >= minimum // 8, dict(self.counts)  # the generator must reach the engine


REPORT: dict[str, Tally] = {}


def _tally(name: str) -> Tally:
    return REPORT.setdefault(name, Tally())


@pytest.fixture(scope="module", autouse=True)
def _report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    data: dict[str, Any] = {
        name: {**t.counts, "clear_errors_by_kind": dict(t.errors.most_common(20)), "problems": t.problems}
        for name, t in REPORT.items()
    }
    total = sum((Counter(t.counts) for t in REPORT.values()), Counter())
    data["total"] = {k: total.get(k, 0) for k in ("inputs", "ran", "clear_error", "crash", "hang", "wrong",
                                                  "schema_rejected")}
    path = tmp_path_factory.getbasetemp() / "fuzz_extreme_report.json"
    path.write_text(json.dumps(data, indent=2))
    print(f"\nextreme fuzz report ({path}):\n{json.dumps(data, indent=2)}")


# ------------------------------------------------------------------ values at the edges of each field
def bounds(model: type[BaseModel], name: str) -> tuple[float | None, bool, float | None, bool]:
    """(low, low is open, high, high is open) of a numeric field, from its pydantic constraints."""
    lo = hi = None
    lo_open = hi_open = False
    for m in model.model_fields[name].metadata:
        if isinstance(m, annotated_types.Ge):
            lo = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Gt):
            lo, lo_open = float(m.gt), True  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Le):
            hi = float(m.le)  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Lt):
            hi, hi_open = float(m.lt), True  # type: ignore[arg-type]
    return lo, lo_open, hi, hi_open


_UNBOUNDED = 1e15  # what "huge" means for a field the schema gives no upper bound


def _is_int(model: type[BaseModel], name: str) -> bool:
    ann = model.model_fields[name].annotation
    return ann is int or ann == int | None


def edge_values(model: type[BaseModel], name: str, low: float | None = None, high: float | None = None) -> Any:
    """A strategy of values of a numeric field at, just inside and between its bounds (optionally narrowed)."""
    lo, lo_open, hi, hi_open = bounds(model, name)
    lo = 0.0 if lo is None else lo
    hi = _UNBOUNDED if hi is None else hi
    if low is not None and low > lo:
        lo, lo_open = low, False
    if high is not None and high < hi:
        hi, hi_open = high, False
    if _is_int(model, name):
        a, b = math.ceil(lo + (1 if lo_open else 0)), math.floor(hi - (1 if hi_open else 0))
        picks = [a, min(a + 1, b), b, max(b - 1, a)]
        return st.one_of(st.sampled_from(picks), st.integers(a, min(b, a + 10)),
                         st.builds(lambda u: round(math.exp(u)), st.floats(math.log(max(a, 1)),
                                                                                 math.log(max(b, 1)))).filter(
                             lambda v: a <= v <= b))
    tiny = math.ulp(hi) if hi else 5e-324
    a = math.nextafter(lo, math.inf) if lo_open else lo
    b = math.nextafter(hi, -math.inf) if hi_open else hi
    picks = [a, b, min(a * (1 + 1e-9) + 1e-300, b), max(b - 1e3 * tiny, a)]
    spread: Any
    if a > 0:
        spread = st.floats(math.log(a), math.log(b)).map(math.exp).map(lambda v: min(max(v, a), b))
    else:
        spread = st.one_of(st.floats(a, b), st.floats(-300, math.log10(b) if b > 0 else 0).map(lambda e: 10.0**e)
                           .filter(lambda v: a <= v <= b))
    return st.one_of(st.sampled_from(picks), spread)


def _field_values(model: type[BaseModel], name: str, info: Any) -> Any:
    """Edge values of any scenario field: booleans, the choices of a Literal, or numbers at their bounds."""
    args = typing.get_args(info.annotation)
    if info.annotation is bool:
        return st.booleans()
    literal = next((a for a in (info.annotation, *args) if typing.get_origin(a) is typing.Literal), None)
    if literal is not None:
        return st.sampled_from(typing.get_args(literal))
    values = edge_values(model, name)
    return st.one_of(st.none(), values) if type(None) in args else values


def _fraction_edges(closed_top: bool = True) -> Any:
    top = 1.0 if closed_top else math.nextafter(1.0, 0.0)
    return st.sampled_from([0.0, 5e-324, 1e-12, 0.5, 1 - 1e-12, top])


@st.composite
def hours(draw: st.DrawFn) -> list[float]:
    """A daily [start, end) window: a whole day, an instant-wide one, wrapping past midnight."""
    start = draw(st.sampled_from([0.0, 23.999999, 12.0, 8.0, 1e-9]) | st.floats(0, 23.999))
    end = draw(st.sampled_from([24.0, math.nextafter(start, 25.0), start + 1e-6, 0.001, 12.0]) | st.floats(0.001, 24))
    end = min(max(end, 1e-9), 24.0)
    if end == start:
        end = 24.0 if start < 24 else 0.001
    return [start, end]


def _overrides(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """Device and link overrides at the edges of ComputeSpec, BatterySpec and LinkSpec."""
    compute = {n: draw(edge_values(ComputeSpec, n)) for n in draw(st.sets(st.sampled_from(
        ["flops_per_s", "jitter_sigma", "crypto_s_per_param", "energy_per_flop_j", "active_power_w"]), max_size=3))}
    battery: dict[str, Any] = {n: draw(edge_values(BatterySpec, n)) for n in draw(st.sets(st.sampled_from(
        ["capacity_j", "initial_fraction", "idle_power_w", "resume_fraction"]), max_size=3))}
    if draw(st.integers(0, 4)) == 0:
        battery.setdefault("capacity_j", draw(edge_values(BatterySpec, "capacity_j")))
        battery["recharge"] = draw(st.one_of(
            st.builds(lambda w, p: {"kind": "mains", "windows": [w], "power_w": p}, hours(),
                      st.sampled_from([1e-9, 1.0, 1e4])),
            st.builds(lambda p, s: {"kind": "solar", "panel_w": p, "step_s": s},
                      st.sampled_from([1e-9, 0.5, 1e4]), st.sampled_from([1.0, 300.0, 86400.0])),
        ))
    link: dict[str, Any] = {n: draw(edge_values(LinkSpec, n)) for n in draw(st.sets(st.sampled_from(
        ["down_bps", "up_bps", "latency_s", "bandwidth_cv", "mean_up_s", "mean_down_s", "max_restarts",
         "tx_j_per_byte", "rx_j_per_byte"]), max_size=4))}
    if draw(st.booleans()):
        link["on_outage"] = draw(st.sampled_from(["resume", "restart"]))
    return {"compute": compute, "battery": battery, "link_overrides": link}


# Combinations where a simulator breaks, applied on top of the field edges.
_PRESETS: dict[str, dict[str, Any]] = {
    "all_offline": {"failures": {"unavailability": math.nextafter(1.0, 0.0)}},
    "all_leave_at_once": {"failures": {"dropout_rate": 1.0, "dropout_window_s": 1e-9}},
    "never_willing": {"failures": {"daily_window": [3.0, 3.000001]}},
    "endless_links": {"link": {"on_outage": "restart", "max_restarts": 10_000, "mean_up_s": 1.0,
                               "mean_down_s": 1e7, "latency_s": 3600.0}},
    "abandoned_links": {"link": {"on_outage": "restart", "max_restarts": 0, "mean_up_s": 1.0, "mean_down_s": 1.0}},
    "dead_batteries": {"battery": {"capacity_j": 1.0, "initial_fraction": 0.0, "idle_power_w": 1e4,
                                   "resume_fraction": 1.0}},
    "instant_jobs": {"compute": {"flops_per_s": 1e16, "jitter_sigma": 0.0, "crypto_s_per_param": 0.0},
                     "link": {"down_bps": 1e12, "up_bps": 1e12, "latency_s": 0.0, "bandwidth_cv": 0.0}},
    "glacial_jobs": {"compute": {"flops_per_s": 1e3, "crypto_s_per_param": 1.0},
                     "link": {"down_bps": 1.0, "up_bps": 1.0}},
    "zero_progress": {"strategy": {"round_deadline_s": 1e-9, "client_fraction": 1.0}},
}


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


@st.composite
def extreme_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A scenario mapping that should pass the schema, with several fields at the edges of their ranges.

    Training runs stay tiny (mnist5k, mnist_2nn, a few devices and versions, a small test set);
    time-only runs take any fleet size, epoch count and compute cost.
    """
    time_only = draw(st.integers(0, 3)) > 0
    horizon = draw(st.sampled_from([60.0, 600.0, 3600.0, 86_400.0] + [1e6, 1e9] * time_only)
                   if draw(st.integers(0, 2)) else edge_values(StopConfig, "max_time_s", high=None if time_only else 3600.0))
    groups_n = draw(st.integers(1, 2))
    huge = time_only and draw(st.integers(0, 4)) == 0  # a fleet at the edge of num_devices, else a small one
    num_devices = draw(edge_values(FleetConfig, "num_devices", low=groups_n, high=None if huge else 8))
    raw: dict[str, Any] = {
        "name": "extreme",
        "seed": draw(st.sampled_from([0, 1, 2**32 - 1])),
        "time_only": time_only,
        "data": {"dataset": "mnist5k", "max_test_samples": draw(st.sampled_from([1, 20, 60]))},
        "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": draw(st.sampled_from([1_000_000, 200, 64]))},
        "fleet": {"num_devices": num_devices},
        "encryption": {"mode": draw(st.sampled_from(["off", "modeled"]))},
        "evaluation": {"interval_s": None},
        "stop": {"max_time_s": horizon},
    }
    if not time_only:
        raw["stop"]["max_versions"] = draw(st.integers(1, 3))
        raw["data"]["partition"] = draw(st.sampled_from(["iid", "shards", "dirichlet"]))
        if raw["data"]["partition"] == "dirichlet":
            raw["data"]["alpha"] = draw(edge_values(DataConfig, "alpha"))
    groups = []
    for _ in range(groups_n):
        group: dict[str, Any] = {"device": draw(st.sampled_from(_DEVICES)), "link": draw(st.sampled_from(_LINKS)),
                                 "share": 1.0 / groups_n}
        if draw(st.booleans()):
            group.update({k: v for k, v in _overrides(draw).items() if v})
        groups.append(group)
    raw["fleet"]["groups"] = groups
    # scenario fields at their edges
    fields: dict[str, Any] = {
        "failures.dropout_rate": _fraction_edges(),
        "failures.dropout_window_s": edge_values(FailuresConfig, "dropout_window_s"),
        "failures.unavailability": _fraction_edges(closed_top=False),
        "failures.daily_window": hours(),
        "injected_delay.fraction": _fraction_edges(closed_top=False),
        "injected_delay.max_rounds": edge_values(InjectedDelayConfig, "max_rounds"),
        "injected_delay.min_rounds": edge_values(InjectedDelayConfig, "min_rounds"),
        "injected_delay.model": st.sampled_from(["independent", "batch", "topup"]),
        "failures.job_dropout": _fraction_edges(),
        "failures.job_hazard_per_s": edge_values(FailuresConfig, "job_hazard_per_s"),
        "failures.job_dropout_offline_s": edge_values(FailuresConfig, "job_dropout_offline_s"),
        "failures.churn.enabled": st.booleans(),
        "failures.churn.mean_on_s": edge_values(ChurnSpec, "mean_on_s"),
        "failures.churn.mean_off_s": edge_values(ChurnSpec, "mean_off_s"),
        "failures.churn.on_offline": st.sampled_from(["fail", "pause"]),
        "failures.churn.grace_s": edge_values(ChurnSpec, "grace_s"),
        "encryption.scale_bits": edge_values(EncryptionConfig, "scale_bits"),
        "encryption.value_bound": edge_values(EncryptionConfig, "value_bound"),
        "encryption.weight_bits": edge_values(EncryptionConfig, "weight_bits"),
        "evaluation.interval_s": edge_values(EvaluationConfig, "interval_s", low=horizon / 1e5),
        "evaluation.every_versions": edge_values(EvaluationConfig, "every_versions"),
        "evaluation.target_accuracy": edge_values(EvaluationConfig, "target_accuracy"),
        "stop.max_versions": edge_values(StopConfig, "max_versions", high=None if time_only else 3),
        "training.lr": edge_values(TrainingConfig, "lr"),
        "training.prox_mu": edge_values(TrainingConfig, "prox_mu"),
    }
    # the strategy: a name, then fields of its own settings class only (another strategy's field is refused)
    name = draw(st.sampled_from(["ppafl", "fedavg", "fedasync", "fedbuff", *PRESETS]))
    raw["strategy"] = {"name": name}
    settings = STRATEGIES.get(name)
    for key, info in settings.model_fields.items():
        if key != "name":
            fields[f"strategy.{key}"] = _field_values(settings, key, info)
    if time_only:
        fields |= {"training.epochs": edge_values(TrainingConfig, "epochs"),
                   "training.batch_size": edge_values(TrainingConfig, "batch_size"),
                   "training.model": st.sampled_from(["mnist_2nn", "mnist_cnn"])}
    else:
        fields |= {"stop.target_accuracy": edge_values(StopConfig, "target_accuracy")}
    for path in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=5, unique=True)):
        _set(raw, path, draw(fields[path]))
    if raw["stop"].get("target_accuracy") and not raw["evaluation"].get("every_versions"):  # else refused
        raw["evaluation"]["interval_s"] = raw["evaluation"]["interval_s"] or horizon / 10
    if raw["evaluation"].get("every_versions") and raw["stop"].get("max_versions"):  # keep within 1e5 evaluations
        raw["evaluation"]["every_versions"] = max(raw["evaluation"]["every_versions"],
                                                  -(-raw["stop"]["max_versions"] // 100_000))
    presets = draw(st.lists(st.sampled_from(sorted(_PRESETS)), max_size=2, unique=True)) if draw(st.booleans()) else []
    for name in presets:
        for section, values in _PRESETS[name].items():
            if section in ("compute", "battery", "link"):
                key = "link_overrides" if section == "link" else section
                for g in raw["fleet"]["groups"]:
                    g[key] = {**g.get(key, {}), **values}
            else:
                raw[section] = {**raw.get(section, {}), **values}
    return raw


# ------------------------------------------------------------------ is a finished run telling the truth?
def wrongs(scenario: Scenario, res: RunResult) -> list[str]:
    """What a finished run's outputs claim that did not happen (empty: none)."""
    s, events, devices, metrics = res.summary, res.events, res.devices, res.metrics
    out: list[str] = []
    end, horizon = s["simulated_time_s"], scenario.stop.max_time_s
    if not (0 <= end <= horizon):
        out.append(f"final time {end!r} outside [0, stop.max_time_s = {horizon!r}]")
    if not s["stop_reason"]:
        out.append("no stop reason")
    if len(events) and (events["time_s"].max() > end or events["time_s"].min() < 0):
        out.append(f"events outside [0, {end!r}]: {events['time_s'].min()!r} .. {events['time_s'].max()!r}")
    left = events[events["event"] == "device_left"]
    if len(left):
        last = events[events["device"] >= 0].groupby("device")["time_s"].max()
        gone = left.set_index("device")["time_s"]
        after = last.reindex(gone.index) > gone
        if after.any():
            d = int(after[after].index[0])
            late = events[(events["device"] == d) & (events["time_s"] > gone[d])]
            out.append(f"device {d} has {len(late)} event(s) after it left at {gone[d]!r}: "
                       f"{late['event'].head(3).tolist()}")
    energy = devices[[c for c in devices.columns if c.startswith("energy_")]].to_numpy(dtype=float)
    if not np.isfinite(energy).all() or (energy < -1e-6).any():
        out.append(f"energy negative or not finite: min {np.nanmin(energy)!r}")
    if not (math.isfinite(s["energy_j"]) and s["energy_j"] >= -1e-6):
        out.append(f"summary energy_j {s['energy_j']!r}")
    for col in ("bytes_sent", "bytes_received", "jobs", "updates_sent", "jobs_failed", "outages"):
        if (devices[col] < 0).any():
            out.append(f"negative {col}")
    versions, server = s["versions"], s["server"]
    aggregated = int((events["event"] == "aggregated").sum()) if len(events) else 0
    if aggregated != versions:
        out.append(f"{versions} versions but {aggregated} aggregated events")
    if versions == 0 and (s["final_accuracy"] is not None or s["best_accuracy"] is not None
                          or s["time_to_target_s"] is not None):
        out.append(f"an accuracy with no aggregation: final {s['final_accuracy']!r}, best {s['best_accuracy']!r}")
    if versions == 0 and not s["warnings"]:
        out.append("no global version was made and no warning says so")
    sent, received = int(devices["updates_sent"].sum()), server.get("updates_received", 0)
    held = int((events["event"] == "update_held").sum()) if len(events) else 0
    if not received <= sent <= received + held:  # an update is delivered, or held back by an injected delay
        out.append(f"server received {received} updates (and held {held}), devices sent {sent}")
    if (devices["jobs"] < devices["updates_sent"] + devices["jobs_failed"]).any():
        out.append("a device finished or failed more jobs than it started")
    if scenario.stop.max_versions is not None and versions > scenario.stop.max_versions:
        out.append(f"{versions} versions past stop.max_versions {scenario.stop.max_versions}")
    if s["stop_reason"].startswith("reached the time limit") and end != horizon:
        out.append(f"stopped at the time limit but at t = {end!r}")
    if len(metrics):
        t = metrics["time_s"].to_numpy(dtype=float)
        if (np.diff(t) < 0).any() or t.max() > end:
            out.append("metrics times go backwards or past the end")
        if (metrics["version"] > versions).any():
            out.append("a metrics row names a version that was never made")
        if not scenario.time_only:
            acc = metrics[["accuracy", "loss"]].to_numpy(dtype=float)
            if not np.isfinite(acc).all():
                out.append("NaN or inf in a training run's metrics")
            elif not ((acc[:, 0] >= 0) & (acc[:, 0] <= 1)).all():
                out.append("an accuracy outside [0, 1]")
    target = s["time_to_target_s"]
    if target is not None and (target > end or s["best_accuracy"] is None or s["best_accuracy"] < s["target_accuracy"]):
        out.append(f"time_to_target_s {target!r} without reaching the target")
    return out


def _clear(exc: BaseException) -> bool:
    """A message a user can act on: one paragraph, not empty, no traceback."""
    text = str(exc).strip()
    return bool(text) and "Traceback" not in text and len(text) < 4000


def _budget() -> RunBudget:
    return RunBudget(max_events=30_000, max_memory_bytes=resident_bytes() + 2 * 2**30, max_steps_at_one_time=30_000)


def classify(tally: Tally, raw: dict[str, Any]) -> None:
    try:
        scenario = scenario_from_dict(raw)
    except ScenarioError as exc:  # the generator aims inside the schema; count what it missed, apart
        tally.record("schema_rejected", str(exc))
        if os.environ.get("PPAFL_FUZZ_VERBOSE"):
            print(f"schema: {str(exc)[:300]}")
        return
    try:
        with time_limit(_WALL_S):
            res = run_scenario(scenario, memory_limit=_MEMORY_LIMIT, budget=_budget())
            problems = wrongs(scenario, res)
    except Hang:
        tally.record("hang", f"over {_WALL_S} s: {raw!r}")
        return
    except (PpaflError, CryptoError) as exc:
        if _clear(exc):
            tally.record("clear_error")
            if os.environ.get("PPAFL_FUZZ_VERBOSE"):
                print(f"clear: {str(exc)[:300]}")
            tally.errors[type(exc).__name__ + (f" ({exc.cause})" if isinstance(exc, BudgetExceeded) else "")] += 1
        else:
            tally.record("crash", f"unclear message {exc!r} <- {raw!r}")
        return
    except Exception as exc:  # noqa: BLE001  (anything else is a crash: report it)
        tb = "".join(traceback.format_exception(exc)[-4:])
        tally.record("crash", f"{type(exc).__name__}: {exc}\n{tb} <- {raw!r}")
        return
    if problems:
        tally.record("wrong", f"{'; '.join(problems)} <- {raw!r}")
    else:
        tally.record("ran")


def _examples(ci: int) -> int:
    return EXAMPLES or ci


def test_extreme_scenarios_run_or_stop_clearly():
    tally = _tally("extreme_scenarios")
    n = _examples(120)

    @settings(_FUZZ, max_examples=n)
    @given(raw=extreme_scenarios())
    def fuzz(raw: dict[str, Any]) -> None:
        classify(tally, raw)

    fuzz()
    tally.check(n)
    assert tally.counts["schema_rejected"] <= n // 5, dict(tally.counts)  # the generator stays inside the schema


# ------------------------------------------------------------------ the command lines
_DOCUMENTED = {0, 2, 3}  # finished; bad input or refused; finished without a global version (1 = internal error)


def _cli(tally: Tally, prog: str, fn: Any, argv: list[str], out: Path) -> None:
    err, stdout = io.StringIO(), io.StringIO()
    try:
        with time_limit(_WALL_S), contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
            rc = fn(argv)
    except Hang:
        tally.record("hang", f"{prog} {argv!r}")
        return
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # noqa: BLE001  (an exception that escaped the command line is a crash)
        tally.record("crash", f"{prog} {argv!r} raised {type(exc).__name__}: {exc}")
        return
    message = err.getvalue()
    if rc not in _DOCUMENTED or "Traceback" in message:
        tally.record("crash", f"{prog} {argv!r}: exit {rc}, stderr {message[-1500:]!r}")
    elif rc == 2:
        ok = message.startswith((f"{prog}: error: ", "usage:")) or "\nusage:" in message or f"{prog}: error" in message
        tally.record("clear_error" if ok else "crash", f"{prog} {argv!r}: {message[-800:]!r}")
    else:
        summary = json.loads((out / "summary.json").read_text())
        lie = (rc == 3) != (summary["versions"] == 0)
        tally.record("wrong" if lie else "ran", f"{prog} {argv!r}: exit {rc} with {summary['versions']} versions")


@pytest.fixture
def quiet_logger() -> Iterator[None]:
    import logging

    logger = logging.getLogger("ppafl")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_extreme_scenarios_through_ppafl_run(tmp_path, quiet_logger):
    tally = _tally("ppafl_run")
    n = _examples(6)

    @settings(_FUZZ, max_examples=n)
    @given(raw=extreme_scenarios().filter(lambda r: r["time_only"]))  # the CLI's path, not training, is the point
    def fuzz(raw: dict[str, Any]) -> None:
        path, out = tmp_path / "s.yaml", tmp_path / f"out{tally.counts['inputs']}"
        path.write_text(yaml.safe_dump(raw))
        _cli(tally, "ppafl", ppafl_main, ["run", str(path), "--out", str(out), "--quiet", "--overwrite",
                                          "--memory-limit-gb", "3"], out)

    fuzz()
    tally.check(n)


_PAPER_FLAGS = st.fixed_dictionaries({
    "-nc": st.sampled_from(["1", "2", "5", "1000000"]),
    "-cf": st.sampled_from(["1e-9", "0.5", "1"]),
    "-E": st.sampled_from(["1"]),
    "-B": st.sampled_from(["1000000", "100"]),
    "-ncomm": st.sampled_from(["1", "2", "10000000"]),
    "-vf": st.sampled_from(["1", "10000000"]),
    "-lr": st.sampled_from(["10", "1e-9", "0.05"]),
    "--delayed": st.sampled_from(["0", "1"]),
    "--max-delay": st.sampled_from(["1", "1000000"]),
    "--delay-threshold": st.sampled_from(["0", "1000000"]),
    "--strategy": st.sampled_from(["ppafl", "fedavg", "fedasync", "fedbuff"]),
    "--encryption": st.sampled_from(["off", "modeled"]),
})


def test_extreme_flags_through_main_py(tmp_path, quiet_logger):
    sys.path.insert(0, str(ROOT))
    import main as paper_main

    tally = _tally("main_py")
    n = _examples(4)

    @settings(_FUZZ, max_examples=n)
    @given(flags=_PAPER_FLAGS)
    def fuzz(flags: dict[str, str]) -> None:
        out = tmp_path / f"out{tally.counts['inputs']}"
        argv = [*(x for kv in flags.items() for x in kv), "--dataset", "mnist5k", "-mn", "mnist_2nn", "--quiet",
                "--out", str(out), "-iid", "1"]
        _cli(tally, "main.py", paper_main.main, argv, out)

    fuzz()
    assert tally.problems == [], tally.problems[0]
    assert tally.counts["inputs"] >= n


def test_no_traceback_reaches_the_user_of_either_command(tmp_path):
    """The real console scripts, in their own processes: exit codes as documented, one line, no traceback."""
    raw = {"time_only": True, "fleet": {"num_devices": 2, "groups": [{"device": "mcu", "link": "lora"}]},
           "stop": {"max_time_s": 1.0}}  # no LoRa transfer ends within a second: refused up front
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [
        ([sys.executable, "-m", "sim.cli", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "a")], 2),
        ([sys.executable, str(ROOT / "main.py"), "--dataset", "mnist5k", "-nc", "2", "-ncomm", "10000000", "-vf",
          "1", "--out", str(tmp_path / "b")], 2),
    ]
    for argv, code in runs:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == code, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") <= 3, proc.stderr
        assert ": error: " in proc.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused runs leave nothing behind


# ------------------------------------------------------------------ regressions: one per class the fuzzer found
def _time_only(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"time_only": True, "fleet": {"num_devices": 4}, "evaluation": {"interval_s": None},
                           "stop": {"max_time_s": 3600.0}}
    raw.update(over)
    return raw


@pytest.mark.parametrize("path, value", [
    ("strategy.server_lr", 1e15), ("strategy.staleness_a", 1e15), ("strategy.staleness_b", 10**15),
    ("strategy.buffer_size", 10**15), ("strategy.delay_threshold", 10**15), ("strategy.round_deadline_s", 1e15),
    ("strategy.round_deadline_s", 5e-324), ("injected_delay.max_rounds", 10**15), ("injected_delay.fraction", 1.0),
])
def test_strategy_and_delay_numbers_beyond_meaning_are_refused(path, value):
    """Class: fields with no upper bound (a FedBuff server_lr of 1e15 made a NaN model with a 'final accuracy'),
    round deadlines below any round trip (rounds every 5e-324 s), and a delay that holds back every update."""
    raw = _time_only()
    _set(raw, path, value)
    with pytest.raises(ScenarioError, match=re.escape(path)):
        scenario_from_dict(raw)


def test_a_diverged_server_step_makes_no_version_and_says_so(monkeypatch):
    """Class: a global model with NaN/inf (a server step that overflows float32) was published and evaluated."""
    from fl.global_model import GlobalModels
    from fl.strategies import AggregationPlan, Contribution

    class Plain:
        def decrypt_average(self, aggregate: Any) -> np.ndarray:
            return aggregate

    models = GlobalModels(Plain(), np.zeros(3, np.float32))  # type: ignore[arg-type]
    plan = AggregationPlan((Contribution(0, 0, 1.0, "fresh", 0),), rule="delta", delta_scale=10.0)
    assert models.apply(plan, np.array([1.0, 3e38, 0.0]), [1]) is None  # 10 x 3e38 is beyond float32
    assert models.version == 0 and np.isfinite(models.current).all()
    assert models.apply(plan, np.array([1.0, 2.0, 0.0]), [1]) == 1

    monkeypatch.setattr(GlobalModels, "apply", lambda *_a: None)  # every step diverges, in a real training run
    raw = {"data": {"max_test_samples": 20}, "training": {"batch_size": 500},
           "fleet": {"num_devices": 2, "groups": [{"device": "laptop", "link": "ethernet"}]},
           "strategy": {"name": "fedbuff", "buffer_size": 1}, "encryption": {"mode": "off"},
           "evaluation": {"interval_s": 5.0}, "stop": {"max_time_s": 10.0}}
    res = run_scenario(scenario_from_dict(raw))
    s = res.summary
    assert s["versions"] == 0 and s["final_accuracy"] is None and s["server"]["aggregates_rejected"] > 0
    assert (res.events["event"] == "aggregate_rejected").sum() == s["server"]["aggregates_rejected"]
    assert any("would not be finite" in w for w in s["warnings"]) and not wrongs(scenario_from_dict(raw), res)


@pytest.mark.parametrize("unavailable", [{"daily_window": [3.0, 3.000001]}, {"unavailability": 0.999999}])
def test_async_strategies_do_not_spin_polling_for_devices(unavailable):
    """Class: fedasync/fedbuff retried an unfilled slot every round_deadline_s, logging nothing: a 1 ms (before:
    5e-324 s) deadline with no device available span the clock in steps no budget counted (a hang)."""
    raw = _time_only(failures=unavailable, strategy={"name": "fedasync", "round_deadline_s": 1e-3})
    with time_limit(10.0):
        res = run_scenario(scenario_from_dict(raw))
    assert res.summary["stop_reason"] == "reached the time limit 3600 s" and res.summary["versions"] == 0


def test_a_run_in_which_nothing_happens_is_stopped_naming_it():
    """The engine's guard for the same class: SimPy steps that log no event only spin timers."""
    raw = _time_only(failures={"daily_window": [3.0, 3.000001]}, strategy={"name": "fedasync"},
                     stop={"max_time_s": 1e9, "max_versions": 3})
    with pytest.raises(BudgetExceeded, match=r"nothing happens: 20,\d{3} simulation steps .* without a single event"):
        run_scenario(scenario_from_dict(raw), budget=RunBudget(max_steps_without_events=20_000))


def test_batteries_that_would_flicker_are_refused_and_the_rest_stay_fast():
    """Class: a battery that a recharge brings back with too little charge for its idle drain empties and refills
    every fraction of a second; each availability question integrated every cycle since the last job (a hang)."""
    battery = {"capacity_j": 1.0, "initial_fraction": 0.0, "idle_power_w": 1e4, "resume_fraction": 1.0,
               "recharge": {"kind": "mains", "windows": [[0, 24]], "power_w": 10.0}}
    raw = _time_only(fleet={"num_devices": 2, "groups": [{"device": "smartphone", "battery": battery}]},
                     stop={"max_time_s": 1e6})
    with pytest.raises(FlickeringBatteryError, match=r"flicker on and off ~1e\+07 times.*battery\.capacity_j"):
        run_scenario(scenario_from_dict(raw))
    battery |= {"capacity_j": 100.0, "idle_power_w": 1.0,  # a charger weaker than the drain: ~250 cycles, quick
                "recharge": {"kind": "mains", "windows": [[0, 24]], "power_w": 0.5}}
    raw["fleet"]["groups"][0]["battery"] = battery
    raw["stop"]["max_time_s"] = 1e5
    with time_limit(20.0):
        res = run_scenario(scenario_from_dict(raw))
    assert res.summary["simulated_time_s"] == 1e5 and not wrongs(scenario_from_dict(raw), res)
    assert res.devices["battery_depletions"].min() > 100


def test_updates_held_back_for_a_version_that_never_comes_are_named():
    """Class: with nearly every update held back by the injected delay an asynchronous run (whose delays count
    versions) made no version, and the warning said no update had arrived while the devices counted them as
    sent. (Round-based runs count delays in rounds and do progress: tests/test_delays.py.)"""
    raw = _time_only(fleet={"num_devices": 2, "groups": [{"device": "laptop", "link": "ethernet"}]},
                     strategy={"name": "fedasync", "client_fraction": 1.0},
                     injected_delay={"fraction": 0.999999, "max_rounds": 2}, stop={"max_time_s": 60.0})
    res = run_scenario(scenario_from_dict(raw))
    assert res.summary["versions"] == 0 and not wrongs(scenario_from_dict(raw), res)
    assert any("held back by the injected delay" in w for w in res.summary["warnings"]), res.summary["warnings"]


def test_a_timeline_with_no_device_activity_says_so(tmp_path):
    """Class: a run in which no device did anything drew an empty timeline and printed matplotlib's
    "No artists with labels found" warning to the user."""
    import warnings

    from sim.plots.runs import plot_device_timeline

    res = run_scenario(scenario_from_dict(_time_only(failures={"unavailability": 0.999999},
                                                     stop={"max_time_s": 2.0})))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_device_timeline(res.events, tmp_path / "t.png", fmt="png", end_s=2.0)
    assert (tmp_path / "t.png").stat().st_size > 1000
