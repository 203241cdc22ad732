"""The one place a validated `Scenario` becomes the parts of a run (`sim.engine`), and the facts about a run
that only the scenario can tell (devices per round, the largest aggregate, the encryption parameters, the cost
of a job).

Independent random streams are spawned from the scenario's seed: the fleet's, the
server's and the initial model's. Components are looked up by their registered names
(`sim.plugins`).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from fl.models import ModelSpec
from fl.secure import Aggregator, Scheme, choose_params
from fl.server import Server
from sim.engine.failures import FailureSpec, failure_factories
from sim.engine.fleet import JOB_PHASES, DeviceGroup, Fleet, SourceFactory, build_fleet
from sim.engine.jobtime import JobCost, train_flops
from sim.engine.monitor import Monitor
from sim.engine.observers import Observer
from sim.engine.simulation import Simulation
from sim.engine.watchdog import RunBudget
from sim.engine.workload import Encryption, Workload, learning_workload, time_only_workload
from sim.plugins import DATASETS, FAILURES, MODELS, PRIVACY_SCHEMES, PluginSource, activate, resolve
from sim.scenario import Scenario

__all__ = [
    "build_simulation",
    "build_workload",
    "clients_per_round",
    "encryption_params",
    "failure_specs",
    "fleet_from_scenario",
    "job_cost",
    "max_contributions",
    "model_size",
    "model_spec",
    "monitor_from_scenario",
    "scheme_of",
    "server_from_scenario",
]

# Seeds of the built-in failure sources (fixed: a scenario's numbers never change when another source is added).
_BUILTIN_TAGS = {"job_dropout": 1, "job_hazard": 2, "churn": 3, "availability_trace": 4}


def clients_per_round(scenario: Scenario, num_clients: int) -> int:
    """Devices invited per round: the strategy's client fraction of the fleet, at least one."""
    return max(1, round(scenario.strategy.client_fraction * num_clients))


def max_contributions(scenario: Scenario, num_clients: int) -> int:
    """The most updates one aggregate can hold: what the encrypted slots are sized for."""
    return scenario.strategy.build().max_contributions(num_clients, clients_per_round(scenario, num_clients))


def scheme_of(scenario: Scenario) -> Scheme:
    """The privacy scheme the scenario encrypts with (`encryption.scheme`)."""
    scheme: Scheme = PRIVACY_SCHEMES.get(scenario.encryption.scheme)
    return scheme


def encryption_params(scenario: Scenario, num_params: int, num_clients: int) -> str:
    """The parameter set a run encrypts with: `encryption.params`, or the cheapest default set of
    its scheme that holds the run's largest aggregate (`fl.secure.choose_params`)."""
    enc = scenario.encryption
    return choose_params(
        scheme_of(scenario), enc.params, num_params, max_contributions(scenario, num_clients), enc.weight_bits,
        enc.scale_bits, enc.value_bound,
    )


def model_spec(scenario: Scenario) -> ModelSpec:
    """The model the scenario trains, with its options and (for models that take any) the data's shape and classes."""
    name = scenario.training.model
    plugin = MODELS.get(name)
    kwargs = dict(scenario.training.model_options)
    if plugin.input_shape is None or plugin.num_classes is None:
        info = scenario.data.info()
        if plugin.input_shape is None:
            kwargs["input_shape"] = tuple(info.sample_shape)
        if plugin.num_classes is None:
            kwargs["num_classes"] = info.num_classes
    return ModelSpec.of(name, resolve(plugin.factory), kwargs)


