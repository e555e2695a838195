"""The agent emulator's handshake, protocol errors, idle cut-off and fault knobs."""

from __future__ import annotations

import copy
import json
import struct
import threading
from typing import Any

import pytest
import websocket

from speakerd.emulator import Emulator
from tests.support.emulator import (
    TEST_KEY,
    AgentClient,
    audio_of,
    ea_settings,
    silence,
    tone,
    types_of,
    v1_settings,
)

RATE = 16000
FRAME = 640


def utterance() -> bytes:
    return silence(0.2, RATE) + tone(0.6, RATE) + silence(0.5, RATE)


def connect(emulator: Emulator, **kwargs: Any) -> websocket.WebSocket:
    return websocket.create_connection(emulator.url(), timeout=5, **kwargs)


# --- handshake ---------------------------------------------------------------------------

@pytest.mark.parametrize("header", [[], ["Authorization: Token wrong-key"],
                                    [f"Authorization: Basic {TEST_KEY}"],
                                    [f"Authorization: Token{TEST_KEY}"]])
def test_bad_or_missing_key_gets_401_without_upgrade(emulator: Emulator,
                                                     header: list[str]) -> None:
    """No key, a wrong key or an unknown scheme: HTTP 401, no websocket, no session."""
    with pytest.raises(websocket.WebSocketBadStatusException) as failure:
        connect(emulator, header=header)
    assert failure.value.status_code == 401
    assert emulator.sessions == []
    assert [status for _, status in emulator.rejected] == [401]


@pytest.mark.parametrize("kwargs", [
    {"header": [f"Authorization: token {TEST_KEY}"]},
    {"header": [f"Authorization: Bearer {TEST_KEY}"]},
    {"header": [f"Authorization: bearer {TEST_KEY}"]},
    {"subprotocols": ["token", TEST_KEY]},
    {"subprotocols": ["bearer", TEST_KEY]},
])
def test_accepted_credentials(emulator: Emulator, kwargs: dict[str, Any]) -> None:
    """Token/Bearer in any case, or the key as sub-protocols (the scheme is echoed back)."""
    ws = connect(emulator, **kwargs)
    welcome = json.loads(ws.recv())
    assert welcome["type"] == "Welcome"
    assert ws.getheaders()["dg-request-id"] == welcome["request_id"]
    if "subprotocols" in kwargs:
        assert ws.getsubprotocol() == kwargs["subprotocols"][0]
    ws.close(timeout=1)


def test_unknown_path_is_404(emulator: Emulator) -> None:
    """A path that is neither dialect's endpoint: HTTP 404 even with a good key."""
    url = emulator.url().replace("/v1/agent/converse", "/v1/listen")
    with pytest.raises(websocket.WebSocketBadStatusException) as failure:
        websocket.create_connection(url, header=[f"Authorization: Token {TEST_KEY}"], timeout=5)
    assert failure.value.status_code == 404


@pytest.mark.parametrize("status", [401, 429, 500])
def test_refuse_status_answers_every_upgrade(emulator: Emulator, status: int) -> None:
    """refuse_status: the upgrade fails with that status until the knob is cleared."""
    emulator.options.refuse_status = status
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException) as failure:
            connect(emulator, header=[f"Authorization: Token {TEST_KEY}"])
        assert failure.value.status_code == status
    emulator.options.refuse_status = None
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.close()
    assert [s for _, s in emulator.rejected] == [status, status]


# --- protocol errors ------------------------------------------------------------------------

def _ea_shaped_v1() -> dict[str, Any]:
    settings = v1_settings()
    settings["agent"]["think"]["instructions"] = "EA name for the prompt"
    return settings


def _misplaced_mip() -> dict[str, Any]:
    settings = v1_settings()
    settings["agent"]["mip_opt_out"] = True
    return settings


def _bad_rate() -> dict[str, Any]:
    settings = v1_settings()
    settings["audio"]["output"]["sample_rate"] = 44100
    return settings


