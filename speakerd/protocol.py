"""The Voice Agent wire codec: both dialects' JSON messages to and from typed values.

Pure functions only (no sockets, no threads, no clock): the agent module moves the frames, the
session consumes the events. This is the only module that knows how the V1 dialect (`Settings`,
`/v1/agent/converse`) differs from the early-access one (`SettingsConfiguration`, `/agent`).

Decoding rule: a field the daemon acts on (a function call's id and name, a transcript's role
and content) is required; informational fields default to empty. A field that is present with
the wrong JSON type is malformed either way, and so is anything that is not one JSON object with
a string `type`. Unknown types and unknown fields are not errors: the server grows additively.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from speakerd.config import Config, FunctionConfig, SpeakConfig


class Dialect(enum.StrEnum):
    """The two wire dialects; the values are those of the config key agent.dialect."""

    V1 = "v1"
    EARLY_ACCESS = "early_access"


DEFAULT_URLS: Mapping[Dialect, str] = types.MappingProxyType({
    Dialect.V1: "wss://agent.deepgram.com/v1/agent/converse",
    Dialect.EARLY_ACCESS: "wss://agent.deepgram.com/agent",
})

PATHS: Mapping[Dialect, str] = types.MappingProxyType({
    Dialect.V1: "/v1/agent/converse",
    Dialect.EARLY_ACCESS: "/agent",
})


class ProtocolError(ValueError):
    """A text frame that is not a well-formed server message; the only exception decode() raises.

    The message names the message type and field, never the field's value (it may be long, and
    function arguments may carry anything).
    """


# --- server events -------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerEvent:
    """One decoded server message, the same value whichever dialect carried it."""


@dataclass(frozen=True)
class Welcome(ServerEvent):
    """The first frame of a connection (EA `session_id`, V1 `request_id`)."""
    session_id: str


@dataclass(frozen=True)
class SettingsApplied(ServerEvent):
    """The settings message was accepted; audio may flow."""


@dataclass(frozen=True)
class ConversationText(ServerEvent):
    """A final user transcript or one sentence the agent is saying."""
    role: str
    content: str


@dataclass(frozen=True)
class UserStartedSpeaking(ServerEvent):
    """The server heard the start of a user utterance: stop playback now."""


@dataclass(frozen=True)
class AgentThinking(ServerEvent):
    """A thought the LLM does not speak."""
    content: str


@dataclass(frozen=True)
class FunctionCall:
    """One function the agent wants called, arguments already parsed to an object."""
    id: str
    name: str
    arguments: Mapping[str, Any]
    client_side: bool
    # Non-empty when the arguments could not be read as a JSON object: the daemon answers the
    # call with an error instead of dropping it, so the agent's turn does not hang.
    arguments_error: str = ""


@dataclass(frozen=True)
class FunctionCallRequest(ServerEvent):
    """The agent calls one or more functions (EA always one)."""
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True)
class FunctionCalling(ServerEvent):
    """EA debug aid while the server runs a server-side function."""


@dataclass(frozen=True)
class FunctionCallResponse(ServerEvent):
    """The result of a server-side function (V1, informational)."""
    id: str
    name: str
    content: str


@dataclass(frozen=True)
class FunctionCallCancelled(ServerEvent):
    """Calls the daemon must no longer answer."""
    ids: tuple[str, ...]


@dataclass(frozen=True)
class AgentStartedSpeaking(ServerEvent):
    """The first audio of an LLM reply is about to stream; latencies in seconds."""
    total_latency: float | None
    tts_latency: float | None
    ttt_latency: float | None


@dataclass(frozen=True)
class AgentAudioDone(ServerEvent):
    """The server has sent the last audio frame of an utterance (playback may still run)."""


@dataclass(frozen=True)
class EndOfThought(ServerEvent):
    """The user's turn is complete."""


@dataclass(frozen=True)
class History(ServerEvent):
    """V1 echo of a conversation item or of completed function calls, for the context log."""
    role: str
    content: str
    function_calls: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Updated(ServerEvent):
    """An update was applied: what is one of prompt, instructions, speak, think, listen."""
    what: str


@dataclass(frozen=True)
class InjectionRefused(ServerEvent):
    """An InjectAgentMessage was ignored (EA gives no reason)."""
    message: str


@dataclass(frozen=True)
class AgentWarning(ServerEvent):
    """A non-fatal server warning."""
    code: str
    description: str


@dataclass(frozen=True)
class AgentError(ServerEvent):
    """A fatal server error; the server usually closes right after (EA has no code)."""
    code: str
    description: str


