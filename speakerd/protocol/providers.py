"""The listen, think and speak blocks of the settings, per dialect and per provider.

Each provider names its model and voice its own way; the field names here are those of
Deepgram's published message types (V1 `Settings`, early-access `SettingsConfiguration`).
"""

from __future__ import annotations

from typing import Any

from ..config import Config, ProviderSecret, SpeakConfig, ThinkConfig, resolved_listen, turn_taking
from .frames import key_values


def listen_provider_v1(cfg: Config) -> dict[str, Any]:
    """V1 agent.listen.provider: Nova (version v1, the API's default) or Flux (version v2)."""
    listen = resolved_listen(cfg)
    provider: dict[str, Any] = {"type": "deepgram"}
    if listen.version == "v1":
        provider["model"] = listen.model
        if cfg.agent.language:
            # Nova's language lives here; agent.language is deprecated for it.
            provider["language"] = cfg.agent.language
        if listen.keyterms:
            provider["keyterms"] = list(listen.keyterms)
        if listen.smart_format:
            provider["smart_format"] = True
        return provider
    provider["version"] = "v2"
    provider["model"] = listen.model
    if listen.keyterms:
        provider["keyterms"] = list(listen.keyterms)
    if listen.language_hints:
        provider["language_hints"] = list(listen.language_hints)
    eot, timeout = turn_taking(cfg)
    if eot is not None:
        provider["eot_threshold"] = eot
    if listen.eager_eot_threshold is not None:
        provider["eager_eot_threshold"] = listen.eager_eot_threshold
    if timeout is not None:
        provider["eot_timeout_ms"] = int(timeout)  # the API wants a JSON integer
    return provider


def _endpoint(url: str, headers: dict[str, str]) -> dict[str, Any]:
    # headers always, even empty: one reading of the schema requires the object whenever
    # endpoint is present, and the other accepts it.
    return {"url": url, "headers": headers}


def _aws(secret: ProviderSecret) -> dict[str, str] | None:
    aws = secret.aws
    if aws is None:
        return None
    out = {"type": aws.type, "region": aws.region, "access_key_id": aws.access_key_id,
           "secret_access_key": aws.secret_access_key}
    if aws.session_token:
        out["session_token"] = aws.session_token
    return out


def think_v1(think: ThinkConfig, secret: ProviderSecret) -> dict[str, Any]:
    """V1 agent.think without prompt and functions: the provider and its endpoint."""
    provider: dict[str, Any] = {"type": think.provider, "model": think.model}
    if think.temperature is not None:
        provider["temperature"] = think.temperature
    credentials = _aws(secret)
    if credentials is not None and think.provider == "aws_bedrock":
        provider["credentials"] = credentials
    out: dict[str, Any] = {"provider": provider}
    if think.endpoint_url:
        out["endpoint"] = _endpoint(think.endpoint_url,
                                    {**think.endpoint_headers, **secret.headers})
    return out


def think_ea(think: ThinkConfig, secret: ProviderSecret) -> dict[str, Any]:
    """EA agent.think without instructions and functions: the provider and the model."""
    provider: dict[str, Any] = {"type": think.provider}
    if think.provider == "custom":  # EA takes a URL for this provider only
        provider["url"] = think.endpoint_url
        headers = {**think.endpoint_headers, **secret.headers}
        if headers:
            provider["headers"] = key_values(headers)
    return {"provider": provider, "model": think.model}


def _speak_provider_v1(speak: SpeakConfig, secret: ProviderSecret) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": speak.provider}
    match speak.provider:
        case "deepgram":
            provider["model"] = speak.model  # the model names the voice
            if speak.model.startswith("flux-"):
                provider["version"] = "v2"  # Flux TTS; Aura is v1, the default
        case "eleven_labs":
            provider["model_id"] = speak.model  # the voice is part of the endpoint URL
            if speak.language:
                provider["language"] = speak.language
        case "cartesia":
            provider["model_id"] = speak.model
            provider["voice"] = {"mode": "id", "id": speak.voice_id}
            if speak.language:
                provider["language"] = speak.language
        case "open_ai":
            provider["model"] = speak.model
            provider["voice"] = speak.voice_id
        case "aws_polly":
            provider["voice"] = speak.voice_id
            provider["language"] = speak.language
            provider["engine"] = speak.model
            credentials = _aws(secret)
            if credentials is not None:
                provider["credentials"] = credentials
        case _:  # refused by check-config; sent as named so the server says what it thinks
            provider["model"] = speak.model
    return provider


def speak_v1(speak: SpeakConfig, secret: ProviderSecret) -> dict[str, Any]:
    """V1 agent.speak: the provider and, for a provider Deepgram does not host, its endpoint."""
    out: dict[str, Any] = {"provider": _speak_provider_v1(speak, secret)}
    if speak.endpoint_url:
        out["endpoint"] = _endpoint(speak.endpoint_url,
                                    {**speak.endpoint_headers, **secret.headers})
    return out


def speak_ea(speak: SpeakConfig) -> dict[str, Any]:
    """EA agent.speak: the model, and a provider with its voice for a third-party voice."""
    out: dict[str, Any] = {"model": speak.model}
    if speak.provider != "deepgram":  # EA: no provider means Deepgram's own TTS
        out["provider"] = speak.provider
        out["voice_id"] = speak.voice_id
    return out
