"""Property tests: decode never fails except with ProtocolError; encode always gives valid JSON."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from speakerd import protocol
from speakerd.config import ConfigError, parse_config
from speakerd.protocol import Dialect, ProtocolError
from tests.support.configs import agent_setups

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "protocol"

# Generous examples but no per-example deadline: a busy 2-core CI machine must not flake.
# No example database: nothing is written into the checkout, and runs stay independent.
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

KNOWN_TYPES = ["Welcome", "SettingsApplied", "ConversationText", "UserStartedSpeaking",
               "AgentThinking", "FunctionCallRequest", "FunctionCalling", "FunctionCallResponse",
               "FunctionCallCancelled", "AgentStartedSpeaking", "AgentAudioDone", "EndOfThought",
               "History", "PromptUpdated", "InstructionsUpdated", "SpeakUpdated", "ThinkUpdated",
               "ListenUpdated", "InjectionRefused", "Warning", "Error", "LatencyReport"]
FIELD_NAMES = ["session_id", "request_id", "role", "content", "functions", "id", "name",
               "arguments", "client_side", "function_name", "function_call_id", "input",
               "total_latency", "tts_latency", "ttt_latency", "stt_latency", "function_calls",
               "message", "code", "description", "type"]

dialects = st.sampled_from(list(Dialect))
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
                | st.sampled_from(KNOWN_TYPES + ["{}", "[]", '{"a": 1}', ""]))
json_values = st.recursive(
    json_scalars,
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), inner,
                                     max_size=5)),
    max_leaves=16)


def _decode_or_protocol_error(frame: str | bytes, dialect: Dialect) -> protocol.ServerEvent | None:
    """The property itself: an event (whose fields are plain JSON data) or ProtocolError."""
    try:
        event = protocol.decode(frame, dialect)
    except ProtocolError as exc:
        assert str(exc)
        return None
    assert isinstance(event, protocol.ServerEvent)
    json.dumps(protocol.event_fields(event), allow_nan=False)
    return event


def _seed_frames() -> list[dict[str, Any]]:
    frames = []
    for path in sorted(GOLDEN.glob("*/server_*.json")):
        frame = json.loads(path.read_text(encoding="utf-8"))["frame"]
        if isinstance(frame, dict):
            frames.append(frame)
    assert len(frames) > 30  # the golden set feeds the mutations; an empty set would prove nothing
    return frames


SEEDS = _seed_frames()


@FUZZ
@given(st.binary(max_size=200), dialects)
def test_random_bytes(frame: bytes, dialect: Dialect) -> None:
    """Random bytes decode to an event or raise ProtocolError, nothing else."""
    _decode_or_protocol_error(frame, dialect)


@FUZZ
@given(st.text(max_size=200), dialects)
def test_random_text(frame: str, dialect: Dialect) -> None:
    """Random text (lone surrogates included) decodes to an event or raises ProtocolError."""
    _decode_or_protocol_error(frame, dialect)


@FUZZ
@given(st.sampled_from(KNOWN_TYPES), st.dictionaries(st.sampled_from(FIELD_NAMES), json_values,
                                                       max_size=6), dialects)
def test_known_types_with_random_fields(kind: str, fields: dict[str, Any],
                                        dialect: Dialect) -> None:
    """A known type with random fields of random JSON types never escapes as another exception."""
    fields["type"] = kind
    event = _decode_or_protocol_error(json.dumps(fields), dialect)
    assert not isinstance(event, protocol.UnknownEvent)


def _mutate(frame: dict[str, Any], data: st.DataObject) -> str:
    """A golden frame with one field dropped or replaced (possibly nested), or its text cut."""
    frame = json.loads(json.dumps(frame))  # a private copy
    target: Any = frame
    # Walk into nested objects and arrays now and then, to reach function-call entries.
    while data.draw(st.booleans()):
        children = [v for v in (target.values() if isinstance(target, dict) else target)
                    if isinstance(v, dict | list) and v]
        if not children:
            break
        target = data.draw(st.sampled_from(children))
    op = data.draw(st.sampled_from(["drop", "replace", "truncate", "insert"]))
    if op in ("drop", "replace") and target:
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        key = data.draw(st.sampled_from(keys))
        if op == "drop":
            del target[key]
        else:
            target[key] = data.draw(json_values)
    text = json.dumps(frame)
    if op == "truncate":
        text = text[:data.draw(st.integers(0, len(text)))]
    elif op == "insert":
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.text(min_size=1, max_size=3)) + text[at:]
    return text


@FUZZ
@given(st.sampled_from(SEEDS), st.data(), dialects)
def test_mutated_valid_frames(frame: dict[str, Any], data: st.DataObject, dialect: Dialect) -> None:
    """Golden frames with fields dropped, retyped or the text cut decode or raise ProtocolError."""
    text = _mutate(frame, data)
    # Bytes as well as text: the agent hands over a frame's raw payload.
    _decode_or_protocol_error(text.encode("utf-8", "replace") if data.draw(st.booleans()) else text,
                              dialect)


# --- round trips of the fields the daemon acts on ------------------------------------------

arguments = st.dictionaries(st.text(max_size=8), json_values.filter(
    lambda v: "NaN" not in json.dumps(v) and "Infinity" not in json.dumps(v)), max_size=4)
calls = st.lists(st.tuples(st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10),
                           arguments, st.booleans()), min_size=1, max_size=4)


@FUZZ
@given(calls)
def test_v1_function_calls_round_trip(items: list[tuple[str, str, dict[str, Any], bool]]) -> None:
    """Any V1 request's ids, names, JSON-string arguments and client_side come out as sent."""
    frame = {"type": "FunctionCallRequest", "functions": [
        {"id": i, "name": n, "arguments": json.dumps(a), "client_side": c} for i, n, a, c in items]}
    event = protocol.decode(json.dumps(frame), Dialect.V1)
    assert event == protocol.FunctionCallRequest(tuple(
        protocol.FunctionCall(i, n, a, c) for i, n, a, c in items))


