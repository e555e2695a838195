"""The agent emulator holds whole conversations in both dialects over a real loopback socket."""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from operator import mul
from typing import Any

import pytest
import websocket

from speakerd.emulator import Emulator, EmulatorOptions, main
from tests.support.emulator import (
    TEST_KEY,
    AgentClient,
    Item,
    audio_of,
    ea_settings,
    silence,
    tone,
    types_of,
    v1_settings,
)

with warnings.catch_warnings():
    # audioop is deprecated, but in 3.11 it is the standard library's own G.711 and rate
    # converter: an oracle that shares no code with the emulator.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 16000
FRAME = 640  # 20 ms of 16 kHz linear16, the daemon's uplink frame


def speech(rate: int = RATE) -> bytes:
    """0.6 s of two tones (300 Hz then 600 Hz): 30 whole 20 ms windows, so onset is aligned."""
    return tone(0.3, rate, 300) + tone(0.3, rate, 600)


def utterance(rate: int = RATE) -> bytes:
    """Speech with window-aligned silence around it, long enough to end the turn."""
    return silence(0.2, rate) + speech(rate) + silence(0.5, rate)


def correlation(a: bytes, b: bytes) -> float:
    """Normalised correlation of two linear16 signals over their common length."""
    n = min(len(a), len(b)) // 2
    x = struct.unpack(f"<{n}h", a[:2 * n])
    y = struct.unpack(f"<{n}h", b[:2 * n])
    sxy = sum(map(mul, x, y))
    return sxy / math.sqrt(sum(map(mul, x, x)) * sum(map(mul, y, y)) or 1)


def json_items(items: list[Item]) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)]


def test_v1_turn_parrots_the_user_back_at_the_output_rate(emulator: Emulator) -> None:
    """V1: onset, transcript, History, EndOfThought, reply text, latencies, audio, done."""
    client = AgentClient(emulator.url("v1"))
    head = client.start(v1_settings(out_rate=24000))
    assert types_of(head) == ["Welcome", "SettingsApplied"]
    assert head[0]["request_id"]  # type: ignore[index]
    sent = utterance()
    client.send_audio(sent, chunk=FRAME)
    got = client.until("AgentAudioDone")
    events = json_items(got)
    assert [e["type"] for e in events] == [
        "UserStartedSpeaking", "ConversationText", "History", "EndOfThought",
        "ConversationText", "History", "AgentStartedSpeaking", "AgentAudioDone"]
    assert events[1] == {"type": "ConversationText", "role": "user",
                         "content": emulator.options.transcripts[0]}
    assert events[2] == {"type": "History", "role": "user",
                         "content": emulator.options.transcripts[0]}
    assert events[4]["role"] == "assistant" and emulator.options.transcripts[0] in events[4][
        "content"]
    assert set(events[6]) == {"type", "total_latency", "tts_latency", "ttt_latency"}
    kinds = types_of(got)
    first_audio = kinds.index("audio")
    assert kinds.index("AgentStartedSpeaking") < first_audio
    assert "audio" not in kinds[kinds.index("AgentAudioDone"):]
    reply = audio_of(got)
    # The utterance is 0.6 s at 16 kHz; parroted at 24 kHz that is exactly 14400 samples.
    assert len(reply) == 2 * 14400
    expected, _ = audioop.ratecv(speech(), 2, 1, RATE, 24000, None)
    assert correlation(reply, expected) > 0.9
    frame_sizes = {len(i) for i in got if isinstance(i, bytes)}
    assert len(frame_sizes) > 1 and all(size % 2 == 0 for size in frame_sizes)
    session = emulator.sessions[0]
    assert session.dialect == "v1"
    # The reply can overtake the last silence frames, which the session records as they come.
    assert emulator.wait_for(lambda: session.audio_received() == sent, 5)
    assert session.texts("Settings")[0]["audio"]["output"]["sample_rate"] == 24000
    assert session.replies[0].kind == "turn" and bytes(session.replies[0].audio) == reply
    client.close()


