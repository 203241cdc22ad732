"""The paper's delay-compensated scheme (PPAFL), and the reference code's baselines as named settings of it.

Staleness can be counted like the paper's reference code instead of the version lag:
lag + 1 for any update that is late or was held back, counted from the version its job
started on (a held-back update that arrives in its own round has s = 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, model_validator

from fl.strategies.base import AggregationPlan, Arrival, Contribution, RoundBasedConfig, Strategy

__all__ = ["PPAFL", "PRESETS", "AgentSource", "LateWeight", "PPAFLConfig", "Preset", "PresetConfig", "StalenessClock"]

LateWeight = Literal["halving", "full", "zero"]
StalenessClock = Literal["version_lag", "lag_plus_one"]
AgentSource = Literal["last_update", "retrain"]


class PPAFL(Strategy):
    """The paper's delay-compensated scheme, and the reference code's baselines as settings of it.

    At the close of round `version` (trained on global `version`), with s the staleness
    (`staleness_clock`: the version lag, or lag + 1 for late or held-back updates):
    - an update with s = 0 counts fully (weight 1);
    - a late update counts `late_weight` (2^-s "halving", 1 "full", 0 "zero": discarded),
      and 0 past `delay_threshold`;
    - if `agents`, each client still in flight whose update has not arrived is represented
      by an *update agent* weighted like a late update of its staleness: its last delivered
      update (`agent_source` "last_update", the physical default) or a fresh training of
      that client from the model its delayed job started on ("retrain", the reference
      code's simulation shortcut); only while `version < agents_until_version`.
    Weights are multiplied by sample counts (if `weight_by_samples`) and normalised.
    """

    name = "ppafl"
    round_based = True

    def __init__(
        self,
        delay_threshold: int = 6,
        weight_by_samples: bool = True,
        late_weight: LateWeight = "halving",
        agents: bool = True,
        agent_source: AgentSource = "last_update",
        agents_until_version: int | None = None,
        staleness_clock: StalenessClock = "version_lag",
    ) -> None:
        super().__init__(weight_by_samples)
        if late_weight not in ("halving", "full", "zero"):
            raise ValueError(f"unknown late weight {late_weight!r}; known: halving, full, zero")
        if staleness_clock not in ("version_lag", "lag_plus_one"):
            raise ValueError(f"unknown staleness clock {staleness_clock!r}; known: version_lag, lag_plus_one")
        self.delay_threshold = delay_threshold
        self.late_weight, self.staleness_clock = late_weight, staleness_clock
        self.agent_source = agent_source if agents else None
        self.agents_until_version = agents_until_version
        self._arrived: dict[int, Arrival] = {}
        self._too_late: list[Arrival] = []

    def staleness(self, version: int, base_version: int, delayed: bool) -> int:
        """s of an update trained on `base_version` at `version`; `delayed`: its job was held back."""
        lag = version - base_version
        if self.staleness_clock == "lag_plus_one" and (lag > 0 or delayed):
            return lag + 1
        return lag

    def _factor(self, s: int) -> float:
        """The weight of an update of staleness s before sample counts (0: it does not take part)."""
        if s == 0:
            return 1.0
        if s > self.delay_threshold or self.late_weight == "zero":
            return 0.0
        return 2.0**-s if self.late_weight == "halving" else 1.0

    def wants_agent(self, version: int, base_version: int) -> bool:
        if self.agent_source is None:
            return False
        if self.agents_until_version is not None and version >= self.agents_until_version:
            return False
        return self._factor(self.staleness(version, base_version, delayed=True)) > 0

    def agent_expired(self, version: int, base_version: int) -> bool:
        return self.staleness(version, base_version, delayed=True) > self.delay_threshold

    def on_arrival(self, arrival: Arrival, version: int) -> None:
        if self._factor(self.staleness(version, arrival.base_version, arrival.delayed)) == 0:
            self._too_late.append(arrival)
        else:
            self._arrived[arrival.client] = arrival  # a client's newest arrival this round wins

    def close_round(self, version: int, delayed_agents: dict[int, Arrival]) -> AggregationPlan | None:
        contribs: list[Contribution] = []
        for a in self._arrived.values():
            s = self.staleness(version, a.base_version, a.delayed)
            w = self._size(a.num_samples) * self._factor(s)
            contribs.append(Contribution(a.client, a.base_version, w, "fresh" if s == 0 else "late", a.uid))
        for client, agent in delayed_agents.items():
            if client in self._arrived or not self.wants_agent(version, agent.base_version):
                continue
            s = self.staleness(version, agent.base_version, delayed=True)
            w = self._size(agent.num_samples) * self._factor(s)
            contribs.append(Contribution(client, agent.base_version, w, "agent", agent.uid))
        discarded = tuple(self._too_late)
        self._arrived, self._too_late = {}, []
        if not contribs or all(c.kind == "agent" for c in contribs):
            # Nothing new arrived: re-averaging old agents alone would only move the model backwards.
            return AggregationPlan((), discarded=discarded) if discarded else None
        return AggregationPlan(tuple(contribs), discarded=discarded)

    def max_contributions(self, num_clients: int, per_round: int) -> int:
        return min(num_clients, per_round * (self.delay_threshold + 2))


class PPAFLConfig(RoundBasedConfig):
    name: Literal["ppafl"] = Field("ppafl", description="Aggregation strategy.")
    delay_threshold: int = Field(
        6, ge=0, le=1000, description="Late updates and agents staler than this many rounds get weight 0."
    )
    late_weight: LateWeight = Field(
        "halving", description="Weight of a late update (and of an agent) of staleness s: halving = 2^-s, full = 1, "
        "zero = 0 (dropped, the reference code's straggler baselines).",
    )
    agents: bool = Field(True, description="Represent clients still in flight by update agents.")
    agent_source: AgentSource = Field(
        "last_update",
        description="last_update = the client's last delivered update (physical); retrain = the delayed client "
        "retrained every round from the model its job started on, at no simulated cost (a simulation shortcut, "
        "as the reference code does).",
    )
    agents_until_version: int | None = Field(
        None, ge=1, le=10**9, description="Agents only while the global version is below this; null = always."
    )
    staleness_clock: StalenessClock = Field(
        "version_lag",
        description="s of a late update: version_lag = versions since it started; lag_plus_one = that + 1 for any "
        "late or held-back update, counted from the delay's start (the reference code: a delay of 1 weighs 1/2).",
    )
    weight_by_samples: bool = Field(True, description="Weight clients by their sample counts.")

    def build(self) -> PPAFL:
        return PPAFL(
            self.delay_threshold, self.weight_by_samples, self.late_weight, self.agents, self.agent_source,
            self.agents_until_version, self.staleness_clock,
        )


@dataclass(frozen=True)
class Preset:
    """A named PPAFL setting: what it reproduces, its fixed settings, and its FedProx mu (None: training's)."""

    reproduces: str
    settings: dict[str, Any]
    prox_mu: float | None = None


_REFERENCE = {"staleness_clock": "lag_plus_one", "weight_by_samples": False}
_STRAGGLER = {**_REFERENCE, "late_weight": "zero", "agents": False}
_RETRAINED = {**_REFERENCE, "agents": True, "agent_source": "retrain"}
PRESETS: dict[str, Preset] = {
    "fedavg_straggler": Preset("the reference code's 'FedAvg & straggler': late updates dropped, no agents", _STRAGGLER),
    "fedprox_straggler": Preset(
        "the reference code's 'FedProx & straggler' as its name says (its proximal term was commented out)",
        _STRAGGLER, prox_mu=0.01,
    ),
    "asyfl": Preset(
        "the reference code's AsyFL: 2^-s for late updates and agents, threshold 3, agents only in rounds < 20",
        {**_RETRAINED, "late_weight": "halving", "delay_threshold": 3, "agents_until_version": 20},
    ),
    "ppflpro": Preset(
        "the reference code's MNIST 'PPFLPro' variant: weight 1 for late updates and agents",
        {**_RETRAINED, "late_weight": "full", "delay_threshold": 6, "agents_until_version": 100},
    ),
    "ppafl_reference": Preset(
        "the paper's scheme as the reference code runs it: 2^-s, threshold 6, agents retrained, only in rounds < 100",
        {**_RETRAINED, "late_weight": "halving", "delay_threshold": 6, "agents_until_version": 100},
    ),
}


class PresetConfig(RoundBasedConfig):
    """The presets: named, fixed settings of ppafl (`PRESETS`); only the common strategy fields may be set."""

    family: ClassVar[str] = "the presets"  # how messages name the settings class that several names share
    name: Literal["fedavg_straggler", "fedprox_straggler", "asyfl", "ppflpro", "ppafl_reference"] = Field(
        "ppafl_reference", description="A named setting of ppafl (see 'Strategy presets'); its settings are fixed."
    )

    @model_validator(mode="before")
    @classmethod
    def _fixed(cls, raw: Any) -> Any:
        fixed = sorted(set(raw) & set(PPAFLConfig.model_fields) - set(cls.model_fields)) if isinstance(raw, dict) else []
        if fixed:
            preset = PRESETS[raw["name"]]
            given = ", ".join(f"{k}: {json.dumps(v)}" for k, v in preset.settings.items())
            raise ValueError(
                f"{raw['name']} is a preset with fixed settings ({given}); to change {', '.join(fixed)}, "
                f"write strategy.name: ppafl with those settings and yours"
            )
        return raw

    def resolved(self) -> PPAFLConfig:
        """The ppafl settings this preset stands for (with this section's common fields)."""
        common = self.model_dump(exclude={"name"})
        return PPAFLConfig(**common, **PRESETS[self.name].settings)

    def build(self) -> PPAFL:
        return self.resolved().build()

    def local_prox_mu(self, default: float) -> float:
        preset = PRESETS[self.name].prox_mu
        if self.prox_mu is not None:
            return self.prox_mu
        return default if preset is None else preset


assert set(PRESETS) == set(get_args(PresetConfig.model_fields["name"].annotation)), "PRESETS and PresetConfig.name"
