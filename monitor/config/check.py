"""One line for a bad configuration: which key, in which table, from which file or variable, and the rule.

pydantic reports an error as a location such as `("channels", 1, "webhook", "url")` and a message. This
module walks the settings' own models alongside that location, so that the line reads like the TOML the
user wrote (`invalid url in [[channels]] #2: …`), names where the value came from (the config file, the
`TIERDRIFT_…` variable, `--db`), and shows the value only when it cannot be a secret. Unknown keys are
found before pydantic runs, with a suggestion from the known names (`difflib`).
"""

from __future__ import annotations

import difflib
import json
import os
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic_core import ErrorDetails

from monitor.config.paths import redact_url

#: Where a set of raw values came from, and the values: ("config file /x.toml", {...}).
Origin = tuple[str, Mapping[str, Any]]
Loc = tuple[str | int, ...]  # a pydantic error location

_MAX_SHOWN = 80
#: `[webhook]`, `[[webhooks]]`, `[email]`, `[smtp]`: tables that people write for what is a `[[channels]]` table.
_CHANNEL_WORDS = ("webhook", "email", "e-mail", "mail", "smtp", "channel", "slack", "discord")
ENV_PREFIX = "TIERDRIFT_"


def _unwrap(annotation: Any) -> Any:
    """`X` for `Annotated[X, …]` and for `X | None`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation (after `_unwrap`) stands for: one, several for a tagged union, or none."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _models(a)]
    return []


def _tag(model: type[BaseModel]) -> str | None:
    """The value of a channel model's `type` discriminator (`Literal["webhook"]`), if it has one."""
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    return str(get_args(field.annotation)[0])


def _pick(models: Sequence[type[BaseModel]], item: Mapping[str, Any]) -> type[BaseModel] | None:
    if len(models) == 1:
        return models[0]
    return next((m for m in models if _tag(m) == item.get("type")), None)


def _is_secret(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    return annotation is SecretStr


# -- unknown keys --------------------------------------------------------------------------------------


def unknown_key(data: Mapping[str, Any], model: type[BaseModel], table: str = "") -> tuple[Loc, str] | None:
    """The first key of `data` (raw TOML or environment values) that `model` does not know, as its path and
    a message: "unknown key 'apikey' in [binance] (did you mean 'api_key'?)". A `[[channels]]` table
    without a known `type` is reported here too. Values are never quoted: a misspelled key may hold a key."""
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            return (key,), _unknown(key, model, table, is_table=_is_table(value))
        for sub_path, sub, sub_model, sub_table in _nested(key, value, field.annotation, table):
            if sub_model is None:
                types_ = " or ".join(f'"{_tag(m)}"' for m in _models(_element(field.annotation)))
                return (key, *sub_path), f"{sub_table} needs type = {types_}"
            found = unknown_key(sub, sub_model, sub_table)
            if found:
                return (key, *sub_path, *found[0]), found[1]
    return None


def _element(annotation: Any) -> Any:
    annotation = _unwrap(annotation)
    return get_args(annotation)[0] if get_origin(annotation) is list else annotation


def _nested(
    key: str, value: Any, annotation: Any, table: str
) -> Iterator[tuple[Loc, Mapping[str, Any], type[BaseModel] | None, str]]:
    """The sub-tables of `value` to check: a table (`[binance]`) or each table of an array (`[[channels]]`)."""
    annotation = _unwrap(annotation)
    models = _models(annotation)
    if models and isinstance(value, Mapping):
        yield (), value, _pick(models, value), _table_name(table, key)
    elif get_origin(annotation) is list and isinstance(value, list):
        models = _models(get_args(annotation)[0])
        for i, item in enumerate(value):
            if models and isinstance(item, Mapping):
                yield (i,), item, _pick(models, item), f"[[{key}]] #{i + 1}" if not table else f"{table} {key} #{i + 1}"


def _table_name(parent: str, key: str) -> str:
    return f"[{key}]" if not parent else f"{key} of {parent}"


def _unknown(key: str, model: type[BaseModel], table: str, *, is_table: bool) -> str:
    """The message for an unknown key, with the closest known key of this table (or, for a plain value,
    of a table below it: `apikey` at the top most likely belongs in `[binance]`)."""
    where = f" in {table}" if table else ""
    if is_table and key.lower().rstrip("s") in _CHANNEL_WORDS and "channels" in model.model_fields:
        return f'unknown key {key!r}{where} (alert channels are [[channels]] tables with type = "webhook" or "email")'
    close = _closest(key, list(model.model_fields))
    if close:
        return f"unknown key {key!r}{where} (did you mean {close!r}?)"
    for name, field in model.model_fields.items():
        for sub in [] if is_table else _models(field.annotation):
            close = _closest(key, list(sub.model_fields))
            if close:
                return f"unknown key {key!r}{where} (did you mean {close!r} in {_table_name(table, name)}?)"
    return f"unknown key {key!r}{where}"


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) or (isinstance(value, list) and any(isinstance(v, Mapping) for v in value))


def _closest(key: str, known: list[str]) -> str | None:
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


