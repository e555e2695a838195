"""The agent link's outbox against the emulator: what reaches the server, in which order."""

from __future__ import annotations

import json
import threading

from speakerd import protocol
from speakerd.agent import OUTBOX_FRAMES, AgentLink
from speakerd.config import Config
from speakerd.emulator import Emulator
from speakerd.events import AgentConnected
from tests.support.alsa import wait_until
from tests.support.emulator import TEST_KEY
from tests.support.hostile import HostileProxy

WAIT = 10.0


def _link(emulator: Emulator, url: str = "", connected: threading.Event | None = None,
          ping_interval: float = 5.0) -> AgentLink:
    def on_event(event: object) -> None:
        if connected is not None and isinstance(event, AgentConnected):
            connected.set()

    return AgentLink(url=url or emulator.url("v1"), api_key=TEST_KEY, dialect=protocol.Dialect.V1,
                     settings=protocol.encode_settings(Config(), "v1"),
                     on_event=on_event, on_audio=lambda link, pcm: None,
                     keepalive_interval=60.0, ping_interval=ping_interval)


def _received(emulator: Emulator) -> list[str | bytes]:
    """Every frame the emulator's one connection received, in order."""
    if not emulator.sessions:
        return []
    return [f.data for f in list(emulator.sessions[-1].frames)]


def _types(messages: list[str | bytes]) -> list[str]:
    return ["audio" if isinstance(m, bytes) else json.loads(m)["type"] for m in messages]


def test_force_end_turn_follows_the_words_queued_before_it(emulator: Emulator) -> None:
    """ForceEndTurn sent after audio reaches the server after that audio, not ahead of it."""
    link = _link(emulator)
    # Queued before the socket opens, so all of it is waiting when the tx thread starts sending.
    words = [bytes([i]) * 640 for i in range(1, 21)]
    for frame in words:
        link.send_audio(frame)
    link.send_text(protocol.encode_force_end_turn(), after_audio=True)
    link.send_audio(b"\x00" * 640)  # the silence after the release
    link.start()
    try:
        assert wait_until(lambda: len(_received(emulator)) >= 23, WAIT)
    finally:
        link.close()
        assert link.join(WAIT)
    got = _received(emulator)
    assert _types(got)[0] == "Settings"
    assert got[1:21] == words
    assert _types(got)[21:23] == ["ForceEndTurn", "audio"]


def test_control_goes_ahead_of_queued_audio_and_a_full_outbox_keeps_ordered_text(
        emulator: Emulator) -> None:
    """A plain message overtakes waiting audio; overflow drops audio, never an ordered message."""
    link = _link(emulator)
    link.send_audio(b"\xff\xff")
    link.send_text(protocol.encode_force_end_turn(), after_audio=True)
    # Two past the bound: the frame ahead of the message goes, then the first one behind it.
    series = [i.to_bytes(2, "little") for i in range(OUTBOX_FRAMES + 1)]
    for frame in series:
        link.send_audio(frame)
    link.send_text(protocol.encode_keepalive())
    link.start()
    try:
        assert wait_until(lambda: len(_received(emulator)) >= 3 + OUTBOX_FRAMES, WAIT)
    finally:
        link.close()
        assert link.join(WAIT)
    got = _received(emulator)
    assert _types(got)[:3] == ["Settings", "KeepAlive", "ForceEndTurn"]
    assert got[3:] == series[1:]


def test_a_peer_that_stops_reading_never_blocks_the_sender(emulator: Emulator) -> None:
    """A peer that stops reading never blocks the mic: frames queue, the oldest dropped past the bound."""
    proxy = HostileProxy(emulator)
    connected, done = threading.Event(), threading.Event()
    # A write that blocked would hold the sender for the socket timeout, ping interval + 2 s.
    link = _link(emulator, url=proxy.url("/v1/agent/converse"), connected=connected,
                 ping_interval=120.0).start()
    frames = 8000  # 20 MB: far more than loopback's socket buffers hold

    def mic() -> None:
        for i in range(frames):
            link.send_audio(i.to_bytes(4, "little") * 640)
        done.set()

    try:
        assert connected.wait(WAIT)
        proxy.silent = True
        threading.Thread(target=mic, name="test-mic", daemon=True).start()
        assert done.wait(WAIT), "a send blocked on a peer that stopped reading"
    finally:
        link.close()
        link.join(WAIT)
        proxy.stop()
