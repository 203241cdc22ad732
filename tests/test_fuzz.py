"""Fuzzing: malformed scenarios, YAML, command lines and ciphertexts end in a clear error, never a crash.

Each test feeds generated inputs (hypothesis, derandomized so CI sees the same ones) and
sorts every outcome: accepted (the input happened to be valid), a clear error (the
documented exception with a message, or `ppafl: error: ...` / argparse usage and exit 2),
or a crash (any other exception, or a call that runs longer than `_HANG_S`). The counts
go to `fuzz_report.json` in pytest's temporary folder and to stdout (`pytest -s`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Hang, time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.runner.run
import sim.studies.sweep
from crypto import CryptoError, EncryptedAggregate, EncryptedVector, PayloadError, make_secure_aggregation
from crypto.params import HIGH_THROUGHPUT_PARAMS
from sim.cli import main
from sim.runner.preflight import check_resources
from sim.scenario import ScenarioError, load_scenario, scenario_from_dict

_HANG_S = 10.0
_FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
VALID = {
    "name": "fuzz",
    "seed": 1,
    "data": {"dataset": "mnist5k", "partition": "iid", "max_test_samples": 100},
    "training": {"model": "mnist_2nn", "epochs": 1, "batch_size": 10, "lr": 0.05},
    "fleet": {"num_devices": 10, "groups": [{"device": "rpi4", "link": "wifi", "share": 0.5},
                                            {"device": "smartphone", "link": "lte", "share": 0.5}]},
    "failures": {"dropout_rate": 0.1, "unavailability": 0.1, "daily_window": [8, 20]},
    "strategy": {"name": "ppafl", "client_fraction": 0.3, "round_deadline_s": 30, "delay_threshold": 6},
    "injected_delay": {"fraction": 0.0, "max_rounds": 4},
    "encryption": {"mode": "modeled", "params": "high_throughput", "scale_bits": 16},
    "evaluation": {"interval_s": 30, "target_accuracy": 0.9},
    "stop": {"max_time_s": 600},
}
FIELDS = [
    f"{section}.{key}" if isinstance(body, dict) else section
    for section, body in VALID.items()
    for key in (body if isinstance(body, dict) else [None])
] + ["fleet.groups.0.device", "fleet.groups.1.link", "fleet.groups.0.share", "fleet.groups.0.compute",
     "fleet.groups.1.battery", "fleet.groups.0.link_overrides", "data.alpha", "data.root", "training.prox_mu",
     "strategy.staleness_fn", "strategy.buffer_size", "evaluation.every_versions", "stop.max_versions",
     "stop.target_accuracy", "time_only", "encryption.value_bound", "encryption.weight_bits"]


# ------------------------------------------------------------------ counting
class Tally:
    """Outcomes of one fuzz target."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.crashes: list[str] = []

    def record(self, outcome: str, detail: str = "") -> None:
        self.counts["tried"] += 1
        self.counts[outcome] += 1
        if outcome in ("crash", "hang"):
            self.crashes.append(detail[:500])

    def check(self, minimum: int) -> None:
        assert self.crashes == [], f"{len(self.crashes)} crash(es), first: {self.crashes[0]}"
        assert self.counts["tried"] >= minimum
        assert self.counts["clear_error"] >= minimum // 2  # the generators mostly make bad input


REPORT: dict[str, Tally] = {}


def _tally(name: str) -> Tally:
    return REPORT.setdefault(name, Tally())


@pytest.fixture(scope="module", autouse=True)
def _report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    data = {name: {**t.counts, "crashes": len(t.crashes)} for name, t in REPORT.items()}
    data["total"] = dict(sum((Counter(t.counts) for t in REPORT.values()), Counter()))
    data["total"]["crashes"] = sum(len(t.crashes) for t in REPORT.values())
    path = tmp_path_factory.getbasetemp() / "fuzz_report.json"
    path.write_text(json.dumps(data, indent=2))
    print(f"\nfuzz report ({path}):\n{json.dumps(data, indent=2)}")


