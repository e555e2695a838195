"""The argument checker against a reference JSON Schema validator: whatever it accepts is valid."""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from speakerd.functions import schema_problems, validate_arguments

TEXT = st.text(alphabet="ab+-%A:/ 1", max_size=6)
SCALARS = (st.none() | st.booleans() | st.integers(-20, 20) | st.sampled_from([10**20, -(10**20)])
           | st.floats(-50, 50, allow_nan=False, allow_infinity=False) | TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
                    max_leaves=8)
TYPES = st.sampled_from(["object", "string", "number", "integer", "boolean", "array", "null"])
NUMBER = st.integers(-10, 10) | st.floats(-10, 10, allow_nan=False, allow_infinity=False)
PATTERNS = st.sampled_from([r"^a+$", r"b", r"^\+[%A-Za-z: ]+$", r"^[0-9]{1,3}$", r"^$", r"a|b"])
LEAF = st.fixed_dictionaries({}, optional={
    "type": TYPES | st.lists(TYPES, min_size=1, max_size=3, unique=True),
    "enum": st.lists(JSON, min_size=1, max_size=3),
    "const": JSON,
    "pattern": PATTERNS,
    "minLength": st.integers(0, 4), "maxLength": st.integers(0, 4),
    "minimum": NUMBER, "maximum": NUMBER,
    "exclusiveMinimum": NUMBER, "exclusiveMaximum": NUMBER,
    "multipleOf": st.sampled_from([1, 2, 3, 0.5, 0.1, 2.5]),
    "minItems": st.integers(0, 3), "maxItems": st.integers(0, 3),
    "description": st.just("annotation only"),
})
SCHEMAS = st.recursive(LEAF, lambda inner: st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["object", "array"]),
    "properties": st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    "required": st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
    "additionalProperties": st.booleans() | inner,
    "items": inner,
    "maxItems": st.integers(0, 3),
}), max_leaves=6)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, value=JSON)
def test_whatever_the_checker_accepts_satisfies_the_schema(schema: dict[str, Any], value: Any) -> None:
    """Accepted arguments are valid under the reference validator (2020-12) for the same schema."""
    assert schema_problems(schema, "p") == []
    jsonschema.Draft202012Validator.check_schema(schema)
    if validate_arguments(schema, value if isinstance(value, dict) else {"a": value}) == []:
        arguments = value if isinstance(value, dict) else {"a": value}
        assert jsonschema.Draft202012Validator(schema).is_valid(arguments), (schema, arguments)


@settings(max_examples=500, deadline=None)
@given(schema=SCHEMAS, value=JSON)
def test_the_checker_is_not_stricter_on_plain_values(schema: dict[str, Any], value: Any) -> None:
    """Where the reference accepts a value of a schema without multipleOf on floats, so do we
    (the checker is exact, not merely closed: the agent is not refused for nothing)."""
    text = repr(schema)
    assume("multipleOf" not in text)
    arguments = {"a": value}
    wrapped = {"type": "object", "properties": {"a": schema}}
    if jsonschema.Draft202012Validator(wrapped).is_valid(arguments):
        assert validate_arguments(wrapped, arguments) == [], (wrapped, arguments)