def test_early_access_turn_in_mulaw(emulator: Emulator) -> None:
    """EA: session_id, no History, mu-law 8 kHz in, mu-law 16 kHz parrot out."""
    client = AgentClient(emulator.url("early_access"))
    head = client.start(ea_settings(in_encoding="mulaw", in_rate=8000,
                                    out_encoding="mulaw", out_rate=16000))
    assert "session_id" in head[0] and "request_id" not in head[0]
    client.send_audio(audioop.lin2ulaw(utterance(8000), 2), chunk=160)
    got = client.until("AgentAudioDone")
    assert [e["type"] for e in json_items(got)] == [
        "UserStartedSpeaking", "ConversationText", "EndOfThought", "ConversationText",
        "AgentStartedSpeaking", "AgentAudioDone"]
    reply = audio_of(got)
    assert len(reply) == 9600  # 0.6 s at 16 kHz, one byte a sample
    expected, _ = audioop.ratecv(audioop.ulaw2lin(audioop.lin2ulaw(speech(8000), 2), 2), 2, 1,
                                 8000, 16000, None)
    assert correlation(audioop.ulaw2lin(reply, 2), expected) > 0.9
    client.close()


@pytest.mark.parametrize("out_encoding,out_rate", [("linear16", 8000), ("linear16", 48000),
                                                   ("mulaw", 8000)])
def test_reply_audio_has_the_declared_format(emulator: Emulator, out_encoding: str,
                                             out_rate: int) -> None:
    """A fixed-length reply is exactly that long in the declared encoding and rate."""
    emulator.options.reply_seconds = 0.5
    client = AgentClient(emulator.url())
    client.start(v1_settings(out_encoding=out_encoding, out_rate=out_rate))
    client.send_audio(utterance(), chunk=FRAME)
    reply = audio_of(client.until("AgentAudioDone"))
    width = 1 if out_encoding == "mulaw" else 2
    assert len(reply) == round(0.5 * out_rate) * width
    linear = audioop.ulaw2lin(reply, 2) if out_encoding == "mulaw" else reply
    assert audioop.rms(linear, 2) > 1000
    client.close()


def test_speech_is_found_by_position_not_arrival_time(emulator: Emulator) -> None:
    """Speech sent in one burst before SettingsApplied, then real-time silence, makes one turn."""
    client = AgentClient(emulator.url())
    client.until("Welcome")
    client.send(v1_settings())
    # The daemon's buffered first words: right after Settings, faster than real time.
    client.send_audio(silence(0.1, RATE) + speech())
    client.until("SettingsApplied")
    got = client.until("UserStartedSpeaking")
    assert types_of(got)[-1] == "UserStartedSpeaking"
    # Silence frames at the push-to-talk cadence end the turn after end_of_speech of samples.
    for _ in range(20):
        client.send_audio(silence(0.02, RATE))
    got = client.until("AgentAudioDone")
    assert types_of(got).count("UserStartedSpeaking") == 0
    assert len(audio_of(got)) == 2 * 14400
    client.close()


def test_greeting_is_spoken_without_agent_started_speaking(emulator: Emulator) -> None:
    """V1 greeting: its text may precede SettingsApplied; audio then AgentAudioDone."""
    client = AgentClient(emulator.url())
    client.until("Welcome")
    client.send(v1_settings(greeting="Hello there."))
    got = client.until("AgentAudioDone")
    kinds = [k for k in types_of(got) if k != "audio"]
    assert kinds == ["ConversationText", "History", "SettingsApplied", "AgentAudioDone"]
    assert json_items(got)[0]["content"] == "Hello there."
    assert audio_of(got)
    assert emulator.sessions[0].replies[0].kind == "greeting"
    client.close()


def test_early_access_replays_the_last_assistant_message(emulator: Emulator) -> None:
    """EA context.replay speaks the last assistant message as the greeting."""
    context = {"messages": [{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "Welcome back."}], "replay": True}
    client = AgentClient(emulator.url("ea"))
    client.until("Welcome")
    client.send(ea_settings(context=context))
    got = client.until("AgentAudioDone")
    assert [k for k in types_of(got) if k != "audio"] == [
        "ConversationText", "SettingsApplied", "AgentAudioDone"]
    assert json_items(got)[0]["content"] == "Welcome back."
    client.close()


