"""The emulator's view of the wire: both dialects' message shapes, settings validation, errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

V1 = "v1"
EA = "early_access"
PATHS = {"/v1/agent/converse": V1, "/agent": EA}

SETTINGS_TYPE = {V1: "Settings", EA: "SettingsConfiguration"}

# Output combinations the real TTS supports and the emulator can synthesise.
OUTPUT_RATES = {"linear16": (8000, 16000, 24000, 32000, 48000), "mulaw": (8000, 16000)}
INPUT_ENCODINGS = ("linear16", "mulaw")

# Keys the real server accepts at each level; anything else is "mis-placed" and rejected with
# UNPARSABLE_CLIENT_MESSAGE, as the real server does (agent.mip_opt_out, agent.tags).
_KEYS: dict[str, dict[str, frozenset[str]]] = {
    V1: {
        "": frozenset({"type", "audio", "agent", "experimental", "mip_opt_out", "tags", "flags"}),
        "agent": frozenset({"language", "listen", "think", "speak", "greeting", "context"}),
        "agent.listen": frozenset({"provider"}),
        "agent.think": frozenset({"provider", "endpoint", "prompt", "functions", "context_length"}),
        "agent.speak": frozenset({"provider", "endpoint"}),
    },
    EA: {
        "": frozenset({"type", "audio", "agent", "context"}),
        "agent": frozenset({"listen", "think", "speak"}),
        "agent.listen": frozenset({"model", "keyterms"}),
        "agent.think": frozenset({"provider", "model", "instructions", "functions"}),
        "agent.speak": frozenset({"model", "provider", "voice_id"}),
    },
}

# Client messages after settings: type -> required string/object fields, per dialect.
_STR, _OBJ, _OBJ_OR_LIST = "str", "obj", "obj|list"
_MESSAGES: dict[str, dict[str, dict[str, str]]] = {
    V1: {
        "KeepAlive": {},
        "UpdatePrompt": {"prompt": _STR},
        "UpdateSpeak": {"speak": _OBJ_OR_LIST},
        "UpdateThink": {"think": _OBJ_OR_LIST},
        "UpdateListen": {"listen": _OBJ},
        "InjectUserMessage": {"content": _STR},
        "InjectAgentMessage": {"message": _STR},
        "FunctionCallResponse": {"id": _STR, "name": _STR, "content": _STR},
        "ForceEndTurn": {},
        "Settings": {},
    },
    EA: {
        "KeepAlive": {},
        "UpdateInstructions": {"instructions": _STR},
        "UpdateSpeak": {"model": _STR},
        "InjectAgentMessage": {"message": _STR},
        "FunctionCallResponse": {"function_call_id": _STR, "output": _STR},
        "SettingsConfiguration": {},
    },
}

UPDATE_ACKS = {
    "UpdatePrompt": "PromptUpdated", "UpdateSpeak": "SpeakUpdated", "UpdateThink": "ThinkUpdated",
    "UpdateListen": "ListenUpdated", "UpdateInstructions": "InstructionsUpdated",
}

# Descriptions as the real server words them where one was observed.
UNPARSABLE_TEXT = "Text message received from client did not match any of the formats we expect."
TIMEOUT_TEXT = ("We waited too long for a websocket message. Please ensure that you're sending "
                "binary messages containing user speech.")


class ClientMessageError(Exception):
    """A client message the server rejects: an error code and a description."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


def _unparsable(path: str) -> ClientMessageError:
    return ClientMessageError(
        "UNPARSABLE_CLIENT_MESSAGE",
        f"Error parsing client message. Check the {path} field against the API spec.")


def _invalid(description: str) -> ClientMessageError:
    return ClientMessageError("INVALID_SETTINGS", description)


@dataclass(frozen=True)
class FunctionDecl:
    """A function the settings declare; client-side when it has no endpoint (V1) / url (EA)."""
    name: str
    client_side: bool


@dataclass(frozen=True)
class Negotiated:
    """What a valid settings message fixed for the session."""
    input_encoding: str
    input_rate: int
    output_encoding: str
    output_rate: int
    greeting: str | None = None
    history: bool = True
    experimental: bool = False
    functions: Mapping[str, FunctionDecl] = field(default_factory=dict)
    context_messages: tuple[Any, ...] = ()


def parse_json(text: str) -> dict[str, Any]:
    """One text frame as a JSON object with a string `type`."""
    try:
        msg = json.loads(text)
    except ValueError:
        raise ClientMessageError("UNPARSABLE_CLIENT_MESSAGE", UNPARSABLE_TEXT) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ClientMessageError("UNPARSABLE_CLIENT_MESSAGE", UNPARSABLE_TEXT)
    return msg


