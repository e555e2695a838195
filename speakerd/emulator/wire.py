"""The emulator's view of the wire: validation of client messages, what settings fix, replies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .api import MESSAGES_EA, MESSAGES_V1, SETTINGS_EA, SETTINGS_V1
from .rules import listen_findings, settings_findings
from .schema import Checker, Obj, Unparsable

V1 = "v1"
EA = "early_access"
PATHS = {"/v1/agent/converse": V1, "/agent": EA}

SETTINGS_TYPE = {V1: "Settings", EA: "SettingsConfiguration"}

# Output combinations the real TTS supports and the emulator can synthesise.
OUTPUT_RATES = {"linear16": (8000, 16000, 24000, 32000, 48000), "mulaw": (8000, 16000)}
INPUT_ENCODINGS = ("linear16", "mulaw")

_SETTINGS = {V1: SETTINGS_V1, EA: SETTINGS_EA}
_MESSAGES = {V1: MESSAGES_V1, EA: MESSAGES_EA}

UPDATE_ACKS = {
    "UpdatePrompt": "PromptUpdated", "UpdateSpeak": "SpeakUpdated", "UpdateThink": "ThinkUpdated",
    "UpdateListen": "ListenUpdated", "UpdateInstructions": "InstructionsUpdated",
}

# Descriptions as the real server words them where one was observed.
UNPARSABLE_TEXT = "Text message received from client did not match any of the formats we expect."
TIMEOUT_TEXT = ("We waited too long for a websocket message. Please ensure that you're sending "
                "binary messages containing user speech.")
# Flux's defaults when the settings leave them out.
FLUX_EOT_THRESHOLD = 0.7
FLUX_EOT_TIMEOUT_MS = 5000


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
class Listening:
    """How the session's speech-to-text takes turns: Flux (with its thresholds) or Nova."""
    flux: bool = False
    model: str = ""
    eot_threshold: float = FLUX_EOT_THRESHOLD
    eot_timeout: float = FLUX_EOT_TIMEOUT_MS / 1000  # seconds

    @property
    def model_ends_turns(self) -> bool:
        """False with Flux at eot_threshold 1.0: only ForceEndTurn or the timeout end a turn."""
        return not (self.flux and self.eot_threshold >= 1.0)


def listening_of(provider: Mapping[str, Any] | None, before: Listening | None = None) -> Listening:
    """The turn-taking a listen provider asks for; an update keeps what it leaves out."""
    if provider is None:
        return Listening()
    flux = provider.get("version") == "v2"
    base = before if before is not None and before.flux == flux else Listening(flux)
    if not flux:
        return Listening(False, str(provider.get("model", "")))
    timeout = provider.get("eot_timeout_ms")
    return Listening(True, str(provider["model"]),
                     float(provider.get("eot_threshold", base.eot_threshold)),
                     base.eot_timeout if timeout is None else timeout / 1000)


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
    listening: Listening = field(default_factory=Listening)


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
    """Whether the dialect has a client message of this type (settings included)."""
    return type_ in _MESSAGES[dialect] or type_ == SETTINGS_TYPE[dialect]


def _parse(spec: Obj, msg: Mapping[str, Any], strict: bool) -> list[str]:
    """Shape check (UNPARSABLE_CLIENT_MESSAGE naming the field); returns the range findings."""
    checker = Checker(strict)
    try:
        checker.check(spec, msg, "")
    except Unparsable as exc:
        raise _unparsable(exc.path) from None
    return checker.invalid


def check_message(dialect: str, msg: Mapping[str, Any], strict: bool = True) -> None:
    """Reject a post-settings client message of an unknown type, the wrong shape or values."""
    spec = _MESSAGES[dialect].get(msg["type"])
    if spec is None:
        raise ClientMessageError("UNPARSABLE_CLIENT_MESSAGE", UNPARSABLE_TEXT)
    findings = _parse(spec, msg, strict)
    if msg["type"] == "UpdateListen":
        findings += listen_findings(msg["listen"]["provider"], "listen.provider")
    if findings:
        raise _invalid("; ".join(findings))


def _emulated_audio(audio: Mapping[str, Any]) -> tuple[str, int, str, int]:
    """What the emulator can stream: valid on the real server, narrower than it."""
    inp = audio.get("input")
    out = audio.get("output")
    if inp is None or out is None or "sample_rate" not in out or "encoding" not in out:
        raise _invalid("the emulator needs audio.input and audio.output with encoding and "
                       "sample_rate")
    in_enc, in_rate = inp.get("encoding", "linear16"), inp.get("sample_rate", 16000)
    out_enc, out_rate = out["encoding"], out["sample_rate"]
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
    if out.get("container", "none") != "none":
        raise _invalid(f"audio.output.container {out['container']!r} is not supported by the "
                       "emulator")
    return in_enc, in_rate, out_enc, out_rate


def _functions(think: Mapping[str, Any], dialect: str) -> dict[str, FunctionDecl]:
    marker = "endpoint" if dialect == V1 else "url"
    return {str(f.get("name", "")): FunctionDecl(str(f.get("name", "")), marker not in f)
            for f in think.get("functions", [])}


def validate_settings(dialect: str, msg: Mapping[str, Any], strict: bool = True) -> Negotiated:
    """Check a settings message field by field, the way the real server does: a shape error is
    UNPARSABLE_CLIENT_MESSAGE, a value it refuses INVALID_SETTINGS. Returns what it fixes."""
    findings = _parse(_SETTINGS[dialect], msg, strict)
    findings += settings_findings(dialect, msg)
    if findings:
        raise _invalid("; ".join(findings))
    audio = _emulated_audio(msg["audio"])
    agent = msg["agent"]
    if dialect == V1:
        if isinstance(agent, str):
            raise _invalid("stored agent configurations are not supported by the emulator")
        think = agent.get("think", {})
        first_think = think[0] if isinstance(think, list) else think
        flags = msg.get("flags", {})
        return Negotiated(*audio, agent.get("greeting") or None, flags.get("history", True),
                          bool(msg.get("experimental", False)),
                          _functions(first_think, dialect),
                          tuple(agent.get("context", {}).get("messages", [])),
                          listening_of(agent.get("listen", {}).get("provider")))
    greeting = None
    context = msg.get("context", {})
    messages = context.get("messages", [])
    # EA has no greeting; `replay` speaks the last message when it is the assistant's.
    if context.get("replay") and messages and messages[-1].get("role") == "assistant":
        greeting = str(messages[-1].get("content", "")) or None
    return Negotiated(*audio, greeting, True, False, _functions(agent["think"], dialect),
                      tuple(messages), Listening(False, str(agent.get("listen", {}).get("model", ""))))


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
