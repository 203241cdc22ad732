"""Scenario sections whose settings class a registry chooses: `strategy` (by its `name`), `data.options` (by
`data.dataset`), `training.model_options` (by `training.model`) and each entry of `failures.sources` (by its
`name`).

The chosen class validates the raw mapping as the rest of the schema is validated: unknown
keys rejected, numbers finite, a boolean where a number belongs refused (also where a
plugin's own settings class would let them pass). Its errors are
located under the registered name (e.g. `("strategy", "fedbuff", "buffer_size")`), which
`sim.scenario.errors` drops again when it shows the location.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from devices.specs import BooleanNumberError, reject_boolean_numbers
from sim.plugins import DATASETS, FAILURES, MODELS, STRATEGIES, Registry

__all__ = ["PLUGIN_SECTIONS", "UNKNOWN_PLUGIN", "plugin_at", "validate_plugin_section"]

UNKNOWN_PLUGIN = "unknown_plugin"  # the error type of a name no registry knows
# Where a registered name selects the settings class: the location before the name, and the registry.
PLUGIN_SECTIONS: tuple[tuple[tuple[str, ...], Registry[Any]], ...] = (
    (("strategy",), STRATEGIES),
    (("data", "options"), DATASETS),
    (("training", "model_options"), MODELS),
    (("failures", "sources", "*"), FAILURES),
)


def settings_class(registry: Registry[Any], name: str) -> type[BaseModel] | None:
    """The settings class of a registered name: a strategy's is the entry itself, other kinds hold it as `config`."""
    entry = registry.get(name)
    return entry if isinstance(entry, type) else getattr(entry, "config", None)


def validate_plugin_section(registry: Registry[Any], name: Any, raw: Any, at: tuple[str, ...] = ()) -> BaseModel | None:
    """`raw` validated by the settings class of `name` in `registry` (None: the component takes no settings).

    Raises a ValidationError located under `at` (the settings' field, when the validator runs
    on the section that holds it) and the name, or one of type `unknown_plugin` whose message
    lists the known names and how to register one.
    """
    if not isinstance(name, str) or name not in registry:
        raise PydanticCustomError(UNKNOWN_PLUGIN, "{message}", {"message": registry.unknown(name)})
    cls = settings_class(registry, name)
    if cls is None:
        if raw:
            raise PydanticCustomError(UNKNOWN_PLUGIN, "{message}", {
                "message": f"{registry.kind} {name!r} takes no settings, got {', '.join(map(str, raw))}"})
        return None
    if isinstance(raw, cls):
        return raw
    strict = _strictly(cls, raw, (*at, name))
    if strict:
        raise ValidationError.from_exception_data(cls.__name__, strict)
    try:
        if isinstance(raw, dict):
            reject_boolean_numbers(cls, raw)
        return cls.model_validate(raw)
    except BooleanNumberError as exc:
        details = [InitErrorDetails(type="value_error", loc=(*at, name), input=raw, ctx={"error": exc})]
    except ValidationError as exc:
        details = [InitErrorDetails(type=e["type"], loc=(*at, name, *e["loc"]), input=e["input"],
                                    ctx=e.get("ctx") or {}) for e in exc.errors()]
    raise ValidationError.from_exception_data(cls.__name__, details)


def _strictly(cls: type[BaseModel], raw: Any, at: tuple[Any, ...]) -> list[InitErrorDetails]:
    """What the schema refuses everywhere even where a plugin's settings class would let it pass: unknown keys and
    numbers that are not finite."""
    if not isinstance(raw, dict):
        return []
    known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
    out = [InitErrorDetails(type="extra_forbidden", loc=(*at, key), input=value)
           for key, value in raw.items() if key not in known]
    out += [InitErrorDetails(type="finite_number", loc=(*at, key), input=value)
            for key, value in raw.items() if isinstance(value, float) and not math.isfinite(value)]
    return out


def plugin_at(loc: tuple[Any, ...]) -> tuple[int, Registry[Any]] | None:
    """(position of the registered name in an error location, its registry) if `loc` lies in a plugin section."""
    for prefix, registry in PLUGIN_SECTIONS:
        n = len(prefix)
        if len(loc) > n and all(p == "*" and isinstance(x, int) or p == x for p, x in zip(prefix, loc[:n], strict=True)):
            return n, registry
    return None
