"""The wire codec against golden files of both dialects, and its edge cases."""

from __future__ import annotations

import ast
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from speakerd import protocol
from speakerd.config import (
    ACTIONS,
    AgentConfig,
    AwsCredentials,
    Config,
    ConfigError,
    ProviderSecret,
    ProviderSecrets,
    parse_config,
)
from speakerd.protocol import Dialect, ProtocolError

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "protocol"
GOLDEN_FILES = sorted(GOLDEN.glob("*/*.json"))


def _canonical(value: Any) -> str:
    """JSON with sorted keys: equal only if types match too (16000 is not 16000.0, 1 not true)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _load(path: Path) -> tuple[Dialect, dict[str, Any]]:
    return Dialect(path.parent.name), json.loads(path.read_text(encoding="utf-8"))


def secrets_of(raw: dict[str, Any]) -> ProviderSecrets:
    """A golden case's provider secrets (what the credentials files would hold)."""
    def one(section: dict[str, Any]) -> ProviderSecret:
        aws = section.get("credentials")
        return ProviderSecret(section.get("headers", {}),
                              AwsCredentials(**aws) if aws is not None else None)
    return ProviderSecrets(one(raw.get("think", {})), one(raw.get("speak", {})))


def _config(dialect: Dialect, raw: dict[str, Any]) -> Config:
    cfg = parse_config(raw)
    assert cfg.agent.dialect == dialect.value, "a golden config names its directory's dialect"
    return cfg


def _encode(dialect: Dialect, case: dict[str, Any]) -> str:
    args = case.get("args", {})
    kind = case["encode"]
    if kind == "settings":
        cfg = _config(dialect, case["config"])
        context = [protocol.ContextItem(**item) for item in case.get("context", [])]
        return protocol.encode_settings(cfg, dialect, context, secrets_of(case.get("secrets", {})))
    if kind == "update_listen":
        text = protocol.encode_update_listen(_config(dialect, case["old"]),
                                             _config(dialect, case["config"]))
        assert text is not None
        return text
    if kind == "force_end_turn":
        return protocol.encode_force_end_turn()
    if kind == "keepalive":
        return protocol.encode_keepalive()
    if kind == "function_response":
        return protocol.encode_function_response(dialect, args["call_id"], args["name"],
                                                 args["content"])
    raise AssertionError(f"unknown encoder {kind!r} in a golden file")


def _frame(case: dict[str, Any]) -> str:
    frame = case["frame"]
    return frame if isinstance(frame, str) else json.dumps(frame)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden(path: Path) -> None:
    """Each golden message encodes to exactly its JSON, or decodes to exactly its event."""
    dialect, case = _load(path)
    assert case["description"]
    if "encode" in case:
        if "raises" in case:
            with pytest.raises(ValueError):
                _encode(dialect, case)
            return
        text = _encode(dialect, case)
        assert text.isascii() and "\n" not in text
        assert _canonical(json.loads(text)) == _canonical(case["expected"])
    else:
        if "raises" in case:
            with pytest.raises(ProtocolError):
                protocol.decode(_frame(case), dialect)
            return
        event = protocol.decode(_frame(case), dialect)
        assert type(event).__name__ == case["expected"]["event"]
        assert _canonical(protocol.event_fields(event)) == _canonical(case["expected"]["fields"])


def test_golden_files_cover_every_event_and_encoder() -> None:
    """Every event class and every encoder of both dialects has a golden file (no silent gaps)."""
    events: set[str] = set()
    encoders: dict[Dialect, set[str]] = {d: set() for d in Dialect}
    for path in GOLDEN_FILES:
        dialect, case = _load(path)
        if "encode" in case:
            encoders[dialect].add(case["encode"])
        elif "expected" in case:
            events.add(case["expected"]["event"])
    classes = {c.__name__ for c in vars(protocol).values()
               if isinstance(c, type) and issubclass(c, protocol.ServerEvent)
               and c is not protocol.ServerEvent}
    assert classes - events == set()
    wanted = {"settings", "keepalive", "function_response"}
    for dialect in Dialect:
        assert wanted - encoders[dialect] == set(), dialect
    assert {"force_end_turn", "update_listen"} <= encoders[Dialect.V1]


def test_golden_settings_round_trip_through_bytes() -> None:
    """decode() takes a frame as bytes (its UTF-8) as well as text, non-ASCII included."""
    frame = json.dumps({"type": "ConversationText", "role": "user", "content": "Grüß dich"},
                       ensure_ascii=False).encode("utf-8")
    assert protocol.decode(frame, Dialect.V1) == protocol.ConversationText("user", "Grüß dich")
    assert protocol.decode(frame, "v1") == protocol.ConversationText("user", "Grüß dich")


# --- constants -----------------------------------------------------------------------------

def test_dialects_are_the_config_choices() -> None:
    """Dialect values are what agent.dialect accepts, so Dialect(cfg.agent.dialect) works."""
    field = next(f for f in dataclasses.fields(AgentConfig) if f.name == "dialect")
    assert {d.value for d in Dialect} == set(field.metadata["choices"])
    assert Dialect("early_access") is Dialect.EARLY_ACCESS


