"""The agent link's outbox over a real websocket: what goes on the wire, in which order."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.server import serve

from speakerd import protocol
from speakerd.agent import OUTBOX_FRAMES, AgentLink
from speakerd.config import Config
from tests.support.alsa import wait_until

WAIT = 10.0


class Recorder:
    """A loopback websocket server that keeps every message of its one connection in order."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self._lock = threading.Lock()

    def handler(self, conn: Any) -> None:
        for message in conn:  # read until the client closes
            with self._lock:
                self.messages.append(message)

    def received(self) -> list[str | bytes]:
        with self._lock:
            return list(self.messages)


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, int]]:
    rec = Recorder()
    server = serve(rec.handler, "127.0.0.1", 0, compression=None)
    thread = threading.Thread(target=server.serve_forever, name="recorder", daemon=True)
    thread.start()
    try:
        yield rec, server.socket.getsockname()[1]
    finally:
        server.shutdown()
        thread.join(WAIT)


def _link(port: int) -> AgentLink:
    return AgentLink(url=f"ws://127.0.0.1:{port}/v1/agent/converse", api_key="k",
                     dialect=protocol.Dialect.V1, settings=protocol.encode_settings(Config(), "v1"),
                     on_event=lambda event: None, on_audio=lambda link, pcm: None,
                     keepalive_interval=60.0)


def _types(messages: list[str | bytes]) -> list[str]:
    return ["audio" if isinstance(m, bytes) else json.loads(m)["type"] for m in messages]


def test_force_end_turn_follows_the_words_queued_before_it(
        recorder: tuple[Recorder, int]) -> None:
    """ForceEndTurn sent after audio reaches the server after that audio, not ahead of it."""
    rec, port = recorder
    link = _link(port)
    # Queued before the socket opens, so all of it is waiting when the tx thread starts sending.
    words = [bytes([i]) * 640 for i in range(1, 21)]
    for frame in words:
        link.send_audio(frame)
    link.send_text(protocol.encode_force_end_turn(), after_audio=True)
    link.send_audio(b"\x00" * 640)  # the silence after the release
    link.start()
    try:
        assert wait_until(lambda: len(rec.received()) >= 23, WAIT)
    finally:
        link.close()
        assert link.join(WAIT)
    got = rec.received()
    assert _types(got)[0] == "Settings"
    assert got[1:21] == words
    assert _types(got)[21:23] == ["ForceEndTurn", "audio"]


def test_control_goes_ahead_of_queued_audio_and_a_full_outbox_keeps_ordered_text(
        recorder: tuple[Recorder, int]) -> None:
    """A plain message overtakes waiting audio; overflow drops audio, never an ordered message."""
    rec, port = recorder
    link = _link(port)
    link.send_audio(b"\xff\xff")
    link.send_text(protocol.encode_force_end_turn(), after_audio=True)
    # Two past the bound: the frame ahead of the message goes, then the first one behind it.
    series = [i.to_bytes(2, "little") for i in range(OUTBOX_FRAMES + 1)]
    for frame in series:
        link.send_audio(frame)
    link.send_text(protocol.encode_keepalive())
    link.start()
    try:
        assert wait_until(lambda: len(rec.received()) >= 3 + OUTBOX_FRAMES, WAIT)
    finally:
        link.close()
        assert link.join(WAIT)
    got = rec.received()
    assert _types(got)[:3] == ["Settings", "KeepAlive", "ForceEndTurn"]
    assert got[3:] == series[1:]
