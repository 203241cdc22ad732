"""Aggregation strategies: when to aggregate and with which weights (see `fl.strategies.base`).

Built in: FedAvg, the paper's PPAFL (whose named settings, the presets, express the
reference code's baselines), FedAsync and FedBuff. Each is a `Strategy` plus its
`StrategyConfig`; a user's strategy is the same pair, registered with
`sim.plugins.register_strategy`.
"""

from fl.strategies.base import (
    MAX_TIME_S,
    MIN_ROUND_DEADLINE_S,
    AggregationPlan,
    Arrival,
    Contribution,
    RoundBasedConfig,
    Strategy,
    StrategyConfig,
)
from fl.strategies.fedasync import FedAsync, FedAsyncConfig, staleness_weight
from fl.strategies.fedavg import FedAvg, FedAvgConfig
from fl.strategies.fedbuff import FedBuff, FedBuffConfig
from fl.strategies.ppafl import (
    PPAFL,
    PRESETS,
    AgentSource,
    LateWeight,
    PPAFLConfig,
    Preset,
    PresetConfig,
    StalenessClock,
)

__all__ = [
    "MAX_TIME_S",
    "MIN_ROUND_DEADLINE_S",
    "PPAFL",
    "PRESETS",
    "AgentSource",
    "AggregationPlan",
    "Arrival",
    "Contribution",
    "FedAsync",
    "FedAsyncConfig",
    "FedAvg",
    "FedAvgConfig",
    "FedBuff",
    "FedBuffConfig",
    "LateWeight",
    "PPAFLConfig",
    "Preset",
    "PresetConfig",
    "RoundBasedConfig",
    "StalenessClock",
    "Strategy",
    "StrategyConfig",
    "staleness_weight",
]

