"""Run a scenario and write its outputs: metrics, events, device totals, summary, plots (`RunResult.save`).

With an output directory a run is resumable: the directory gets a manifest (see
`sim.manifest`) and a cache of finished training jobs (see `fl.result_cache`). A run
killed at any moment is resumed by running it again: the deterministic simulation
replays from the start, taking the finished jobs from the cache, and ends with outputs
identical to those of an uninterrupted run (only `wall_clock_s` differs). Every output
is written atomically. The cache is deleted once the run has finished, and so is all the
run left behind when it failed before any training job finished (nothing to resume).
Console messages (resuming, the cache's projected size, warnings) go to the `ppafl`
logger; `summary.json` lists the warnings (those found up front, `sim.runner.preflight`, and those the run's
result states, `sim.engine.result`). The plugins loaded in this process go to every worker and into the
manifest: a run is resumed only with the same plugin code.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fl.result_cache import ResultCache
from sim.assembly import build_simulation, clients_per_round
from sim.engine import OUTPUT_FILES, RunBudget, RunResult
from sim.engine.watchdog import DEFAULT_MAX_EVENTS
from sim.files import atomic_write
from sim.plugins import PluginSource, load_plugins, loaded_plugins
from sim.runner.preflight import (
    ResourceEstimate,
    ResourceLimitError,
    check_resources,
    machine_memory_bytes,
    preflight_warnings,
)
from sim.runner.progress import RunProgress
from sim.runner.rundir import RunDir, open_run
from sim.scenario import Scenario

__all__ = [
    "OUTPUT_FILES",
    "RunResult",
    "atomic_write",
    "projected_cache_bytes",
    "run_scenario",
    "write_outputs",
]

log = logging.getLogger("ppafl")


def _simulate(
    scenario: Scenario,
    executor: str,
    progress: bool | RunProgress,
    cache: ResultCache | None,
    budget: RunBudget,
    warnings: list[str],
    plugins: Sequence[PluginSource],
) -> RunResult:
    """Build and run the simulation; finished training jobs go through `cache`; `warnings` from before it ran."""
    bar = RunProgress.of(scenario) if progress is True else progress or None
    sim = build_simulation(scenario, executor=executor, cache=cache, budget=budget, plugins=plugins,
                           observers=[bar] if bar is not None else [])
    result = sim.run()
    result.summary["scenario"] = scenario.to_dict()
    result.summary["warnings"] = warnings + result.summary["warnings"]
    for w in result.summary["warnings"]:
        log.warning("warning: %s", w)
    return result


def _jobs_per_version(scenario: Scenario) -> int:
    """Training jobs one global version takes (the strategy says)."""
    return scenario.strategy.build().jobs_per_version(clients_per_round(scenario, scenario.fleet.num_devices))


def projected_cache_bytes(scenario: Scenario, num_params: int) -> tuple[int, int | None]:
    """(bytes per cached training job, bytes of all of them by the end, None when the run is time-limited)."""
    per_job = ResultCache.entry_nbytes(num_params)
    if scenario.time_only:
        return 0, 0
    versions = scenario.stop.max_versions
    if versions is None:
        return per_job, None
    jobs = versions * _jobs_per_version(scenario) + 2 * clients_per_round(scenario, scenario.fleet.num_devices)
    return per_job, jobs * per_job


def _check_disk(scenario: Scenario, est: ResourceEstimate, out: Path) -> str:
    """How large the resume cache may grow (a line to print); refuse a run whose cache would not fit on the disk."""
    per_job, total = projected_cache_bytes(scenario, est.num_params)
    if not per_job:
        return ""
    if total is None:
        return f"resume cache: {_size(per_job)} per training job in {out / 'cache'} (deleted when the run finishes)"
    where = next(p for p in (out, *out.absolute().parents) if p.exists())
    cached = sum(f.stat().st_size for f in (out / "cache").glob("*.bin")) if (out / "cache").is_dir() else 0
    free = shutil.disk_usage(where).free
    if total > free + cached:  # a resumed run's cached jobs already have their space
        raise ResourceLimitError(
            f"scenario {scenario.name!r}: its resume cache would grow to about {_size(total)} "
            f"({scenario.stop.max_versions:,} versions x {_jobs_per_version(scenario)} training jobs x {_size(per_job)}) "
            f"but {where} has {_size(free)} free{f' (and {_size(cached)} already cached)' if cached else ''}. "
            "Free some space, choose another --out, or run without the cache "
            "(--no-cache: an interrupted run then starts over)"
        )
    return (f"resume cache: up to {_size(total)} in {out / 'cache'} for {scenario.stop.max_versions:,} global versions "
            f"({_size(per_job)} per training job; deleted when the run finishes)")


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    executor: str = "sequential",
    progress: bool | RunProgress = False,
    *,
    overwrite: bool = False,
    command: list[str] | None = None,
    memory_limit: int | None = None,
    budget: RunBudget | None = None,
    cache: bool = True,
    plugins: Sequence[str] = (),
) -> RunResult:
    """Simulate `scenario`; with `out_dir`, resumably, writing the outputs there.

    `plugins` (files or modules) are loaded first; every plugin loaded in this process goes
    to the run's worker processes and into its manifest.

    Refuses up front, before anything is created: an unknown `executor` (ValueError), a
    scenario whose estimated memory exceeds `memory_limit` bytes (default: this machine's
    memory) or whose resume cache would not fit on the disk (`ResourceLimitError`), and one
    in which no device could deliver an update in time (`NoUpdatePossibleError`). With
    `out_dir`: a finished run there is refused unless `overwrite`; an unfinished run of the
    same scenario is resumed; the manifest ends `finished`, `failed` (with the error) or
    `interrupted`. `cache=False` keeps no resume cache (an interrupted run starts over).
    `budget` bounds the run as it goes (`RunBudget`: events, memory, steps without simulated
    progress); by default its memory limit is `memory_limit` (or this machine's memory) and a
    run over it stops with `BudgetExceeded`.
    """
    from fl.executors import EXECUTORS

    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    load_plugins(plugins)
    sources = loaded_plugins()
    est = check_resources(scenario, memory_limit)
    warnings = preflight_warnings(scenario, est.update_nbytes)
    if budget is None:
        limit = machine_memory_bytes() if memory_limit is None else int(memory_limit)
        budget = RunBudget(max_events=DEFAULT_MAX_EVENTS, max_memory_bytes=limit)
    if out_dir is None:
        return _simulate(scenario, executor, progress, None, budget, warnings, sources)
    out = Path(out_dir)
    cache_note = _check_disk(scenario, est, out) if cache else ""
    created = not out.exists()
    run = open_run(out, scenario, OUTPUT_FILES, command=command, overwrite=overwrite,
                   plugins=[p.describe() for p in sources])
    try:
        if cache_note:
            log.info("%s", cache_note)
        if run.resumed:
            entries = sum(1 for _ in run.cache_dir.glob("*.bin")) if run.cache_dir.is_dir() else 0
            log.info("resuming the run in %s (attempt %d): %d finished training jobs cached", out,
                     run.manifest["attempts"], entries)
        return _run_in(run, scenario, executor, progress, budget, cache, warnings, created, sources)
    finally:
        run.close()


def _run_in(
    run: RunDir,
    scenario: Scenario,
    executor: str,
    progress: bool | RunProgress,
    budget: RunBudget,
    use_cache: bool,
    warnings: list[str],
    created: bool,
    plugins: Sequence[PluginSource],
) -> RunResult:
    cache = None
    try:
        cache = ResultCache(run.cache_dir) if use_cache else None
        result = _simulate(scenario, executor, progress, cache, budget, warnings, plugins)
        write_outputs(result, run.path)
    except KeyboardInterrupt:
        if cache is not None:
            cache.remove_temporaries()  # a Ctrl-C can land between a cache write's creating and renaming
        run.mark("interrupted", error="interrupted (Ctrl-C or SIGTERM); run the same command again to resume",
                 training_cache=_cache_stats(cache))
        raise
    except BaseException as exc:
        run.mark("failed", error=f"{type(exc).__name__}: {exc}", training_cache=_cache_stats(cache))
        if cache is None or len(cache) == 0:
            run.discard(remove_folder=created)  # it failed before any training job finished: nothing to resume
        raise
    run.mark("finished", wall_clock_s=result.summary["wall_clock_s"], training_cache=_cache_stats(cache))
    shutil.rmtree(run.cache_dir, ignore_errors=True)  # only needed to resume an unfinished run
    result.manifest = run.manifest
    return result


def _cache_stats(cache: ResultCache | None) -> dict[str, Any] | str | None:
    """The manifest's training_cache: jobs reused and trained, entries rejected, why storing stopped."""
    if cache is None:
        return "off"
    stats: dict[str, Any] = {"jobs_reused": cache.hits, "jobs_trained": cache.misses} if cache.hits + cache.misses else {}
    if cache.rejected:
        stats["entries_rejected"] = cache.rejected
    if cache.write_error is not None:
        stats["write_error"] = cache.write_error
    return stats or None


def write_outputs(result: RunResult, out: Path) -> None:
    """Write a run's output files into `out` (`RunResult.save`)."""
    result.save(out)