def _string_rate() -> dict[str, Any]:
    settings = v1_settings()
    settings["audio"]["input"]["sample_rate"] = "16000"
    return settings


def _no_output() -> dict[str, Any]:
    settings = v1_settings()
    del settings["audio"]["output"]
    return settings


def _no_audio() -> dict[str, Any]:
    settings = v1_settings()
    del settings["audio"]
    return settings


def _ea_without_model() -> dict[str, Any]:
    settings = ea_settings()
    del settings["agent"]["think"]["model"]
    return settings


@pytest.mark.parametrize("dialect,first,code", [
    ("v1", {"type": "KeepAlive"}, "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"),
    ("v1", b"\x00\x00" * 320, "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"),
    ("v1", "{not json", "UNPARSABLE_CLIENT_MESSAGE"),
    ("v1", {"type": "Hello"}, "UNPARSABLE_CLIENT_MESSAGE"),
    ("v1", ea_settings(), "UNPARSABLE_CLIENT_MESSAGE"),
    ("v1", _ea_shaped_v1(), "UNPARSABLE_CLIENT_MESSAGE"),
    ("v1", _misplaced_mip(), "UNPARSABLE_CLIENT_MESSAGE"),
    ("v1", _string_rate(), "UNPARSABLE_CLIENT_MESSAGE"),
    ("v1", _no_audio(), "UNPARSABLE_CLIENT_MESSAGE"),
    # Valid on the real server (it has a default output); the emulator needs it spelled out.
    ("v1", _no_output(), "INVALID_SETTINGS"),
    ("v1", _bad_rate(), "INVALID_SETTINGS"),
    ("ea", {"type": "KeepAlive"}, "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"),
    ("ea", v1_settings(), "UNPARSABLE_CLIENT_MESSAGE"),
    ("ea", _ea_without_model(), "UNPARSABLE_CLIENT_MESSAGE"),
])
def test_bad_first_message_is_an_error_then_a_close_without_status(
        emulator: Emulator, dialect: str, first: Any, code: str) -> None:
    """The first message must be valid settings; else Error (dialect's shape) and close 1005."""
    client = AgentClient(emulator.url(dialect))
    client.until("Welcome")
    if isinstance(first, bytes):
        client.ws.send_binary(first)
    elif isinstance(first, str):
        client.ws.send(first)
    else:
        client.send(copy.deepcopy(first))
    assert client.close_status() == b""  # no status code: the client reports 1005
    (err,) = [i for i in client.items if isinstance(i, dict) and i["type"] == "Error"]
    if dialect == "v1":
        assert err["code"] == code and err["description"]
    else:
        assert set(err) == {"type", "message"} and err["message"]
    assert emulator.wait_for(lambda: emulator.sessions[0].closed.is_set(), 5)
    assert emulator.sessions[0].close_reason == code
    client.close()


@pytest.mark.parametrize("dialect,message,code", [
    ("v1", v1_settings(), "SETTINGS_ALREADY_APPLIED"),
    ("ea", ea_settings(), "SETTINGS_ALREADY_APPLIED"),
    ("v1", {"type": "FunctionCallResponse", "function_call_id": "x", "output": "y"},
     "UNPARSABLE_CLIENT_MESSAGE"),
    ("v1", {"type": "UpdateSpeak", "model": "aura-asteria-en"}, "UNPARSABLE_CLIENT_MESSAGE"),
    ("v1", {"type": "UpdateInstructions", "instructions": "x"}, "UNPARSABLE_CLIENT_MESSAGE"),
    ("ea", {"type": "InjectUserMessage", "content": "hi"}, "UNPARSABLE_CLIENT_MESSAGE"),
    ("ea", {"type": "FunctionCallResponse", "id": "x", "name": "f", "content": "y"},
     "UNPARSABLE_CLIENT_MESSAGE"),
])
def test_bad_later_message_is_fatal(emulator: Emulator, dialect: str, message: dict[str, Any],
                                    code: str) -> None:
    """A second settings message or another dialect's message shape ends the session."""
    client = AgentClient(emulator.url(dialect))
    client.start(v1_settings() if dialect == "v1" else ea_settings())
    client.send(message)
    assert client.close_status() == b""
    assert types_of(client.items)[-1] == "Error"
    assert emulator.wait_for(lambda: emulator.sessions[0].close_reason == code, 5)
    client.close()


