"""The audio path in real time: ALSA `pulse` PCMs on a private PulseAudio server with null sinks.

Timing figures are printed (run with -s to see them); the assertions only use bounds that a
slow or busy machine cannot break.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from speakerd.audio import (
    AlsaMixer,
    AudioDeviceError,
    AudioFormat,
    Source,
    list_devices,
    open_sink,
    open_source,
)
from speakerd.emulator.sound import PulseServer
from speakerd.events import PlaybackDrained, PlaybackInterrupted, PlaybackStarted
from speakerd.mic import Mic
from speakerd.speaker import Speaker
from speakerd.uplink import UplinkMode
from tests.component.test_mic import DeviceLog, FrameRecorder
from tests.component.test_speaker import Events
from tests.support.alsa import SpySink, load_wav, ramp, ramp_index, samples, wait_until
from tests.support.daemon import played_in_order

pytestmark = pytest.mark.realtime

RATE = 16000
FMT = AudioFormat(rate=RATE, period_frames=320)  # 20 ms periods, as the config's default
PERIOD = FMT.period_bytes


def nonzero_span(pcm: bytes) -> tuple[int, int]:
    """First and last index of a non-zero sample."""
    s = samples(pcm)
    nz = [i for i, v in enumerate(s) if v]
    assert nz, "no audio at all"
    return nz[0], nz[-1]


def quick_backoff() -> Iterator[float]:
    return itertools.repeat(0.05)


def test_interrupt_drops_the_buffered_audio_unplayed(pulse_audio: PulseServer) -> None:
    """A 10 s reply interrupted at 2 s: what was queued and buffered is dropped, never played;
    the monitor holds one contiguous stretch of the reply that ends short of what was written."""
    rec = pulse_audio.record_speaker()
    assert wait_until(lambda: rec.bytes_so_far() > 0)  # the monitor is being recorded
    spies: list[SpySink] = []

    def open_spy() -> SpySink:
        spy = SpySink(open_sink(pulse_audio.output_config(periods=3)))
        spies.append(spy)
        return spy
    events = Events()
    speaker = Speaker(open_spy, FMT, on_event=events)
    reply = ramp(RATE * 10)
    speaker.start()
    try:
        speaker.play(reply)
        started = events.wait_for(PlaybackStarted)[0]
        assert isinstance(started, PlaybackStarted)
        # The scenario: interrupt at 2 s, when the real-time sink has taken 2 s of the reply.
        assert wait_until(lambda: spies[0].written >= 2 * 2 * RATE)
        speaker.interrupt()
        interrupted = events.wait_for(PlaybackInterrupted)[0]
        assert isinstance(interrupted, PlaybackInterrupted)
        mark = rec.bytes_so_far()
        assert wait_until(lambda: rec.bytes_so_far() >= mark + RATE)  # 0.5 s more of the monitor
    finally:
        speaker.stop()
        data = rec.stop()

    first, last = nonzero_span(data)
    heard = data[first * 2:(last + 1) * 2]
    offset = ramp_index(samples(heard)[0])
    assert heard == ramp(len(heard) // 2, offset)  # contiguous and bit-exact
    played = offset + len(heard) // 2  # reply frames that reached the monitor
    drop = next(c for c in spies[0].calls if c.name == "drop")
    written = drop.written // 2
    assert played < written, "nothing written was discarded: the drop did not happen"
    assert played < RATE * 3  # nowhere near the 10 s of the reply
    after_request = played / RATE - (interrupted.t_request - started.t)
    to_drop = interrupted.t_dropped - interrupted.t_request
    print(f"\ninterrupt->drop {to_drop * 1000:.1f} ms; reply audio at the monitor after the "
          f"request {after_request * 1000:+.1f} ms, counted from the first write, so add the "
          f"write-to-monitor latency (~20 ms) for interrupt->silence; written but never played "
          f"{(written - played) / RATE * 1000:.0f} ms; discarded {interrupted.discarded_bytes} "
          f"bytes; start offset {offset} frames")
    # How long it still sounded after the request is a wall-clock figure: scripts/bench measures
    # it on the whole daemon ("barge-in ... → last old sample"); here the samples prove the drop.


def test_reply_drains_in_real_time(pulse_audio: PulseServer) -> None:
    """A 1 s reply plays bit-exact at the monitor and is reported drained no earlier than 1 s
    after it started."""
    rec = pulse_audio.record_speaker()
    assert wait_until(lambda: rec.bytes_so_far() > 0)
    events = Events()
    speaker = Speaker(lambda: open_sink(pulse_audio.output_config()), FMT, on_event=events)
    reply = ramp(RATE)
    speaker.start()
    try:
        speaker.begin_reply()
        speaker.play(reply)
        speaker.end_reply()
        drained = events.wait_for(PlaybackDrained)[0]
        started = events.wait_for(PlaybackStarted)[0]
        assert isinstance(drained, PlaybackDrained) and isinstance(started, PlaybackStarted)
        mark = rec.bytes_so_far()
        assert wait_until(lambda: rec.bytes_so_far() >= mark + RATE // 2)
    finally:
        speaker.stop()
        data = rec.stop()
    first, last = nonzero_span(data)
    heard = data[first * 2:(last + 1) * 2]
    print(f"\nreply of 1.000 s: started->drained {drained.t - started.t:.3f} s, "
          f"underruns {drained.underruns}, start offset {ramp_index(samples(heard)[0])} frames")
    assert heard == reply[len(reply) - len(heard):]  # all of it, bar a few ms at stream start
    assert len(heard) >= len(reply) - 10 * 2 * RATE // 1000
    assert drained.t - started.t >= 0.9
    assert drained.frames == RATE


def test_capture_runs_at_real_time_and_matches_fixture(pulse_audio: PulseServer) -> None:
    """What pacat plays into the mic sink is captured, byte for byte, at the pace of the clock."""
    speech = load_wav("hello")
    up = FrameRecorder()
    mic = Mic(lambda: open_source(pulse_audio.input_config()), FMT, up)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        up.wait_for(lambda f: len(f) >= 5)  # the capture stream is running
        n0 = len(up.snapshot())
        t0 = time.monotonic()
        proc = pulse_audio.play_into_mic(speech)
        assert wait_until(lambda: not proc.alive())
        need = n0 + len(speech) // PERIOD + 25
        up.wait_for(lambda f: len(f) >= need)
        elapsed = time.monotonic() - t0
        frames = up.snapshot()
    finally:
        mic.stop()
    captured = b"".join(frames[n0:])
    first, last = nonzero_span(speech)
    core = speech[(first + 160) * 2:(last + 1) * 2]  # skip 10 ms: the stream's start offset
    # By 50 ms chunks, in order: a block the sound server drops on a busy machine costs only
    # the chunk it falls in (the whole fixture was found on every quiet run).
    share = played_in_order(core, captured)
    audio_seconds = (need - n0) * FMT.period_seconds
    print(f"\ncaptured {audio_seconds:.2f} s of audio in {elapsed:.2f} s wall; "
          f"{share:.0%} of the speech's 50 ms chunks found in order; xruns {mic.xruns}")
    assert share >= 0.9
    # Real time means it cannot come faster than the clock (a slow machine only makes it later).
    assert elapsed >= 0.9 * audio_seconds


class ReadLog:
    """Wraps the real capture source and keeps every period it returned, in order."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.periods: list[bytes] = []

    def read(self) -> bytes:
        data = self.inner.read()
        self.periods.append(data)
        return data

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)  # avail, pause, close, xruns: the real source's


