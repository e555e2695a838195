"""Decoding: one server text frame of either dialect to a typed event.

A field the daemon acts on (a function call's id and name, a transcript's role and content) is
required; informational fields default to empty. A field that is present with the wrong JSON type
is malformed either way, and so is anything that is not one JSON object with a string `type`.
Unknown types and unknown fields are not errors: the server grows additively.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .dialect import Dialect, ProtocolError
from .events import (
    AgentAudioDone,
    AgentError,
    AgentStartedSpeaking,
    AgentThinking,
    AgentWarning,
    ConversationText,
    EndOfThought,
    FunctionCall,
    FunctionCallCancelled,
    FunctionCalling,
    FunctionCallRequest,
    FunctionCallResponse,
    History,
    InjectionRefused,
    LatencyReport,
    ServerEvent,
    SettingsApplied,
    UnknownEvent,
    Updated,
    UserStartedSpeaking,
    Welcome,
)

_MISSING: Any = object()

_JSON_KIND = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
              int: "a number", float: "a number", type(None): "null"}


def _kind(value: Any) -> str:
    return _JSON_KIND.get(type(value), type(value).__name__)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


class _Fields:
    """Typed access to one message's fields, raising ProtocolError that names the field."""

    def __init__(self, where: str, payload: Mapping[str, Any]):
        self.where = where
        self.payload = payload

    def _get(self, key: str, required: bool) -> Any:
        value = self.payload.get(key, _MISSING)
        if value is _MISSING or value is None:  # JSON null counts as absent
            if required:
                raise ProtocolError(f"{self.where}: missing {key}")
            return _MISSING
        return value

    def text(self, key: str, *, required: bool = False, default: str = "") -> str:
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            raise ProtocolError(f"{self.where}.{key}: expected a string, got {_kind(value)}")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        value = self._get(key, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise ProtocolError(f"{self.where}.{key}: expected a boolean, got {_kind(value)}")
        return value

    def number(self, key: str) -> float | None:
        value = self._get(key, False)
        if value is _MISSING:
            return None
        return _finite(value, f"{self.where}.{key}")

    def array(self, key: str, *, required: bool = False) -> list[Any]:
        value = self._get(key, required)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            raise ProtocolError(f"{self.where}.{key}: expected an array, got {_kind(value)}")
        return value

    def objects(self, key: str, *, required: bool = False) -> list[_Fields]:
        out = []
        for i, item in enumerate(self.array(key, required=required)):
            where = f"{self.where}.{key}[{i}]"
            if not isinstance(item, dict):
                raise ProtocolError(f"{where}: expected an object, got {_kind(item)}")
            out.append(_Fields(where, item))
        return out


# A JSON number written as text: the newest reference types the latencies as strings.
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _finite(value: Any, where: str) -> float:
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        value = float(value)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{where}: expected a number, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer literal too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise ProtocolError(f"{where}: number out of range")
    return number


def _arguments(raw: Any) -> tuple[Mapping[str, Any], str]:
    """Function arguments as an object, or ({}, why) when they cannot be read as one.

    V1 sends a JSON *string*, EA an object; either may turn up in either dialect, and an empty
    string means "no arguments" (models emit that for parameterless functions).
    """
    if raw is _MISSING or raw is None:
        return {}, ""
    if isinstance(raw, str):
        if not raw.strip():
            return {}, ""
        try:
            raw = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return {}, "arguments are not valid JSON"
    if not isinstance(raw, dict):
        return {}, f"arguments must be a JSON object, got {_kind(raw)}"
    return raw, ""


def _welcome(f: _Fields, dialect: Dialect) -> ServerEvent:
    # The trap: EA names the id session_id, V1 request_id. Read the dialect's own name first and
    # accept the other, since the id is only logged.
    own, other = ("request_id", "session_id") if dialect is Dialect.V1 else ("session_id",
                                                                              "request_id")
    return Welcome(f.text(own) or f.text(other))


def _function_call_request(f: _Fields, dialect: Dialect) -> ServerEvent:
    if dialect is Dialect.EARLY_ACCESS:
        args, error = _arguments(f.payload.get("input", _MISSING))
        return FunctionCallRequest((FunctionCall(
            id=f.text("function_call_id", required=True),
            name=f.text("function_name", required=True),
            arguments=args, client_side=True, arguments_error=error),))
    calls = []
    for item in f.objects("functions", required=True):
        args, error = _arguments(item.payload.get("arguments", _MISSING))
        calls.append(FunctionCall(
            id=item.text("id", required=True),
            name=item.text("name", required=True),
            arguments=args,
            # Absent means client-side: an unanswered client-side call stalls the turn until
            # the server gives up, which is worse than answering one the server handles itself.
            client_side=item.flag("client_side", default=True),
            arguments_error=error))
    return FunctionCallRequest(tuple(calls))


def _history(f: _Fields, dialect: Dialect) -> ServerEvent:
    calls = tuple(dict(item.payload) for item in f.objects("function_calls"))
    return History(f.text("role"), f.text("content"), calls)


def _error_fields(f: _Fields) -> tuple[str, str]:
    # V1 {code, description}; EA {message}. Either may appear on either path.
    return f.text("code"), f.text("description") or f.text("message")


_LATENCY_KEYS = ("stt_latency", "ttt_token_latency", "ttt_text_latency", "ttt_tool_latency",
                 "ttt_thinking_latency", "tts_latency", "total_latency")


def _latency_report(f: _Fields, dialect: Dialect) -> ServerEvent:
    values: dict[str, float] = {}
    for key, value in f.payload.items():
        if key == "type" or value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        numeric_text = isinstance(value, str) and key.endswith("_latency") and bool(
            _NUMBER_TEXT.fullmatch(value.strip()))
        if key in _LATENCY_KEYS or number or numeric_text:
            values[key] = _finite(value, f"LatencyReport.{key}")
    return LatencyReport(values)


_UPDATED = {"PromptUpdated": "prompt", "InstructionsUpdated": "instructions",
            "SpeakUpdated": "speak", "ThinkUpdated": "think", "ListenUpdated": "listen"}

_Decoder = Callable[[_Fields, Dialect], ServerEvent]


def _updated(what: str) -> _Decoder:
    return lambda f, d: Updated(what)


_DECODERS: Mapping[str, _Decoder] = {
    "Welcome": _welcome,
    "SettingsApplied": lambda f, d: SettingsApplied(),
    "ConversationText": lambda f, d: ConversationText(f.text("role", required=True),
                                                      f.text("content", required=True)),
    "UserStartedSpeaking": lambda f, d: UserStartedSpeaking(),
    "AgentThinking": lambda f, d: AgentThinking(f.text("content")),
    "FunctionCallRequest": _function_call_request,
    "FunctionCalling": lambda f, d: FunctionCalling(),
    "FunctionCallResponse": lambda f, d: FunctionCallResponse(f.text("id"), f.text("name"),
                                                              f.text("content")),
    "FunctionCallCancelled": lambda f, d: FunctionCallCancelled(
        tuple(item.text("id", required=True) for item in f.objects("functions", required=True))),
    "AgentStartedSpeaking": lambda f, d: AgentStartedSpeaking(
        f.number("total_latency"), f.number("tts_latency"), f.number("ttt_latency")),
    "AgentAudioDone": lambda f, d: AgentAudioDone(),
    "EndOfThought": lambda f, d: EndOfThought(),
    "History": _history,
    **{name: _updated(what) for name, what in _UPDATED.items()},
    "InjectionRefused": lambda f, d: InjectionRefused(f.text("message")),
    "Warning": lambda f, d: AgentWarning(*_error_fields(f)),
    "Error": lambda f, d: AgentError(*_error_fields(f)),
    "LatencyReport": _latency_report,
}


def decode(frame: str | bytes, dialect: Dialect | str) -> ServerEvent:
    """One text frame (bytes: its UTF-8) as a typed event; raises only ProtocolError.

    (A dialect that is not a Dialect or one of its values is the caller's bug: ValueError.)
    """
    dialect = Dialect(dialect)
    if isinstance(frame, bytes | bytearray | memoryview):
        try:
            frame = bytes(frame).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("frame is not valid UTF-8") from None
    if not isinstance(frame, str):
        raise ProtocolError(f"frame must be text, got {type(frame).__name__}")
    try:
        payload = json.loads(frame, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError("frame is nested too deeply") from None
    except ValueError:
        raise ProtocolError("frame is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError(f"frame must be a JSON object, got {_kind(payload)}")
    name = payload.get("type", _MISSING)
    if name is _MISSING:
        raise ProtocolError("frame has no type")
    if not isinstance(name, str):
        raise ProtocolError(f"type must be a string, got {_kind(name)}")
    decoder = _DECODERS.get(name)
    if decoder is None:
        return UnknownEvent(name, payload)
    return decoder(_Fields(name, payload), dialect)