def is_known_type(dialect: str, type_: str) -> bool:
    """Whether the dialect has a client message of this type."""
    return type_ in _MESSAGES[dialect]


def check_message(dialect: str, msg: Mapping[str, Any]) -> None:
    """Reject a post-settings client message of an unknown type or the wrong shape."""
    spec = _MESSAGES[dialect].get(msg["type"])
    if spec is None:
        raise ClientMessageError("UNPARSABLE_CLIENT_MESSAGE", UNPARSABLE_TEXT)
    for key, kind in spec.items():
        value = msg.get(key)
        ok = (isinstance(value, str) if kind == _STR
              else isinstance(value, dict) if kind == _OBJ
              else isinstance(value, dict) or (isinstance(value, list) and bool(value)
                                               and all(isinstance(v, dict) for v in value)))
        if not ok:
            raise _unparsable(key)


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _unparsable(path)
    return value


def _str(value: Any, path: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _unparsable(path)
    return value


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _unparsable(path)
    return value


def _bool(value: Any, path: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _unparsable(path)
    return value


def _keys(dialect: str, obj: Mapping[str, Any], level: str, strict: bool) -> None:
    if not strict:
        return
    for key in obj:
        if key not in _KEYS[dialect][level]:
            raise _unparsable(f"{level}.{key}" if level else key)


def _one_or_many(value: Any, path: str, dialect: str) -> list[dict[str, Any]]:
    """V1 accepts an object or a fallback list of objects for think and speak."""
    if dialect == V1 and isinstance(value, list) and value:
        return [_obj(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return [_obj(value, path)]


def _audio(audio: Any) -> tuple[str, int, str, int]:
    audio = _obj(audio, "audio")
    inp = _obj(audio.get("input"), "audio.input")
    in_enc = _str(inp.get("encoding"), "audio.input.encoding") or ""
    in_rate = _int(inp.get("sample_rate"), "audio.input.sample_rate")
    out = _obj(audio.get("output"), "audio.output")
    out_enc = _str(out.get("encoding"), "audio.output.encoding") or ""
    out_rate = _int(out.get("sample_rate"), "audio.output.sample_rate")
    container = _str(out.get("container"), "audio.output.container", required=False)
    if in_enc not in INPUT_ENCODINGS:
        raise _invalid(f"audio.input.encoding {in_enc!r} is not supported by the emulator "
                       f"(supported: {', '.join(INPUT_ENCODINGS)})")
    if not 8000 <= in_rate <= 48000 or (in_enc == "mulaw" and in_rate not in (8000, 16000)):
        raise _invalid(f"audio.input.sample_rate {in_rate} is not valid for {in_enc}")
    if out_enc not in OUTPUT_RATES:
        raise _invalid(f"audio.output.encoding {out_enc!r} is not supported "
                       f"(supported: {', '.join(OUTPUT_RATES)})")
    if out_rate not in OUTPUT_RATES[out_enc]:
        raise _invalid(f"audio.output.sample_rate {out_rate} is not valid for {out_enc} "
                       f"(valid: {', '.join(map(str, OUTPUT_RATES[out_enc]))})")
    if container not in (None, "none"):
        raise _invalid(f"audio.output.container {container!r} is not supported by the emulator")
    return in_enc, in_rate, out_enc, out_rate


def _functions(think: Mapping[str, Any], dialect: str, path: str) -> dict[str, FunctionDecl]:
    raw = think.get("functions")
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise _unparsable(f"{path}.functions")
    marker = "endpoint" if dialect == V1 else "url"
    out: dict[str, FunctionDecl] = {}
    for i, f in enumerate(raw):
        f = _obj(f, f"{path}.functions[{i}]")
        name = _str(f.get("name"), f"{path}.functions[{i}].name") or ""
        if "parameters" in f:
            _obj(f["parameters"], f"{path}.functions[{i}].parameters")
        out[name] = FunctionDecl(name, client_side=marker not in f)
    return out


def validate_settings(dialect: str, msg: Mapping[str, Any], strict: bool = True) -> Negotiated:
    """Check a settings message the way the real server does; return what it fixes."""
    _keys(dialect, msg, "", strict)
    in_enc, in_rate, out_enc, out_rate = _audio(msg.get("audio"))
    agent_raw = msg.get("agent")
    if dialect == V1 and isinstance(agent_raw, str):
        raise _invalid("stored agent configurations are not supported by the emulator")
    agent = _obj(agent_raw, "agent")
    _keys(dialect, agent, "agent", strict)
    functions: dict[str, FunctionDecl] = {}
    if dialect == V1:
        listen = _obj(agent.get("listen"), "agent.listen")
        _keys(dialect, listen, "agent.listen", strict)
        _str(_obj(listen.get("provider"), "agent.listen.provider").get("type"),
             "agent.listen.provider.type")
        for i, think in enumerate(_one_or_many(agent.get("think"), "agent.think", dialect)):
            _keys(dialect, think, "agent.think", strict)
            provider = _obj(think.get("provider"), "agent.think.provider")
            _str(provider.get("type"), "agent.think.provider.type")
            _str(provider.get("model"), "agent.think.provider.model", required=False)
            _str(think.get("prompt"), "agent.think.prompt", required=False)
            if i == 0:
                functions = _functions(think, dialect, "agent.think")
        for speak in _one_or_many(agent.get("speak"), "agent.speak", dialect):
            _keys(dialect, speak, "agent.speak", strict)
            _str(_obj(speak.get("provider"), "agent.speak.provider").get("type"),
                 "agent.speak.provider.type")
        greeting = _str(agent.get("greeting"), "agent.greeting", required=False)
        context = agent.get("context")
        messages: Any = []
        if context is not None:
            messages = _obj(context, "agent.context").get("messages", [])
            if not isinstance(messages, list):
                raise _unparsable("agent.context.messages")
        flags = msg.get("flags")
        history = True
        if flags is not None:
            history = _bool(_obj(flags, "flags").get("history"), "flags.history") is not False
        experimental = bool(_bool(msg.get("experimental"), "experimental"))
        _bool(msg.get("mip_opt_out"), "mip_opt_out")
        tags = msg.get("tags")
        if tags is not None and not (isinstance(tags, list)
                                     and all(isinstance(t, str) for t in tags)):
            raise _unparsable("tags")
        return Negotiated(in_enc, in_rate, out_enc, out_rate, greeting or None, history,
                          experimental, functions, tuple(messages))
    listen = _obj(agent.get("listen"), "agent.listen")
    _keys(dialect, listen, "agent.listen", strict)
    _str(listen.get("model"), "agent.listen.model")
    think = _obj(agent.get("think"), "agent.think")
    _keys(dialect, think, "agent.think", strict)
    _str(_obj(think.get("provider"), "agent.think.provider").get("type"),
         "agent.think.provider.type")
    _str(think.get("model"), "agent.think.model")
    _str(think.get("instructions"), "agent.think.instructions", required=False)
    functions = _functions(think, dialect, "agent.think")
    speak = _obj(agent.get("speak"), "agent.speak")
    _keys(dialect, speak, "agent.speak", strict)
    _str(speak.get("model"), "agent.speak.model")
    greeting = None
    messages = []
    context = msg.get("context")
    if context is not None:
        context = _obj(context, "context")
        messages = context.get("messages", [])
        if not isinstance(messages, list):
            raise _unparsable("context.messages")
        # EA has no greeting; `replay` speaks the last message when it is the assistant's.
        if _bool(context.get("replay"), "context.replay") and messages:
            last = messages[-1]
            if isinstance(last, dict) and last.get("role") == "assistant":
                greeting = str(last.get("content", "")) or None
    return Negotiated(in_enc, in_rate, out_enc, out_rate, greeting, True, False, functions,
                      tuple(messages))


def error(dialect: str, code: str, description: str) -> dict[str, Any]:
    """The dialect's Error message (EA carries only a message)."""
    if dialect == V1:
        return {"type": "Error", "description": description, "code": code}
    return {"type": "Error", "message": description}


def warning(code: str, description: str) -> dict[str, Any]:
    """A V1 Warning (EA has no warnings)."""
    return {"type": "Warning", "description": description, "code": code}


def welcome(dialect: str, request_id: str) -> dict[str, Any]:
    """The first frame: V1 names the id request_id, EA session_id."""
    return {"type": "Welcome", ("request_id" if dialect == V1 else "session_id"): request_id}


def function_call_request(dialect: str, call_id: str, name: str, arguments: Mapping[str, Any],
                          client_side: bool) -> dict[str, Any]:
    """A FunctionCallRequest in the dialect's shape (V1 arguments are a JSON string)."""
    if dialect == V1:
        return {"type": "FunctionCallRequest", "functions": [
            {"id": call_id, "name": name, "arguments": json.dumps(dict(arguments)),
             "client_side": client_side}]}
    return {"type": "FunctionCallRequest", "function_name": name, "function_call_id": call_id,
            "input": dict(arguments)}


def function_response_id(dialect: str, msg: Mapping[str, Any]) -> tuple[str, str]:
    """(call id, content) of a client FunctionCallResponse."""
    if dialect == V1:
        return str(msg["id"]), str(msg["content"])
    return str(msg["function_call_id"]), str(msg["output"])
