"""Simulation layer: scenarios, the SimPy engine, runs, outputs and the CLI.

`sim` wires the other packages together: `devices` (the fleet), `fl` (learning and
aggregation) and, through `fl`, `crypto`.
"""

from sim.engine import Simulation
from sim.runner import RunResult, run_scenario
from sim.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict

__all__ = ["RunResult", "Scenario", "ScenarioError", "Simulation", "load_scenario", "run_scenario", "scenario_from_dict"]
