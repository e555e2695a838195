"""The idle microphone: capture stops while nothing would leave it, and a press restarts it."""

from __future__ import annotations

import threading
import time

import pytest

from speakerd.audio import AudioFormat, open_source
from speakerd.emulator.sound import PulseServer
from speakerd.mic import Mic
from tests.support.alsa import wait_until

pytestmark = pytest.mark.realtime


def test_idle_mic_stops_capturing_and_a_press_restarts_it(pulse_audio: PulseServer) -> None:
    """No socket and a shut gate: no reads at all; the press edge resumes capture within a period or so."""
    cfg = pulse_audio.input_config()
    sent: list[tuple[float, bytes]] = []
    lock = threading.Lock()

    def send(frame: bytes) -> None:
        with lock:
            sent.append((time.monotonic(), frame))

    mic = Mic(lambda: open_source(cfg), AudioFormat.from_input(cfg), send)
    mic.start()
    try:
        assert wait_until(lambda: mic.pauses == 1, 10)
        before = mic.frames_read
        threading.Event().wait(0.5)  # half a second of idling: 25 periods would have been read
        assert mic.frames_read == before
        t_press = time.monotonic()
        mic.set_gate(True)
        mic.uplink_stream()
        assert wait_until(lambda: len(sent) >= 25, 10)
        first = sent[0][0] - t_press
        assert first < 0.25, f"first frame {first * 1000:.0f} ms after the press"
        mic.set_gate(False)
        mic.uplink_off()
        assert wait_until(lambda: mic.pauses == 2, 10)
    finally:
        mic.stop()