@dataclass(frozen=True)
class LatencyReport(ServerEvent):
    """V1 per-turn latency figures in seconds, only those the frame carried."""
    values: Mapping[str, float]


@dataclass(frozen=True)
class UnknownEvent(ServerEvent):
    """A message type this codec does not model; the daemon logs it and carries on."""
    type: str
    payload: Mapping[str, Any]


# --- decoding ------------------------------------------------------------------------------

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


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
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
        if key in _LATENCY_KEYS or (isinstance(value, int | float) and not isinstance(value, bool)):
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


# --- encoding ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextItem:
    """One prior conversation turn, sent back in the settings after a reconnect."""
    role: str
    content: str


def _plain(value: Any) -> Any:
    """Config values (mappings, tuples) as the dicts and lists json understands."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    # YAML turns an unquoted 2025-01-31 into a date; in a pass-through it means the text.
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} cannot be sent as JSON")


def _dumps(message: Mapping[str, Any]) -> str:
    """Compact JSON; ASCII-only so a stray surrogate can never fail the socket's UTF-8 encoding."""
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        # The message is not echoed: settings may carry third-party credentials in headers.
        raise ValueError(f"cannot encode {message.get('type')}: {exc}") from None


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in extra replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = _plain(value)
    return out


def _key_values(headers: Mapping[str, str]) -> list[dict[str, str]]:
    """EA spells a header map as [{key, value}]."""
    return [{"key": str(k), "value": str(v)} for k, v in headers.items()]


def _speak_provider_v1(speak: SpeakConfig) -> dict[str, Any]:
    """V1 agent.speak.provider; each provider names its model and voice differently."""
    provider: dict[str, Any] = {"type": speak.provider}
    if speak.provider == "deepgram":
        provider["model"] = speak.model  # the aura model names the voice
    elif speak.provider == "cartesia":
        provider["model_id"] = speak.model
        if speak.voice_id:
            provider["voice"] = {"mode": "id", "id": speak.voice_id}
    elif speak.provider == "eleven_labs":
        # The voice is part of speak.endpoint.url, which comes through settings_passthrough.
        provider["model_id"] = speak.model
    elif speak.provider == "open_ai":
        provider["model"] = speak.model
        if speak.voice_id:
            provider["voice"] = speak.voice_id
    elif speak.provider == "aws_polly":
        provider["engine"] = speak.model
        if speak.voice_id:
            provider["voice"] = speak.voice_id
    else:
        provider["model"] = speak.model
        if speak.voice_id:
            provider["voice_id"] = speak.voice_id
    return provider


def _speak_ea(speak: SpeakConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"model": speak.model}
    if speak.provider != "deepgram":  # EA: no provider means Deepgram's own TTS
        out["provider"] = speak.provider
    if speak.voice_id:
        out["voice_id"] = speak.voice_id
    return out


def _function(fn: FunctionConfig, dialect: Dialect) -> dict[str, Any]:
    """A function declaration; with an endpoint the server calls it, without one we do."""
    out: dict[str, Any] = {"name": fn.name}
    if fn.description:
        out["description"] = fn.description
    out["parameters"] = _plain(fn.parameters)
    ep = fn.endpoint
    if ep is not None and fn.action is None:
        if dialect is Dialect.V1:
            endpoint: dict[str, Any] = {"url": ep.url, "method": ep.method}
            if ep.headers:
                endpoint["headers"] = dict(ep.headers)
            out["endpoint"] = endpoint
        else:
            out["url"] = ep.url
            out["method"] = ep.method
            if ep.headers:
                out["headers"] = _key_values(ep.headers)
    return out


def _audio(cfg: Config) -> dict[str, Any]:
    out_cfg = cfg.audio.output
    return {
        # The mic is always read as signed 16-bit little-endian mono.
        "input": {"encoding": "linear16", "sample_rate": int(cfg.audio.input.sample_rate)},
        "output": {"encoding": out_cfg.encoding, "sample_rate": int(out_cfg.sample_rate),
                   "container": "none"},  # raw frames straight into the ALSA sink
    }


