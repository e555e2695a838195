"""The client messages of both dialects, field by field, as Deepgram's published message types
define them (V1 `Settings` and the rest; early-access `SettingsConfiguration`).

The emulator's own reading of the API: it shares nothing with the daemon's codec or config.
"""

from __future__ import annotations

from .schema import AnyObject, Arr, Bool, Either, Map, Num, Obj, Spec, Str, Tagged, opt, req

TEXT = Str()
HEADERS = Map(TEXT)
TEXTS = Arr(TEXT)
ENDPOINT = Obj({"url": req(TEXT), "headers": req(HEADERS)})
AWS_CREDENTIALS = Obj({"type": req(Str(("iam", "sts"))), "region": req(TEXT),
                       "access_key_id": req(TEXT), "secret_access_key": req(TEXT),
                       "session_token": opt(TEXT)})

# --- V1 ------------------------------------------------------------------------------------

INPUT_ENCODINGS = ("linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus",
                   "ogg-opus", "speex", "g729")
OUTPUT_ENCODINGS = ("linear16", "mulaw", "alaw", "mp3", "opus", "flac", "aac")
AUDIO = Obj({
    "input": opt(Obj({"encoding": req(Str(INPUT_ENCODINGS)), "sample_rate": req(Num(integer=True))})),
    "output": opt(Obj({"encoding": opt(Str(OUTPUT_ENCODINGS)), "sample_rate": opt(Num(integer=True)),
                       "bitrate": opt(Num(integer=True)),
                       "container": opt(Str(("none", "wav", "ogg")))})),
})

FLUX_MODELS = ("flux-general-en", "flux-general-multi")
_NOVA = Obj({"type": req(Str(("deepgram",))), "version": opt(Str(("v1",))), "model": opt(TEXT),
             "language": opt(TEXT), "keyterms": opt(TEXTS), "smart_format": opt(Bool())})
_FLUX = Obj({"type": req(Str(("deepgram",))), "version": req(Str(("v2",))), "model": req(TEXT),
             "language_hints": opt(TEXTS), "eot_threshold": opt(Num(0.5, 1.0)),
             "eager_eot_threshold": opt(Num(0.3, 0.9)),
             "eot_timeout_ms": opt(Num(500, 60000, integer=True)), "keyterms": opt(TEXTS)})
LISTEN_PROVIDER = Tagged("version", {None: _NOVA, "v1": _NOVA, "v2": _FLUX})

_TEMPERATURE = Num(0, 2)
_REASONING = Str(("none", "minimal", "low", "medium", "high"))
THINK_PROVIDER = Tagged("type", {
    "open_ai": Obj({"type": req(TEXT), "version": opt(Str(("v1",))), "model": req(TEXT),
                    "temperature": opt(_TEMPERATURE), "reasoning_mode": opt(_REASONING)}),
    "anthropic": Obj({"type": req(TEXT), "version": opt(Str(("v1",))), "model": req(TEXT),
                      "temperature": opt(Num(0, 1))}),
    "google": Obj({"type": req(TEXT), "model": req(TEXT), "temperature": opt(_TEMPERATURE),
                   "version": opt(Str(("v1beta", "ai-studio-v1beta",
                                       "gemini-enterprise-agent-v1")))}),
    "groq": Obj({"type": req(TEXT), "version": opt(Str(("v1",))), "model": req(TEXT),
                 "temperature": opt(_TEMPERATURE), "reasoning_mode": opt(_REASONING)}),
    "aws_bedrock": Obj({"type": req(TEXT), "model": req(TEXT), "temperature": opt(_TEMPERATURE),
                        "credentials": opt(AWS_CREDENTIALS)}),
})
FUNCTION = Obj({
    "name": opt(TEXT), "description": opt(TEXT), "parameters": opt(AnyObject()),
    "endpoint": opt(Obj({"url": opt(TEXT), "method": opt(TEXT), "headers": opt(HEADERS)})),
    "defer_until_eot": opt(Bool()),
    # Think Live only: refused later (INVALID_SETTINGS) without agent.think_live.
    "initial_agent_filler": opt(Bool()), "agent_filler_max_count": opt(Num(integer=True)),
    "agent_filler_interval_ms": opt(Num(integer=True)),
})
THINK = Obj({"provider": req(THINK_PROVIDER), "endpoint": opt(ENDPOINT),
             "functions": opt(Arr(FUNCTION)), "prompt": opt(TEXT),
             "context_length": opt(Either((Str(("max",)), Num(lo=1))))})

OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")
SPEAK_PROVIDER = Tagged("type", {
    "deepgram": Obj({"type": req(TEXT), "version": opt(Str(("v1", "v2"))), "model": req(TEXT),
                     "speed": opt(Num(0.5, 1.5)), "expressivity": opt(Num(-2, 2, integer=True))}),
    "eleven_labs": Obj({"type": req(TEXT), "version": opt(Str(("v1",))), "model_id": req(TEXT),
                        "language": opt(TEXT), "language_code": opt(TEXT)}),
    "cartesia": Obj({"type": req(TEXT), "version": opt(Str(("2025-03-17",))),
                     "model_id": req(TEXT),
                     "voice": req(Obj({"mode": req(TEXT), "id": req(TEXT)})),
                     "language": opt(TEXT), "volume": opt(Num(0.5, 2.0))}),
    "open_ai": Obj({"type": req(TEXT), "version": opt(Str(("v1",))), "model": req(TEXT),
                    "voice": req(Str(OPENAI_VOICES))}),
    "aws_polly": Obj({"type": req(TEXT), "voice": req(TEXT), "language": req(TEXT),
                      "language_code": opt(TEXT),
                      "engine": req(Str(("generative", "long-form", "standard", "neural"))),
                      "credentials": req(AWS_CREDENTIALS)}),
})
SPEAK = Obj({"provider": req(SPEAK_PROVIDER), "endpoint": opt(ENDPOINT)})