@pytest.mark.parametrize("dialect", ["v1", "ea"])
def test_odd_length_linear16_frame_is_reported_once_and_not_fatal(emulator: Emulator,
                                                                  dialect: str) -> None:
    """Odd byte counts: V1 Warning USER_AUDIO_FORMAT, EA Error{message}; the session goes on."""
    client = AgentClient(emulator.url(dialect))
    client.start(v1_settings() if dialect == "v1" else ea_settings())
    client.ws.send_binary(b"\x00" * 641)
    client.ws.send_binary(b"\x00" * 639)
    report = client.until("Warning" if dialect == "v1" else "Error")[-1]
    assert isinstance(report, dict)
    if dialect == "v1":
        assert report["code"] == "USER_AUDIO_FORMAT"
    else:
        assert "linear16" in report["message"]
    client.send_audio(utterance(), chunk=FRAME)
    got = client.until("AgentAudioDone")
    assert "Warning" not in types_of(got) and "Error" not in types_of(got)
    assert emulator.sessions[0].odd_frames == 2
    client.close()


# --- idle timer ---------------------------------------------------------------------------

def test_idle_socket_is_cut_with_client_message_timeout(emulator: Emulator) -> None:
    """No client frame for idle_timeout: Error CLIENT_MESSAGE_TIMEOUT, close without status."""
    emulator.options.idle_timeout = 0.3
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    assert client.close_status() == b""
    err = client.items[-1]
    assert isinstance(err, dict) and err["code"] == "CLIENT_MESSAGE_TIMEOUT"
    client.close()


def test_agent_speech_does_not_reset_the_idle_timer(emulator: Emulator) -> None:
    """A long reply to a quiet client is cut mid-reply, as the real server does."""
    emulator.options.reply_pace = 1.0
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    emulator.options.idle_timeout = 0.4
    emulator.say("A long story.", 3.0)
    assert client.close_status() == b""
    kinds = types_of(client.items)
    assert kinds[-1] == "Error" and "audio" in kinds and "AgentAudioDone" not in kinds
    client.close()


def test_keepalive_and_silence_keep_the_socket_open(emulator: Emulator) -> None:
    """KeepAlive and silent audio each reset the idle timer; neither gets a reply."""
    idle = 0.3
    emulator.options.idle_timeout = idle
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    pacer = threading.Event()  # never set; its timed wait spaces the frames
    session = emulator.sessions[0]
    for i in range(8):  # 0.8 s, more than twice the idle window
        if not session.live:
            break
        if i % 2:
            client.send({"type": "KeepAlive"})
        else:
            client.send_audio(silence(0.02, RATE))
        pacer.wait(0.1)
    if session.live:
        # Live after more than twice the window: every frame kind reset the timer.
        assert session.frames[-1].t - session.frames[0].t > 2 * idle
        assert session.sent_types() == ["Welcome", "SettingsApplied"]
    else:
        # Only a scheduler that held a frame back for the whole window may excuse a cut-off:
        # the emulator must then have seen such a gap.
        cut = next(e["t"] for e in session.events_sent if e["type"] == "Error")
        times = [f.t for f in session.frames if f.t < cut] + [cut]
        assert max(b - a for a, b in zip(times, times[1:], strict=False)) >= idle * 0.99
    client.close()


# --- fault knobs ----------------------------------------------------------------------------