def _barge_in(emulator: Emulator, **options: Any) -> list[Item]:
    """A long real-time reply interrupted by new speech; returns what followed the onset."""
    emulator.options.reply_seconds = 5.0
    emulator.options.reply_pace = 1.0
    for name, value in options.items():
        setattr(emulator.options, name, value)
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.send_audio(utterance(), chunk=FRAME)
    client.until("AgentStartedSpeaking")
    while sum(isinstance(i, bytes) for i in client.items) < 3:
        client.recv()
    emulator.options.reply_seconds = 0.2  # the next reply, short
    client.send_audio(utterance(), chunk=FRAME)
    before = len(client.items)
    # Frames already in flight may precede the onset; count only what follows it.
    got = client.until("UserStartedSpeaking")
    got = client.until("AgentStartedSpeaking")
    got += client.until("AgentAudioDone")
    client.close()
    assert len(client.items) - before >= len(got)
    return got


def test_barge_in_stops_the_reply_and_closes_it_after_the_new_turn(emulator: Emulator) -> None:
    """No old frame after UserStartedSpeaking; AgentAudioDone follows the new user's turn."""
    got = _barge_in(emulator)
    kinds = types_of(got)
    assert kinds[:kinds.index("AgentStartedSpeaking") + 1] == [
        "ConversationText", "History", "EndOfThought", "AgentAudioDone", "ConversationText",
        "History", "AgentStartedSpeaking"]
    replies = emulator.sessions[0].replies
    assert replies[0].interrupted and len(replies[0].audio) < 2 * 24000 * 5
    assert not replies[1].interrupted


def test_barge_in_lets_slip_frames_out_and_can_skip_the_done(emulator: Emulator) -> None:
    """slip_frames old frames follow UserStartedSpeaking; no AgentAudioDone when switched off."""
    got = _barge_in(emulator, slip_frames=2, audio_done_after_interrupt=False)
    kinds = types_of(got)
    assert kinds[:kinds.index("AgentStartedSpeaking") + 1] == [
        "audio", "audio", "ConversationText", "History", "EndOfThought", "ConversationText",
        "History", "AgentStartedSpeaking"]
    assert kinds.count("AgentAudioDone") == 1


def test_reply_gap_pauses_until_the_client_has_played_it_then_sends_the_rest(
        emulator: Emulator) -> None:
    """reply_gap: the first half arrives, nothing until it has played out plus the gap, then the rest."""
    emulator.options.reply_seconds = 1.0
    emulator.options.reply_gap = 0.5
    client = AgentClient(emulator.url())
    client.start(v1_settings(out_rate=24000))
    client.send_audio(utterance(), chunk=FRAME)
    spoke = time.monotonic()  # the reply's audio cannot start before the turn was sent
    client.until("AgentStartedSpeaking")
    arrivals: list[tuple[float, int]] = []  # (receive time, audio bytes before this frame)
    received = 0
    while not (isinstance(item := client.recv(), dict) and item.get("type") == "AgentAudioDone"):
        if isinstance(item, bytes):
            arrivals.append((time.monotonic(), received))
            received += len(item)
    client.close()
    assert received == 2 * 24000
    # The pause is the longest silence between frames; it comes halfway through the reply.
    pause = max(range(1, len(arrivals)), key=lambda i: arrivals[i][0] - arrivals[i - 1][0])
    resumed_at, before = arrivals[pause]
    assert 0.3 <= before / received <= 0.7
    # It lasts until what came before has played at real time, and then the gap: counted from
    # before the reply began, so a slow machine can only make it later.
    assert resumed_at - spoke >= before / (2 * 24000) + 0.5


def test_a_barge_in_ends_the_reply_gap_at_once(emulator: Emulator) -> None:
    """A reply paused for a long gap is interrupted by new speech, and the new turn is answered."""
    emulator.options.reply_seconds = 1.0
    emulator.options.reply_gap = 60.0  # far beyond the client's 5 s receive timeout
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.send_audio(utterance(), chunk=FRAME)
    client.until("AgentStartedSpeaking")
    assert emulator.wait_for(lambda: bool(emulator.sessions[0].replies)
                             and len(emulator.sessions[0].replies[0].audio) > 0, 5)
    emulator.options.reply_gap = 0.0  # the next reply, without a pause
    client.send_audio(utterance(), chunk=FRAME)
    got = client.until("AgentStartedSpeaking") + client.until("AgentAudioDone")
    client.close()
    assert "UserStartedSpeaking" in types_of(got)
    first, second = emulator.sessions[0].replies[:2]
    assert first.interrupted and len(first.audio) < 2 * 24000
    assert not second.interrupted


