"""ppafl's simulator: scenarios, the SimPy engine, runs, studies, plots and the command line.

Layers, each importing only those below it (`tests/test_layers.py` enforces it):
`sim.plugins` (registries) -> `sim.scenario` (the schema) -> `sim.assembly` (a Scenario
into parts) over `sim.engine` (the simulation, which knows no scenario) -> `sim.runner` (a
run and its outputs) -> `sim.studies` (sweeps, comparisons, studies) -> `sim.cli`. `sim`
wires `devices` (the fleet), `fl` (learning and aggregation) and `crypto`.

The names below are imported on first use, so that reading and checking a scenario does
not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Scenario": "sim.scenario",
    "ScenarioError": "sim.errors",
    "PpaflError": "sim.errors",
    "load_scenario": "sim.scenario",
    "scenario_from_dict": "sim.scenario",
    "load_plugins": "sim.plugins",
    "Simulation": "sim.engine",
    "RunResult": "sim.engine",
    "run_scenario": "sim.runner",
}
__all__ = [*_HOMES]  # noqa: PLE0604  (the lazy table names every export)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # looked up once
    return value