def test_capture_in_frames_of_four_periods_matches_fixture(pulse_audio: PulseServer) -> None:
    """Read a frame at a time (the thread sleeps while it is captured), the frames carry the
    device's periods bit-exact and in order, four to every message after the first."""
    speech = load_wav("hello")
    up = FrameRecorder()
    logs: list[ReadLog] = []

    def open_logged() -> ReadLog:
        logs.append(ReadLog(open_source(pulse_audio.input_config())))
        return logs[-1]

    mic = Mic(open_logged, FMT, up, frame_periods=4)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        up.wait_for(lambda f: len(f) >= 3)  # the capture stream is running
        n0 = len(up.snapshot())
        proc = pulse_audio.play_into_mic(speech)
        assert wait_until(lambda: not proc.alive())
        need = n0 + len(speech) // (4 * PERIOD) + 8
        up.wait_for(lambda f: len(f) >= need)
        frames = up.snapshot()
    finally:
        mic.stop()
    assert {len(f) for f in frames[1:]} == {4 * PERIOD}
    sent = b"".join(frames)
    assert len(logs) == 1 and b"".join(logs[0].periods)[:len(sent)] == sent
    # The sound path itself: the words came through. By 50 ms chunks, in order, so a block the
    # sound server drops on a busy machine costs only the chunk it falls in.
    first, last = nonzero_span(speech)
    core = speech[(first + 160) * 2:(last + 1) * 2]
    assert played_in_order(core, b"".join(frames[n0:])) >= 0.9
    assert mic.xruns == 0


class HandOverLog(FrameRecorder):
    """Records, with each frame, how many periods the capture source had returned when the mic
    thread handed the frame over: frames handed over together share that count."""

    def __init__(self) -> None:
        super().__init__()
        self.source: ReadLog | None = None
        self.reads_at: list[int] = []

    def uplink(self, pcm: bytes) -> None:
        assert self.source is not None
        self.reads_at.append(len(self.source.periods))
        super().uplink(pcm)

    def groups(self, start: int, end: int) -> list[int]:
        """Sizes of the hand-overs among frames start..end-1, in order."""
        with self._cond:
            counts = self.reads_at[start:end]
        return [len(list(group)) for _, group in itertools.groupby(counts)]


