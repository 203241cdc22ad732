"""Scenario files: YAML validated into a typed, immutable `Scenario`, with clear errors.

`load_scenario(path, overrides)` reads a file (`sim.scenario.loading`), applies `--set`
overrides (`sim.scenario.overrides`) and validates (`sim.scenario.schema`); errors name the
file or override, the field, the value and the fix (`sim.scenario.errors`).
`sim.scenario.reference` generates the README's table of fields. Nothing here loads torch.
"""

from sim.errors import ScenarioError
from sim.scenario.loading import load_scenario, read_scenario, read_scenario_file, scenario_from_dict
from sim.scenario.overrides import apply_overrides, parse_override
from sim.scenario.schema import (
    MAX_EVALUATIONS,
    MAX_TIME_S,
    DataConfig,
    EncryptionConfig,
    EvaluationConfig,
    FailuresConfig,
    FailureSource,
    FleetConfig,
    FleetGroup,
    InjectedDelayConfig,
    Scenario,
    StopConfig,
    TrainingConfig,
)

__all__ = [
    "MAX_EVALUATIONS",
    "MAX_TIME_S",
    "DataConfig",
    "EncryptionConfig",
    "EvaluationConfig",
    "FailureSource",
    "FailuresConfig",
    "FleetConfig",
    "FleetGroup",
    "InjectedDelayConfig",
    "Scenario",
    "ScenarioError",
    "StopConfig",
    "TrainingConfig",
    "apply_overrides",
    "load_scenario",
    "parse_override",
    "read_scenario",
    "read_scenario_file",
    "scenario_from_dict",
]
