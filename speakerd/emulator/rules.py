"""What the real server refuses in settings that parse (INVALID_SETTINGS): a provider without
the endpoint or credentials it needs, a model of the wrong family, inconsistent thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .api import FLUX_MODELS

V1, EA = "v1", "early_access"

_THINK_NEEDS_ENDPOINT = ("groq", "aws_bedrock")
_SPEAK_NEEDS_ENDPOINT = ("eleven_labs", "open_ai", "aws_polly")
_FLUX_TTS_ENCODINGS = ("linear16", "mulaw", "alaw")
_FLUX_TTS_RATES = {"linear16": (8000, 16000, 24000, 32000, 44100, 48000),
                   "mulaw": (8000, 16000), "alaw": (8000, 16000)}
_FILLER_FIELDS = ("initial_agent_filler", "agent_filler_max_count", "agent_filler_interval_ms")
DEFAULT_EOT_THRESHOLD = 0.7


def _many(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, Mapping) else []


def _url_ok(url: str, schemes: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    return parts.scheme in schemes and bool(parts.netloc)


def _credentials(provider: Mapping[str, Any], path: str, out: list[str]) -> None:
    creds = provider.get("credentials")
    if isinstance(creds, Mapping) and creds.get("type") == "sts" and not creds.get("session_token"):
        out.append(f"{path}.credentials: sts credentials need a session_token")


def listen_findings(provider: Mapping[str, Any], path: str) -> list[str]:
    """A listen provider's values (settings and UpdateListen alike)."""
    out: list[str] = []
    model = str(provider.get("model", ""))
    if provider.get("version") == "v2":
        if model not in FLUX_MODELS:
            out.append(f"{path}.model: {model!r} is not a Flux model ({', '.join(FLUX_MODELS)})")
        if provider.get("language_hints") and model != "flux-general-multi":
            out.append(f"{path}.language_hints: only flux-general-multi takes language hints")
        eot = provider.get("eot_threshold", DEFAULT_EOT_THRESHOLD)
        eager = provider.get("eager_eot_threshold")
        if eager is not None and eager > eot:
            out.append(f"{path}.eager_eot_threshold must not exceed eot_threshold")
    elif model.startswith("flux-"):
        out.append(f"{path}.model: {model!r} is not a valid model here (Flux needs version v2)")
    return out


def _think_v1(think: Mapping[str, Any], path: str, out: list[str]) -> None:
    provider = think["provider"]
    kind = provider["type"]
    endpoint = think.get("endpoint")
    if kind in _THINK_NEEDS_ENDPOINT and endpoint is None:
        out.append(f"{path}.endpoint is required for the {kind} provider")
    if endpoint is not None and not _url_ok(endpoint["url"], ("https", "http")):
        out.append(f"{path}.endpoint.url must be an http(s) URL")
    if kind == "aws_bedrock" and "credentials" not in provider:
        out.append(f"{path}.provider.credentials are required for aws_bedrock")
    _credentials(provider, f"{path}.provider", out)
    for i, fn in enumerate(think.get("functions", [])):
        if any(key in fn for key in _FILLER_FIELDS):
            out.append(f"{path}.functions[{i}]: filler fields need agent.think_live")


def _speak_v1(speak: Mapping[str, Any], output: Mapping[str, Any], path: str,
              out: list[str]) -> None:
    provider = speak["provider"]
    kind = provider["type"]
    endpoint = speak.get("endpoint")
    if kind in _SPEAK_NEEDS_ENDPOINT and endpoint is None:
        out.append(f"{path}.endpoint is required for the {kind} provider")
    if endpoint is not None:
        url = endpoint["url"]
        schemes = ("https", "wss") if kind == "eleven_labs" else ("https",)
        if not _url_ok(url, schemes):
            out.append(f"{path}.endpoint.url must use {' or '.join(schemes)}")
        elif kind == "eleven_labs" and {"output_format", "model_id"} & set(
                parse_qs(urlsplit(url).query)):
            out.append(f"{path}.endpoint.url must not set output_format or model_id")
    _credentials(provider, f"{path}.provider", out)
    if kind != "deepgram":
        return
    flux_model = str(provider["model"]).startswith("flux-")
    if flux_model != (provider.get("version") == "v2"):
        out.append(f"{path}.provider.version must be v2 for a Flux voice and v1 (or absent) for "
                   "Aura")
    if flux_model:
        encoding = output.get("encoding", "linear16")
        if encoding not in _FLUX_TTS_ENCODINGS or output.get("container", "none") != "none" or (
                "bitrate" in output):
            out.append("audio.output: Flux voices stream linear16, mulaw or alaw without "
                       "container or bitrate")
        elif "sample_rate" in output and output["sample_rate"] not in _FLUX_TTS_RATES[encoding]:
            out.append(f"audio.output.sample_rate: not a Flux voice rate for {encoding}")


def settings_findings(dialect: str, msg: Mapping[str, Any]) -> list[str]:
    """Every value the real server refuses in a settings message that parsed."""
    out: list[str] = []
    agent = msg["agent"]
    if dialect == EA:
        model = str(agent.get("listen", {}).get("model", ""))
        if model.startswith("flux-"):
            out.append("agent.listen.model: early access has no Flux models")
        speak = agent.get("speak", {})
        if "provider" in speak and not speak.get("voice_id"):
            out.append(f"agent.speak.voice_id is required for {speak['provider']}")
        provider = agent["think"]["provider"]
        if provider["type"] == "custom" and not _url_ok(provider["url"], ("https", "http")):
            out.append("agent.think.provider.url must be an http(s) URL")
        return out
    if not isinstance(agent, Mapping):
        return out  # a stored agent id; the caller refuses it as unsupported
    provider = agent.get("listen", {}).get("provider")
    if provider is not None:
        out += listen_findings(provider, "agent.listen.provider")
    thinks = _many(agent.get("think"))
    for i, think in enumerate(thinks):
        _think_v1(think, "agent.think" + (f"[{i}]" if len(thinks) > 1 else ""), out)
    speaks = _many(agent.get("speak"))
    output = msg["audio"].get("output", {})
    for i, speak in enumerate(speaks):
        _speak_v1(speak, output, "agent.speak" + (f"[{i}]" if len(speaks) > 1 else ""), out)
    return out
