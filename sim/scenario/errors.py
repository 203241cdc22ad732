"""Validation errors in the user's terms: one line per problem, naming the file or the `--set` it came from,
the field path as written, the bad value and what is allowed."""

from __future__ import annotations

import reprlib
from typing import Any

from pydantic import BaseModel, ValidationError

from devices import ProfileError
from devices.profiles import suggest
from devices.specs import BooleanNumberError, error_text, field_at, models_in
from fl.strategies import StrategyConfig
from sim.errors import ScenarioError
from sim.plugins import STRATEGIES
from sim.scenario.overrides import parse_override, short_text
from sim.scenario.schema import Scenario
from sim.scenario.sections import UNKNOWN_PLUGIN, plugin_at

__all__ = ["format_errors"]

_SHORT = reprlib.Repr()  # bad values are shown short: a huge input must not make a huge message
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60
_PROFILE_SECTIONS = {"compute": "compute", "battery": "battery", "link": "link_overrides"}


def _strategy_owners() -> dict[str, list[str]]:
    """Each strategy-specific field and the strategies it belongs to (a family's label, e.g. 'the presets')."""
    owners: dict[str, list[str]] = {}
    common = set(StrategyConfig.model_fields)
    for name, cls in STRATEGIES.items():
        label = getattr(cls, "family", None) or name
        for field in set(cls.model_fields) - common:
            if label not in owners.setdefault(field, []):
                owners[field].append(label)
    return owners


def _strategy_field(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any, str] | None:
    """(location, value, message) for a key of another strategy in the `strategy` section, else None."""
    field = str(loc[-1])
    name = loc[1]
    cls = STRATEGIES.get(name) if name in STRATEGIES else None
    mine = getattr(cls, "family", None) or name
    owners = [o for o in _strategy_owners().get(field, []) if o != mine]
    if not owners:
        return None
    names = [o for o in owners if o in STRATEGIES]
    where = f" (strategy.name: {' or '.join(names)})" if names else ""
    which = "a preset" if mine == "the presets" else name
    return ("strategy", *loc[2:]), _NO_VALUE, f"not a setting of {which}; it belongs to {', '.join(owners)}{where}"


def _unknown_plugin(e: Any, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any, str]:
    """An unknown registered name, shown at the field that names it, with the known names and how to register."""
    message = (e.get("ctx") or {}).get("message") or str(e["msg"])
    given = e.get("input")
    if loc[:1] == ("strategy",):
        return ("strategy", "name"), given.get("name", "ppafl") if isinstance(given, dict) else given, message
    if loc[:2] == ("failures", "sources"):
        return (*loc[:3], "name"), given.get("name") if isinstance(given, dict) else given, message
    field = {"data": "dataset", "training": "model"}.get(str(loc[0]) if loc else "")
    value = given.get(field) if isinstance(given, dict) and field else _NO_VALUE
    return ((loc[0], field) if field else loc), value, message


def _field_at(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, Any]:
    """`devices.specs.field_at` over the whole scenario, into the settings classes of registered components."""
    at = plugin_at(loc)
    if at is None:
        return field_at(Scenario, loc)
    pos, registry = at
    name = loc[pos]
    entry = registry.get(name) if isinstance(name, str) and name in registry else None
    cls = entry if isinstance(entry, type) else getattr(entry, "config", None)
    return field_at(cls, loc[pos + 1:]) if cls is not None else (None, None)


def _shown(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error location as the user wrote it: without the registered name that chose a section's settings."""
    at = plugin_at(loc)
    if at is None:
        return loc
    pos, _ = at
    return (*loc[:pos], *loc[pos + 1:])


_NO_VALUE = object()  # a problem with a key, a section or the whole scenario: its message names the fields


def _problems(err: ValidationError) -> list[tuple[tuple[Any, ...], Any, str]]:
    """(location, value or _NO_VALUE, message) per problem, a device profile's problems at their own place."""
    out: list[tuple[tuple[Any, ...], Any, str]] = []  # located in pydantic's terms
    shown: list[tuple[tuple[Any, ...], Any, str]] = []  # located as the user wrote them
    errors = err.errors()
    for e in errors:
        loc = tuple(e["loc"])
        if e["type"] == UNKNOWN_PLUGIN:
            shown.append(_unknown_plugin(e, loc))
            continue
        special = _strategy_field(loc) if loc[:1] == ("strategy",) and len(loc) > 2 and e["type"] == "extra_forbidden" \
            else None
        if special is not None:
            shown.append(special)
            continue
        if e["type"] == "too_short" and any(tuple(o["loc"])[: len(loc)] == loc and o is not e for o in errors):
            continue  # "no item left after validation": its items' own errors say why
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, ProfileError) and cause.problems:
            for path, value, msg in cause.problems:
                section, *rest = path.split(".")
                where = loc + (_PROFILE_SECTIONS.get(section, section), *rest)
                out.append((where, value if rest and not msg.startswith("unknown") else _NO_VALUE, msg))
        elif isinstance(cause, BooleanNumberError):
            out.append((loc + (cause.field,), cause.value, "a boolean where a number belongs; write a number"))
        elif e["type"] == "extra_forbidden":
            holder, _ = _field_at(loc)
            known = list(holder.model_fields) if holder is not None else []
            hint = suggest(str(loc[-1]), known, list_known=False) if known else "check its spelling"
            out.append((loc, _NO_VALUE, f"unknown key; {hint} (see README 'Scenario fields')"))
        else:
            field = _field_at(loc)[1]
            leaf = field is not None and not models_in(field.annotation) and e["type"] != "missing"
            out.append((loc, e.get("input") if leaf else _NO_VALUE, error_text(e, field)))
    return shown + [(_shown(where), value, msg) for where, value, msg in out]


def format_errors(err: ValidationError, source: str, overrides: list[str]) -> str:
    parsed = []
    for text in overrides:
        try:
            parsed.append((tuple(parse_override(text)[0]), text))
        except ScenarioError:
            continue
    problems = _problems(err)
    lines, blamed_any, blamed_all = [], False, True
    for loc, value, msg in problems:
        names = tuple(str(p) for p in loc)
        blamed = [t for o, t in parsed if _caused_by(o, names, msg)]
        blamed_any, blamed_all = blamed_any or bool(blamed), blamed_all and bool(blamed)
        origin = f"--set {short_text(blamed[-1])}: " if blamed else ""
        shown = "" if value is _NO_VALUE else f" = {_SHORT.repr(value)}"
        lines.append(f"  - {origin}{'.'.join(names) or 'scenario'}{shown}: {msg}")
    what = "invalid --set" if blamed_all else "invalid scenario with its --set" if blamed_any else "invalid scenario"
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return "\n".join([f"{source}: {what} ({count}):", *lines])


def _caused_by(override: tuple[str, ...], loc: tuple[str, ...], msg: str) -> bool:
    """Whether the problem at `loc` comes from the `--set` of `override`: it set that field, or one the
    message names inside that section."""
    if loc[: len(override)] == override:
        return True
    return override[: len(loc)] == loc and (".".join(override) in msg or override[-1] in msg)