def test_user_started_speaking_can_come_twice(emulator: Emulator) -> None:
    """duplicate_user_started_speaking: two UserStartedSpeaking in a row at one onset."""
    emulator.options.duplicate_user_started_speaking = True
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.send_audio(utterance(), chunk=FRAME)
    kinds = types_of(client.until("EndOfThought"))
    client.close()
    at = kinds.index("UserStartedSpeaking")
    assert kinds[at:at + 2] == ["UserStartedSpeaking", "UserStartedSpeaking"]
    assert kinds.count("UserStartedSpeaking") == 2


def test_v1_function_call_round_trip(emulator: Emulator) -> None:
    """V1: two sequential requests (arguments as JSON strings), History, result in the reply."""
    functions = [{"name": "set_volume", "description": "Set the volume.",
                  "parameters": {"type": "object", "properties": {"level": {"type": "integer"}},
                                 "required": ["level"]}},
                 {"name": "get_time", "description": "The time.", "parameters": {
                     "type": "object", "properties": {}}}]
    emulator.call_function("set_volume", {"level": 3})
    emulator.call_function("get_time", {})
    client = AgentClient(emulator.url())
    client.start(v1_settings(functions=functions))
    client.send_audio(utterance(), chunk=FRAME)
    for name, content in (("set_volume", "volume is 3"), ("get_time", "noon")):
        request = client.until("FunctionCallRequest")[-1]
        assert isinstance(request, dict)
        (call,) = request["functions"]
        assert call["name"] == name and call["client_side"] is True
        assert isinstance(call["arguments"], str)
        assert json.loads(call["arguments"]) == ({"level": 3} if name == "set_volume" else {})
        client.send({"type": "FunctionCallResponse", "id": call["id"], "name": name,
                     "content": content})
        history = client.until("History")[-1]
        assert isinstance(history, dict)
        assert history["function_calls"][0]["id"] == call["id"]
        assert history["function_calls"][0]["response"] == content
    got = client.until("AgentAudioDone")
    text = next(e for e in json_items(got) if e["type"] == "ConversationText")["content"]
    assert "volume is 3" in text and "noon" in text
    assert audio_of(got)
    responses = emulator.sessions[0].texts("FunctionCallResponse")
    assert [r["name"] for r in responses] == ["set_volume", "get_time"]
    client.close()


def test_early_access_function_call_round_trip(emulator: Emulator) -> None:
    """EA: {function_name, function_call_id, input} answered by {function_call_id, output}."""
    emulator.call_function("lights", {"on": True})
    client = AgentClient(emulator.url("ea"))
    client.start(ea_settings(functions=[{"name": "lights", "description": "Lights.",
                                         "parameters": {"type": "object", "properties": {}}}]))
    client.send_audio(utterance(), chunk=FRAME)
    request = client.until("FunctionCallRequest")[-1]
    assert isinstance(request, dict)
    assert request["function_name"] == "lights" and request["input"] == {"on": True}
    client.send({"type": "FunctionCallResponse", "function_call_id": request["function_call_id"],
                 "output": "lights are on"})
    got = client.until("AgentAudioDone")
    assert "History" not in types_of(got)
    assert "lights are on" in next(e["content"] for e in json_items(got)
                                   if e["type"] == "ConversationText")
    client.close()


def test_unanswered_function_call_warns_and_carries_on(emulator: Emulator) -> None:
    """No FunctionCallResponse within function_timeout: Warning FUNCTION_CALL_FAILED, reply."""
    emulator.options.function_timeout = 0.2
    emulator.call_function("slow", {})
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.send_audio(utterance(), chunk=FRAME)
    got = client.until("AgentAudioDone")
    kinds = types_of(got)
    assert kinds.index("FunctionCallRequest") < kinds.index("Warning") < kinds.index(
        "AgentStartedSpeaking")
    warning = next(e for e in json_items(got) if e["type"] == "Warning")
    assert warning["code"] == "FUNCTION_CALL_FAILED"
    client.close()


