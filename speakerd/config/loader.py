"""Reading speakerd.yaml: YAML to the schema's dataclasses, every problem collected and named
`section.key: message`."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .. import boards
from ..events import State
from .checks import cross_checks
from .schema import (
    DEFAULT_PATTERNS,
    DEFAULT_PIXEL_PATTERNS,
    STATES,
    Config,
    ConfigError,
    FunctionConfig,
    LedConfig,
    Pattern,
)
from .yamldata import DataError, load_data

# --- loading -----------------------------------------------------------------------------

_LIST_ITEM = {"leds": LedConfig, "functions": FunctionConfig}


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Loader:
    """Walks raw YAML against the dataclasses, collecting every problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def has(self, path: str) -> bool:
        """Whether a problem was already reported at or under `path` (no second message for it)."""
        return any(p.startswith((f"{path}:", f"{path}.", f"{path}[")) for p in self.problems)

    def dataclass(self, cls: type, raw: Any, path: str) -> Any:
        hints = typing.get_type_hints(cls)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.problem(path or "(top)", f"must be a mapping, got {_kind(raw)}")
            return cls()
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for key, value in raw.items():
            key_path = f"{path}.{key}" if path else str(key)
            if key not in names:
                self.problem(key_path, "unknown key" + _did_you_mean(str(key), names))
                continue
            f = next(f for f in dataclasses.fields(cls) if f.name == key)
            if cls is LedConfig and key == "patterns":
                continue  # after the loop: its defaults depend on the kind, which may come later
            values[key] = self.value(hints[key], value, key_path, f.metadata)
        if cls is LedConfig:
            pixels = values.get("kind") == "apa102"
            # Pixels have looks of their own, and hardware SPI (no pins) is their default bus.
            values["patterns"] = self.patterns(raw.get("patterns", {}), f"{path}.patterns",
                                               DEFAULT_PIXEL_PATTERNS if pixels else DEFAULT_PATTERNS)
            if pixels and "pins" not in raw:
                values["pins"] = ()
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - guarded by the checks above
            self.problem(path, str(exc))
            return cls()

    def patterns(self, raw: Any, path: str, defaults: Mapping[State, Pattern]) -> Mapping[State, Pattern]:
        merged = dict(defaults)
        if raw is None:
            return merged
        if not isinstance(raw, Mapping):
            self.problem(path, f"must be a mapping of state to pattern, got {_kind(raw)}")
            return merged
        for state, spec in raw.items():
            if state not in STATES:
                self.problem(f"{path}.{state}", "unknown state" + _did_you_mean(str(state), list(STATES)))
                continue
            if isinstance(spec, str):  # shorthand: "on", "off", "blink", "pulse"
                spec = {"effect": spec}
            merged[State(state)] = self.dataclass(Pattern, spec, f"{path}.{state}")
        return merged

    def value(self, hint: Any, raw: Any, path: str, meta: Mapping[str, Any]) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if raw is None:
                return None
            return self.value(inner[0], raw, path, meta)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.dataclass(hint, raw, path)
        if origin is tuple:
            item_cls = _LIST_ITEM.get(path)
            if raw is None:
                return ()
            if not isinstance(raw, list):
                self.problem(path, f"must be a list, got {_kind(raw)}")
                return ()
            if item_cls is not None:
                return tuple(self.dataclass(item_cls, item, f"{path}[{i}]") for i, item in enumerate(raw))
            out = []
            for i, item in enumerate(raw):
                if not isinstance(item, str | int | float) or isinstance(item, bool):
                    self.problem(f"{path}[{i}]", f"must be a string, got {_kind(item)}")
                    continue
                out.append(str(item))
            return tuple(out)
        if origin in (Mapping, dict) or hint is Mapping:
            if raw is None:
                return {}
            if not isinstance(raw, Mapping):
                self.problem(path, f"must be a mapping, got {_kind(raw)}")
                return {}
            return dict(raw)
        if hint is bool:
            if not isinstance(raw, bool):
                self.problem(path, f"must be true or false, got {_kind(raw)} {_show(raw)}")
                return False
            return raw
        if hint in (int, float):
            if isinstance(raw, bool) or not isinstance(raw, int | float) or (
                    hint is int and isinstance(raw, float) and not raw.is_integer()):
                self.problem(path, f"must be {'an integer' if hint is int else 'a number'}, "
                                   f"got {_kind(raw)} {_show(raw)}")
                return 0
            val = hint(raw)
            if not math.isfinite(val):  # NaN slips past every range comparison
                self.problem(path, f"must be a finite number, got {raw!r}")
                return 0
            lo, hi = meta.get("min"), meta.get("max")
            if lo is not None and val < lo or hi is not None and val > hi:
                self.problem(path, f"must be between {lo} and {hi}, got {raw!r}")
            return val
        if hint is str:
            if raw is None:
                raw = ""
            if isinstance(raw, bool):
                word = "on" if raw else "off"
                self.problem(path, f"must be a string, got a boolean (YAML reads unquoted on/off/yes/no "
                                   f'as true/false): write "{word}" in quotes')
                return ""
            if not isinstance(raw, str):
                if isinstance(raw, int | float) and not isinstance(raw, bool):
                    raw = str(raw)
                else:
                    self.problem(path, f"must be a string, got {_kind(raw)}")
                    return ""
            choices = meta.get("choices")
            if choices:
                wanted = raw.upper() if all(c.isupper() for c in choices) else raw
                if wanted not in choices:
                    self.problem(path, f"must be one of {', '.join(choices)}, got {_show(raw)}"
                                 + _did_you_mean(raw, list(choices)))
                return wanted
            return raw
        if hint is Any:
            return raw
        raise TypeError(f"config field {path} has an unsupported type {hint!r}")


def _show(value: Any) -> str:
    """A value for an error message; long strings are not repeated (a secret pasted into the
    wrong field must not end up in the journal)."""
    if isinstance(value, str) and len(value) > 24:
        return f"({len(value)} characters)"
    return repr(value)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def merge_under(base: Any, top: Any) -> Any:
    """`top` over `base`: mappings merge key by key; anything else in `top` (a list, a value)
    replaces what `base` has, and a key `top` leaves empty keeps `base`'s value."""
    if top is None:
        return base
    if isinstance(base, Mapping) and isinstance(top, Mapping):
        out = dict(base)
        for key, value in top.items():
            out[key] = merge_under(base.get(key), value)
        return out
    return top


def with_board(raw: Any) -> Any:
    """The document over the profile its `board:` names, so every key the user sets still wins.
    An unknown name leaves the document as it is; the cross checks report it."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("board"), str):
        return raw
    profile = boards.profile_config(raw["board"])
    return raw if profile is None else merge_under(profile, raw)


def parse_config(raw: Any) -> Config:
    """Validate an already-parsed YAML document (its board profile merged under it first);
    raise ConfigError listing every problem."""
    loader = _Loader()
    cfg = loader.dataclass(Config, with_board(raw), "")
    cross_checks(cfg, loader.problem, loader.has)
    if loader.problems:
        raise ConfigError(loader.problems)
    return cfg


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML file; raise ConfigError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        raw = load_data(text)
    except DataError as exc:
        raise ConfigError(exc.problems) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join((getattr(exc, "problem", None) or str(exc)).split())
        raise ConfigError([f"{path}: not valid YAML{where}: {problem}"]) from None
    return parse_config(raw)


def config_to_dict(cfg: Any) -> Any:
    """A plain-data view of a config (for comparing and printing)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple | list):
        return [config_to_dict(v) for v in cfg]
    return cfg


