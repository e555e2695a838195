"""Hypothesis strategies: raw agent configs and provider secrets across every provider, dialect
and listen version. Each draw writes what a user following the docs would (provider by
provider), and now and then one slip that check-config must refuse."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from speakerd.config import (
    FLUX_LANGUAGES,
    SPEAK_PROVIDERS,
    THINK_PROVIDERS,
    AwsCredentials,
    ProviderSecret,
    ProviderSecrets,
)

names = st.text(alphabet=string.ascii_lowercase + string.digits + "-_.", min_size=1, max_size=12)
texts = st.text(max_size=20)
headers = st.dictionaries(st.sampled_from(["authorization", "x-api-key", "xi-api-key", "x-client"]),
                          st.text(max_size=12), min_size=1, max_size=2)

THINK_ENDPOINTS = {"groq": "https://api.groq.com/openai/v1/chat/completions",
                   "aws_bedrock": "https://bedrock-runtime.us-east-1.amazonaws.com/",
                   "custom": "https://llm.example.invalid/v1/chat/completions",
                   "open_ai": "https://gateway.example.invalid/v1/chat/completions",
                   "anthropic": "https://gateway.example.invalid/v1/messages"}
SPEAK_ENDPOINTS = {"eleven_labs": "wss://api.elevenlabs.io/v1/text-to-speech/VOICE/multi-stream-input",
                   "open_ai": "https://api.openai.com/v1/audio/speech",
                   "aws_polly": "https://polly.us-east-1.amazonaws.com/v1/speech",
                   "cartesia": "https://api.cartesia.ai/tts/bytes"}
SPEAK_MODELS = {"deepgram": ["aura-2-thalia-en", "aura-asteria-en", "flux-kit-en"],
                "eleven_labs": ["eleven_turbo_v2_5", "eleven_multilingual_v2"],
                "cartesia": ["sonic-2", "sonic-multilingual"], "open_ai": ["tts-1", "tts-1-hd"],
                "aws_polly": ["neural", "generative", "standard", "long-form"]}
VOICES = {"cartesia": ["a167e0f3-df7e"], "open_ai": ["alloy", "nova", "shimmer"],
          "aws_polly": ["Joanna", "Matthew"], "eleven_labs": ["21m00Tcm4TlvDq8ikWAM"]}

# One slip a user might make: (section, key, value); check-config should refuse most of them.
SLIPS: list[tuple[str, str, Any]] = [
    ("think", "provider", "x_ai"), ("think", "provider", "custom"), ("think", "model", ""),
    ("think", "temperature", 1.7), ("think", "endpoint_url", ""),
    ("think", "endpoint_url", "ftp://x.invalid"), ("speak", "voice_id", ""),
    ("speak", "voice_id", "robot"), ("speak", "model", "aura-2-thalia-en"),
    ("speak", "endpoint_url", ""), ("speak", "language", ""), ("speak", "language", "en-US"),
    ("speak", "endpoint_url", "http://plain.invalid/"),
    ("speak", "endpoint_url", "wss://api.elevenlabs.io/v1/x?output_format=pcm_16000"),
    ("speak", "provider", "open_ai"), ("speak", "provider", "aws_polly"),
    ("listen", "version", "v2"), ("listen", "model", "flux-general-en"),
    ("listen", "model", "nova-3"), ("listen", "smart_format", True),
    ("listen", "language_hints", ["pl"]), ("listen", "eot_threshold", 1.0),
    ("listen", "eager_eot_threshold", 0.9), ("agent", "language", "pl"),
]


@st.composite
def listen_configs(draw: st.DrawFn, dialect: str = "v1") -> dict[str, Any]:
    """A listen section for the dialect: automatic, Flux or Nova (Nova only on early access)."""
    if draw(st.integers(0, 3)) == 0:
        return {"keyterms": draw(st.lists(names, max_size=2))}  # version auto, model chosen
    if dialect == "early_access" or draw(st.integers(0, 3)) == 0:
        return {"version": "v1", "model": draw(st.sampled_from(["nova-3", "nova-2"])),
                "keyterms": draw(st.lists(names, max_size=2)), "smart_format": draw(st.booleans())}
    model = draw(st.sampled_from(["flux-general-en", "flux-general-multi"]))
    out: dict[str, Any] = {"version": "v2", "model": model,
                           "keyterms": draw(st.lists(names, max_size=2)),
                           "eot_threshold": draw(st.none() | st.floats(0.5, 0.99)),
                           "eot_timeout_ms": draw(st.none() | st.integers(500, 60000))}
    if model == "flux-general-multi":
        out["language_hints"] = draw(st.lists(st.sampled_from(FLUX_LANGUAGES + ("pt-BR",)),
                                              max_size=2))
    if draw(st.booleans()):
        out["eager_eot_threshold"] = draw(st.floats(0.3, 0.5))
    return out


@st.composite
def think_configs(draw: st.DrawFn, dialect: str, provider: str) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": provider, "prompt": draw(texts),
                           "model": draw(st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest",
                                                          "gemini-2.0-flash"]) | names),
                           "temperature": draw(st.none() | st.floats(0, 1 if provider == "anthropic"
                                                                        else 2))}
    needs = provider in ("groq", "aws_bedrock", "custom")
    may = dialect == "v1" and provider in ("open_ai", "anthropic")
    if needs or (may and draw(st.booleans())):
        out["endpoint_url"] = THINK_ENDPOINTS[provider]
        if draw(st.booleans()):
            out["endpoint_headers"] = draw(headers)
    return out


@st.composite
def speak_configs(draw: st.DrawFn, dialect: str, provider: str) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": provider, "model": draw(st.sampled_from(
        [m for m in SPEAK_MODELS[provider] if dialect == "v1" or not m.startswith("flux")]))}
    if provider == "deepgram":
        return out
    if dialect == "early_access" or provider != "eleven_labs":
        out["voice_id"] = draw(st.sampled_from(VOICES[provider]))
    if dialect == "early_access":
        return out
    if provider == "aws_polly" or (provider in ("eleven_labs", "cartesia") and draw(st.booleans())):
        out["language"] = draw(st.sampled_from(["en-US", "de-DE"]))
    if provider != "cartesia" or draw(st.booleans()):
        out["endpoint_url"] = SPEAK_ENDPOINTS[provider]
        if draw(st.booleans()):
            out["endpoint_headers"] = draw(headers)
    return out


@st.composite
def aws_credentials(draw: st.DrawFn) -> AwsCredentials:
    kind = draw(st.sampled_from(["iam", "sts"]))
    return AwsCredentials(kind, draw(st.sampled_from(["us-east-1", "eu-west-2"])), "AKIDEXAMPLE",
                          draw(st.text(string.ascii_letters, min_size=1, max_size=12)),
                          "token" if kind == "sts" else "")


def _secret(draw: st.DrawFn, sub: dict[str, Any]) -> ProviderSecret:
    aws = draw(aws_credentials()) if sub["provider"] in ("aws_bedrock", "aws_polly") else None
    extra = draw(st.just({}) | headers) if sub.get("endpoint_url") else {}
    if draw(st.integers(0, 9)) == 0:  # a slip: AWS keys for a provider that takes none
        aws = draw(aws_credentials())
    return ProviderSecret(extra, aws)


@st.composite
def agent_setups(draw: st.DrawFn, dialect: str | None = None, think: str | None = None,
                 speak: str | None = None) -> tuple[dict[str, Any], ProviderSecrets]:
    """(a raw config, its providers' secrets); no pass-through. Given arguments are fixed."""
    dialect = dialect or draw(st.sampled_from(["v1", "v1", "early_access"]))
    think = think or draw(st.sampled_from(THINK_PROVIDERS[dialect]))
    speak = speak or draw(st.sampled_from(SPEAK_PROVIDERS[dialect]))
    listen = draw(listen_configs(dialect))
    model = listen.get("model", "")
    language = draw(st.sampled_from(
        ["", "en", "en-US"] if model == "flux-general-en" else
        ["", "multi", "de", "es", "pt-BR", "ja"] if model == "flux-general-multi" else
        ["", "en", "de", "pl", "sv", "multi", "pt-BR"]))
    output = draw(st.sampled_from([("linear16", r) for r in (8000, 16000, 24000, 32000, 48000)]
                                  + [("mulaw", 8000), ("mulaw", 16000)]))
    functions = []
    for i, server_side in enumerate(draw(st.lists(st.booleans(), max_size=2))):
        entry: dict[str, Any] = {"name": f"f{i}", "description": draw(texts)}
        if server_side:
            entry["endpoint"] = {"url": "https://fn.example.invalid", "headers": draw(headers)}
        else:
            entry["action"] = {"type": "end_conversation"}
        functions.append(entry)
    raw: dict[str, Any] = {
        "agent": {"dialect": dialect, "language": language,
                  "greeting": draw(st.sampled_from(["", "Hello!"])), "listen": listen,
                  "think": draw(think_configs(dialect, think)),
                  "speak": draw(speak_configs(dialect, speak)),
                  "tags": draw(st.lists(names, max_size=2)), "mip_opt_out": draw(st.booleans()),
                  "experimental": draw(st.booleans()), "history": draw(st.booleans())},
        "button": {"mode": draw(st.sampled_from(["hold", "toggle"]))},
        "audio": {"duplex": draw(st.sampled_from(["half", "full"])),
                  "input": {"sample_rate": draw(st.sampled_from([16000, 8000, 48000]))},
                  "output": {"encoding": output[0], "sample_rate": output[1]}},
        "functions": functions,
    }
    secrets = ProviderSecrets(_secret(draw, raw["agent"]["think"]),
                              _secret(draw, raw["agent"]["speak"]))
    if draw(st.integers(0, 4)) == 0:
        section, key, value = draw(st.sampled_from(SLIPS))
        (raw["agent"] if section == "agent" else raw["agent"][section])[key] = value
    return raw, secrets
