"""The settings message of each dialect: V1 `Settings`, early-access `SettingsConfiguration`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Config, FunctionConfig, ProviderSecrets, resolved_listen
from .dialect import Dialect
from .frames import dumps, key_values, merge, plain
from .providers import listen_provider_v1, speak_ea, speak_v1, think_ea, think_v1

NO_SECRETS = ProviderSecrets()


@dataclass(frozen=True)
class ContextItem:
    """One prior conversation turn, sent back in the settings after a reconnect."""
    role: str
    content: str


def _function(fn: FunctionConfig, dialect: Dialect) -> dict[str, Any]:
    """A function declaration; with an endpoint the server calls it, without one we do."""
    out: dict[str, Any] = {"name": fn.name}
    if fn.description:
        out["description"] = fn.description
    out["parameters"] = plain(fn.parameters)
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
                out["headers"] = key_values(ep.headers)
    return out


def _audio(cfg: Config) -> dict[str, Any]:
    out_cfg = cfg.audio.output
    return {
        # The mic is always read as signed 16-bit little-endian mono.
        "input": {"encoding": "linear16", "sample_rate": int(cfg.audio.input.sample_rate)},
        "output": {"encoding": out_cfg.encoding, "sample_rate": int(out_cfg.sample_rate),
                   "container": "none"},  # raw frames straight into the ALSA sink
    }


def _settings_v1(cfg: Config, context: Sequence[ContextItem],
                 secrets: ProviderSecrets) -> dict[str, Any]:
    a = cfg.agent
    think = think_v1(a.think, secrets.think)
    if a.think.prompt:
        think["prompt"] = a.think.prompt
    if cfg.functions:
        think["functions"] = [_function(fn, Dialect.V1) for fn in cfg.functions]
    agent: dict[str, Any] = {}
    if a.language:
        agent["language"] = a.language
    agent["listen"] = {"provider": listen_provider_v1(cfg)}
    agent["think"] = think
    agent["speak"] = speak_v1(a.speak, secrets.speak)
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


def _settings_ea(cfg: Config, context: Sequence[ContextItem],
                 secrets: ProviderSecrets) -> dict[str, Any]:
    # EA has no language, temperature, tags, mip_opt_out, experimental or history flag.
    a = cfg.agent
    listen: dict[str, Any] = {"model": resolved_listen(cfg).model}
    if a.listen.keyterms:
        listen["keyterms"] = list(a.listen.keyterms)
    think = think_ea(a.think, secrets.think)
    if a.think.prompt:
        think["instructions"] = a.think.prompt
    if cfg.functions:
        think["functions"] = [_function(fn, Dialect.EARLY_ACCESS) for fn in cfg.functions]
    message: dict[str, Any] = {
        "type": "SettingsConfiguration", "audio": _audio(cfg),
        "agent": {"listen": listen, "think": think, "speak": speak_ea(a.speak)}}
    messages = [{"role": c.role, "content": c.content} for c in context]
    if a.greeting:
        # EA has no greeting field: the agent speaks a trailing assistant message on replay.
        messages.append({"role": "assistant", "content": a.greeting})
    if messages:
        # replay is required whenever context is present; true only to speak the greeting.
        message["context"] = {"messages": messages, "replay": bool(a.greeting)}
    return message


def build_settings(cfg: Config, dialect: Dialect | str, context: Sequence[ContextItem] = (),
                   secrets: ProviderSecrets = NO_SECRETS) -> dict[str, Any]:
    """The settings message for a new connection, as plain data, pass-through merged in."""
    v1 = Dialect(dialect) is Dialect.V1
    message = (_settings_v1 if v1 else _settings_ea)(cfg, context, secrets)
    message = merge(message, cfg.agent.settings_passthrough)
    message["type"] = "Settings" if v1 else "SettingsConfiguration"
    return message


def encode_settings(cfg: Config, dialect: Dialect | str, context: Sequence[ContextItem] = (),
                    secrets: ProviderSecrets = NO_SECRETS) -> str:
    """The settings message as a text frame; ValueError if the pass-through holds non-JSON."""
    return dumps(build_settings(cfg, dialect, context, secrets))
