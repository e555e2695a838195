"""The emulator's strict reading of the settings: what the real server refuses, it refuses, with
the real error codes; every golden settings message of the codec passes it."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speakerd.emulator.wire import ClientMessageError, check_message, validate_settings

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "protocol"
SETTINGS = sorted(GOLDEN.glob("*/client_settings_*.json"))
UNPARSABLE, INVALID = "UNPARSABLE_CLIENT_MESSAGE", "INVALID_SETTINGS"


def _golden(dialect: str, name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / dialect / f"{name}.json").read_text(encoding="utf-8"))["expected"]


@pytest.mark.parametrize("path", SETTINGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_golden_settings_message_is_accepted(path: Path) -> None:
    """The codec's golden settings, every provider of both dialects, pass strict validation."""
    message = json.loads(path.read_text(encoding="utf-8"))["expected"]
    validate_settings(path.parent.name, message)


def _v1(name: str = "client_settings_defaults") -> dict[str, Any]:
    return copy.deepcopy(_golden("v1", name))


def _set(path: str, value: Any, name: str = "client_settings_defaults",
         dialect: str = "v1") -> dict[str, Any]:
    """A golden message with one field set (or deleted, for value DELETE)."""
    message = copy.deepcopy(_golden(dialect, name))
    *parents, last = path.split(".")
    target = message
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return message


DELETE = object()
LISTEN = "agent.listen.provider"

CASES: list[tuple[str, Callable[[], dict[str, Any]], str, str]] = [
    # (what, message, code, the field or words the description names)
    ("an unknown field", lambda: _set(f"{LISTEN}.language", "en"), UNPARSABLE, f"{LISTEN}.language"),
    ("smart_format with Flux", lambda: _set(f"{LISTEN}.smart_format", False), UNPARSABLE,
     f"{LISTEN}.smart_format"),
    ("the singular language_hint", lambda: _set(f"{LISTEN}.language_hint", "de"), UNPARSABLE,
     "language_hint"),
    ("Flux tunables without version v2", lambda: _set(f"{LISTEN}.version", DELETE), UNPARSABLE,
     f"{LISTEN}.eot_threshold"),
    ("a timeout that is not an integer", lambda: _set(f"{LISTEN}.eot_timeout_ms", 60000.0),
     UNPARSABLE, f"{LISTEN}.eot_timeout_ms"),
    ("a rate as text", lambda: _set("audio.input.sample_rate", "16000"), UNPARSABLE,
     "audio.input.sample_rate"),
    ("eot_threshold above 1.0", lambda: _set(f"{LISTEN}.eot_threshold", 1.2), INVALID,
     "eot_threshold"),
    ("eot_timeout_ms above 60000", lambda: _set(f"{LISTEN}.eot_timeout_ms", 90000), INVALID,
     "eot_timeout_ms"),
    ("eager above eot", lambda: _set(f"{LISTEN}.eager_eot_threshold", 0.85,
                                     "client_settings_flux_multi"), INVALID, "eager_eot_threshold"),
    ("a Nova model on Flux", lambda: _set(f"{LISTEN}.model", "nova-3"), INVALID, "Flux model"),
    ("a Flux model on Nova", lambda: _set(f"{LISTEN}.model", "flux-general-en",
                                          "client_settings_nova"), INVALID, "version v2"),
    ("language hints for flux-general-en", lambda: _set(f"{LISTEN}.language_hints", ["de"]),
     INVALID, "language_hints"),
    ("the removed x_ai provider", lambda: _set("agent.think.provider.type", "x_ai"), UNPARSABLE,
     "agent.think.provider.type"),
    ("anthropic above temperature 1", lambda: _set("agent.think.provider.temperature", 1.5,
                                                   "client_settings_full"), INVALID,
     "temperature"),
    ("groq without its endpoint", lambda: _set("agent.think.endpoint", DELETE,
                                               "client_settings_think_groq"), INVALID,
     "endpoint is required"),
    ("an endpoint without headers", lambda: _set("agent.think.endpoint.headers", DELETE,
                                                 "client_settings_think_groq"), UNPARSABLE,
     "agent.think.endpoint.headers"),
    ("bedrock without credentials", lambda: _set("agent.think.provider.credentials", DELETE,
                                                 "client_settings_think_aws_bedrock"), INVALID,
     "credentials"),
    ("an upper-case credential type", lambda: _set("agent.think.provider.credentials.type", "IAM",
                                                   "client_settings_think_aws_bedrock"),
     UNPARSABLE, "credentials.type"),
    ("Polly without language", lambda: _set("agent.speak.provider.language", DELETE,
                                            "client_settings_aws_polly"), UNPARSABLE,
     "agent.speak.provider.language"),
    ("Polly without credentials", lambda: _set("agent.speak.provider.credentials", DELETE,
                                               "client_settings_aws_polly"), UNPARSABLE,
     "agent.speak.provider.credentials"),
    ("sts without a session token", lambda: _set(
        "agent.speak.provider.credentials.session_token", DELETE, "client_settings_aws_polly"),
     INVALID, "session_token"),
    ("Polly's deprecated engine spelling", lambda: _set("agent.speak.provider.engine", "Neural",
                                                        "client_settings_aws_polly"), UNPARSABLE,
     "engine"),
    ("Cartesia without a voice", lambda: _set("agent.speak.provider.voice", DELETE,
                                              "client_settings_cartesia"), UNPARSABLE,
     "agent.speak.provider.voice"),
    ("an OpenAI voice it lacks", lambda: _set("agent.speak.provider.voice", "robot",
                                              "client_settings_open_ai_voice"), UNPARSABLE,
     "voice"),
    ("ElevenLabs without its endpoint", lambda: _set("agent.speak.endpoint", DELETE,
                                                     "client_settings_eleven_labs"), INVALID,
     "endpoint is required"),
    ("ElevenLabs with output_format in the URL", lambda: _set(
        "agent.speak.endpoint.url", "wss://api.elevenlabs.io/v1/x?output_format=pcm_16000",
        "client_settings_eleven_labs"), INVALID, "output_format"),
    ("an Aura model as Flux TTS", lambda: _set("agent.speak.provider.version", "v2"), INVALID,
     "version"),
    ("mip_opt_out inside agent", lambda: _set("agent.mip_opt_out", True), UNPARSABLE,
     "agent.mip_opt_out"),
]
EA_CASES: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    ("an OpenAI voice", lambda: _set("agent.speak.provider", "open_ai", dialect="early_access"),
     UNPARSABLE),
    ("deepgram named as a provider", lambda: _set("agent.speak.provider", "deepgram",
                                                  dialect="early_access"), UNPARSABLE),
    ("a third-party voice without voice_id", lambda: _set(
        "agent.speak.voice_id", DELETE, "client_settings_cartesia", "early_access"), INVALID),
    ("a URL for open_ai", lambda: _set("agent.think.provider.url", "https://x.invalid",
                                       dialect="early_access"), UNPARSABLE),
    ("custom without its URL", lambda: _set("agent.think.provider.url", DELETE,
                                            "client_settings_custom", "early_access"), UNPARSABLE),
    ("groq", lambda: _set("agent.think.provider.type", "groq", dialect="early_access"),
     UNPARSABLE),
    ("context without replay", lambda: _set("context.replay", DELETE, "client_settings_context",
                                            "early_access"), UNPARSABLE),
    ("a Flux listen model", lambda: _set("agent.listen.model", "flux-general-en",
                                         dialect="early_access"), INVALID),
]


