"""The agent section's rules: the providers each dialect offers, what each one needs, and the
Flux turn-taking the button mode implies. Every message says what the API needs."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from .schema import Config, ListenConfig, SpeakConfig, ThinkConfig

Problem = Callable[[str, str], None]  # (path, message)

V1, EA = "v1", "early_access"

# The providers Deepgram's published message types name, per dialect.
THINK_PROVIDERS: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    V1: ("open_ai", "anthropic", "google", "groq", "aws_bedrock"),
    EA: ("open_ai", "anthropic", "custom"),
})
SPEAK_PROVIDERS: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    V1: ("deepgram", "eleven_labs", "cartesia", "open_ai", "aws_polly"),
    EA: ("deepgram", "eleven_labs", "cartesia"),
})
# V1 providers the API serves only through the user's own endpoint.
THINK_ENDPOINT_REQUIRED = ("groq", "aws_bedrock")
SPEAK_ENDPOINT_REQUIRED = ("eleven_labs", "open_ai", "aws_polly")
AWS_PROVIDERS = ("aws_bedrock", "aws_polly")

FLUX_MODELS = ("flux-general-en", "flux-general-multi")
# What flux-general-multi hears (a locale such as pt-BR counts as its base language).
FLUX_LANGUAGES = ("en", "es", "fr", "de", "hi", "ru", "pt", "ja", "it", "nl")
OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")
POLLY_ENGINES = ("generative", "long-form", "standard", "neural")

# Hold mode with Flux: only the release (ForceEndTurn) ends a turn, and the silence timeout
# that still ends one is pushed to its maximum so a pause while holding is never a turn's end.
HOLD_EOT_THRESHOLD = 1.0
HOLD_EOT_TIMEOUT_MS = 60000

_EXAMPLE_ENDPOINTS = {
    "groq": "https://api.groq.com/openai/v1/chat/completions",
    "aws_bedrock": "https://bedrock-runtime.us-east-1.amazonaws.com/",
    "eleven_labs": "wss://api.elevenlabs.io/v1/text-to-speech/VOICE_ID/multi-stream-input",
    "open_ai": "https://api.openai.com/v1/audio/speech",
    "aws_polly": "https://polly.us-east-1.amazonaws.com/v1/speech",
}
_EXAMPLE_MODELS = {"eleven_labs": "eleven_turbo_v2_5", "cartesia": "sonic-2", "open_ai": "tts-1"}


def resolved_listen(cfg: Config) -> ListenConfig:
    """The listen settings as sent: version auto and an empty model chosen for the language.

    Flux where it hears the language (flux-general-en for English, flux-general-multi with the
    language as its hint for the nine others), so a release can end the turn at once; Nova
    (nova-3) for any other language, and always on early access, which has no Flux.
    """
    listen = cfg.agent.listen
    base = _base(cfg.agent.language)
    version = listen.version
    if version == "auto":
        if cfg.agent.dialect == EA:
            version = "v1"
        elif listen.model:
            version = "v2" if listen.model.startswith("flux-") else "v1"
        else:
            version = "v2" if base in FLUX_LANGUAGES + ("", "multi") else "v1"
    model, hints = listen.model, listen.language_hints
    if not model:
        if version == "v1":
            model = "nova-3"
        elif base in ("", "en"):
            model = "flux-general-en"
        else:
            model = "flux-general-multi"
            if not hints and base in FLUX_LANGUAGES:
                hints = (cfg.agent.language,)
    return dataclasses.replace(listen, version=version, model=model, language_hints=hints)


def is_flux(cfg: Config) -> bool:
    """Whether the listen provider sent is Flux, the one that honours ForceEndTurn."""
    return resolved_listen(cfg).version == "v2"


def turn_taking(cfg: Config) -> tuple[float | None, int | None]:
    """(eot_threshold, eot_timeout_ms) to send for Flux; None: the server's default.

    Hold mode in half duplex: the button owns the turn, so the model's own end-of-turn is off
    (1.0) unless set, and with it the silence timeout is at its maximum unless set.
    """
    listen = cfg.agent.listen
    if not is_flux(cfg):
        return None, None
    button_owns_turn = cfg.button.mode == "hold" and cfg.audio.duplex == "half"
    eot = listen.eot_threshold
    if eot is None and button_owns_turn:
        eot = HOLD_EOT_THRESHOLD
    timeout = listen.eot_timeout_ms
    if timeout is None and eot == HOLD_EOT_THRESHOLD:
        timeout = HOLD_EOT_TIMEOUT_MS
    return eot, timeout


def _base(language: str) -> str:
    return language.split("-")[0].strip().lower()


def _url(url: str, schemes: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    return parts.scheme in schemes and bool(parts.netloc)


def check_agent(cfg: Config, problem: Problem) -> None:
    """Every rule of the agent section that involves the dialect or the provider."""
    dialect = cfg.agent.dialect
    if dialect not in THINK_PROVIDERS:
        return  # the loader has named the bad dialect; what it offers is unknown
    _listen(cfg, dialect, problem)
    _think(cfg.agent.think, dialect, problem)
    _speak(cfg.agent.speak, dialect, problem)


# --- listen --------------------------------------------------------------------------------

def _listen(cfg: Config, dialect: str, problem: Problem) -> None:
    listen, sent = cfg.agent.listen, resolved_listen(cfg)
    p = "agent.listen"
    flux_keys = {"language_hints": bool(listen.language_hints),
                 "eot_threshold": listen.eot_threshold is not None,
                 "eager_eot_threshold": listen.eager_eot_threshold is not None,
                 "eot_timeout_ms": listen.eot_timeout_ms is not None}
    if sent.version == "v1":
        if sent.model.startswith("flux-"):
            problem(f"{p}.model", "early_access has no Flux models" if dialect == EA else
                    f"{sent.model} is a Flux model: set {p}.version: v2 (or auto)")
        for key, present in flux_keys.items():
            if present:
                problem(f"{p}.{key}", "only Flux (version v2) takes it" + (
                    f"; Flux does not hear {cfg.agent.language[:16]}" if listen.version == "auto"
                    and not listen.model else ""))
        return
    if dialect == EA:
        problem(f"{p}.version", "early_access has no Flux (v2) listen; set version: auto (Nova) "
                                "or v1")
        return
    if sent.model not in FLUX_MODELS:
        problem(f"{p}.model", f"Flux (version v2) takes {' or '.join(FLUX_MODELS)}, "
                              f"got {sent.model[:40]!r}")
    if listen.smart_format:
        problem(f"{p}.smart_format", "Flux (version v2) has no smart_format; set it false or "
                                     "use version v1")
    if listen.language_hints and sent.model != "flux-general-multi":
        problem(f"{p}.language_hints", "only flux-general-multi takes language hints")
    for i, hint in enumerate(listen.language_hints):
        if _base(hint) not in FLUX_LANGUAGES:
            problem(f"{p}.language_hints[{i}]", f"Flux hears {', '.join(FLUX_LANGUAGES)}; "
                                                f"got {hint[:16]!r}")
    _flux_language(cfg.agent.language, sent.model, problem)
    eot, _ = turn_taking(cfg)
    eager = listen.eager_eot_threshold
    if eager is not None and eager > (0.7 if eot is None else eot):
        problem(f"{p}.eager_eot_threshold", f"must not exceed the eot_threshold sent "
                                            f"({0.7 if eot is None else eot})")
    if listen.eot_threshold == HOLD_EOT_THRESHOLD:
        if cfg.button.mode == "toggle":
            problem(f"{p}.eot_threshold", "1.0 turns the server's end-of-turn off: in toggle mode "
                                          "only eot_timeout_ms of silence would end your turn")
        elif cfg.audio.duplex == "full":
            problem(f"{p}.eot_threshold", "1.0 turns the server's end-of-turn off: with "
                                          "audio.duplex full a turn begun by voice would wait "
                                          "eot_timeout_ms")


def _flux_language(language: str, model: str, problem: Problem) -> None:
    base = _base(language)
    if not base:
        return
    if model == "flux-general-en" and base != "en":
        problem("agent.language", f"flux-general-en hears English only; for {language[:16]} "
                                  "leave agent.listen.model empty (flux-general-multi where "
                                  "Flux hears it, else Nova) or set it to flux-general-multi")
    elif model == "flux-general-multi" and base not in FLUX_LANGUAGES + ("multi",):
        problem("agent.language", f"Flux hears {', '.join(FLUX_LANGUAGES)}; for {language[:16]} "
                                  "set agent.listen.version: auto or v1 (Nova)")


# --- think ---------------------------------------------------------------------------------

def _think(think: ThinkConfig, dialect: str, problem: Problem) -> None:
    p = "agent.think"
    offered = THINK_PROVIDERS[dialect]
    if think.provider not in offered:
        if think.provider == "x_ai":
            why = "x_ai was removed from the API"
        elif think.provider == "custom":
            why = "v1 has no custom provider: an OpenAI-compatible server is open_ai with endpoint_url"
        else:
            why = f"{think.provider[:24]!r} is not one"
        problem(f"{p}.provider", f"{why}; {dialect} offers {', '.join(offered)}")
        return
    if not think.model.strip():
        problem(f"{p}.model", "is required")
    if think.provider == "anthropic" and think.temperature is not None and think.temperature > 1:
        problem(f"{p}.temperature", f"anthropic takes 0 to 1, got {think.temperature}")
    url = think.endpoint_url
    if url and not _url(url, ("https", "http")):
        problem(f"{p}.endpoint_url", "must be an https:// or http:// URL")
    if think.endpoint_headers and not url:
        problem(f"{p}.endpoint_headers", "are sent only with endpoint_url")
    if dialect == EA:
        if think.provider == "custom" and not url:
            problem(f"{p}.endpoint_url", "custom needs the URL of an OpenAI-compatible chat "
                                         "completions endpoint")
        elif think.provider != "custom" and url:
            problem(f"{p}.endpoint_url", "early_access sends a URL only for the custom provider")
        return
    if think.provider in THINK_ENDPOINT_REQUIRED and not url:
        problem(f"{p}.endpoint_url", f"{think.provider} needs its endpoint, e.g. "
                                     f"{_EXAMPLE_ENDPOINTS[think.provider]} (its secrets go in "
                                     "the credentials file, never here)")
    if think.provider == "google" and url:
        problem(f"{p}.endpoint_url", "not with google: its own endpoint takes no model, which the "
                                     "API requires; use Deepgram's managed google")


# --- speak ---------------------------------------------------------------------------------

def _speak(speak: SpeakConfig, dialect: str, problem: Problem) -> None:
    p = "agent.speak"
    offered = SPEAK_PROVIDERS[dialect]
    provider = speak.provider
    if provider not in offered:
        problem(f"{p}.provider", f"{provider[:24]!r} is not a voice provider of {dialect}; it "
                                 f"offers {', '.join(offered)}")
        return
    model = speak.model.strip()
    if not model:
        problem(f"{p}.model", "is required")
    url = speak.endpoint_url
    if speak.endpoint_headers and not url:
        problem(f"{p}.endpoint_headers", "are sent only with endpoint_url")
    if provider == "deepgram":
        for key, value in (("voice_id", speak.voice_id), ("language", speak.language),
                           ("endpoint_url", url)):
            if value:
                problem(f"{p}.{key}", "not with deepgram: the model names the voice and its "
                                      "language, and Deepgram hosts it")
        if dialect == EA and model.startswith("flux-"):
            problem(f"{p}.model", "early_access has no Flux voices; use an aura model")
        return
    if model.startswith(("aura", "flux-")) and provider != "aws_polly":  # its model: the engine
        problem(f"{p}.model", f"{model[:32]} is a Deepgram voice; {provider} needs its own "
                              f"model, e.g. {_EXAMPLE_MODELS[provider]}")
    if dialect == EA:
        if not speak.voice_id:
            problem(f"{p}.voice_id", f"{provider} needs the voice's id")
        for key, value in (("language", speak.language), ("endpoint_url", url)):
            if value:
                problem(f"{p}.{key}", "early_access has no such speak setting")
        return
    _speak_v1(speak, problem)


def _speak_v1(speak: SpeakConfig, problem: Problem) -> None:
    p, provider, url = "agent.speak", speak.provider, speak.endpoint_url
    schemes = ("wss", "https") if provider == "eleven_labs" else ("https",)
    if url and not _url(url, schemes):
        problem(f"{p}.endpoint_url", f"must be a {' or '.join(s + '://' for s in schemes)} URL")
    elif url and provider == "eleven_labs" and {"output_format", "model_id"} & set(
            parse_qs(urlsplit(url).query)):
        problem(f"{p}.endpoint_url", "must not carry output_format or model_id: the settings "
                                     "name them")
    if provider in SPEAK_ENDPOINT_REQUIRED and not url:
        problem(f"{p}.endpoint_url", f"{provider} needs its endpoint, e.g. "
                                     f"{_EXAMPLE_ENDPOINTS[provider]} (its secrets go in the "
                                     "credentials file, never here)")
    if provider == "eleven_labs":
        if speak.voice_id:
            problem(f"{p}.voice_id", "eleven_labs takes the voice in endpoint_url "
                                     "(…/text-to-speech/VOICE_ID/multi-stream-input)")
    elif not speak.voice_id:
        problem(f"{p}.voice_id", f"{provider} needs the voice" + (
            f": one of {', '.join(OPENAI_VOICES)}" if provider == "open_ai" else
            ", e.g. Joanna" if provider == "aws_polly" else "'s id"))
    elif provider == "open_ai" and speak.voice_id not in OPENAI_VOICES:
        problem(f"{p}.voice_id", f"open_ai voices are {', '.join(OPENAI_VOICES)}")
    if provider == "open_ai" and speak.language:
        problem(f"{p}.language", "open_ai takes no language (the voice speaks the text's)")
    if provider == "aws_polly":
        if speak.model not in POLLY_ENGINES:
            problem(f"{p}.model", f"for aws_polly the model is the engine: "
                                  f"{', '.join(POLLY_ENGINES)}")
        if not speak.language:
            problem(f"{p}.language", "aws_polly needs the voice's language, e.g. en-US")