@FUZZ
@given(st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10), arguments)
def test_ea_function_call_round_trips(call_id: str, name: str, args: dict[str, Any]) -> None:
    """Any EA request's id, name and object input come out as sent, always client-side."""
    frame = {"type": "FunctionCallRequest", "function_call_id": call_id, "function_name": name,
             "input": args}
    event = protocol.decode(json.dumps(frame), Dialect.EARLY_ACCESS)
    expected = protocol.FunctionCall(call_id, name, args, client_side=True)
    assert event == protocol.FunctionCallRequest((expected,))


# --- encoding ------------------------------------------------------------------------------

names = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
# The loader wants at least one letter or digit in a function name.
function_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,11}", fullmatch=True)
texts = st.text(max_size=40)
# What the config accepts: header names are tokens, values one line; keys hold no whitespace
# or control characters (tests/unit/test_config_trust.py holds the refusals).
headers = st.dictionaries(st.text(alphabet=string.ascii_letters + string.digits + "-_.!#$%&'*+^`|~",
                                  min_size=1, max_size=10),
                          st.text(max_size=10).filter(lambda v: v.isprintable()), max_size=3)
config_keys = st.text(min_size=1, max_size=6).filter(
    lambda k: not any(c.isspace() or not c.isprintable() for c in k))
config_values = st.recursive(
    json_scalars,
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(st.sampled_from(FIELD_NAMES) | config_keys, inner, max_size=5)),
    max_leaves=20)
passthrough = st.dictionaries(
    st.sampled_from(["agent", "audio", "type", "tags", "flags", "context"]) | config_keys,
    config_values.filter(lambda v: "NaN" not in json.dumps(v) and "Infinity" not in json.dumps(v)),
    max_size=3)


@st.composite
def raw_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A raw config across every provider and dialect, with a random pass-through merged in."""
    raw, _ = draw(agent_setups())
    raw["agent"]["settings_passthrough"] = draw(passthrough)
    return raw


context_items = st.lists(st.builds(protocol.ContextItem, st.sampled_from(["user", "assistant"]),
                                   texts), max_size=4)


@FUZZ
@given(raw_configs(), context_items)
def test_settings_for_any_valid_config(raw: dict[str, Any], context: list[protocol.ContextItem]
                                       ) -> None:
    """Any valid config encodes to ASCII JSON of its dialect's type, with integer rates."""
    try:
        cfg = parse_config(raw)
    except ConfigError:
        assume(False)  # a slip check-config refuses: nothing is ever encoded from it
    dialect = Dialect(cfg.agent.dialect)
    text = protocol.encode_settings(cfg, dialect, context)
    assert text.isascii()
    message = json.loads(text)
    assert message["type"] == ("Settings" if dialect is Dialect.V1 else "SettingsConfiguration")
    if "audio" not in cfg.agent.settings_passthrough:
        audio = message["audio"]
        rates = (audio["input"]["sample_rate"], audio["output"]["sample_rate"])
        assert rates == (cfg.audio.input.sample_rate, cfg.audio.output.sample_rate)
        assert all(type(r) is int for r in rates)
    if "agent" not in cfg.agent.settings_passthrough:
        sent = message["agent"]["think"].get("functions", [])
        assert [f["name"] for f in sent] == [f.name for f in cfg.functions]
        for declared, fn in zip(sent, cfg.functions, strict=True):
            # Client-side exactly when an action runs it here.
            server_side = "endpoint" in declared or "url" in declared
            assert server_side == (fn.endpoint is not None)


@FUZZ
@given(dialects, texts, texts, texts)
def test_other_messages_for_any_text(dialect: Dialect, a: str, b: str, c: str) -> None:
    """Every other client message is ASCII JSON of the right type carrying the text it was given."""
    v1 = dialect is Dialect.V1
    sent = {
        "KeepAlive": protocol.encode_keepalive(),
        "FunctionCallResponse": protocol.encode_function_response(dialect, a, b, c),
    }
    for kind, text in sent.items():
        assert text.isascii()
        assert json.loads(text)["type"] == kind
    response = json.loads(sent["FunctionCallResponse"])
    assert response == ({"type": "FunctionCallResponse", "id": a, "name": b, "content": c} if v1
                        else {"type": "FunctionCallResponse", "function_call_id": a, "output": c})