def _one_or_fallbacks(item: Obj) -> Spec:
    """V1 think and speak: one object, or an ordered fallback list of them."""
    return Either((item, Arr(item)))


HISTORY = Either((
    Obj({"type": req(Str(("History",))), "role": req(Str(("user", "assistant"))),
         "content": req(TEXT)}),
    Obj({"type": req(Str(("History",))), "function_calls": req(Arr(Obj({
        "id": req(TEXT), "name": req(TEXT), "client_side": req(Bool()), "arguments": req(TEXT),
        "response": req(TEXT), "thought_signature": opt(TEXT)})))}),
))
LISTEN = Obj({"provider": opt(LISTEN_PROVIDER)})
AGENT_V1 = Obj({
    "language": opt(TEXT), "context": opt(Obj({"messages": opt(Arr(HISTORY))})),
    "listen": opt(LISTEN), "think": opt(_one_or_fallbacks(THINK)),
    "speak": opt(_one_or_fallbacks(SPEAK)), "greeting": opt(TEXT),
})
SETTINGS_V1 = Obj({
    "type": req(Str(("Settings",))), "tags": opt(TEXTS), "experimental": opt(Bool()),
    "mip_opt_out": opt(Bool()), "flags": opt(Obj({"history": opt(Bool())})),
    "audio": req(AUDIO), "agent": req(Either((AGENT_V1, TEXT))),
})

_TYPE_ONLY = Obj({"type": req(TEXT)})
MESSAGES_V1: dict[str, Obj] = {
    "KeepAlive": _TYPE_ONLY,
    "ForceEndTurn": _TYPE_ONLY,
    "UpdatePrompt": _TYPE_ONLY.extend(prompt=req(TEXT)),
    "UpdateSpeak": _TYPE_ONLY.extend(speak=req(_one_or_fallbacks(SPEAK))),
    "UpdateThink": _TYPE_ONLY.extend(think=req(_one_or_fallbacks(THINK))),
    "UpdateListen": _TYPE_ONLY.extend(listen=req(Obj({"provider": req(LISTEN_PROVIDER)}))),
    "InjectUserMessage": _TYPE_ONLY.extend(content=req(TEXT)),
    "InjectAgentMessage": _TYPE_ONLY.extend(message=req(TEXT), behavior=opt(Str((
        "default", "queue", "interrupt")))),
    "FunctionCallResponse": _TYPE_ONLY.extend(id=opt(TEXT), name=req(TEXT), content=req(TEXT)),
}

# --- early access --------------------------------------------------------------------------

KEY_VALUES = Arr(Obj({"key": req(TEXT), "value": req(TEXT)}))
_EA_AUDIO = Obj({
    "input": opt(Obj({"encoding": opt(Str(("linear16", "alaw", "mulaw"))),
                      "sample_rate": opt(Num(integer=True))})),
    "output": opt(Obj({"encoding": opt(Str(OUTPUT_ENCODINGS)), "sample_rate": opt(Num(integer=True)),
                       "bitrate": opt(Num(integer=True)),
                       "container": opt(Str(("none", "wav", "ogg")))})),
})
_EA_THINK_PROVIDER = Tagged("type", {
    "open_ai": _TYPE_ONLY, "anthropic": _TYPE_ONLY,
    "custom": Obj({"type": req(TEXT), "url": req(TEXT), "headers": opt(KEY_VALUES)}),
})
_EA_FUNCTION = Obj({"name": req(TEXT), "description": opt(TEXT), "url": opt(TEXT),
                    "headers": opt(KEY_VALUES), "method": opt(TEXT),
                    "parameters": opt(AnyObject())})
_EA_AGENT = Obj({
    "listen": opt(Obj({"model": opt(TEXT), "keyterms": opt(TEXTS)})),
    "think": req(Obj({"provider": req(_EA_THINK_PROVIDER), "model": req(TEXT),
                      "instructions": opt(TEXT), "functions": opt(Arr(_EA_FUNCTION))})),
    "speak": opt(Obj({"model": opt(TEXT), "provider": opt(Str(("eleven_labs", "cartesia"))),
                      "voice_id": opt(TEXT)})),
})
SETTINGS_EA = Obj({
    "type": req(Str(("SettingsConfiguration",))), "audio": req(_EA_AUDIO), "agent": req(_EA_AGENT),
    "context": opt(Obj({"messages": req(Arr(AnyObject())), "replay": req(Bool())})),
})
MESSAGES_EA: dict[str, Obj] = {
    "KeepAlive": _TYPE_ONLY,
    "UpdateInstructions": _TYPE_ONLY.extend(instructions=req(TEXT)),
    "UpdateSpeak": _TYPE_ONLY.extend(model=req(TEXT)),
    "InjectAgentMessage": _TYPE_ONLY.extend(message=req(TEXT)),
    "FunctionCallResponse": _TYPE_ONLY.extend(function_call_id=req(TEXT), output=req(TEXT)),
}