# -- bad values ----------------------------------------------------------------------------------------


def describe(error: ErrorDetails, model: type[BaseModel], origins: Sequence[Origin]) -> str:
    """One line for one pydantic error: origin, key, table, the value unless it may be secret, the rule."""
    loc = tuple(error["loc"])
    kind = error["type"]
    origin = origin_of(loc[:-1] if kind == "missing" else loc, origins)
    key, table, annotation = _place(loc, model)
    prefix = f"{origin}: " if origin else ""
    where = f" in {table}" if table else ""
    if key is None:
        return f"{prefix}{table + ': ' if table else ''}{_rule(error)}"
    if kind == "missing":
        return f"{prefix}missing key {key!r}{where}"
    if kind == "extra_forbidden":
        return f"{prefix}unknown key {key!r}{where}"
    return f"{prefix}invalid {key}{_shown(key, annotation, error.get('input'))}{where}: {_rule(error)}"


def origin_of(loc: Loc, origins: Sequence[Origin]) -> str:
    """Where the value at `loc` came from: the first origin (highest precedence) that holds it."""
    for label, data in origins:
        if _holds(data, loc):
            return env_var(loc) if label == "environment" else label
    return ""


def _holds(data: Any, loc: Loc) -> bool:
    """Whether raw `data` has a value at `loc` (a value that is not a table or list holds all below it)."""
    if not loc:
        return True
    part, rest = loc[0], loc[1:]
    if isinstance(data, Mapping) and isinstance(part, str):
        if part in data:
            return _holds(data[part], rest)
        return data.get("type") == part and _holds(data, rest)  # a tagged union's tag is no key
    if isinstance(data, list) and isinstance(part, int):
        return part < len(data) and _holds(data[part], rest)
    return not isinstance(data, Mapping | list)


def env_var(loc: Loc) -> str:
    """The `TIERDRIFT_…` variable that set `loc`: the nested form (`TIERDRIFT_BINANCE__API_KEY`) when it is
    set, else the top-level one that carries JSON."""
    keys: list[str] = []
    for part in loc:
        if not isinstance(part, str):
            break
        keys.append(part)
    present = {name.upper(): name for name in os.environ}
    for n in range(len(keys), 0, -1):
        name = ENV_PREFIX + "__".join(keys[:n]).upper()
        if name in present:
            return f"environment variable {present[name]}"
    below = sorted(v for k, v in present.items() if keys and k.startswith(f"{ENV_PREFIX}{keys[0].upper()}__"))
    if below:  # an error about a whole table that only nested variables built
        return f"environment variable {', '.join(below)}"
    return f"environment variable {ENV_PREFIX}{keys[0].upper()}" if keys else "the environment"


def _place(loc: Loc, model: type[BaseModel]) -> tuple[str | None, str, Any]:
    """(key, table, annotation) of `loc`, as the TOML reads: ("url", "[[channels]] #2", SecretStr),
    ("api_key", "[binance]", …), ("bybit-linear", "[source_intervals]", float), and a key of None for
    an error about a whole table: (None, "[binance]", BinanceSettings)."""
    key: str | None = None
    table = ""
    annotation: Any = None
    current: type[BaseModel] | None = model  # the model whose fields the next part names
    union: list[type[BaseModel]] = []  # the models of an array item, until its tag is read
    for part in loc:
        if isinstance(part, int):
            items = _models(_element(annotation)) if key else []
            if items:  # an array of tables: [[channels]] #2
                table = f"[[{key}]] #{part + 1}" if not table else f"{table} {key} #{part + 1}"
                key, annotation = None, None
                current, union = (items[0], []) if len(items) == 1 else (None, items)
            continue  # else an index into a list of plain values: the key is the list's
        tagged = [m for m in union if _tag(m) == part]
        if tagged:
            current, union = tagged[0], []
            continue
        if key is not None:
            table = _table_name(table, key)
        field = current.model_fields.get(part) if current else None
        key = part
        annotation = field.annotation if field else _dict_value(annotation)
        models = _models(annotation)
        current = models[0] if len(models) == 1 else None
    if key is not None and len(_models(annotation)) == 1:
        return None, _table_name(table, key), annotation
    return key, table, annotation


def _dict_value(annotation: Any) -> Any:
    """The value type of a `dict[str, X]` field (an entry of `[source_intervals]`); None otherwise."""
    annotation = _unwrap(annotation)
    return get_args(annotation)[1] if get_origin(annotation) is dict else None


def _rule(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a table"
    return message.replace("Input should be", "must be")


def _shown(key: str, annotation: Any, value: Any) -> str:
    """` = value` for a value that is safe to print; nothing for a secret, a table, or an unknown field."""
    if annotation is None or _is_secret(annotation) or _models(annotation):
        return ""
    if isinstance(value, bool | int | float):
        return f" = {json.dumps(value) if isinstance(value, bool) else value}"
    if isinstance(value, str):
        text = redact_url(value) if key == "database_url" else value
        return f" = {json.dumps(text, ensure_ascii=False)}" if len(text) <= _MAX_SHOWN else ""
    return ""
