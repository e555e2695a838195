"""The argument checker: a function's JSON schema, checked when the config is read (only what is
enforced may appear) and enforced on every call the agent makes (anything else fails closed)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Every keyword validate_arguments() enforces.
CONSTRAINTS = frozenset({
    "type", "enum", "const", "pattern", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "items", "minItems", "maxItems",
    "properties", "required", "additionalProperties",
})
# Words for the agent's LLM only: they constrain nothing, so they need no enforcing.
ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment"})
TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
# A schema nested deeper than this is not a function's parameters but a trap for the checker.
MAX_DEPTH = 16

_TYPE_WORDS = {"object": "an object", "array": "a list", "string": "a string",
               "boolean": "true or false", "null": "null", "number": "a number",
               "integer": "an integer"}
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_COUNT_KEYS = ("minLength", "maxLength", "minItems", "maxItems")


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is(kind: str, v: Any) -> bool:
    if kind == "object":
        return isinstance(v, Mapping)
    if kind == "array":
        return isinstance(v, list | tuple)
    if kind == "string":
        return isinstance(v, str)
    if kind == "boolean":
        return isinstance(v, bool)
    if kind == "null":
        return v is None
    if kind == "number":
        return _num(v)
    # integer: JSON has one number type, so 2.0 is an integer (as JSON Schema since draft 6 says)
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and math.isfinite(v) and v.is_integer())


def _fmt(v: Any) -> str:
    return format(v, "g") if isinstance(v, float) else str(v)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- at check time ----------------------------------------------------------------------------

def schema_problems(schema: Any, path: str) -> list[str]:
    """What in a schema the checker would not enforce, as `path: message` lines (empty: all of it)."""
    problems: list[str] = []
    _check_schema(schema, path, problems, 0)
    return problems


def _check_schema(schema: Any, path: str, problems: list[str], depth: int) -> None:
    def bad(where: str, message: str) -> None:
        problems.append(f"{where}: {message}")

    if not isinstance(schema, Mapping):
        bad(path, "must be a schema (a mapping)")
        return
    if depth > MAX_DEPTH:
        bad(path, f"nested deeper than {MAX_DEPTH} levels")
        return
    for key in schema:
        if key not in CONSTRAINTS and key not in ANNOTATIONS:
            # Fail closed: a rule that is declared but not enforced would let the agent past it.
            bad(_join(path, str(key)), "is not a keyword speakerd enforces (it knows: "
                + ", ".join(sorted(CONSTRAINTS)) + ")")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or any(not isinstance(k, str) or k not in TYPES for k in kinds):
            bad(_join(path, "type"), "must be one of " + ", ".join(TYPES) + " (or a list of them)")
    for key in ("enum",):
        if key in schema and (not isinstance(schema[key], list) or not schema[key]):
            bad(_join(path, key), "must be a non-empty list")
    if "pattern" in schema:
        pattern = schema["pattern"]
        if not isinstance(pattern, str):
            bad(_join(path, "pattern"), "must be a string (a regular expression)")
        else:
            try:
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError) as exc:
                bad(_join(path, "pattern"), f"is not a valid regular expression: {exc}")
    for key in _NUMBER_KEYS:
        if key in schema:
            v = schema[key]
            if not _num(v) or not math.isfinite(v):
                bad(_join(path, key), "must be a finite number")
            elif key == "multipleOf" and v <= 0:
                bad(_join(path, key), "must be greater than 0")
    for key in _COUNT_KEYS:
        if key in schema:
            v = schema[key]
            if not (isinstance(v, int) and not isinstance(v, bool)) or v < 0:
                bad(_join(path, key), "must be a whole number ≥ 0")
    if "items" in schema:
        _check_schema(schema["items"], _join(path, "items"), problems, depth + 1)
    if "properties" in schema:
        props = schema["properties"]
        if not isinstance(props, Mapping):
            bad(_join(path, "properties"), "must be a mapping of name to schema")
        else:
            for name, sub in props.items():
                _check_schema(sub, _join(_join(path, "properties"), str(name)), problems, depth + 1)
    if "required" in schema:
        req = schema["required"]
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
            bad(_join(path, "required"), "must be a list of property names")
    if "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        if not isinstance(extra, bool):
            _check_schema(extra, _join(path, "additionalProperties"), problems, depth + 1)


# --- at call time -----------------------------------------------------------------------------

def validate_arguments(schema: Mapping[str, Any], args: Any) -> list[str]:
    """The problems of `args` under `schema` as `path: message` lines; empty means valid.

    Fails closed: a schema keyword or type it does not enforce is itself a problem, so a schema
    that slipped past the config check cannot let an argument through unchecked.
    """
    problems: list[str] = []
    try:
        _check(schema, args, "", problems, 0)
    except RecursionError:
        problems.append("arguments: nested too deeply")
    if not problems and not isinstance(args, Mapping):
        problems.append("arguments: must be an object")
    return problems


def _check(schema: Any, value: Any, path: str, problems: list[str], depth: int) -> None:
    where = path or "arguments"

    def bad(message: str) -> None:
        problems.append(f"{where}: {message}")

    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        bad("the function's schema cannot be checked")
        return
    unknown = [k for k in schema if k not in CONSTRAINTS and k not in ANNOTATIONS]
    if unknown:
        bad("the function's schema uses what speakerd does not enforce: "
            + ", ".join(str(k)[:40] for k in unknown))
        return
    if isinstance(value, float) and not math.isfinite(value):
        bad("must be a finite number")
        return
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or any(not isinstance(k, str) or k not in TYPES for k in kinds):
            bad("the function's schema has an unknown type")
            return
        if not any(_is(k, value) for k in kinds):
            bad("must be " + " or ".join(_TYPE_WORDS[k] for k in kinds))
            return  # the other checks would only repeat the same problem
    if "enum" in schema:
        enum = schema["enum"]
        if not isinstance(enum, list) or not any(same(value, e) for e in enum):
            shown = ", ".join(json.dumps(e, default=str)[:40] for e in enum) \
                if isinstance(enum, list) else "(none)"
            bad(f"must be one of {shown}")
    if "const" in schema and not same(value, schema["const"]):
        bad(f"must be {json.dumps(schema['const'], default=str)[:60]}")
    if _num(value):
        _check_number(schema, value, bad)
    if isinstance(value, str):
        _check_string(schema, value, bad)
    if isinstance(value, list | tuple):
        _check_counts(schema, len(value), "minItems", "maxItems", "items", bad)
        if "items" in schema:
            for i, item in enumerate(value):
                _check(schema["items"], item, f"{path}[{i}]" if path else f"[{i}]", problems,
                       depth + 1)
    if isinstance(value, Mapping):
        _check_object(schema, value, path, problems, depth)


def _check_number(schema: Mapping[str, Any], value: float, bad: Callable[[str], None]) -> None:
    for key in _NUMBER_KEYS:
        if key in schema and (not _num(schema[key]) or not math.isfinite(schema[key])):
            bad(f"the function's schema has a bad {key}")
            return
    if "minimum" in schema and value < schema["minimum"]:
        bad(f"must be ≥ {_fmt(schema['minimum'])}")
    if "maximum" in schema and value > schema["maximum"]:
        bad(f"must be ≤ {_fmt(schema['maximum'])}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        bad(f"must be > {_fmt(schema['exclusiveMinimum'])}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        bad(f"must be < {_fmt(schema['exclusiveMaximum'])}")
    if "multipleOf" in schema and not _multiple(value, schema["multipleOf"]):
        bad(f"must be a multiple of {_fmt(schema['multipleOf'])}")


def _multiple(value: float, step: float) -> bool:
    """Whether value is a whole multiple of step; floats must pass both ways of asking."""
    if step <= 0:
        return False
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    try:
        quotient = value / step
        return math.isfinite(quotient) and quotient == int(quotient) and value % step == 0
    except (OverflowError, ZeroDivisionError):
        return False


def _check_string(schema: Mapping[str, Any], value: str, bad: Callable[[str], None]) -> None:
    _check_counts(schema, len(value), "minLength", "maxLength", "characters", bad)
    if "pattern" in schema:
        try:
            matched = isinstance(schema["pattern"], str) and re.search(schema["pattern"], value)
        except (re.error, RecursionError, OverflowError):
            matched = None
        if not matched:
            bad("does not have the form the function asks for")


def _check_counts(schema: Mapping[str, Any], n: int, lo_key: str, hi_key: str, noun: str,
                  bad: Callable[[str], None]) -> None:
    lo, hi = schema.get(lo_key), schema.get(hi_key)
    for key, bound in ((lo_key, lo), (hi_key, hi)):
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            bad(f"the function's schema has a bad {key}")
            return
    verb = "have" if noun == "items" else "be"
    if lo is not None and n < lo:
        bad(f"must {verb} at least {lo} {noun}")
    if hi is not None and n > hi:
        bad(f"must {verb} at most {hi} {noun}")


def _check_object(schema: Mapping[str, Any], value: Mapping[str, Any], path: str,
                  problems: list[str], depth: int) -> None:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(props, Mapping) or not isinstance(required, list):
        problems.append(f"{path or 'arguments'}: the function's schema cannot be checked")
        return
    for key in required:
        if not isinstance(key, str) or key not in value:
            problems.append(f"{_join(path, str(key))}: is required")
    for key, item in value.items():
        name = _join(path, str(key)[:64])
        if not isinstance(key, str):
            problems.append(f"{name}: names must be text")
        elif key in props:
            _check(props[key], item, name, problems, depth + 1)
        elif extra is False:
            problems.append(f"{name}: is not allowed")
        elif extra is not True:
            _check(extra, item, name, problems, depth + 1)


def same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 equals 1.0, lists and objects compare item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _num(a) and _num(b):
        return bool(a == b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


# --- a command's placeholders -----------------------------------------------------------------

def placeholder_problems(argv: Sequence[str], parameters: Mapping[str, Any],
                         allow_dash: Sequence[str], names: Sequence[str], path: str) -> list[str]:
    """Why a command's placeholders could become an option or a path the config did not allow.

    `names` are the placeholders in argv. Each must be a declared property; a property that may
    be a string must be bounded by enum, const or an anchored pattern (^...$).
    """
    problems: list[str] = []
    props = parameters.get("properties", {}) if isinstance(parameters, Mapping) else {}
    props = props if isinstance(props, Mapping) else {}
    for name in names:
        where = f"{path}.argv"
        prop = props.get(name)
        if not isinstance(prop, Mapping):
            problems.append(f"{where}: {{{name}}} is not a declared parameter")
            continue
        kind = prop.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if kind is not None else list(TYPES)
        if any(k in ("object", "array") for k in kinds):
            problems.append(f"{where}: {{{name}}} must be a single value (not an object or a list)")
        if "string" in kinds and "enum" not in prop and "const" not in prop:
            pattern = prop.get("pattern")
            if not isinstance(pattern, str):
                problems.append(f"{where}: {{{name}}} may be any text: bound it with enum or "
                                "pattern, so the agent cannot pass an option or a path")
            elif not (pattern.startswith("^") and pattern.endswith("$")
                      and not pattern.endswith("\\$")):
                problems.append(f"{where}: {{{name}}}'s pattern must be anchored (^...$) so it "
                                "bounds the whole value")
    for name in allow_dash:
        if name not in names:
            problems.append(f"{path}.allow_leading_dash: {name} is not a placeholder in argv")
    return problems
