"""The scenario-field reference, generated from the schema so the docs cannot drift.

`python -m sim.reference` prints the Markdown table that README.md embeds between the
markers `<!-- scenario-reference:start -->` and `<!-- scenario-reference:end -->`;
`python -m sim.reference --write README.md` rewrites that block in place.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sim.scenario import Scenario

__all__ = ["END", "START", "scenario_reference", "update_readme"]

START = "<!-- scenario-reference:start -->"
END = "<!-- scenario-reference:end -->"


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, tuple):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    return "`" + json.dumps(value) + "`" if not isinstance(value, dict) or value else "`{}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(_rows(ann, path + "."))
            continue
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_default(field.get_default(call_default_factory=True))} | {desc} |")
    return rows


def scenario_reference() -> str:
    """Every scenario field with its default and description (units inside), as a Markdown table."""
    from devices import BatterySpec, ComputeSpec, LinkSpec, MainsCharging, SolarHarvest
    from sim.scenario import FleetGroup

    header = ["| field | default | meaning |", "| --- | --- | --- |"]
    lines = [*header, *_rows(Scenario, "")]
    lines += ["", "Each entry of `fleet.groups` has:", "", *header, *_rows(FleetGroup, "fleet.groups[].")]
    overrides = [
        ("compute", ComputeSpec),
        ("battery", BatterySpec),
        ("link_overrides", LinkSpec),
        ("battery.recharge (kind: mains)", MainsCharging),
        ("battery.recharge (kind: solar)", SolarHarvest),
    ]
    for name, spec in overrides:
        lines += ["", f"Keys of `fleet.groups[].{name}` (the default shown is the spec's; each device or",
                  "link class sets its own, see docs/devices.md):", "", *header, *_rows(spec, "")]
    return "\n".join(lines)


def update_readme(path: Path) -> bool:
    """Rewrite the reference block of `path`; True if it changed."""
    text = path.read_text(encoding="utf-8")
    head, sep1, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep1 and sep2):
        raise ValueError(f"{path}: markers {START} ... {END} not found")
    new = f"{head}{START}\n{scenario_reference()}\n{END}{tail}"
    path.write_text(new, encoding="utf-8")
    return new != text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="rewrite the reference block of this Markdown file")
    args = parser.parse_args()
    if args.write:
        changed = update_readme(args.write)
        print(f"{args.write}: {'updated' if changed else 'already up to date'}")
    else:
        print(scenario_reference())


if __name__ == "__main__":
    main()