def test_endpoint_function_is_called_by_the_server(emulator: Emulator) -> None:
    """V1 endpoint function: informational request (client_side false) and server response."""
    emulator.call_function("weather", {"city": "Oslo"})
    client = AgentClient(emulator.url())
    client.start(v1_settings(functions=[{"name": "weather", "description": "Weather.",
                                         "endpoint": {"url": "https://example.invalid/w",
                                                      "method": "post"}}]))
    client.send_audio(utterance(), chunk=FRAME)
    got = client.until("AgentAudioDone")
    request = next(e for e in json_items(got) if e["type"] == "FunctionCallRequest")
    assert request["functions"][0]["client_side"] is False
    assert "FunctionCallResponse" in types_of(got)
    assert emulator.sessions[0].texts("FunctionCallResponse") == []
    client.close()


def test_inject_agent_message_speaks_or_is_refused(emulator: Emulator) -> None:
    """InjectAgentMessage when idle: text, History, audio, done; while speaking: refused."""
    emulator.options.reply_pace = 2.0  # the 1.9 s announcement is sent over about 1 s
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.send({"type": "InjectAgentMessage", "message": "A long announcement follows now."})
    got = client.until("History")
    assert json_items(got)[0] == {"type": "ConversationText", "role": "assistant",
                                  "content": "A long announcement follows now."}
    client.send({"type": "InjectAgentMessage", "message": "Me too."})
    got = client.until("InjectionRefused")
    assert json_items(got)[-1]["message"]
    got = client.until("AgentAudioDone")
    assert "AgentStartedSpeaking" not in types_of(client.items)
    assert audio_of(client.items)
    client.close()


def test_inject_user_message_is_a_finished_turn(emulator: Emulator) -> None:
    """V1 InjectUserMessage: the turn's messages without UserStartedSpeaking, then a reply."""
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    client.send({"type": "InjectUserMessage", "content": "what time is it"})
    got = client.until("AgentAudioDone")
    events = json_items(got)
    assert events[0] == {"type": "ConversationText", "role": "user",
                         "content": "what time is it"}
    assert "UserStartedSpeaking" not in types_of(got)
    assert audio_of(got)
    client.close()


@pytest.mark.parametrize("dialect,message,ack", [
    ("v1", {"type": "UpdatePrompt", "prompt": "Be brief."}, "PromptUpdated"),
    ("v1", {"type": "UpdateSpeak", "speak": {"provider": {"type": "deepgram",
                                                          "model": "aura-2-orion-en"}}},
     "SpeakUpdated"),
    ("v1", {"type": "UpdateThink", "think": {"provider": {"type": "open_ai",
                                                          "model": "gpt-4o"}}}, "ThinkUpdated"),
    ("v1", {"type": "UpdateListen", "listen": {"provider": {"type": "deepgram",
                                                            "model": "nova-3"}}},
     "ListenUpdated"),
    ("ea", {"type": "UpdateInstructions", "instructions": "Be brief."}, "InstructionsUpdated"),
    ("ea", {"type": "UpdateSpeak", "model": "aura-orion-en"}, "SpeakUpdated"),
])
def test_updates_are_acknowledged(emulator: Emulator, dialect: str, message: dict[str, Any],
                                  ack: str) -> None:
    """Each dialect's update messages get their acknowledgement; KeepAlive gets nothing."""
    client = AgentClient(emulator.url(dialect))
    client.start(v1_settings() if dialect == "v1" else ea_settings())
    client.send({"type": "KeepAlive"})
    client.send(message)
    assert types_of(client.until(ack)) == [ack]
    client.close()


def test_history_flag_false_suppresses_history(emulator: Emulator) -> None:
    """flags.history false: no History messages."""
    client = AgentClient(emulator.url())
    settings = v1_settings()
    settings["flags"] = {"history": False}
    client.start(settings)
    client.send_audio(utterance(), chunk=FRAME)
    assert "History" not in types_of(client.until("AgentAudioDone"))
    client.close()


