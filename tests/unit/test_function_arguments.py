"""The function argument checker and the argv builder: pure functions, every rule and odd input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speakerd.functions import ActionError, build_argv, schema_problems, validate_arguments


def test_command_placeholders_are_whole_items_only() -> None:
    """Only an argv item that is exactly {name} is replaced; values never add or split items."""
    argv = ("tool", "{a}", "x{a}", "{a}{b}", "{ a }", "{b}")
    assert build_argv(argv, {"a": "1 2", "b": 7}) == ["tool", "1 2", "x{a}", "{a}{b}", "{ a }", "7"]
    assert build_argv(("t", "{flag}"), {"flag": True}) == ["t", "true"]


@pytest.mark.parametrize("value", ["--file=/etc/speakerd/deepgram_api_key", "-n", "-", -5, -0.5])
def test_a_placeholder_never_becomes_an_option(value: Any) -> None:
    """A value starting with '-' (text or a negative number) is refused unless the action allows it."""
    with pytest.raises(ActionError, match="must not start with '-'"):
        build_argv(("date", "{fmt}"), {"fmt": value})
    assert build_argv(("date", "{fmt}"), {"fmt": value}, allow_leading_dash=("fmt",))[1] \
        == (value if isinstance(value, str) else str(value))


# --- validate_arguments --------------------------------------------------------------------

SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "level": {"type": "integer", "minimum": 0, "maximum": 100},
        "mode": {"type": "string", "enum": ["on", "off"]},
        "name": {"type": "string", "minLength": 2, "maxLength": 4},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "step": {"type": "number", "multipleOf": 0.5},
        "flag": {"type": "boolean"},
        "fmt": {"type": "string", "pattern": r"^\+[%A-Za-z: ]+$"},
        "kind": {"const": "x"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 3},
        "inner": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
                  "additionalProperties": False},
        "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "required": ["level"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("args, problems", [
    ({"level": 5}, []),
    ({"level": 5.0, "ratio": 0.5, "step": 1.5, "flag": False, "mode": "on", "name": "ab",
      "tags": ["a"], "inner": {"x": 1}, "fmt": "+%A", "kind": "x", "meta": {"a": 1}}, []),
    ({}, ["level: is required"]),
    ([], ["arguments: must be an object"]),
    ({"level": 101}, ["level: must be ≤ 100"]),
    ({"level": -1}, ["level: must be ≥ 0"]),
    ({"level": 1.5}, ["level: must be an integer"]),
    ({"level": True}, ["level: must be an integer"]),
    ({"level": "7"}, ["level: must be an integer"]),
    ({"level": 1, "ratio": True}, ["ratio: must be a number"]),
    ({"level": 1, "ratio": 0}, ["ratio: must be > 0"]),
    ({"level": 1, "ratio": 1}, ["ratio: must be < 1"]),
    ({"level": 1, "step": 0.3}, ["step: must be a multiple of 0.5"]),
    ({"level": 1, "flag": 0}, ["flag: must be true or false"]),
    ({"level": 1, "mode": "dim"}, ['mode: must be one of "on", "off"']),
    ({"level": 1, "name": "a"}, ["name: must be at least 2 characters"]),
    ({"level": 1, "name": "abcde"}, ["name: must be at most 4 characters"]),
    ({"level": 1, "fmt": "--file=/etc/key"}, ["fmt: does not have the form the function asks for"]),
    ({"level": 1, "kind": "y"}, ['kind: must be "x"']),
    ({"level": 1, "tags": "a"}, ["tags: must be a list"]),
    ({"level": 1, "tags": ["a", 2, "long"]}, ["tags[1]: must be a string",
                                              "tags[2]: must be at most 3 characters"]),
    ({"level": 1, "tags": ["a"] * 4}, ["tags: must have at most 3 items"]),
    ({"level": 1, "inner": {"y": 1}}, ["inner.x: is required", "inner.y: is not allowed"]),
    ({"level": 1, "meta": {"a": "1"}}, ["meta.a: must be an integer"]),
    ({"level": 1, "extra": 1}, ["extra: is not allowed"]),
])
def test_validate_arguments_reports_each_problem(args: Any, problems: list[str]) -> None:
    """Each supported keyword is enforced and reported with the argument's path."""
    assert validate_arguments(SCHEMA, args) == problems


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "colour"}}},
    {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}},
    {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}},
    {"type": "object", "patternProperties": {"^x": {}}},
])
def test_validate_arguments_fails_closed_on_what_it_does_not_enforce(schema: Any) -> None:
    """A keyword or type it does not enforce refuses the call instead of passing it unchecked."""
    assert validate_arguments(schema, {"a": "x"}) != []
    assert schema_problems(schema, "functions[0].parameters") != []


def test_schema_problems_name_each_unenforced_keyword() -> None:
    """check-config names the exact place of each keyword or type that would not be enforced."""
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "format": "date"}, "b": {"type": "colour"},
        "c": {"type": "array", "items": {"oneOf": []}}, "d": {"pattern": "("},
        "e": {"type": "number", "exclusiveMaximum": True}},
        "additionalProperties": {"type": "integer", "multipleOf": 0}}
    wheres = [p.split(": ")[0] for p in schema_problems(schema, "p")]
    assert wheres == ["p.properties.a.format", "p.properties.b.type", "p.properties.c.items.oneOf",
                      "p.properties.d.pattern", "p.properties.e.exclusiveMaximum",
                      "p.additionalProperties.multipleOf"]
    assert schema_problems(SCHEMA, "p") == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=12)
TYPES = st.sampled_from(["object", "string", "number", "integer", "boolean", "array", "null"])
NUMS = st.integers(-5, 5) | st.floats(allow_nan=True) | st.none() | st.text(max_size=2)
SCHEMAS = st.recursive(
    st.fixed_dictionaries({}, optional={
        "type": TYPES | st.lists(TYPES, max_size=2) | st.integers(),
        "enum": st.lists(JSON, max_size=3) | st.text(max_size=2),
        "minimum": NUMS, "maximum": NUMS, "minLength": NUMS, "maxLength": NUMS,
        "multipleOf": NUMS, "pattern": st.text(max_size=4), "const": JSON,
        "additionalProperties": st.booleans() | st.none(),
        "required": st.lists(st.text(max_size=3), max_size=3) | st.integers(),
        "format": st.just("date"),
    }),
    lambda inner: st.fixed_dictionaries({}, optional={
        "type": TYPES,
        "properties": st.dictionaries(st.text(max_size=3), inner, max_size=3) | st.integers(),
        "items": inner | st.lists(inner, max_size=2),
        "required": st.lists(st.text(max_size=3), max_size=3),
        "additionalProperties": st.booleans() | inner,
    }),
    max_leaves=8)


@settings(max_examples=120, deadline=None)
@given(schema=SCHEMAS | JSON, args=JSON)
def test_validate_arguments_never_raises(schema: Any, args: Any) -> None:
    """For any schema (or junk) and any JSON value it returns a list of `path: message` strings."""
    problems = validate_arguments(schema, args)
    assert isinstance(problems, list)
    assert all(isinstance(p, str) and ": " in p for p in problems)
    assert all(isinstance(p, str) and ": " in p for p in schema_problems(schema, "p"))


@settings(max_examples=50, deadline=None)
@given(args=st.dictionaries(st.text(max_size=4), JSON, max_size=4))
def test_validate_arguments_accepts_any_object_under_an_empty_schema(args: Any) -> None:
    """An empty schema constrains nothing but that the arguments are one object."""
    assert validate_arguments({}, args) == []
