"""Simulation layer: scenarios, the SimPy engine, runs, outputs and the CLI.

`sim` wires the other packages together: `devices` (the fleet), `fl` (learning and
aggregation) and, through `fl`, `crypto`.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "RunResult": "sim.runner",
    "Scenario": "sim.scenario",
    "ScenarioError": "sim.scenario",
    "Simulation": "sim.engine",
    "load_scenario": "sim.scenario",
    "run_scenario": "sim.runner",
    "scenario_from_dict": "sim.scenario",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """Import on first use: `ppafl --help` and scenario errors do not wait for torch (~5 s)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