def test_settings_delay_holds_back_settings_applied(emulator: Emulator) -> None:
    """settings_delay: SettingsApplied goes out no earlier than the delay after Settings."""
    emulator.options.settings_delay = 0.3
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    session = emulator.sessions[0]
    settings_at = next(f.t for f in session.frames if f.kind == "text")
    applied_at = next(e["t"] for e in session.events_sent if e["type"] == "SettingsApplied")
    assert applied_at - settings_at >= 0.3
    client.close()


def _reply_until_it_stops(emulator: Emulator, client: AgentClient) -> Exception:
    client.start(v1_settings())
    client.send_audio(utterance(), chunk=FRAME)
    with pytest.raises(Exception) as failure:
        client.until("AgentAudioDone")
    return failure.value


def test_drop_mid_reply_aborts_tcp_once(emulator: Emulator) -> None:
    """drop_mid_reply: half a reply, then a lost connection (no close frame); then healthy."""
    emulator.options.reply_seconds = 1.0
    emulator.options.drop_mid_reply = True
    client = AgentClient(emulator.url())
    error = _reply_until_it_stops(emulator, client)
    assert isinstance(error, websocket.WebSocketConnectionClosedException)
    reply = audio_of(client.items)
    assert 0 < len(reply) < 2 * 24000
    assert emulator.options.drop_mid_reply is False
    assert emulator.wait_for(lambda: emulator.sessions[0].close_reason == "dropped", 5)
    client.ws.shutdown()
    again = AgentClient(emulator.url())
    again.start(v1_settings())
    again.send_audio(utterance(), chunk=FRAME)
    assert len(audio_of(again.until("AgentAudioDone"))) == 2 * 24000
    again.close()


def test_stall_mid_reply_goes_silent_once(emulator: Emulator) -> None:
    """stall_mid_reply: half a reply, then nothing at all, KeepAlive or not."""
    emulator.options.reply_seconds = 1.0
    emulator.options.stall_mid_reply = True
    client = AgentClient(emulator.url(), timeout=0.3)
    client.start(v1_settings())
    client.send_audio(utterance(), chunk=FRAME)
    client.until("AgentStartedSpeaking")
    assert emulator.wait_for(lambda: emulator.sessions[0].close_reason == "stalled", 5)
    with pytest.raises(websocket.WebSocketTimeoutException):
        while True:  # what was sent before the stall, then nothing
            client.recv()
    client.send({"type": "KeepAlive"})
    with pytest.raises(websocket.WebSocketTimeoutException):
        client.recv()
    assert 0 < len(audio_of(client.items)) < 2 * 24000
    assert emulator.options.stall_mid_reply is False
    client.close()
    assert emulator.wait_for(lambda: emulator.sessions[0].closed.is_set(), 5)


@pytest.mark.parametrize("close_code,expected", [(None, b""), (1000, struct.pack("!H", 1000))])
def test_error_then_close_at_the_next_turn(emulator: Emulator, close_code: int | None,
                                           expected: bytes) -> None:
    """error_then_close: the next user turn gets Error{code} and a close (status per knob)."""
    emulator.options.error_then_close = "INTERNAL_SERVER_ERROR"
    emulator.options.error_close_code = close_code
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.send_audio(utterance(), chunk=FRAME)
    assert client.close_status()[:2] == expected
    err = client.items[-1]
    assert isinstance(err, dict) and err["type"] == "Error"
    assert err["code"] == "INTERNAL_SERVER_ERROR"
    assert emulator.options.error_then_close is None
    client.close()


def test_unknown_types_and_warnings_are_sprinkled_in(emulator: Emulator) -> None:
    """unknown_types and warnings add messages a client must tolerate to an ordinary turn."""
    emulator.options.unknown_types = True
    emulator.options.warnings = True
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.send_audio(utterance(), chunk=FRAME)
    kinds = types_of(client.until("AgentAudioDone"))
    known = {"UserStartedSpeaking", "ConversationText", "History", "EndOfThought", "Warning",
             "AgentStartedSpeaking", "AgentAudioDone", "audio"}
    assert len(set(kinds) - known) >= 2
    assert "Warning" in kinds
    client.close()
