"""Property tests: no config check-config accepts makes a message the strict emulator refuses.

The emulator is the oracle (its own reading of Deepgram's message types, sharing no code with
the codec); the configs span every provider, dialect and listen version, pass-through aside
(what the user merges in by hand is theirs to get right).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, find, given, note, settings
from hypothesis import strategies as st

from speakerd import protocol
from speakerd.config import (
    SPEAK_PROVIDERS,
    THINK_PROVIDERS,
    Config,
    ConfigError,
    ProviderSecrets,
    check_provider_secrets,
    is_flux,
    parse_config,
)
from speakerd.config.agent import resolved_listen
from speakerd.emulator.wire import ClientMessageError, check_message, validate_settings
from tests.support.configs import agent_setups, listen_configs

# No per-example deadline (a busy 2-core CI machine must not flake), no example database.
FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

context_items = st.lists(st.builds(protocol.ContextItem, st.sampled_from(["user", "assistant"]),
                                   st.text(max_size=20)), max_size=3)


def _accepted(raw: dict[str, Any], secrets: ProviderSecrets) -> Config | None:
    """The config when check-config and the daemon's secrets check both accept it."""
    try:
        cfg = parse_config(raw)
    except ConfigError as exc:
        note(f"refused: {exc.problems}")
        return None
    problems = check_provider_secrets(cfg.agent, secrets)
    if problems:
        note(f"refused: {problems}")
        return None
    return cfg


def _server_accepts(dialect: str, text: str, settings_message: bool = True) -> Any:
    try:
        if settings_message:
            return validate_settings(dialect, json.loads(text))
        check_message(dialect, json.loads(text))
    except ClientMessageError as exc:
        raise AssertionError(f"the emulator refused it: {exc.code}: {exc.description}\n{text}") \
            from None
    return None


@FUZZ
@given(agent_setups(), context_items)
def test_every_accepted_config_makes_settings_the_server_accepts(
        setup: tuple[dict[str, Any], ProviderSecrets], context: list[protocol.ContextItem]) -> None:
    """Settings of any accepted config, any provider and dialect, pass strict validation."""
    raw, secrets = setup
    cfg = _accepted(raw, secrets)
    assume(cfg is not None)
    assert cfg is not None
    dialect = cfg.agent.dialect
    negotiated = _server_accepts(dialect, protocol.encode_settings(cfg, dialect, context, secrets))
    # The server takes turns the way the config means: Flux exactly when asked for.
    assert negotiated.listening.flux == (dialect == "v1" and is_flux(cfg))


@FUZZ
@given(agent_setups(dialect="v1"), listen_configs())
def test_every_update_listen_sent_is_accepted(setup: tuple[dict[str, Any], ProviderSecrets],
                                              tuning: dict[str, Any]) -> None:
    """An UpdateListen between two accepted configs (a reload that re-tunes Flux) passes, and
    keeps the session's model."""
    raw, secrets = setup
    listen = raw["agent"]["listen"]
    assume(listen.get("version") == "v2")
    old = _accepted(raw, secrets)
    assume(old is not None)
    # The same provider re-tuned: another draw's tunables (and keyterms) over this one's.
    retuned = {**listen, **{k: v for k, v in tuning.items() if k not in ("version", "model")}}
    if listen.get("model") != "flux-general-multi":
        retuned.pop("language_hints", None)
    new = _accepted({**raw, "agent": {**raw["agent"], "listen": retuned}}, secrets)
    assert old is not None
    if new is None:
        return  # the reload is refused; nothing is sent
    text = protocol.encode_update_listen(old, new)
    if text is None:
        return  # a setting dropped that an update would keep: the daemon reconnects instead
    _server_accepts("v1", text, settings_message=False)
    provider = json.loads(text)["listen"]["provider"]
    # The model as sent: an empty one is chosen for the language, the same on both sides.
    assert provider["model"] == resolved_listen(old).model == resolved_listen(new).model


def test_force_end_turn_and_keepalive_pass_in_v1_and_only_keepalive_in_early_access() -> None:
    """ForceEndTurn is a V1 message with no field; early access has no such message."""
    _server_accepts("v1", protocol.encode_force_end_turn(), settings_message=False)
    for dialect in ("v1", "early_access"):
        _server_accepts(dialect, protocol.encode_keepalive(), settings_message=False)
        _server_accepts(dialect, protocol.encode_function_response(dialect, "c1", "f", "{}"),
                        settings_message=False)
    try:
        check_message("early_access", json.loads(protocol.encode_force_end_turn()))
    except ClientMessageError as exc:
        assert exc.code == "UNPARSABLE_CLIENT_MESSAGE"
    else:
        raise AssertionError("early access accepted ForceEndTurn")


@pytest.mark.parametrize("dialect,section,provider",
                         [(d, "think", p) for d in THINK_PROVIDERS for p in THINK_PROVIDERS[d]]
                         + [(d, "speak", p) for d in SPEAK_PROVIDERS for p in SPEAK_PROVIDERS[d]])
def test_the_generated_configs_reach_every_provider(dialect: str, section: str,
                                                    provider: str) -> None:
    """The properties above are not vacuous: each provider of each dialect is accepted in some
    generated config."""
    find(agent_setups(dialect=dialect, **{section: provider}),
         lambda setup: _accepted(*setup) is not None,
         settings=settings(max_examples=500, deadline=None, database=None,
                           phases=[Phase.generate]))  # found is enough: no shrinking
