"""Legend labels for `ppafl plot`: one distinct label per run directory, from its summary or manifest."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.runner.rundir import differences

__all__ = ["run_labels"]


def _run_info(d: Path) -> tuple[str, dict[str, Any]]:
    """(scenario name, scenario dict) of a run directory, from summary.json or else manifest.json."""
    for name in ("summary.json", "manifest.json"):
        f = d / name
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{f} is unreadable ({exc}); is {d} a run directory of `ppafl run`?") from None
            scenario = data.get("scenario") if isinstance(data, dict) else None
            if isinstance(scenario, dict):
                return str(scenario.get("name", d.name)), scenario
    return d.name, {}


def run_labels(dirs: Sequence[Path]) -> list[str]:
    """One distinct legend label per run: its scenario's name; runs sharing a name also show the
    fields in which their scenarios differ (e.g. `quickstart (name=fedbuff, seed=1)`), or their folder."""
    info = [_run_info(d) for d in dirs]
    counts = Counter(name for name, _ in info)
    labels = []
    for d, (name, scenario) in zip(dirs, info):
        if counts[name] == 1:
            labels.append(name)
            continue
        others = [s for (n, s) in info if n == name and s is not scenario]
        fields = sorted({f for other in others for f, _, _ in differences(other, scenario)} - {"name"})
        shown = ", ".join(f"{f.rsplit('.', 1)[-1]}={_flat(scenario, f)}" for f in fields[:3])
        labels.append(f"{name} ({shown}{', ...' if len(fields) > 3 else ''})" if shown else f"{name} ({d})")
    repeated = Counter(labels)
    return [f"{label} [{d}]" if repeated[label] > 1 else label for d, label in zip(dirs, labels)]


def _flat(scenario: dict[str, Any], dotted: str) -> Any:
    node: Any = scenario
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