def job_cost(scenario: Scenario, update_nbytes: int) -> JobCost:
    """One typical job of the scenario: an update each way, training on a client's share of the data."""
    info = scenario.data.info()
    samples = max(1, info.train_samples // scenario.fleet.num_devices)
    flops = train_flops(model_size(scenario)[1], samples, scenario.training.epochs)
    return JobCost(update_nbytes, update_nbytes, flops)


def model_size(scenario: Scenario) -> tuple[int, float]:
    """(parameters, forward FLOPs per sample) of the scenario's model (built once per model and data shape)."""
    return _size(model_spec(scenario), tuple(scenario.data.info().sample_shape))


@functools.cache
def _size(spec: ModelSpec, shape: tuple[int, ...]) -> tuple[int, float]:
    from fl.models import flops_per_sample, num_parameters

    net = spec.build()
    return num_parameters(net), float(flops_per_sample(net, shape))


def failure_specs(scenario: Scenario) -> list[FailureSpec]:
    """The scenario's failure sources beside permanent departure, batteries and link outages: the built-in
    shorthand fields that are on, then `failures.sources` in order."""
    fail = scenario.failures
    named: list[tuple[str, Any, int]] = []
    if fail.job_dropout > 0:
        named.append(("job_dropout", {"probability": fail.job_dropout, "offline_s": fail.job_dropout_offline_s}, 1))
    if fail.job_hazard_per_s > 0:
        named.append(("job_hazard", {"rate_per_s": fail.job_hazard_per_s, "offline_s": fail.job_dropout_offline_s}, 2))
    if fail.churn.enabled:
        named.append(("churn", fail.churn, 3))
    if fail.availability_trace.path is not None:
        named.append(("availability_trace", fail.availability_trace, 4))
    for i, source in enumerate(fail.sources):
        tag = _BUILTIN_TAGS.get(source.name, 0x100 + (zlib.crc32(source.name.encode()) & 0xFFFF) * 128 + i)
        named.append((source.name, source.settings, tag))
    specs = []
    for name, settings, tag in named:
        plugin = FAILURES.get(name)
        config = plugin.config.model_validate(settings) if isinstance(settings, dict) else settings
        specs.append(FailureSpec(resolve(plugin.factory), config, tag))
    return specs


def fleet_from_scenario(
    scenario: Scenario, seed: np.random.SeedSequence, source_factories: Sequence[SourceFactory] = ()
) -> Fleet:
    """The scenario's fleet: its groups by share, in a seeded random order, with the scenario's failures."""
    from devices import AvailabilitySpec

    fleet_cfg, fail = scenario.fleet, scenario.failures
    availability = AvailabilitySpec(
        dropout_rate=fail.dropout_rate,
        dropout_window_s=fail.dropout_window_s or scenario.stop.max_time_s,
        unavailability=fail.unavailability,
        daily_window=fail.daily_window,
    )
    groups = [DeviceGroup(g.device, g.link, g.profile(), availability.model_copy(update={"sessions": g.sessions}))
              for g in fleet_cfg.groups]
    phases = JOB_PHASES[scenario.encryption.mode != "off"]
    failures = failure_factories(failure_specs(scenario), fleet_cfg.num_devices, phases, seed)
    return build_fleet(
        groups, [g.share for g in fleet_cfg.groups], fleet_cfg.num_devices, seed, scenario.stop.max_time_s,
        [*failures, *source_factories],
    )


def server_from_scenario(
    scenario: Scenario, num_clients: int, aggregator: Aggregator | None, rng: np.random.Generator
) -> Server:
    """The scenario's server and strategy for `num_clients` devices."""
    strategy = scenario.strategy
    return Server(
        strategy=strategy.build(),
        aggregator=aggregator,
        num_clients=num_clients,
        clients_per_round=clients_per_round(scenario, num_clients),
        round_deadline_s=strategy.round_deadline_s,
        weight_bits=scenario.encryption.weight_bits,
        rng=rng,
        injected_fraction=scenario.injected_delay.fraction,
        injected_max_rounds=scenario.injected_delay.max_rounds,
        injected_min_rounds=scenario.injected_delay.min_rounds,
        injected_model=scenario.injected_delay.model,
        participation=getattr(strategy, "participation", "fresh"),  # round-based strategies only
    )


def _encryption_for(scenario: Scenario, num_clients: int, mode: str) -> Any:
    """A function of the model's parameter count that makes the scenario's encryption."""
    enc = scenario.encryption

    def make(num_params: int) -> Encryption:
        if enc.mode == "off":
            return Encryption()
        params = encryption_params(scenario, num_params, num_clients)
        return Encryption.of(scheme_of(scenario), params, mode, num_params, max_contributions(scenario, num_clients),
                             weight_bits=enc.weight_bits, scale_bits=enc.scale_bits, value_bound=enc.value_bound,
                             workers=enc.workers)

    return make


def build_workload(
    scenario: Scenario,
    num_clients: int,
    init_seed: int,
    executor: str = "sequential",
    cache: Any = None,
    plugins: Sequence[PluginSource] = (),
) -> Workload:
    """The learning side of `scenario` for `num_clients` devices; `cache` keeps finished training jobs; `plugins`
    are loaded in every worker process of the executor first."""
    from fl.executors import prepare

    data_cfg, enc, t = scenario.data, scenario.encryption, scenario.training
    spec = model_spec(scenario)
    if scenario.time_only:
        info = data_cfg.info()
        mode = "modeled" if enc.mode == "real" else enc.mode
        return time_only_workload(num_clients, spec, tuple(info.sample_shape), info.train_samples, epochs=t.epochs,
                                  encryption=_encryption_for(scenario, num_clients, mode), init_seed=init_seed)
    from fl.partition import partition
    from fl.training import TrainConfig

    prepare(executor)  # e.g. process workers start while the data loads
    plugin = DATASETS.get(data_cfg.dataset)
    ds = resolve(plugin.loader)(root=data_cfg.root, download=data_cfg.download, **data_cfg.options)
    shards = partition(ds.y_train.numpy(), num_clients, data_cfg.partition, seed=scenario.seed, alpha=data_cfg.alpha)
    strategy = scenario.strategy
    train = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=strategy.local_lr(t.lr),
                        prox_mu=strategy.local_prox_mu(t.prox_mu))  # a strategy may set its own
    return learning_workload(
        ds, spec, shards, train, encryption=_encryption_for(scenario, num_clients, enc.mode), executor=executor,
        init_seed=init_seed, cache=cache, max_test_samples=data_cfg.max_test_samples,
        worker_setup=functools.partial(activate, tuple(plugins)) if plugins else None,
    )


