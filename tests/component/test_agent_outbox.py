"""The agent link's outbox against the emulator: what reaches the server, in which order."""

from __future__ import annotations

import json

from speakerd import protocol
from speakerd.agent import OUTBOX_FRAMES, AgentLink
from speakerd.config import Config
from speakerd.emulator import Emulator
from tests.support.alsa import wait_until
from tests.support.emulator import TEST_KEY

WAIT = 10.0


def _link(emulator: Emulator) -> AgentLink:
    return AgentLink(url=emulator.url("v1"), api_key=TEST_KEY, dialect=protocol.Dialect.V1,
                     settings=protocol.encode_settings(Config(), "v1"),
                     on_event=lambda event: None, on_audio=lambda link, pcm: None,
                     keepalive_interval=60.0)


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