def test_client_from_the_documentation(emulator: Emulator) -> None:
    """A client written only from Deepgram's docs: Welcome, Settings, 50 ms audio, KeepAlive."""
    ws = websocket.create_connection(emulator.url(),
                                     header=[f"Authorization: Token {TEST_KEY}"], timeout=5)
    inbox: queue.Queue[str | bytes] = queue.Queue()

    def receive() -> None:
        # The docs' clients read on their own thread and dispatch by "type".
        try:
            while True:
                message = ws.recv()
                if message == "":
                    return
                inbox.put(message)
        except websocket.WebSocketException:
            return

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()

    def wait(type_: str) -> list[str | bytes]:
        seen: list[str | bytes] = []
        while True:
            message = inbox.get(timeout=5)
            seen.append(message)
            if isinstance(message, str) and json.loads(message)["type"] == type_:
                return seen

    seen = wait("Welcome")
    ws.send(json.dumps({
        "type": "Settings",
        "audio": {"input": {"encoding": "linear16", "sample_rate": 16000},
                  "output": {"encoding": "linear16", "sample_rate": 16000, "container": "none"}},
        "agent": {"language": "en",
                  "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
                  "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini",
                                         "temperature": 0.7},
                            "prompt": "You are a friendly assistant."},
                  "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
                  "greeting": "Hello! How can I help you today?"}}))
    seen += wait("SettingsApplied")
    pacer = threading.Event()  # never set: its timed wait paces the chunks at 4x real time
    audio = utterance()
    for i in range(0, len(audio), 1600):  # 50 ms chunks, as Deepgram's reference client sends
        ws.send_binary(audio[i:i + 1600])
        pacer.wait(0.0125)
        if i == 8000:
            ws.send(json.dumps({"type": "KeepAlive"}))
    # The greeting's AgentAudioDone, then the reply's (the greeting may have been barged in on,
    # in which case its AgentAudioDone comes after the user's turn).
    seen += wait("AgentAudioDone")
    seen += wait("AgentAudioDone")
    texts = [json.loads(m) for m in seen if isinstance(m, str)]
    assert [t["role"] for t in texts if t["type"] == "ConversationText"] == [
        "assistant", "user", "assistant"]
    assert sum(len(m) for m in seen if isinstance(m, bytes)) > 16000
    assert emulator.sessions[0].texts("KeepAlive")
    ws.send_close()
    reader.join(timeout=5)  # the server's close reply ends the reader
    ws.shutdown()


def test_stop_closes_connected_clients(emulator: Emulator) -> None:
    """stop() ends every connection with 1001 and finishes every session."""
    client = AgentClient(emulator.url())
    client.start(v1_settings())
    emulator.stop()
    assert client.close_status()[:2] == struct.pack("!H", 1001)
    assert emulator.sessions[0].closed.is_set()
    client.close()


def test_cli_help_documents_every_knob(capsys: pytest.CaptureFixture[str]) -> None:
    """`speakerd emulate --help` names a flag for every option."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flags = {"api_key": "--key", "strict_keys": "--lenient-keys", "record": None,
             "flux_turns": "--no-flux-turns",
             "agent_started_speaking": "--no-agent-started-speaking",
             "history": "--no-history", "transcripts": "--transcript",
             "audio_done_after_interrupt": "--no-audio-done-after-interrupt"}
    for name in EmulatorOptions.__dataclass_fields__:
        flag = flags.get(name, "--" + name.replace("_", "-"))
        if flag is not None:
            assert flag in text, name


def test_cli_serves_until_sigterm(tmp_path: Any) -> None:
    """`python -m speakerd.emulator` prints its URL and events, and exits 0 on SIGTERM."""
    env = dict(os.environ, SPEAKERD_EMULATOR_KEY=TEST_KEY)
    proc = subprocess.Popen([sys.executable, "-m", "speakerd.emulator", "--port", "0",
                             "--end-of-speech", "0.2", "--reply-pace", "0"],
                            stdout=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = lines.get(timeout=20)
        assert first.startswith("listening: ws://127.0.0.1:")
        url = first.split()[1]
        client = AgentClient(url)
        client.start(v1_settings())
        client.send_audio(utterance(), chunk=FRAME)
        client.until("AgentAudioDone")
        client.close()
        output = []
        while not any("closed" in line for line in output):
            output.append(lines.get(timeout=10))
        assert any("-> SettingsApplied" in line for line in output)
        assert not any(TEST_KEY in line for line in output)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