def monitor_from_scenario(scenario: Scenario) -> Monitor:
    """The scenario's evaluation schedule and stop conditions."""
    stop, evaluation = scenario.stop, scenario.evaluation
    return Monitor(
        stop.max_time_s,
        max_versions=stop.max_versions,
        target_accuracy=stop.target_accuracy,
        eval_interval_s=evaluation.interval_s,
        eval_every_versions=evaluation.every_versions,
        target_to_report=evaluation.target_accuracy,
    )


def build_simulation(
    scenario: Scenario,
    executor: str = "sequential",
    cache: Any = None,
    budget: RunBudget | None = None,
    observers: Sequence[Observer] = (),
    plugins: Sequence[PluginSource] = (),
) -> Simulation:
    """Every part of a run of `scenario` (independent random streams spawned from its seed), wired.

    `executor` trains the clients; `cache` keeps finished training jobs (a resumable run's);
    `budget` bounds the run; `observers` watch it (e.g. a progress bar); `plugins` (their
    sources, `sim.plugins.loaded_plugins()`) are loaded in worker processes.
    """
    root = np.random.SeedSequence(scenario.seed)
    fleet_seq, server_seq, init_seq = root.spawn(3)
    fleet = fleet_from_scenario(scenario, fleet_seq)
    init_seed = int(init_seq.generate_state(1)[0])
    workload = build_workload(scenario, len(fleet), init_seed, executor, cache, plugins)
    server = server_from_scenario(scenario, len(fleet), workload.aggregator, np.random.default_rng(server_seq))
    return Simulation(fleet, workload, server, monitor_from_scenario(scenario), seed=scenario.seed, budget=budget,
                      name=scenario.name, observers=observers)
