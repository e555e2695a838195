"""Property tests: parse_config returns a Config or a ConfigError of `section.key: message` lines."""

from __future__ import annotations

import copy
import math
import re
import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speakerd.config import Config, ConfigError, config_to_dict, load_config, parse_config

# No per-example deadline: a busy 2-core CI machine must not flake. No example database:
# nothing is written into the checkout.
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

DEFAULT = config_to_dict(Config())
SECTIONS = list(DEFAULT)

# A problem line: a dotted path (list items as [i]) or "(top)", then ": ", then a message.
# A path segment is whatever the user wrote as a key, so it may hold anything but a newline.
PROBLEM = re.compile(r"^(\(top\)|[^\n]+?(\[\d+\])?(\.[^\n]+?(\[\d+\])?)*): \S[^\n]*$")

# Keys from a printable alphabet without newlines: a key with a newline would be a separate
# finding (it splits a problem over two lines); the structure is what is fuzzed here.
KEY_ALPHABET = string.ascii_letters + string.digits + "_-. "
keys = st.sampled_from(SECTIONS + ["idle_timeout", "device", "pins", "mode", "pin", "url",
                                   "dialect", "type", "action", "patterns", "listening"]) \
    | st.text(KEY_ALPHABET, min_size=1, max_size=10)
scalars = (st.none() | st.booleans() | st.integers(min_value=-10**12, max_value=10**12)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["v1", "early_access", "hold", "toggle", "pwm", "rgb", "GPIO17",
                              "mulaw", "linear16", "gpio", "http", "on", "blink", "DEBUG"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=5), max_leaves=25)


def _holds_contract(raw: Any) -> Config | None:
    """parse_config(raw) gives a Config, or a ConfigError whose every line is `path: message`."""
    try:
        cfg = parse_config(raw)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError with no problem in it"
        for line in exc.problems:
            assert "\n" not in line, f"problem spans lines: {line!r}"
            assert PROBLEM.match(line), f"not 'section.key: message': {line!r}"
            # The path starts at the top: "(top)", a section, or a top-level key the user wrote.
            tops = ["(top)"] + SECTIONS + ([str(k) for k in raw] if isinstance(raw, dict) else [])
            assert any(line.startswith((f"{t}: ", f"{t}.", f"{t}[")) for t in tops), line
        return None
    assert isinstance(cfg, Config)
    return cfg


def _numbers_within_bounds(cfg: Config) -> None:
    """Every accepted number is finite: NaN slips past `< min` and `> max` alike."""
    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, float):
            assert math.isfinite(value), f"{path} accepted {value!r}"
    walk(config_to_dict(cfg), "")


@FUZZ
@given(values)
def test_any_document_gives_a_config_or_a_config_error(raw: Any) -> None:
    """A random YAML-like document never raises anything but a well-formed ConfigError."""
    _holds_contract(raw)


@st.composite
def mutated_defaults(draw: st.DrawFn) -> dict[str, Any]:
    """The default config dict with a few leaves replaced, removed or added."""
    doc = copy.deepcopy(DEFAULT)
    for _ in range(draw(st.integers(1, 4))):
        node: Any = doc
        path = draw(st.lists(st.integers(0, 20), min_size=1, max_size=4))
        for step in path[:-1]:
            if isinstance(node, dict) and node:
                child = node[sorted(node, key=str)[step % len(node)]]
            elif isinstance(node, list) and node:
                child = node[step % len(node)]
            else:
                break
            if not isinstance(child, dict | list):
                break
            node = child
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if isinstance(node, dict) and node:
            key = sorted(node, key=str)[path[-1] % len(node)]
            if action == "replace":
                node[key] = draw(values)
            elif action == "delete":
                del node[key]
            else:
                node[draw(keys)] = draw(values)
        elif isinstance(node, list):
            node.append(draw(values))
    return doc


@FUZZ
@given(mutated_defaults())
def test_mutated_default_config_gives_a_config_or_a_config_error(raw: dict[str, Any]) -> None:
    """The defaults with random leaves changed: a Config, or every problem named by its key."""
    cfg = _holds_contract(raw)
    if cfg is not None:
        _numbers_within_bounds(cfg)


@FUZZ
@given(st.sampled_from([("session", "idle_timeout"), ("session", "reply_timeout"),
                        ("agent", "connect_timeout"), ("button", "bounce_time")]),
       st.sampled_from([".nan", ".inf", "-.inf", "1e999"]))
def test_non_finite_numbers_are_refused_by_key(where: tuple[str, str], text: str) -> None:
    """A NaN or infinite timeout from YAML is a problem named by its key, never accepted."""
    section, key = where
    raw = yaml.safe_load(f"{section}:\n  {key}: {text}\n")
    try:
        parse_config(raw)
    except ConfigError as exc:
        assert any(p.startswith(f"{section}.{key}: ") for p in exc.problems), exc.problems
    else:
        raise AssertionError(f"{section}.{key}: {text} was accepted")


def test_default_config_dict_round_trips() -> None:
    """The unmutated defaults parse back to the default Config (the mutations start from truth)."""
    assert parse_config(copy.deepcopy(DEFAULT)) == Config()


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-8"))
       | values.map(lambda v: yaml.safe_dump(v).encode("utf-8")))
def test_load_config_on_random_bytes(data: bytes) -> None:
    """Random bytes in the file: a Config or a ConfigError naming the file or a key; nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speakerd.yaml"
        path.write_bytes(data)
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            assert exc.problems
            for line in exc.problems:
                assert "\n" not in line, f"problem spans lines: {line!r}"
                assert line.startswith(f"{path}: ") or PROBLEM.match(line), line
        else:
            assert isinstance(cfg, Config)
