"""The scenario-field reference, generated from the schema so the docs cannot drift.

`python -m sim.scenario.reference` prints the Markdown table that README.md embeds between the
markers `<!-- scenario-reference:start -->` and `<!-- scenario-reference:end -->`;
`python -m sim.scenario.reference --write README.md` rewrites that block in place.
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
from pydantic_core import PydanticUndefined

from sim.scenario.schema import Scenario

__all__ = ["END", "START", "scenario_reference", "update_readme"]

START = "<!-- scenario-reference:start -->"
END = "<!-- scenario-reference:end -->"


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
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


def _row(path: str, default: Any, allowed: str, desc: str) -> str:
    return f"| `{path}` | {_default(default)} | {allowed or '-'} | {desc.replace('|', chr(92) + '|')} |"


def _field_row(path: str, field: FieldInfo, desc: str) -> str:
    return _row(path, field.get_default(call_default_factory=True), _allowed(field), desc)


def _strategy_rows(prefix: str) -> list[str]:
    """One row per field of the registered strategies' settings: shared fields once, the others named by owner."""
    from sim.plugins import STRATEGIES

    members: dict[type[BaseModel], list[str]] = {}
    for name, cls in STRATEGIES.items():
        members.setdefault(cls, []).append(name)
    label = {cls: getattr(cls, "family", None) or names[0] for cls, names in members.items()}
    shared = set.intersection(*(set(m.model_fields) for m in members)) - {"name"}
    plain = [label[m] for m in members if getattr(m, "family", None) is None]
    families = [f"{label[m]} ({', '.join(names)})" for m, names in members.items() if getattr(m, "family", None)]
    every = [n for names in members.values() for n in names]
    rows = [_row(f"{prefix}name", "ppafl", " \\| ".join(every),
                 f"Aggregation strategy: {', '.join(plain)}" + (f", or one of {'; '.join(families)}" if families else "")
                 + " (see 'Strategy presets'), or a plugin's.")]
    seen = set()
    for m in members:
        for field_name, field in m.model_fields.items():
            if field_name == "name" or field_name in seen:
                continue
            seen.add(field_name)
            owners = [] if field_name in shared else [label[o] for o in members if field_name in o.model_fields]
            desc = (", ".join(owners) + ": " if owners else "") + (field.description or "")
            rows.append(_field_row(f"{prefix}{field_name}", field, desc))
    return rows


def _options_rows(registry: Any, prefix: str, selector: str) -> list[str]:
    """Rows of each registered component's own settings (those that have any), named by the component."""
    rows = []
    for name, entry in registry.items():
        config = getattr(entry, "config", None)
        if config is None:
            continue
        for field_name, field in config.model_fields.items():
            rows.append(_field_row(f"{prefix}{field_name}", field, f"{selector}: {name}: {field.description or ''}"))
    return rows


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    from sim.plugins import DATASETS, MODELS, PRIVACY_SCHEMES

    _REGISTERED.update({"data.dataset": DATASETS, "training.model": MODELS, "encryption.scheme": PRIVACY_SCHEMES})
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        if path == "strategy":
            rows.extend(_strategy_rows("strategy."))
            continue
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(_rows(ann, path + "."))
            continue
        registry = _REGISTERED.get(path)
        if registry is not None:
            names = " \\| ".join(registry.names())
            rows.append(_row(path, field.get_default(call_default_factory=True), f"{names} (or a plugin's)",
                             field.description or ""))
            continue
        rows.append(_field_row(path, field, field.description or ""))
        if path == "data.options":
            rows.extend(_options_rows(DATASETS, "data.options.", "dataset"))
        elif path == "training.model_options":
            rows.extend(_options_rows(MODELS, "training.model_options.", "model"))
    return rows


_REGISTERED: dict[str, Any] = {}  # fields that name a registered component: their registry


def _preset_rows() -> list[str]:
    from fl.strategies import PRESETS

    rows = ["| preset | reproduces | its fixed ppafl settings |", "| --- | --- | --- |"]
    for name, p in PRESETS.items():
        settings = ", ".join(f"{k}: {json.dumps(v)}" for k, v in p.settings.items())
        if p.prox_mu is not None:
            settings += f"; prox_mu {p.prox_mu:g} unless strategy.prox_mu is set"
        rows.append(f"| `{name}` | {p.reproduces} | {settings} |")
    return rows


def _failure_rows() -> list[str]:
    """The registered failure sources of `failures.sources` with their settings."""
    from sim.plugins import FAILURES

    rows = ["| name | what it does | its settings |", "| --- | --- | --- |"]
    for name, plugin in FAILURES.items():
        fields = ", ".join(f"`{f}`" for f in plugin.config.model_fields)
        rows.append(f"| `{name}` | {plugin.description} | {fields} |")
    return rows


def scenario_reference() -> str:
    """Every scenario field with its default and description (units inside), as a Markdown table."""
    from devices import BatterySpec, ComputeSpec, LinkSpec, MainsCharging, SolarHarvest
    from sim.scenario.schema import FleetGroup

    header = ["| field | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    lines = [*header, *_rows(Scenario, "")]
    lines += ["", "Strategy presets (`strategy.name`): named settings of ppafl for the reference code's baselines",
              "and its scheme (see docs/reproduction.md); they take the common strategy fields only:", "",
              *_preset_rows()]
    lines += ["", "Failure sources (`failures.sources[]`: `{name: ..., its settings}`; the built-in ones also have the",
              "shorthand fields above):", "", *_failure_rows()]
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
