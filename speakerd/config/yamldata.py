"""speakerd.yaml read as data, not as a program: YAML events to plain JSON values, every problem
named by its key path. No aliases, no tags beyond JSON's, finite numbers of sane size, bounded
depth and size, text keys without whitespace or control characters, no key given twice.

PyYAML's own constructor would expand a recursive alias, build a 47 MB "billion laughs", turn
`!!binary` and `!!set` into values no JSON encoder takes, and raise a bare ValueError on a
5,000-digit integer; reading the event stream ourselves avoids all of it, and needs no recursion.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

# The file is a few kilobytes; a megabyte is a mistake or an attack.
MAX_BYTES = 1 << 20
MAX_DEPTH = 48
# Digits in a number: enough for any real setting, far below what makes int() or float() slow
# or unbounded (a 400-digit float is infinity; a 5,000-digit int is refused by Python itself).
MAX_DIGITS = 40

_JSON_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}
_BAD_KEY = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]")


class DataError(Exception):
    """Problems found while reading; each is `path: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class _Frame:
    """One open mapping or list while the event stream is walked."""
    path: str
    value: dict[str, Any] | list[Any]
    key: str | None = None     # a mapping's pending key (None: the next scalar is a key)
    expect_key: bool = True
    lines: dict[str, int] = field(default_factory=dict)  # each key's line, for duplicates


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1's implicit types less timestamps: an unquoted 2025-01-31 is text, as in JSON."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()}


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _scalar(event: yaml.ScalarEvent, resolver: _Resolver, path: str) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag not in _JSON_TAGS:
        raise DataError([f"{path or '(top)'}: YAML tag {tag} is not allowed (only plain values)"])
    text = event.value
    short = tag.rsplit(":", 1)[-1]
    if short == "str":
        return text
    if short == "null":
        return None
    if short == "bool":
        return text.lower() in ("yes", "true", "on", "y")
    digits = sum(c.isdigit() for c in text)
    if digits > MAX_DIGITS:
        raise DataError([f"{path or '(top)'}: a number of {digits} digits is not a setting"])
    constructor = yaml.SafeLoader.construct_yaml_int if short == "int" \
        else yaml.SafeLoader.construct_yaml_float
    try:
        value = constructor(yaml.SafeLoader(""), yaml.ScalarNode(tag, text))
    except (ValueError, OverflowError):
        raise DataError([f"{path or '(top)'}: {text[:24]!r} is not a number"]) from None
    if isinstance(value, float) and not math.isfinite(value):
        # .nan and .inf are YAML, not JSON; a finite-looking literal that overflows is too big.
        raise DataError([f"{path or '(top)'}: must be a finite number, got {text[:24]!r}"])
    return value


def load_data(text: str) -> Any:
    """The document as plain data; raises DataError (problems by path) or yaml.YAMLError."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise DataError([f"(top): the file is larger than {MAX_BYTES // 1024} KiB"])
    resolver = _Resolver()
    stack: list[_Frame] = []
    root: Any = None
    problems: list[str] = []

    def place(value: Any, line: int) -> bool:
        """Put a finished value where it belongs; False if it was a mapping's key."""
        nonlocal root
        if not stack:
            root = value
            return True
        top = stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
            return True
        if top.expect_key:
            where = top.path or "(top)"
            if not isinstance(value, str):
                raise DataError([f"{where}: key {str(value)[:40]!r} must be text (quote it)"])
            if not value or _BAD_KEY.search(value):
                raise DataError([f"{where}: key {value[:40]!r} must not be empty or hold "
                                 "whitespace or control characters"])
            if value in top.lines:
                problems.append(f"{_child(top.path, value)}: appears again at line {line} "
                                f"(first at line {top.lines[value]})")
            top.lines[value] = line
            top.key, top.expect_key = value, False
            return False
        assert top.key is not None
        top.value[top.key] = value
        top.key, top.expect_key = None, True
        return True

    def path_here() -> str:
        if not stack:
            return ""
        top = stack[-1]
        if isinstance(top.value, list):
            return _child(top.path, len(top.value))
        return _child(top.path, top.key) if top.key is not None and not top.expect_key \
            else top.path

    documents = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise DataError([f"(top): a second YAML document starts at line {line}; "
                                 "the file holds one"])
        if isinstance(event, yaml.AliasEvent):
            raise DataError([f"{path_here() or '(top)'}: YAML aliases (*{event.anchor}) are not "
                             "allowed: write the value out"])
        if isinstance(event, yaml.ScalarEvent | yaml.SequenceStartEvent | yaml.MappingStartEvent):
            tag = event.tag
            if isinstance(event, yaml.ScalarEvent):
                place(_scalar(event, resolver, path_here()), line)
                continue
            if tag is not None and tag != "!" and tag not in _JSON_TAGS:
                raise DataError([f"{path_here() or '(top)'}: YAML tag {tag} is not allowed"])
            if len(stack) >= MAX_DEPTH:
                raise DataError([f"{path_here() or '(top)'}: nested deeper than {MAX_DEPTH} levels"])
            if stack and isinstance(stack[-1].value, dict) and stack[-1].expect_key:
                raise DataError([f"{stack[-1].path or '(top)'}: a key must be text, "
                                 "not a list or a mapping"])
            container: dict[str, Any] | list[Any] = \
                [] if isinstance(event, yaml.SequenceStartEvent) else {}
            stack.append(_Frame(path_here(), container))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            done = stack.pop()
            place(done.value, line)
    if problems:
        raise DataError(problems)
    return root