def test_a_batch_hands_frames_over_two_at_a_time_then_one(pulse_audio: PulseServer) -> None:
    """Batched (the agent speaking in full duplex), 80 ms frames leave in pairs, whole and in
    the device's order; back to a batch of one (a barge-in heard), each leaves as it fills."""
    up = HandOverLog()

    def open_logged() -> ReadLog:
        up.source = ReadLog(open_source(pulse_audio.input_config()))
        return up.source

    mic = Mic(open_logged, FMT, up, frame_periods=4, batch_frames=2)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.set_batched(True)
    mic.start()
    try:
        up.wait_for(lambda f: len(f) >= 13)
        mic.set_batched(False)
        n1 = len(up.snapshot())
        up.wait_for(lambda f: len(f) >= n1 + 10)
        frames = up.snapshot()
    finally:
        mic.stop()
    # Frame 0 leaves at once (a turn's first byte does not wait for its frame); from the next
    # hand-over on, two frames at a time until the batch changed, then one at a time. Around
    # the change, a hand-over may be of one or two.
    batched = up.groups(1, 13)
    assert batched[:-1] and set(batched[:-1]) == {2}, batched
    assert set(up.groups(n1 + 1, n1 + 10)) == {1}, up.groups(n1 + 1, n1 + 10)
    assert {len(f) for f in frames[1:]} == {4 * PERIOD}
    assert up.source is not None
    sent = b"".join(frames)
    assert b"".join(up.source.periods)[:len(sent)] == sent
    assert mic.xruns == 0  # the batch was captured while the thread slept, none of it lost


def test_sound_server_crash_is_survived(own_pulse_server: PulseServer) -> None:
    """When the sound server dies mid-reply, mic and speaker report it, keep the uplink fed,
    and come back when it returns."""
    pa = own_pulse_server
    up = FrameRecorder()
    mic_dev, spk_dev = DeviceLog(), DeviceLog()
    events = Events()
    mic = Mic(lambda: open_source(pa.input_config()), FMT, up, on_device=mic_dev,
              backoff=quick_backoff)
    speaker = Speaker(lambda: open_sink(pa.output_config()), FMT, on_event=events,
                      on_device=spk_dev, backoff=quick_backoff)
    mic.set_gate(True)  # reading the device (a shut gate stops the stream and sends silence)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    speaker.start()
    try:
        speaker.play(ramp(RATE * 5))
        events.wait_for(PlaybackStarted)
        up.wait_for(lambda f: len(f) >= 5)
        pa.crash()
        mic_dev.wait_for(1)
        spk_dev.wait_for(1)
        assert mic_dev.calls[0][0] is False and spk_dev.calls[0][0] is False
        drained = events.wait_for(PlaybackDrained)[0]
        assert isinstance(drained, PlaybackDrained) and drained.reply == 1
        sent = len(up.snapshot())
        up.wait_for(lambda f: len(f) >= sent + 5)  # silence keeps flowing with no device
        pa.start()
        mic_dev.wait_for(2)
        spk_dev.wait_for(2)
        assert mic_dev.calls[1] == (True, "") and spk_dev.calls[1] == (True, "")
        reads = mic.frames_read
        assert wait_until(lambda: mic.frames_read >= reads + 5)
        speaker.begin_reply()
        speaker.play(ramp(RATE // 5))
        speaker.end_reply()
        events.wait_for(PlaybackDrained, 2)
    finally:
        mic.stop()
        speaker.stop()


def test_mixer_sets_the_sink_volume(pulse_audio: PulseServer) -> None:
    """AlsaMixer changes a real mixer control (PulseAudio's Master), and a missing control is
    reported against the functions config key."""
    mixer = AlsaMixer(pulse_audio.mixer_card, "Master")
    try:
        mixer.set_percent(35)
        assert mixer.get_percent() == 35
        assert pulse_audio.sink_volume_percent() == 35
        mixer.set_percent(150)  # clamped
        assert mixer.get_percent() == 100
    finally:
        mixer.set_percent(100)
    with pytest.raises(AudioDeviceError) as err:
        AlsaMixer(pulse_audio.mixer_card, "Nope")
    assert err.value.key == "functions.action.control"
    assert "Master" in str(err.value)  # lists what is there


def test_list_devices_names_pcms(pulse_audio: PulseServer) -> None:
    """list_devices() reports the PCM names ALSA knows."""
    devices = list_devices()
    assert pulse_audio.speaker_device in devices["playback"]
    assert pulse_audio.mic_device in devices["capture"]
    assert devices["cards"] == []  # no sound card on this machine
