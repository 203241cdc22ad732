"""Helpers shared by several test modules: a wall-clock limit for fuzzing, a whole simulated run, and killing
a sweep or comparison after its first finished cell."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sim.engine import Simulation
from sim.scenario import scenario_from_dict


class Hang(BaseException):
    """A call ran past its `time_limit` (a BaseException, so the code under test cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Hang` in the block once `seconds` of wall clock have passed (SIGALRM; main thread only)."""

    def _raise(_sig: int, _frame: object) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def simulate(scenario: dict[str, Any], executor: str) -> Simulation:
    """Run `scenario` to its end on `executor` and return the finished simulation."""
    sim = Simulation.from_scenario(scenario_from_dict(scenario), executor=executor)
    try:
        sim.run()
    finally:
        sim.workload.executor.close()
    return sim


def finished_cells(out: Path) -> dict[str, int]:
    """summary.json modification times [ns] of a sweep's or comparison's finished cells (not `.partial-*`)."""
    found = (out / "cells").glob("*/summary.json")
    return {p.parent.name: p.stat().st_mtime_ns for p in found if not p.parent.name.startswith(".")}


def kill_after_first_cell(cmd: list[str], out: Path, cwd: Path, env: dict[str, str], wait_s: float = 120) -> None:
    """Start `cmd` and SIGKILL it as soon as a cell under `out` has finished (or after `wait_s`)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + wait_s
    while not finished_cells(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
