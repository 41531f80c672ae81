"""Check loaded JSON against the shipped report schema, naming the first bad field.

A small validator for the keywords the schema uses (``type``, ``const``, ``enum``,
``required``, ``properties``, ``additionalProperties``, ``items``, ``maxItems``,
``minimum``, ``pattern`` and local ``$ref``), plus what JSON Schema cannot say but
our readers need: every number finite and within float range, no string with a lone
surrogate (it cannot be printed or written as UTF-8). jsonschema is a test
dependency only; this keeps ``load_report`` strict without it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

__all__ = ["first_error", "json_problem"]

_MAX_ABS = 1.7e308  # what a float can hold; larger ints overflow float arithmetic
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 300  # after the translation: a run of 300 digits


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.isidentifier() and p.isascii():
            out += f".{p}" if out else p
        else:
            out += f"[{p!r}]"
    return out or "(top level)"


def json_problem(value: Any, parts: tuple[str | int, ...] = ()) -> str | None:
    """The first value no reader can use: a non-finite or huge number, a lone surrogate."""
    try:  # fast path: the C encoder finds NaN/inf and surrogates; a long digit run is
        # only a possible huge number, which the walk below then pins down
        raw = json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        if _LONG_DIGITS not in raw.translate(_DIGITS_TO_ZERO):
            return None
    except (ValueError, UnicodeEncodeError, TypeError, RecursionError):
        pass
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, parts)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if _has_surrogate(key):
                    return f"{_path(where)}: key {key!r} contains a lone surrogate"
                stack.append((sub, (*where, key)))
        elif isinstance(item, list):
            stack.extend((sub, (*where, i)) for i, sub in enumerate(item))
        elif isinstance(item, str):
            if _has_surrogate(item):
                return f"{_path(where)}: text contains a lone surrogate (not valid Unicode)"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > _MAX_ABS:
                return f"{_path(where)}: number too large ({len(str(abs(item)))} digits)"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{_path(where)}: {item} is not a finite number"
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _errors(value: Any, schema: dict[str, Any], root: dict[str, Any],
            where: tuple[str | int, ...]) -> Iterator[str]:
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        yield from _errors(value, node, root, where)
        return
    here = _path(where)
    if "const" in schema and value != schema["const"]:
        yield f"{here}: expected {schema['const']!r}, got {_short(value)}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{here}: {_short(value)} is not one of {', '.join(map(str, schema['enum']))}"
        return
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            yield f"{here}: expected {' or '.join(kinds)}, got {_short(value)}"
            return
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                yield f"{here}: missing field {key!r}"
                return
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                yield from _errors(sub, props[key], root, (*where, key))
            elif isinstance(extra, dict):
                yield from _errors(sub, extra, root, (*where, key))
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield f"{here}: more than {schema['maxItems']} items"
        items = schema.get("items")
        if items == {"type": "number"} and all(
                _is(v, "number") and math.isfinite(v) for v in value):
            return  # the common case (latency samples), without a call per sample
        if items is not None:
            for i, sub in enumerate(value):
                yield from _errors(sub, items, root, (*where, i))
    elif isinstance(value, str) and "pattern" in schema:
        if not _pattern(schema["pattern"]).search(value):
            yield f"{here}: {_short(value)} does not match {schema['pattern']}"
    elif _is(value, "number") and "minimum" in schema and value < schema["minimum"]:
        yield f"{here}: {value} is below the minimum {schema['minimum']}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def first_error(data: Any, schema: dict[str, Any]) -> str | None:
    """The first problem of ``data`` against ``schema`` ("field.path: what"), or None."""
    problem = json_problem(data)
    if problem is not None:
        return problem
    return next(_errors(data, schema, schema, ()), None)
