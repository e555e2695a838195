"""The idle microphone: capture stops while nothing would leave it, and a press restarts it."""

from __future__ import annotations

import time

import pytest

from speakerd.audio import AudioFormat, open_source
from speakerd.emulator.sound import PulseServer
from speakerd.mic import SILENCE_SETTLE, Mic
from speakerd.uplink import UplinkMode
from tests.component.test_mic import FrameRecorder
from tests.support.alsa import load_wav, wait_until

pytestmark = pytest.mark.realtime


def test_idle_mic_stops_capturing_and_a_press_restarts_it(pulse_audio: PulseServer) -> None:
    """No socket and a shut gate: no reads while the sound server's clock runs on; a press resumes capture."""
    cfg = pulse_audio.input_config()
    fmt = AudioFormat.from_input(cfg)
    up = FrameRecorder()
    mic = Mic(lambda: open_source(cfg), fmt, up)
    clock = pulse_audio.record_speaker()  # the null sink renders at real time: a clock to wait on
    mic.start()
    try:
        assert wait_until(lambda: mic.pauses == 1, 10)
        assert wait_until(lambda: clock.bytes_so_far() > 0, 10)
        before, mark = mic.frames_read, clock.bytes_so_far()
        # Half a second of the sound server's own time: 25 periods would have been read.
        assert wait_until(lambda: clock.bytes_so_far() >= mark + pulse_audio.rate, 10)
        assert mic.frames_read == before
        t_press = time.monotonic()
        mic.set_gate(True)
        mic.set_uplink(UplinkMode.STREAM)
        up.wait_for(lambda f: len(f) >= 25, 10)
        # How soon the first frame follows the press is a figure for the bench
        # (scripts/bench: "idle mic: press → first frame"), not a bound to assert here.
        print(f"first frame {(up.times[0] - t_press) * 1000:.0f} ms after the press")
        mic.set_gate(False)
        mic.set_uplink(UplinkMode.OFF)
        assert wait_until(lambda: mic.pauses == 2, 10)
    finally:
        clock.stop()
        mic.stop()


def test_connected_with_a_shut_gate_sends_clock_paced_silence_without_reading(
        pulse_audio: PulseServer) -> None:
    """Streaming with the gate shut: the stream stops, silence frames still flow, and opening
    the gate resumes capture so the microphone goes up again."""
    cfg = pulse_audio.input_config()
    fmt = AudioFormat.from_input(cfg)
    up = FrameRecorder()
    mic = Mic(lambda: open_source(cfg), fmt, up, frame_periods=4)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        assert wait_until(lambda: mic.pauses == 1, 10)
        reads = mic.frames_read
        up.wait_for(lambda f: len(f) >= 6, 10)
        assert set(up.snapshot()) == {fmt.silence() * 4}
        assert mic.frames_read == reads  # silence by the clock, not by reading the device
        proc = pulse_audio.play_into_mic(load_wav("hello"))
        mic.set_gate(True)
        assert wait_until(lambda: not proc.alive(), 10)
        assert wait_until(lambda: mic.frames_read >= reads + 20, 10)
        assert any(frame.strip(b"\0") for frame in up.snapshot())  # the microphone went up
    finally:
        mic.stop()


def test_paced_silence_goes_up_a_few_frames_at_a_wake(pulse_audio: PulseServer) -> None:
    """With the gate shut, silence leaves frame by frame for SILENCE_SETTLE, then 3 frames a wake-up."""
    cfg = pulse_audio.input_config()
    fmt = AudioFormat.from_input(cfg)
    up = FrameRecorder()
    periods = round(0.08 / fmt.period_seconds)
    mic = Mic(lambda: open_source(cfg), fmt, up, frame_periods=periods)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        assert wait_until(lambda: mic.pauses == 1, 10)
        paused = time.monotonic()
        up.wait_for(lambda f: len(f) >= 40, 10)
    finally:
        mic.stop()
    times = up.arrivals()
    first = [t for t in times if t < paused + SILENCE_SETTLE - 0.2]
    later = [t for t in times if t > paused + SILENCE_SETTLE + 0.5]

    def together(ts: list[float]) -> int:
        # Frames of one batch leave in one go (microseconds apart); a frame a wake is ~80 ms.
        return sum(b - a < 0.04 for a, b in zip(ts, ts[1:], strict=False))

    assert len(first) >= 8 and together(first) <= 2, first  # frame by frame at first
    assert len(later) >= 12 and together(later) >= 4, later  # then three at a wake
