"""The function argument checker and the argv builder: pure functions, every rule and odd input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speakerd.functions import build_argv, validate_arguments


def test_command_placeholders_are_whole_items_only() -> None:
    """Only an argv item that is exactly {name} is replaced; values never add or split items."""
    argv = ("tool", "{a}", "x{a}", "{a}{b}", "{ a }", "{b}")
    assert build_argv(argv, {"a": "1 2", "b": 7}) == ["tool", "1 2", "x{a}", "{a}{b}", "{ a }", "7"]
    assert build_argv(("t", "{flag}"), {"flag": True}) == ["t", "true"]


# --- validate_arguments --------------------------------------------------------------------

SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "level": {"type": "integer", "minimum": 0, "maximum": 100},
        "mode": {"type": "string", "enum": ["on", "off"]},
        "name": {"type": "string", "minLength": 2, "maxLength": 4},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
        "inner": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
                  "additionalProperties": False},
    },
    "required": ["level"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("args, problems", [
    ({"level": 5}, []),
    ({"level": 5.0, "ratio": 1, "flag": False, "mode": "on", "name": "ab", "tags": ["a"],
      "inner": {"x": 1}}, []),
    ({}, ["level: is required"]),
    ([], ["arguments: must be an object"]),
    ({"level": 101}, ["level: must be ≤ 100"]),
    ({"level": -1}, ["level: must be ≥ 0"]),
    ({"level": 1.5}, ["level: must be an integer"]),
    ({"level": True}, ["level: must be an integer"]),
    ({"level": "7"}, ["level: must be an integer"]),
    ({"level": 1, "ratio": True}, ["ratio: must be a number"]),
    ({"level": 1, "flag": 0}, ["flag: must be true or false"]),
    ({"level": 1, "mode": "dim"}, ['mode: must be one of "on", "off"']),
    ({"level": 1, "name": "a"}, ["name: must be at least 2 characters"]),
    ({"level": 1, "name": "abcde"}, ["name: must be at most 4 characters"]),
    ({"level": 1, "tags": "a"}, ["tags: must be a list"]),
    ({"level": 1, "tags": ["a", 2, "long"]}, ["tags[1]: must be a string",
                                              "tags[2]: must be at most 3 characters"]),
    ({"level": 1, "inner": {"y": 1}}, ["inner.x: is required", "inner.y: is not allowed"]),
    ({"level": 1, "extra": 1}, ["extra: is not allowed"]),
])
def test_validate_arguments_reports_each_problem(args: Any, problems: list[str]) -> None:
    """Each supported keyword is enforced and reported with the argument's path."""
    assert validate_arguments(SCHEMA, args) == problems


def test_validate_arguments_is_lenient_about_unknown_schema_parts() -> None:
    """Unknown keywords, an odd type name or additionalProperties left open add no problems."""
    schema = {"type": "object", "properties": {"a": {"type": "colour", "pattern": "^x"}}}
    assert validate_arguments(schema, {"a": 1, "b": [1]}) == []
    assert validate_arguments({"type": ["string", "null"]}, None) == []
    assert validate_arguments({"enum": [True]}, 1) == ['arguments: must be one of true']


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
        "additionalProperties": st.booleans() | st.none(),
        "required": st.lists(st.text(max_size=3), max_size=3) | st.integers(),
    }),
    lambda inner: st.fixed_dictionaries({}, optional={
        "type": TYPES,
        "properties": st.dictionaries(st.text(max_size=3), inner, max_size=3) | st.integers(),
        "items": inner | st.lists(inner, max_size=2),
        "required": st.lists(st.text(max_size=3), max_size=3),
        "additionalProperties": st.booleans(),
    }),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(schema=SCHEMAS | JSON, args=JSON)
def test_validate_arguments_never_raises(schema: Any, args: Any) -> None:
    """For any schema from the subset (or junk) and any JSON value it returns a list of strings."""
    problems = validate_arguments(schema, args)
    assert isinstance(problems, list)
    assert all(isinstance(p, str) and ": " in p for p in problems)


@settings(max_examples=100, deadline=None)
@given(args=JSON)
def test_validate_arguments_accepts_anything_under_an_empty_schema(args: Any) -> None:
    """An empty schema constrains nothing."""
    assert validate_arguments({}, args) == []