def _classify(tally: Tally, fn: Callable[[], Any], clear: tuple[type[BaseException], ...], what: Any) -> None:
    try:
        with time_limit(_HANG_S):
            fn()
    except Hang:
        tally.record("hang", f"over {_HANG_S} s: {what!r}")
    except clear as exc:
        tally.record("clear_error" if str(exc).strip() else "crash", f"empty message for {what!r}")
    except Exception as exc:  # noqa: BLE001  (anything else is a crash: report it)
        tally.record("crash", f"{type(exc).__name__}: {exc} <- {what!r}")
    else:
        tally.record("accepted")


# ------------------------------------------------------------------ generators
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=2),
    st.text(max_size=30),
    st.sampled_from(["mnist", "cifar10", "ppafl", "real", "paper", "rpi4", "lte", "1e309", "-0", "nan", ""]),
    st.text(min_size=2000, max_size=5000),  # huge values
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


def _set_path(raw: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = raw
    for part in parts[:-1]:
        if isinstance(node, list):  # an earlier mutation may have made a section a list
            if not part.isdigit() or int(part) >= len(node):
                return
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            return  # an earlier mutation made this a value
    last = parts[-1]
    if isinstance(node, list):
        if last.isdigit() and int(last) < len(node):
            node[int(last)] = value
    else:
        node[last] = value


def _delete_path(raw: dict, path: str) -> None:
    parts = path.split(".")
    node: Any = raw
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)


_mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(FIELDS), _values),
    st.tuples(st.just("delete"), st.sampled_from(FIELDS), st.none()),
    st.tuples(st.just("unknown"), st.sampled_from(["", *sorted(k for k, v in VALID.items() if isinstance(v, dict))]),
              st.text(min_size=1, max_size=12)),
    st.tuples(st.just("section"), st.sampled_from(sorted(VALID)), _values),
)


@st.composite
def malformed_mappings(draw: st.DrawFn) -> Any:
    """A valid scenario with 1-4 mutations (wrong types, missing/unknown keys, bad numbers), or junk."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_values)  # not even a mapping
    raw = copy.deepcopy(VALID)
    for op, path, value in draw(st.lists(_mutation, min_size=1, max_size=4)):
        if op == "set":
            _set_path(raw, path, value)
        elif op == "delete":
            _delete_path(raw, path)
        elif op == "unknown":
            target = raw.get(path, raw) if path else raw
            if isinstance(target, dict):
                target[value] = 1
        else:
            raw[path] = value
    return raw


_YAML_SNIPPETS = ["&a [1, 2]", "*a", "!!python/object:os.system ls", "{", "[", "\t", ": :", "- - -",
                  "---\n...\n", "%YAML 9.9", "'unterminated", "? complex key", "\x00", "\ufeff", "<<: *a"]


@st.composite
def yaml_texts(draw: st.DrawFn) -> str | bytes:
    """Broken YAML: a valid scenario's text cut, spliced with YAML syntax, or random text/bytes."""
    kind = draw(st.integers(0, 4))
    text = yaml.safe_dump(VALID, sort_keys=False)
    if kind == 0:
        return draw(st.text(max_size=300))
    if kind == 1:
        return draw(st.binary(max_size=300))
    if kind == 2:
        return text[: draw(st.integers(0, len(text)))]
    pos = draw(st.integers(0, len(text)))
    insert = draw(st.sampled_from(_YAML_SNIPPETS)) if kind == 3 else draw(st.text(min_size=1, max_size=10))
    return text[:pos] + insert + text[pos + draw(st.integers(0, 5)) :]


# ------------------------------------------------------------------ the scenario loader
def test_scenario_mappings():
    tally = _tally("scenario_mappings")

    @settings(_FUZZ, max_examples=500)
    @given(raw=malformed_mappings())
    def fuzz(raw: Any) -> None:
        # an accepted scenario also gets its resource estimate
        _classify(tally, lambda: check_resources(scenario_from_dict(raw)), (ScenarioError, CryptoError), raw)

    fuzz()
    tally.check(500)


def test_scenario_yaml_files(tmp_path):
    tally = _tally("scenario_yaml")
    path = tmp_path / "s.yaml"

    @settings(_FUZZ, max_examples=300)
    @given(text=yaml_texts())
    def fuzz(text: str | bytes) -> None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        _classify(tally, lambda: load_scenario(path), (ScenarioError,), text)

    fuzz()
    tally.check(300)


