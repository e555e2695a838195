"""Every think and speak provider of both dialects, a full conversation each against the strict
emulator: the daemon's settings for it are accepted field by field, and the turn works."""

from __future__ import annotations

from typing import Any

import pytest

from speakerd.config import (
    SPEAK_PROVIDERS,
    THINK_PROVIDERS,
    AwsCredentials,
    ProviderSecret,
    ProviderSecrets,
)

pytestmark = pytest.mark.realtime

AWS = AwsCredentials("iam", "us-east-1", "AKIDEXAMPLE", "not-a-real-secret")
STS = AwsCredentials("sts", "eu-west-1", "AKIDEXAMPLE", "not-a-real-secret", "not-a-real-token")
KEY = {"authorization": "Bearer not-a-real-token"}

THINK: dict[str, dict[str, Any]] = {
    "open_ai": {"provider": "open_ai", "model": "gpt-4o-mini"},
    "anthropic": {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "temperature": 0.5},
    "google": {"provider": "google", "model": "gemini-2.0-flash"},
    "groq": {"provider": "groq", "model": "openai/gpt-oss-20b",
             "endpoint_url": "https://api.groq.com/openai/v1/chat/completions"},
    "aws_bedrock": {"provider": "aws_bedrock", "model": "anthropic.claude-3-haiku-20240307-v1:0",
                    "endpoint_url": "https://bedrock-runtime.us-east-1.amazonaws.com/"},
    "custom": {"provider": "custom", "model": "llama-3.1-8b-instant",
               "endpoint_url": "https://llm.example.invalid/v1/chat/completions"},
}
SPEAK_V1: dict[str, dict[str, Any]] = {
    "deepgram": {"provider": "deepgram", "model": "aura-2-thalia-en"},
    "eleven_labs": {"provider": "eleven_labs", "model": "eleven_turbo_v2_5", "language": "en-US",
                    "endpoint_url": "wss://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM"
                                    "/multi-stream-input"},
    "cartesia": {"provider": "cartesia", "model": "sonic-2", "voice_id": "a167e0f3-df7e"},
    "open_ai": {"provider": "open_ai", "model": "tts-1", "voice_id": "alloy",
                "endpoint_url": "https://api.openai.com/v1/audio/speech"},
    "aws_polly": {"provider": "aws_polly", "model": "neural", "voice_id": "Joanna",
                  "language": "en-US", "endpoint_url": "https://polly.us-east-1.amazonaws.com/v1/speech"},
}
SPEAK_EA: dict[str, dict[str, Any]] = {
    "deepgram": {"provider": "deepgram", "model": "aura-asteria-en"},
    "eleven_labs": {"provider": "eleven_labs", "model": "eleven_turbo_v2_5",
                    "voice_id": "21m00Tcm4TlvDq8ikWAM"},
    "cartesia": {"provider": "cartesia", "model": "sonic-2", "voice_id": "a167e0f3-df7e"},
}
SECRETS: dict[str, ProviderSecret] = {
    "groq": ProviderSecret(KEY), "aws_bedrock": ProviderSecret({}, AWS),
    "custom": ProviderSecret(KEY), "eleven_labs": ProviderSecret({"xi-api-key": "not-a-real-token"}),
    "open_ai_speak": ProviderSecret(KEY), "aws_polly": ProviderSecret({}, STS),
}

# Each row pairs one think and one speak provider, so every provider of each dialect has a
# conversation of its own; the listen provider varies along (Flux, multilingual Flux, Nova).
ROWS = [
    ("v1", "open_ai", "deepgram", {"version": "v2", "model": "flux-general-en"}),
    ("v1", "anthropic", "eleven_labs", {"version": "v1", "model": "nova-3"}),
    ("v1", "google", "cartesia", {"version": "v2", "model": "flux-general-multi",
                                  "language_hints": ["en"]}),
    ("v1", "groq", "open_ai", {"version": "v2", "model": "flux-general-en",
                               "keyterms": ["speakerd"]}),
    ("v1", "aws_bedrock", "aws_polly", {"version": "v2", "model": "flux-general-en"}),
    ("early_access", "open_ai", "deepgram", {"version": "v1", "model": "nova-3"}),
    ("early_access", "anthropic", "eleven_labs", {"version": "v1", "model": "nova-2"}),
    ("early_access", "custom", "cartesia", {"version": "v1", "model": "nova-3"}),
]


def test_the_rows_cover_every_provider_of_each_dialect() -> None:
    """No provider of either dialect goes without its conversation below."""
    for dialect in THINK_PROVIDERS:
        rows = [r for r in ROWS if r[0] == dialect]
        assert {r[1] for r in rows} == set(THINK_PROVIDERS[dialect])
        assert {r[2] for r in rows} == set(SPEAK_PROVIDERS[dialect])


@pytest.mark.parametrize("dialect,think,speak,listen", ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in ROWS])
def test_a_full_conversation_with_each_provider(make_rig: Any, dialect: str, think: str,
                                                speak: str, listen: dict[str, Any]) -> None:
    """press, speak, release, hear the reply: the strict emulator took the settings as sent."""
    speak_cfg = (SPEAK_V1 if dialect == "v1" else SPEAK_EA)[speak]
    secrets = ProviderSecrets(
        SECRETS.get(think, ProviderSecret()),
        SECRETS.get("open_ai_speak" if speak == "open_ai" else speak, ProviderSecret())
        if dialect == "v1" else ProviderSecret())
    rig = make_rig(dialect, secrets=secrets, agent={"listen": listen, "think": THINK[think],
                                                    "speak": speak_cfg})
    rec = rig.pulse.record_speaker()
    spoken = rig.full_turn()
    heard = rec.stop()
    session = rig.emulator.sessions[-1]
    assert session.negotiated is not None and session.live, session.close_reason
    agent = session.settings["agent"]
    assert agent["think"]["provider"]["type"] == think
    sent_speak = agent["speak"]["provider"] if dialect == "v1" else agent["speak"]
    assert (sent_speak["type"] if dialect == "v1" else sent_speak.get("provider", "deepgram")) \
        == speak
    rig.assert_parrot_heard(spoken, heard)
