"""A small schema language for client messages, checked the way the real server parses them.

Shape first, like a strict deserialiser: an unknown field, a wrong JSON type, a missing required
field or a value outside a closed set fails the message (`Unparsable`, whose path names the
field). Values that parse but are out of range are collected as `Invalid` findings, which the
caller reports only once the whole message parsed (the server validates after it deserialises).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Unparsable(Exception):
    """The message does not deserialise; `path` is the field to check."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path or "type"


@dataclass(frozen=True)
class Str:
    """A string, optionally one of a closed set (a set the server parses as an enum)."""
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Num:
    """A number (integer=True: a JSON integer), optionally within [lo, hi]."""
    lo: float | None = None
    hi: float | None = None
    integer: bool = False


@dataclass(frozen=True)
class Bool:
    """true or false."""


@dataclass(frozen=True)
class Arr:
    """An array of items of one shape."""
    item: Spec


@dataclass(frozen=True)
class Map:
    """An object with free keys and values of one shape (headers)."""
    value: Spec


@dataclass(frozen=True)
class AnyObject:
    """Any JSON object (a function's JSON-schema parameters)."""


@dataclass(frozen=True)
class Obj:
    """A closed object: each field with its shape and whether it is required."""
    fields: Mapping[str, tuple[Spec, bool]]

    def extend(self, **more: tuple[Spec, bool]) -> Obj:
        return Obj({**self.fields, **more})


@dataclass(frozen=True)
class Tagged:
    """A union chosen by one field's value (None: the field absent)."""
    tag: str
    variants: Mapping[str | None, Obj]


@dataclass(frozen=True)
class Either:
    """The first of several shapes that parses (an untagged union)."""
    options: tuple[Spec, ...]


Spec = Str | Num | Bool | Arr | Map | AnyObject | Obj | Tagged | Either


def req(spec: Spec) -> tuple[Spec, bool]:
    return spec, True


def opt(spec: Spec) -> tuple[Spec, bool]:
    return spec, False


@dataclass
class Checker:
    """One message's check: strict (unknown fields fail) and the range findings so far."""
    strict: bool = True
    invalid: list[str] = field(default_factory=list)

    def check(self, spec: Spec, value: Any, path: str) -> None:
        """Raise Unparsable on a shape error; append range findings to `invalid`."""
        match spec:
            case Str(choices=choices):
                if not isinstance(value, str) or (choices is not None and value not in choices):
                    raise Unparsable(path)
            case Num(lo=lo, hi=hi, integer=integer):
                self._number(value, path, lo, hi, integer)
            case Bool():
                if not isinstance(value, bool):
                    raise Unparsable(path)
            case Arr(item=item):
                if not isinstance(value, list):
                    raise Unparsable(path)
                for i, v in enumerate(value):
                    self.check(item, v, f"{path}[{i}]")
            case Map(value=inner):
                if not isinstance(value, dict):
                    raise Unparsable(path)
                for k, v in value.items():
                    self.check(inner, v, f"{path}.{k}")
            case AnyObject():
                if not isinstance(value, dict):
                    raise Unparsable(path)
            case Obj():
                self._object(spec, value, path)
            case Tagged(tag=tag, variants=variants):
                if not isinstance(value, dict):
                    raise Unparsable(path)
                chosen = value.get(tag)
                if chosen is not None and not isinstance(chosen, str) or chosen not in variants:
                    raise Unparsable(f"{path}.{tag}" if path else tag)
                self._object(variants[chosen], value, path)
            case Either(options=options):
                failures: list[Unparsable] = []
                for option in options:
                    trial = Checker(self.strict)
                    try:
                        trial.check(option, value, path)
                    except Unparsable as exc:
                        failures.append(exc)
                        continue
                    self.invalid += trial.invalid
                    return
                # Name the field of the option that got furthest: the one the sender meant.
                raise max(failures, key=lambda exc: len(exc.path))

    def _number(self, value: Any, path: str, lo: float | None, hi: float | None,
                integer: bool) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Unparsable(path)
        if integer and not isinstance(value, int):
            raise Unparsable(path)  # 16000.0 is not an integer on the wire
        if not math.isfinite(value):
            raise Unparsable(path)
        if lo is not None and value < lo or hi is not None and value > hi:
            self.invalid.append(f"{path} must be between {lo:g} and {hi:g}, got {value!r}")

    def _object(self, spec: Obj, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise Unparsable(path)
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            entry = spec.fields.get(key)
            if entry is None:
                if self.strict:
                    raise Unparsable(where)
                continue
            self.check(entry[0], item, where)
        for key, (_, required) in spec.fields.items():
            if required and key not in value:
                raise Unparsable(f"{path}.{key}" if path else key)