@pytest.mark.parametrize("what,message,code,named", CASES, ids=[c[0] for c in CASES])
def test_v1_refusals_name_the_field_with_the_real_code(
        what: str, message: Callable[[], dict[str, Any]], code: str, named: str) -> None:
    """Each slip of a V1 encoder is refused with the real server's code and names the field."""
    with pytest.raises(ClientMessageError) as info:
        validate_settings("v1", message())
    assert info.value.code == code, info.value.description
    assert named in info.value.description


@pytest.mark.parametrize("what,message,code", EA_CASES, ids=[c[0] for c in EA_CASES])
def test_early_access_refusals(what: str, message: Callable[[], dict[str, Any]],
                               code: str) -> None:
    """Each slip of an early-access encoder is refused with the real server's code."""
    with pytest.raises(ClientMessageError) as info:
        validate_settings("early_access", message())
    assert info.value.code == code, info.value.description


def test_lenient_keys_let_unknown_fields_through_but_not_wrong_types() -> None:
    """The --lenient-keys knob ignores unknown fields only; shapes and values still count."""
    validate_settings("v1", _set(f"{LISTEN}.language", "en"), strict=False)
    with pytest.raises(ClientMessageError):
        validate_settings("v1", _set(f"{LISTEN}.eot_threshold", "high"), strict=False)


@pytest.mark.parametrize("message,code", [
    ({"type": "ForceEndTurn", "now": True}, UNPARSABLE),
    ({"type": "UpdateListen", "listen": {"provider": {"type": "deepgram", "version": "v2"}}},
     UNPARSABLE),
    ({"type": "UpdateListen", "listen": {"provider": {
        "type": "deepgram", "version": "v2", "model": "flux-general-en", "eot_threshold": 0.2}}},
     INVALID),
    ({"type": "FunctionCallResponse", "id": "c", "name": "f", "content": "x", "extra": 1},
     UNPARSABLE),
    ({"type": "InjectAgentMessage", "content": "hi"}, UNPARSABLE),
])
def test_other_client_messages_are_checked_field_by_field(message: dict[str, Any],
                                                          code: str) -> None:
    """After the settings, every client message is as strict: shape, then values."""
    with pytest.raises(ClientMessageError) as info:
        check_message("v1", message)
    assert info.value.code == code
