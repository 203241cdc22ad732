"""Command-line overrides: `--set key.path=value` applied to a scenario's raw mapping before validation."""

from __future__ import annotations

import copy
from typing import Any

from sim.errors import ScenarioError
from sim.scenario import safe_yaml

__all__ = ["apply_overrides", "parse_override", "short_text"]


def short_text(text: str, most: int = 100) -> str:
    """`text`, cut in the middle when longer than `most` characters (a huge input must not make a huge message)."""
    return text if len(text) <= most else f"{text[: most - 20]}...{text[-17:]}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `key.path=value` into the path and a YAML-parsed value."""
    key, sep, value = text.partition("=")
    path = [p.strip() for p in key.strip().split(".")]
    if not sep or not key.strip() or any(not p for p in path):
        raise ScenarioError(f"--set {short_text(text)!r}: expected KEY.PATH=VALUE, e.g. failures.dropout_rate=0.2")
    try:
        parsed = safe_yaml.load(value) if value.strip() else None
    except safe_yaml.YAMLLimitError as exc:
        raise ScenarioError(f"--set {short_text(text)!r}: {exc}") from None
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `key.path=value` override applied."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = out
        for i, part in enumerate(path):
            where = ".".join(path[: i + 1])
            last = i == len(path) - 1
            if isinstance(node, list):  # an entry of a list, e.g. fleet.groups.0.share
                if not (part.isdigit() and int(part) < len(node)):
                    raise ScenarioError(
                        f"--set {short_text(text)!r}: {'.'.join(path[:i])} has {len(node)} entries, numbered 0 to "
                        f"{len(node) - 1}; {part!r} is not one of them"
                    )
                part_key: Any = int(part)
            elif isinstance(node, dict):
                part_key = part
                if not last and node.get(part) is None:
                    if path[i + 1].isdigit():
                        raise ScenarioError(
                            f"--set {short_text(text)!r}: {where} is not in the scenario file, so it has no entry "
                            f"{path[i + 1]}: set the whole list, e.g. --set '{where}=[{{...}}]'"
                        )
                    node[part] = {}
            else:
                raise ScenarioError(f"--set {short_text(text)!r}: {'.'.join(path[:i])} is a value, not a section")
            if last:
                node[part_key] = value
            else:
                node = node[part_key]
                if not isinstance(node, dict | list):
                    raise ScenarioError(f"--set {short_text(text)!r}: {where} is a value, not a section")
    return out