def _settings_v1(cfg: Config, context: Sequence[ContextItem]) -> dict[str, Any]:
    a = cfg.agent
    listen: dict[str, Any] = {"type": "deepgram", "model": a.listen.model}
    if a.listen.keyterms:
        listen["keyterms"] = list(a.listen.keyterms)
    if a.listen.smart_format:
        listen["smart_format"] = True
    think_provider: dict[str, Any] = {"type": a.think.provider, "model": a.think.model}
    if a.think.temperature is not None:
        think_provider["temperature"] = a.think.temperature
    think: dict[str, Any] = {"provider": think_provider}
    if a.think.endpoint_url:
        endpoint: dict[str, Any] = {"url": a.think.endpoint_url}
        if a.think.endpoint_headers:
            endpoint["headers"] = dict(a.think.endpoint_headers)
        think["endpoint"] = endpoint
    if a.think.prompt:
        think["prompt"] = a.think.prompt
    if cfg.functions:
        think["functions"] = [_function(fn, Dialect.V1) for fn in cfg.functions]
    agent: dict[str, Any] = {}
    if a.language:
        agent["language"] = a.language
    agent["listen"] = {"provider": listen}
    agent["think"] = think
    agent["speak"] = {"provider": _speak_provider_v1(a.speak)}
    if a.greeting:
        agent["greeting"] = a.greeting
    if context:
        agent["context"] = {"messages": [{"type": "History", "role": c.role, "content": c.content}
                                         for c in context]}
    message: dict[str, Any] = {"type": "Settings", "audio": _audio(cfg), "agent": agent}
    # Booleans are sent only where they differ from the server's default.
    if a.tags:
        message["tags"] = list(a.tags)
    if a.mip_opt_out:
        message["mip_opt_out"] = True  # top level: inside agent the server rejects it
    if a.experimental:
        message["experimental"] = True
    if not a.history:
        message["flags"] = {"history": False}
    return message


def _settings_ea(cfg: Config, context: Sequence[ContextItem]) -> dict[str, Any]:
    # EA has no language, temperature, tags, mip_opt_out, experimental or history flag.
    a = cfg.agent
    listen: dict[str, Any] = {"model": a.listen.model}
    if a.listen.keyterms:
        listen["keyterms"] = list(a.listen.keyterms)
    provider: dict[str, Any] = {"type": a.think.provider}
    if a.think.endpoint_url:
        provider["url"] = a.think.endpoint_url
        if a.think.endpoint_headers:
            provider["headers"] = _key_values(a.think.endpoint_headers)
    think: dict[str, Any] = {"provider": provider, "model": a.think.model}
    if a.think.prompt:
        think["instructions"] = a.think.prompt
    if cfg.functions:
        think["functions"] = [_function(fn, Dialect.EARLY_ACCESS) for fn in cfg.functions]
    message: dict[str, Any] = {
        "type": "SettingsConfiguration", "audio": _audio(cfg),
        "agent": {"listen": listen, "think": think, "speak": _speak_ea(a.speak)}}
    messages = [{"role": c.role, "content": c.content} for c in context]
    if a.greeting:
        # EA has no greeting field: the agent speaks a trailing assistant message on replay.
        messages.append({"role": "assistant", "content": a.greeting})
    if messages:
        ctx: dict[str, Any] = {"messages": messages}
        if a.greeting:
            ctx["replay"] = True
        message["context"] = ctx
    return message


def build_settings(cfg: Config, dialect: Dialect | str,
                   context: Sequence[ContextItem] = ()) -> dict[str, Any]:
    """The settings message for a new connection, as plain data, pass-through merged in."""
    v1 = Dialect(dialect) is Dialect.V1
    message = _settings_v1(cfg, context) if v1 else _settings_ea(cfg, context)
    message = _merge(message, cfg.agent.settings_passthrough)
    message["type"] = "Settings" if v1 else "SettingsConfiguration"
    return message


def encode_settings(cfg: Config, dialect: Dialect | str,
                    context: Sequence[ContextItem] = ()) -> str:
    """The settings message as a text frame; ValueError if the pass-through holds non-JSON."""
    return _dumps(build_settings(cfg, dialect, context))


def encode_keepalive() -> str:
    """The KeepAlive text frame (same in both dialects)."""
    return _dumps({"type": "KeepAlive"})


def encode_function_response(dialect: Dialect | str, call_id: str, name: str, content: str) -> str:
    """The answer to a client-side call: V1 {id, name, content}, EA {function_call_id, output}."""
    if Dialect(dialect) is Dialect.V1:
        return _dumps({"type": "FunctionCallResponse", "id": call_id, "name": name,
                       "content": content})
    return _dumps({"type": "FunctionCallResponse", "function_call_id": call_id, "output": content})


def event_fields(event: ServerEvent) -> dict[str, Any]:
    """An event's fields as plain data (for logs and tests); nested calls become dicts."""
    return {name: _plain(value) for name, value in dataclasses.asdict(event).items()}