# ------------------------------------------------------------------ the command line
class _Accepted(BaseException):  # not an Exception: the CLI turns those into "internal error"
    """A command line valid enough to start a run (stubbed out: the fuzzer never runs anything)."""


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("cli")
    (d / "good.yaml").write_text(yaml.safe_dump(VALID))
    (d / "bad.yaml").write_text("fleet: {num_devices: -3}\n")
    (d / "broken.yaml").write_text("data: [unclosed\n")
    (d / "finished").mkdir()
    (d / "finished" / "summary.json").write_text("{}")
    (d / "a_file").write_text("")
    return {k: str(d / k) for k in ("good.yaml", "bad.yaml", "broken.yaml", "finished", "a_file")} | {
        "missing": str(d / "missing.yaml"), "out": str(d / "out")
    }


_FLAGS = ["run", "plot", "sweep", "--out", "--seed", "--set", "--executor", "--overwrite", "--quiet",
          "--memory-limit-gb", "--seeds", "--jobs", "--title", "--help", "-h", "--bogus", "-", "--"]
_SETS = ["seed=-1", "fleet.num_devices=0", "x", "=", "a.b.c=1", "stop=3", "strategy.name=ppafl,fedavg",
         "failures.dropout_rate=0,0.2", "data=[", "seed=1e999", "name.x=1", "training.lr=nan"]


@st.composite
def argv_lists(draw: st.DrawFn, files: dict[str, str]) -> list[str]:
    token = st.one_of(
        st.sampled_from(_FLAGS),
        st.sampled_from(list(files.values())),
        st.sampled_from(_SETS),
        st.sampled_from(["0", "-5", "1.5", "inf", "nan", "99999999999999999999", "sequential", "warp"]),
        st.text(max_size=12).filter(lambda s: "\x00" not in s),
    )
    head = draw(st.sampled_from([["run", files["good.yaml"], "--out", files["out"]], ["run"], ["sweep"], ["plot"], []]))
    return head + draw(st.lists(token, max_size=8))


def _stub(*_args: Any, **_kwargs: Any) -> None:
    raise _Accepted


def _run_cli(tally: Tally, argv: list[str]) -> None:
    err, out = io.StringIO(), io.StringIO()
    try:
        with time_limit(_HANG_S), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except _Accepted:
        tally.record("accepted")
    except Hang:
        tally.record("hang", repr(argv))
    except SystemExit as exc:  # argparse: usage + message, exit 2 (or --help, exit 0)
        if exc.code == 2 and "usage:" in err.getvalue():
            tally.record("clear_error")
        elif exc.code == 0 and "usage:" in out.getvalue():
            tally.record("accepted")
        else:
            tally.record("crash", f"{exc!r} <- {argv!r}")
    except Exception as exc:  # noqa: BLE001  (anything else is a crash: report it)
        tally.record("crash", f"{type(exc).__name__}: {exc} <- {argv!r}")
    else:
        message = err.getvalue()
        if rc == 2 and message.startswith("ppafl: error: ") and "Traceback" not in message:
            tally.record("clear_error")
        elif rc == 0:
            tally.record("accepted")
        else:
            tally.record("crash", f"exit {rc}, stderr {message[:300]!r} <- {argv!r}")


def test_cli(cli_files, monkeypatch):
    monkeypatch.setattr(sim.runner.run, "run_scenario", _stub)
    monkeypatch.setattr(sim.studies.sweep, "run_sweep", _stub)  # never run a sweep either
    tally = _tally("cli")

    @settings(_FUZZ, max_examples=300)
    @given(argv=argv_lists(cli_files))
    def fuzz(argv: list[str]) -> None:
        _run_cli(tally, argv)

    fuzz()
    tally.check(300)


# ------------------------------------------------------------------ ciphertext payloads
@pytest.fixture(scope="module")
def she_payloads() -> dict[str, Any]:
    key_holder, aggregator = make_secure_aggregation(
        "real", HIGH_THROUGHPUT_PARAMS, num_values=200, max_clients=4, seed=7
    )
    vec = key_holder.encrypt([0.25] * 200)
    agg = aggregator.weighted_sum([vec, vec], [3, 5])
    return {"public": aggregator.public, "vector": vec.to_bytes(), "aggregate": agg.to_bytes()}