def test_default_urls_end_in_the_dialect_paths() -> None:
    """Each dialect's default URL is TLS to agent.deepgram.com at that dialect's path."""
    assert PATHS_EXPECTED == dict(protocol.PATHS)
    for dialect in Dialect:
        url = protocol.DEFAULT_URLS[dialect]
        assert url == "wss://agent.deepgram.com" + protocol.PATHS[dialect]


PATHS_EXPECTED = {Dialect.V1: "/v1/agent/converse", Dialect.EARLY_ACCESS: "/agent"}


def test_imports_only_stdlib_and_config() -> None:
    """The codec stays pure: standard library, speakerd.config and its own modules only."""
    imported: set[str] = set()
    for path in Path(protocol.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                # Relative: `..config` is speakerd.config, `.x` a module of this package.
                imported.add(node.module if node.level == 0 else
                             "speakerd.config" if node.level == 2 else f"speakerd.protocol.{node.module}")
    foreign = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names
               and m != "speakerd.config" and not m.startswith("speakerd.protocol.")}
    assert foreign == set()
    assert "speakerd.protocol.settings" in imported  # it did read the package


# --- decoding edge cases -------------------------------------------------------------------

@pytest.mark.parametrize("frame", [
    b"\xff\xfe{}",                                   # not UTF-8
    "",                                              # empty
    "[]", "42", '"Welcome"', "null",                 # JSON, but not an object
    "{}",                                            # no type
    '{"type": 7}', '{"type": null}',                 # type not a string
    '{"type": "AgentStartedSpeaking", "total_latency": NaN}',
    '{"type": "AgentStartedSpeaking", "total_latency": 1e400}',
    '{"type": "AgentStartedSpeaking", "total_latency": ' + "9" * 400 + "}",
    '{"type": "AgentStartedSpeaking", "tts_latency": true}',
    "[" * 100_000 + "]" * 100_000,                   # deeper than the parser's recursion limit
    '{"type": "ConversationText", "role": "user"}',  # a required field missing
    '{"type": "ConversationText", "role": null, "content": "x"}',
    '{"type": "FunctionCallRequest", "functions": {}}',
    '{"type": "FunctionCallRequest", "functions": ["call_1"]}',
    '{"type": "FunctionCallRequest", "functions": [{"id": 1, "name": "f"}]}',
    '{"type": "FunctionCallRequest", "functions": [{"id": "1", "name": "f", "client_side": 1}]}',
    '{"type": "FunctionCallCancelled", "functions": [{"name": "f"}]}',
    '{"type": "History", "function_calls": [1]}',
    '{"type": "LatencyReport", "tts_latency": "fast"}',
    '{"type": "Error", "description": ["x"]}',
    '{"type": "Welcome", "request_id": 12}',
])
def test_malformed_frames_raise_protocol_error(frame: str | bytes) -> None:
    """Malformed frames of every kind raise ProtocolError with a short message."""
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frame, Dialect.V1)
    assert 0 < len(str(info.value)) < 120


def test_protocol_error_does_not_echo_field_values() -> None:
    """The error names the field, not its value (arguments and transcripts stay out of logs)."""
    with pytest.raises(ProtocolError) as info:
        protocol.decode('{"type": "ConversationText", "role": "user", "content": ["secret words"]}',
                        Dialect.V1)
    assert "ConversationText.content" in str(info.value)
    assert "secret" not in str(info.value)


def test_a_bad_dialect_is_a_caller_error_not_a_protocol_error() -> None:
    """An unknown dialect is the caller's bug: plain ValueError, raised before the frame is read."""
    with pytest.raises(ValueError) as info:
        protocol.decode('{"type": "SettingsApplied"}', "v2")
    assert not isinstance(info.value, ProtocolError)


def test_welcome_accepts_the_other_dialects_id_name() -> None:
    """Welcome reads the dialect's own id name first and falls back to the other one."""
    both = '{"type": "Welcome", "session_id": "ea", "request_id": "v1"}'
    assert protocol.decode(both, Dialect.V1) == protocol.Welcome("v1")
    assert protocol.decode(both, Dialect.EARLY_ACCESS) == protocol.Welcome("ea")
    assert protocol.decode('{"type": "Welcome", "session_id": "ea"}', Dialect.V1) == \
        protocol.Welcome("ea")
    assert protocol.decode('{"type": "Welcome"}', Dialect.V1) == protocol.Welcome("")


def test_error_with_ea_shape_on_v1_keeps_the_message() -> None:
    """An Error carrying only `message` still yields its text on the V1 path."""
    event = protocol.decode('{"type": "Error", "message": "bad"}', Dialect.V1)
    assert event == protocol.AgentError("", "bad")


