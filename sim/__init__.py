"""Simulation layer: scenarios, the SimPy engine, runs, outputs and the CLI.

`sim` wires the other packages together: `devices` (the fleet), `fl` (learning and
aggregation) and, through `fl`, `crypto`. Only the scenario API is exported here, so that
reading and checking a scenario does not load torch; run one with
`sim.runner.run_scenario`, or build a `sim.engine.Simulation` yourself.
"""

from sim.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict

__all__ = ["Scenario", "ScenarioError", "load_scenario", "scenario_from_dict"]
