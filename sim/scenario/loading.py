"""Scenario files: read (size, depth and duplicate-key limits, `sim.scenario.safe_yaml`), relative paths
resolved from the file's folder, `--set` overrides applied, validated into a `Scenario`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sim.errors import ScenarioError
from sim.plugins import DATASETS, FAILURES, Registry, load_plugins
from sim.scenario import safe_yaml
from sim.scenario.errors import format_errors
from sim.scenario.overrides import apply_overrides
from sim.scenario.schema import Scenario

__all__ = ["load_scenario", "read_scenario", "read_scenario_file", "scenario_from_dict"]


def scenario_from_dict(raw: Any, source: str = "<scenario>", overrides: list[str] | None = None) -> Scenario:
    """Validate a raw mapping into a Scenario, or raise ScenarioError naming each problem.

    `overrides` are the `--set` texts already applied to `raw`: a problem in a field one of
    them set is reported as that override's.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(format_errors(err, source, overrides or [])) from None


def read_scenario_file(path: str | Path) -> dict[str, Any]:
    """Read a scenario YAML file into a raw mapping, with one clear line for a missing, huge or broken file."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ScenarioError(f"{p}: is a folder, not a scenario file (see scenarios/ for examples)")
        if p.exists() and not p.is_file():
            raise ScenarioError(f"{p}: is not a regular file (a device or a pipe); give a scenario YAML file")
        if not p.is_file():
            raise ScenarioError(f"{p}: scenario file not found (see scenarios/ for examples)")
        size = p.stat().st_size
        if size > safe_yaml.MAX_BYTES:
            raise ScenarioError(
                f"{p}: {size / 2**20:.1f} MiB is more than a scenario file may hold "
                f"({safe_yaml.MAX_BYTES // 2**20} MiB); traces go in their own files"
            )
        text = p.read_bytes()[: safe_yaml.MAX_BYTES + 1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{p}: not a UTF-8 text file (byte {exc.start})") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{p}: cannot read the scenario file ({exc.strerror if isinstance(exc, OSError) else exc})") from None
    try:
        raw = safe_yaml.load(text.removeprefix("\ufeff"))
    except safe_yaml.YAMLLimitError as exc:
        raise ScenarioError(f"{p}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{p}: a scenario must be a mapping of sections, got {type(raw).__name__}")
    return raw


def _path_fields(registry: Registry[Any], name: Any) -> tuple[str, ...]:
    """The file-path fields of a registered component's settings class (its `path_fields`), if it is registered."""
    if not isinstance(name, str) or name not in registry:
        return ()
    entry = registry.get(name)
    config = entry if isinstance(entry, type) else getattr(entry, "config", None)
    return tuple(getattr(config, "path_fields", ()))


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the file paths a scenario names (data root, data files, traces) relative to its own folder."""

    def fix(node: Any, key: str) -> None:
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and value and "\0" not in value and not Path(value).expanduser().is_absolute():
            node[key] = str((base / Path(value).expanduser()).resolve())

    data = raw.get("data")
    fix(data, "root")
    if isinstance(data, dict):
        for key in _path_fields(DATASETS, data.get("dataset", "mnist5k")):
            fix(data.get("options"), key)
    groups = (raw.get("fleet") or {}).get("groups") if isinstance(raw.get("fleet"), dict) else None
    for g in groups if isinstance(groups, list) else []:
        if isinstance(g, dict):
            fix(g.get("link_overrides"), "bandwidth_trace")
            battery = g.get("battery")
            fix(battery.get("recharge") if isinstance(battery, dict) else None, "trace_path")
    failures = raw.get("failures")
    if isinstance(failures, dict):
        fix(failures.get("availability_trace"), "path")
        for source in failures.get("sources") or [] if isinstance(failures.get("sources"), list) else []:
            for key in _path_fields(FAILURES, source.get("name") if isinstance(source, dict) else None):
                fix(source, key)
    return raw


def read_scenario(path: str | Path) -> dict[str, Any]:
    """Read a scenario file into a raw mapping whose relative paths (data.root, trace files)
    are resolved from the file's folder, as every reader of a scenario file needs them."""
    return _resolve_paths(read_scenario_file(path), Path(path).parent)


def load_scenario(path: str | Path, overrides: list[str] | None = None, plugins: Sequence[str] = ()) -> Scenario:
    """Load, override and validate a scenario file, after loading `plugins` (files or modules, `sim.plugins`).

    Relative paths inside the file (data.root, data files, trace files) are taken relative
    to the file's folder; relative paths given with `--set` are taken relative to the
    working directory.
    """
    load_plugins(plugins)
    overrides = list(overrides or [])
    raw = apply_overrides(read_scenario(path), overrides)
    return scenario_from_dict(raw, source=str(path), overrides=overrides)