def test_deeply_nested_arguments_become_an_arguments_error() -> None:
    """Arguments too deep to parse keep the call and report why, instead of failing the frame."""
    args = "[" * 100_000 + "]" * 100_000
    frame = json.dumps({"type": "FunctionCallRequest", "functions": [
        {"id": "c", "name": "f", "arguments": args, "client_side": True}]})
    event = protocol.decode(frame, Dialect.V1)
    assert isinstance(event, protocol.FunctionCallRequest)
    assert event.calls[0].arguments == {} and event.calls[0].arguments_error


def test_events_are_immutable() -> None:
    """Events are frozen: a consumer cannot change what another consumer sees."""
    event = protocol.decode('{"type": "ConversationText", "role": "user", "content": "hi"}',
                            Dialect.V1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.content = "changed"  # type: ignore[attr-defined]


# --- encoding edge cases -------------------------------------------------------------------

def _cfg(**agent: Any) -> Config:
    return parse_config({"agent": agent})


@pytest.mark.parametrize("dialect", list(Dialect))
def test_passthrough_cannot_change_the_message_type(dialect: Dialect) -> None:
    """The pass-through may add and replace fields, but the message type stays the dialect's."""
    cfg = _cfg(dialect=dialect.value, settings_passthrough={"type": "Other", "extra": {"a": 1}})
    message = json.loads(protocol.encode_settings(cfg, dialect))
    assert message["type"] == ("Settings" if dialect is Dialect.V1 else "SettingsConfiguration")
    assert message["extra"] == {"a": 1}


def test_passthrough_merge_leaves_the_config_untouched() -> None:
    """Merging copies: a built message can be changed without touching the config or later ones."""
    passthrough = {"agent": {"think": {"provider": {"temperature": 0.2}}}}
    cfg = _cfg(settings_passthrough=passthrough)
    first = protocol.build_settings(cfg, Dialect.V1)
    first["agent"]["think"]["provider"]["model"] = "mutated"
    second = protocol.build_settings(cfg, Dialect.V1)
    assert second["agent"]["think"]["provider"] == {"type": "open_ai", "model": "gpt-4o-mini",
                                                    "temperature": 0.2}
    assert cfg.agent.settings_passthrough == passthrough


def test_passthrough_that_is_not_json_data_is_refused_by_the_config() -> None:
    """A date, a set or NaN in the pass-through is a config error, not a failure at the first press."""
    for bad in (datetime.date(2025, 1, 31), {1, 2}, float("nan")):
        with pytest.raises(ConfigError) as info:
            _cfg(settings_passthrough={"agent": {"note": bad}})
        assert info.value.problems[0].startswith("agent.settings_passthrough.agent.note: ")


def test_unencodable_passthrough_is_a_value_error_without_the_values() -> None:
    """Non-JSON pass-through values that bypassed the config fail with ValueError that does not
    echo the settings."""
    base = _cfg(think={"endpoint_url": "https://x.invalid", "endpoint_headers": {"k": "hidden"}})
    cfg = dataclasses.replace(base, agent=dataclasses.replace(
        base.agent, settings_passthrough={"agent": {"bad": {1, 2}}}))
    with pytest.raises(ValueError) as info:
        protocol.encode_settings(cfg, Dialect.V1)
    assert "hidden" not in str(info.value) and "Settings" in str(info.value)
    nan = dataclasses.replace(base, agent=dataclasses.replace(
        base.agent, settings_passthrough={"agent": {"x": float("nan")}}))
    with pytest.raises(ValueError):
        protocol.encode_settings(nan, Dialect.EARLY_ACCESS)


def test_settings_are_ascii_even_for_lone_surrogates() -> None:
    """Text that is not valid UTF-8 is escaped, so the socket's UTF-8 encoding cannot fail."""
    cfg = _cfg(greeting="hi \ud800 there", think={"prompt": "Grüß"})
    text = protocol.encode_settings(cfg, Dialect.V1)
    text.encode("utf-8")
    assert json.loads(text)["agent"]["greeting"] == "hi \ud800 there"


def test_functions_with_an_action_have_no_endpoint_in_either_dialect() -> None:
    """Every allow-listed action is declared client-side: no url, method or endpoint is sent."""
    functions = [{"name": f"f_{t}", "action": {"type": t, "pin": "GPIO5", "url": "http://x.invalid",
                                                "argv": ["true"]}} for t in ACTIONS]
    cfg = parse_config({"functions": functions})
    for dialect in Dialect:
        sent = protocol.build_settings(cfg, dialect)["agent"]["think"]["functions"]
        assert [f["name"] for f in sent] == [f"f_{t}" for t in ACTIONS]
        for f in sent:
            assert set(f) == {"name", "parameters"}, f


def test_encoders_accept_the_dialect_as_its_config_string() -> None:
    """Callers may pass cfg.agent.dialect directly."""
    assert "function_call_id" in json.loads(
        protocol.encode_function_response("early_access", "c", "f", "x"))
    assert json.loads(protocol.encode_settings(Config(), "v1"))["type"] == "Settings"