def _resealed(body: bytes) -> bytes:
    """`body` with a valid integrity digest, so the checks behind the digest are reached too."""
    return body + hashlib.sha256(body).digest()[:16]


@st.composite
def mutated_payloads(draw: st.DrawFn, valid: bytes) -> Any:
    kind = draw(st.integers(0, 6))
    if kind == 0:  # truncated or extended
        cut = draw(st.integers(0, len(valid)))
        return valid[:cut] + draw(st.binary(max_size=3))
    if kind == 1:  # flipped bits
        data = bytearray(valid)
        for pos in draw(st.lists(st.integers(0, len(valid) - 1), min_size=1, max_size=4)):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind in (2, 3):  # header fields rewritten, digest recomputed: reaches the layout and key checks
        body = bytearray(valid[:-16])
        for pos in draw(st.lists(st.integers(0, 47 if kind == 2 else len(body) - 1), min_size=1, max_size=4)):
            body[pos] = draw(st.integers(0, 255))
        return _resealed(bytes(body))
    if kind == 4:  # a ciphertext set to all ones (>= N), digest recomputed
        body = bytearray(valid[:-16])
        start = draw(st.integers(48, len(body) - 1))
        body[start : start + 64] = b"\xff" * len(body[start : start + 64])
        return _resealed(bytes(body))
    if kind == 5:
        return draw(st.binary(max_size=600))
    return draw(st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(0, 255), max_size=5)))


def test_ciphertext_payloads(she_payloads):
    tally = _tally("ciphertexts")
    public = she_payloads["public"]

    @settings(_FUZZ, max_examples=1000)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        which = data.draw(st.sampled_from(["vector", "aggregate"]))
        cls = EncryptedVector if which == "vector" else EncryptedAggregate
        payload = data.draw(mutated_payloads(she_payloads[which]))
        _classify(tally, lambda: cls.from_bytes(payload, public), (PayloadError,), payload)

    fuzz()
    tally.check(1000)


# ------------------------------------------------------------------ explicit cases
def test_yaml_alias_bomb_ends_quickly_with_a_short_message(tmp_path):
    """A 'billion laughs' file: aliases expand 9^7 fold; the error must not print all of it."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 7)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: *a6\n")
    tally = Tally()
    _classify(tally, lambda: load_scenario(path), (ScenarioError,), "alias bomb")
    assert tally.counts["clear_error"] == 1, tally.crashes
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert len(str(err.value)) < 10_000


def test_the_harness_tells_crashes_and_hangs_from_clear_errors(monkeypatch):
    tally = Tally()
    _classify(tally, lambda: {}["missing"], (ScenarioError,), "a KeyError")
    def empty_message() -> None:
        raise ScenarioError("")

    _classify(tally, empty_message, (ScenarioError,), "an empty message")
    _classify(tally, lambda: scenario_from_dict({"seed": -1}), (ScenarioError,), "a clear error")
    monkeypatch.setattr(sys.modules[__name__], "_HANG_S", 0.2)
    _classify(tally, lambda: time.sleep(5), (ScenarioError,), "a hang")
    assert dict(tally.counts) == {"tried": 4, "crash": 2, "clear_error": 1, "hang": 1}
    assert len(tally.crashes) == 3


def test_the_reference_payloads_parse(she_payloads):
    """The fuzzer starts from valid payloads (so its rejections are about the mutations)."""
    EncryptedVector.from_bytes(she_payloads["vector"], she_payloads["public"])
    EncryptedAggregate.from_bytes(she_payloads["aggregate"], she_payloads["public"])


def test_loading_a_scenario_reads_no_data(tmp_path, monkeypatch):
    import fl.data

    def no_data(*_a: Any, **_k: Any) -> None:
        raise AssertionError("loading a scenario touched the data")

    monkeypatch.setattr(fl.data, "load_dataset", no_data)
    path = Path(tmp_path / "s.yaml")
    path.write_text(yaml.safe_dump(VALID))
    assert load_scenario(path).name == "fuzz"
