"""The scenario-field reference, generated from the schema so the docs cannot drift.

`python -m sim.reference` prints the Markdown table that README.md embeds between the
markers `<!-- scenario-reference:start -->` and `<!-- scenario-reference:end -->`;
`python -m sim.reference --write README.md` rewrites that block in place.
"""

from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

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


def _number(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return f"{v:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _allowed(field: FieldInfo) -> str:
    """The values a field accepts, from its type and constraints: `[1, 1e+06]`, `(0, 1]`, `a \\| b`."""
    ann = field.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    nullable = type(None) in typing.get_args(ann)
    inner = args[0] if nullable and len(args) == 1 else ann
    text = ""
    if typing.get_origin(inner) is Literal:
        text = " \\| ".join(str(v) for v in typing.get_args(inner))
    elif inner is bool:
        text = "true \\| false"
    else:
        lo = hi = ""
        lo_open = hi_open = False
        lengths = []
        for m in field.metadata:
            if isinstance(m, at.Ge | at.Gt):
                lo, lo_open = _number(m.ge if isinstance(m, at.Ge) else m.gt), isinstance(m, at.Gt)
            elif isinstance(m, at.Le | at.Lt):
                hi, hi_open = _number(m.le if isinstance(m, at.Le) else m.lt), isinstance(m, at.Lt)
            elif isinstance(m, at.MinLen):
                lengths.append(f"length >= {m.min_length}")
            elif isinstance(m, at.MaxLen):
                lengths.append(f"length <= {m.max_length}")
        if lo and hi:
            text = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        elif lo:
            text = f"{'>' if lo_open else '>='} {lo}"
        elif hi:
            text = f"{'<' if hi_open else '<='} {hi}"
        text = ", ".join(filter(None, [text, *lengths]))
    return text + (" or null" if nullable and text else "")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(_rows(ann, path + "."))
            continue
        desc = (field.description or "").replace("|", "\\|")
        default = _default(field.get_default(call_default_factory=True))
        rows.append(f"| `{path}` | {default} | {_allowed(field) or '-'} | {desc} |")
    return rows


def scenario_reference() -> str:
    """Every scenario field with its default and description (units inside), as a Markdown table."""
    from devices import BatterySpec, ComputeSpec, LinkSpec, MainsCharging, SolarHarvest
    from sim.scenario import FleetGroup

    header = ["| field | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    lines = [*header, *_rows(Scenario, "")]
    lines += ["", "Each entry of `fleet.groups` has:", "", *header, *_rows(FleetGroup, "fleet.groups[].")]
    overrides: list[tuple[str, type[BaseModel]]] = [
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
