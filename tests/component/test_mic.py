"""The capture thread against real alsa-lib (file-backed devices, steered read by read)."""

from __future__ import annotations

import array
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from speakerd.audio import AudioFormat, open_source
from speakerd.backoff import device_backoff
from speakerd.framing import FrameSink
from speakerd.mic import Mic
from speakerd.uplink import UplinkMode
from tests.support.alsa import WAIT, AlsaFiles, DeviceLog, Hold, SteeredSource, load_wav, ramp
from tests.support.shapes import shape_differences

FMT = AudioFormat(rate=16000, period_frames=320)
PERIOD = FMT.period_bytes
SILENCE = FMT.silence()


class FrameRecorder:
    """Records what the mic sends (and when), and lets a test wait for a number of frames."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.times: list[float] = []  # time.monotonic() as each frame arrived
        self._cond = threading.Condition()  # send() runs in the mic thread; the test waits here

    def uplink(self, pcm: bytes) -> None:
        with self._cond:
            self.frames.append(pcm)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[bytes]], bool], timeout: float = WAIT) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.frames), timeout), \
                f"uplink condition not met; {len(self.frames)} frames sent"

    def snapshot(self) -> list[bytes]:
        with self._cond:
            return list(self.frames)

    def arrivals(self) -> list[float]:
        with self._cond:
            return list(self.times)


def stop_mic(mic: Mic, sources: list[SteeredSource]) -> None:
    """Let exhausted test sources return (a real device returns within a period), then stop."""
    for src in sources:
        src.unblock.set()
    mic.stop()


def frames_of(pcm: bytes) -> list[bytes]:
    return [pcm[i:i + PERIOD] for i in range(0, len(pcm), PERIOD)]


def quick_backoff() -> Iterator[float]:
    return itertools.repeat(0.05)


@pytest.fixture
def sources(alsa_files: AlsaFiles) -> Iterator[list[SteeredSource]]:
    """Every steered source opened in a test; all unblocked at teardown so the mic can stop."""
    opened: list[SteeredSource] = []
    yield opened
    for src in opened:
        src.unblock.set()


def opener(alsa_files: AlsaFiles, sources: list[SteeredSource], limit: int, *,
           fail_at: list[int | None] | None = None,
           holds: dict[int, Hold] | None = None) -> Callable[[], SteeredSource]:
    """open_source for Mic: a real AlsaSource on the file device, bounded to `limit` reads.

    `holds` are attached to the first source before the mic thread can read from it.
    """
    plan = list(fail_at or [])

    def open_it() -> SteeredSource:
        src = SteeredSource(open_source(alsa_files.input_config()), limit,
                            fail_at=plan.pop(0) if plan else None)
        if not sources and holds:
            src.holds.update(holds)
        sources.append(src)
        return src
    return open_it


def test_streams_fixture_bit_exact(alsa_files: AlsaFiles, sources: list[SteeredSource]) -> None:
    """With the gate open and the uplink streaming, the sent bytes equal the capture bit for bit."""
    speech = load_wav("weather")
    total = alsa_files.set_mic(speech, pad_seconds=0.5)
    limit = total // PERIOD
    up = FrameRecorder()
    mic = Mic(opener(alsa_files, sources, limit), FMT, up)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        up.wait_for(lambda f: len(f) >= limit)
        assert sources[0].exhausted.wait(WAIT)
        assert b"".join(up.snapshot()) == (speech + bytes(total))[:limit * PERIOD]
        assert mic.frames_read == limit
    finally:
        stop_mic(mic, sources)


def test_closed_gate_sends_silence_at_same_cadence(alsa_files: AlsaFiles,
                                                  sources: list[SteeredSource]) -> None:
    """A closed gate sends one period of silence for every period read, never the microphone."""
    alsa_files.set_mic(ramp(320 * 30), pad_seconds=0)
    up = FrameRecorder()
    mic = Mic(opener(alsa_files, sources, 30), FMT, up)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        up.wait_for(lambda f: len(f) >= 30)
        assert sources[0].exhausted.wait(WAIT)
        assert up.snapshot() == [SILENCE] * 30
    finally:
        stop_mic(mic, sources)


def test_uplink_off_reads_but_sends_nothing(alsa_files: AlsaFiles,
                                            sources: list[SteeredSource]) -> None:
    """With no socket the device is still read, and every frame is discarded."""
    alsa_files.set_mic(ramp(320 * 20), pad_seconds=0)
    up = FrameRecorder()
    mic = Mic(opener(alsa_files, sources, 20), FMT, up)
    mic.set_gate(True)
    mic.start()
    try:
        assert sources[0].exhausted.wait(WAIT)
        assert mic.frames_read == 20
        assert up.snapshot() == []
        assert any(t.name == "mic" for t in threading.enumerate())
    finally:
        stop_mic(mic, sources)
        mic.stop()  # idempotent
    assert not any(t.name == "mic" for t in threading.enumerate())


def test_connect_buffer_keeps_every_frame_from_the_press(alsa_files: AlsaFiles,
                                                         sources: list[SteeredSource]) -> None:
    """Frames from the press edge are buffered while connecting, then sent first and in order."""
    frames = frames_of(ramp(320 * 50))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    up = FrameRecorder()
    first_sends: list[float] = []
    press, ready, done = Hold(), Hold(), Hold()
    mic = Mic(opener(alsa_files, sources, 50, holds={10: press, 30: ready, 50: done}), FMT,
              up, on_first_send=first_sends.append, clock=lambda: 42.0)
    mic.start()
    try:
        press.wait()  # reads 0..9 are done (discarded: no uplink); read 10 is pending
        mic.set_gate(True)   # the session's order at the press edge
        mic.set_uplink(UplinkMode.BUFFER)
        press.release()
        ready.wait()
        assert up.snapshot() == [] and mic.buffered_frames == 20
        mic.set_uplink(UplinkMode.STREAM)  # the socket is ready
        ready.release()
        done.wait()
        assert up.snapshot() == frames[10:50]
        assert first_sends == [42.0]
        done.release()
    finally:
        stop_mic(mic, sources)


def test_streaming_sends_the_buffer_before_set_uplink_returns(
        alsa_files: AlsaFiles, sources: list[SteeredSource]) -> None:
    """The switch to streaming sends the connect buffer at once, so a message sent right after
    it (ForceEndTurn on a release while connecting) follows every buffered frame."""
    frames = frames_of(ramp(320 * 40))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    up = FrameRecorder()
    press, ready, done = Hold(), Hold(), Hold()
    mic = Mic(opener(alsa_files, sources, 40, holds={10: press, 25: ready, 40: done}), FMT, up)
    mic.start()
    try:
        press.wait()
        mic.set_gate(True)
        mic.set_uplink(UplinkMode.BUFFER)
        press.release()
        ready.wait()  # reads 10..24 are buffered; read 25 is held back
        mic.set_uplink(UplinkMode.STREAM)
        assert up.snapshot() == frames[10:25]  # before the mic thread reads another period
        ready.release()
        done.wait()
        assert up.snapshot() == frames[10:40]
        done.release()
    finally:
        stop_mic(mic, sources)


def test_connect_buffer_is_bounded_oldest_dropped(alsa_files: AlsaFiles,
                                                  sources: list[SteeredSource],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A full connect buffer drops its oldest frames, warns once, and keeps the newest in order."""
    frames = frames_of(ramp(320 * 25))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    ready, done = Hold(), Hold()
    up = FrameRecorder()
    mic = Mic(opener(alsa_files, sources, 25, holds={20: ready, 25: done}), FMT, up,
              buffer_seconds=0.1)  # 5 frames
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.BUFFER)
    caplog.set_level(logging.WARNING, logger="speakerd.mic")
    mic.start()
    try:
        ready.wait()
        mic.set_uplink(UplinkMode.STREAM)
        ready.release()
        done.wait()
        assert up.snapshot() == frames[15:25]
        warnings = [r for r in caplog.records if "connect buffer full" in r.getMessage()]
        assert len(warnings) == 1  # 15 drops, one line
        done.release()
    finally:
        stop_mic(mic, sources)


def test_device_missing_at_start_then_appearing(alsa_files: AlsaFiles,
                                                sources: list[SteeredSource]) -> None:
    """A missing mic is reported, silence feeds the uplink, and the mic is used once it appears."""
    alsa_files.remove_mic()
    frames = frames_of(ramp(320 * 20))
    up = FrameRecorder()
    device = DeviceLog()
    mic = Mic(opener(alsa_files, sources, 20), FMT, up, on_device=device,
              backoff=quick_backoff)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        device.wait_for(1)
        assert device.calls[0][0] is False and "default" in device.calls[0][1]
        up.wait_for(lambda f: len(f) >= 3)  # silence at the period cadence while missing
        assert set(up.snapshot()) == {SILENCE}
        alsa_files.set_mic(b"".join(frames), pad_seconds=0)
        device.wait_for(2)
        assert device.calls[1] == (True, "")
        up.wait_for(lambda f: [x for x in f if x != SILENCE] == frames)
        sent = up.snapshot()
        assert set(sent[: len(sent) - 20]) == {SILENCE} and sent[-20:] == frames
    finally:
        stop_mic(mic, sources)


def test_device_lost_mid_stream_is_reopened(alsa_files: AlsaFiles,
                                            sources: list[SteeredSource]) -> None:
    """A read that fails mid-stream is reported, bridged with silence, and the device reopened."""
    frames = frames_of(ramp(320 * 30))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    up = FrameRecorder()
    device = DeviceLog()
    mic = Mic(opener(alsa_files, sources, 30, fail_at=[10]), FMT, up, on_device=device,
              backoff=quick_backoff)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        device.wait_for(2)
        assert device.calls[0][0] is False and "unplugged" in device.calls[0][1]
        assert device.calls[1] == (True, "")
        up.wait_for(lambda f: len([x for x in f if x != SILENCE]) >= 40)
        assert len(sources) == 2 and sources[1].exhausted.wait(WAIT)
        sent = up.snapshot()
        assert [x for x in sent if x != SILENCE] == frames[:10] + frames
        assert sent[:10] == frames[:10]
    finally:
        stop_mic(mic, sources)


def test_level_reports_rms_and_peak(alsa_files: AlsaFiles, sources: list[SteeredSource]) -> None:
    """level() gives the rms and peak of recent capture, on a 0..1 scale."""
    n = 320 * 20
    sine = array.array("h", (int(16384 * math.sin(2 * math.pi * 500 * i / 16000))
                             for i in range(n)))
    alsa_files.set_mic(sine.tobytes(), pad_seconds=0)
    done = Hold()
    mic = Mic(opener(alsa_files, sources, 20, holds={20: done}), FMT, FrameRecorder())
    assert mic.level() == (0.0, 0.0)
    mic.start()
    try:
        done.wait()
        rms, peak = mic.level()
        assert rms == pytest.approx(0.5 / math.sqrt(2), rel=0.01)
        assert peak == pytest.approx(0.5, rel=0.01)
        done.release()
    finally:
        stop_mic(mic, sources)


def test_device_backoff_doubles_to_ten_seconds() -> None:
    """A missing device is looked for again after 0.5 s, doubling up to 10 s (jitter at its midpoint)."""
    delays = list(itertools.islice(device_backoff(rng=lambda: 0.5), 7))
    assert delays == pytest.approx([0.5, 1, 2, 4, 8, 10, 10])


def test_a_mic_thread_that_will_not_stop_is_kept_not_doubled(
        alsa_files: AlsaFiles, sources: list[SteeredSource]) -> None:
    """stop() that times out keeps the stuck thread: start() refuses to add a second device owner."""
    hold = Hold()
    mic = Mic(opener(alsa_files, sources, 50, holds={3: hold}), FMT, FrameRecorder())
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    hold.wait()
    try:
        assert mic.stop(timeout=0.1) is False
        assert mic.alive()
        assert mic.start() is False
        assert sum(t.name == "mic" for t in threading.enumerate()) == 1
    finally:
        hold.release()
    stop_mic(mic, sources)
    assert not mic.alive()
    assert len(sources) == 1


def test_periods_are_grouped_into_frames_bit_exact(alsa_files: AlsaFiles,
                                                   sources: list[SteeredSource]) -> None:
    """With frame_periods=4 each message carries four periods, and together they equal the capture."""
    frames = frames_of(ramp(320 * 40))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    up = FrameRecorder()
    mic = Mic(opener(alsa_files, sources, 40), FMT, up, frame_periods=4)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        up.wait_for(lambda f: len(f) >= 10)
        assert sources[0].exhausted.wait(WAIT)
        sent = up.snapshot()
        # The first message leaves after one period (the turn's first byte goes at once); the
        # last three periods wait for a fourth that never comes.
        assert [len(x) for x in sent] == [PERIOD] + [4 * PERIOD] * 9
        assert b"".join(sent) == b"".join(frames[:37])
        assert mic.frames_sent == 10 and mic.frames_read == 40
    finally:
        stop_mic(mic, sources)


def test_a_warm_press_sends_its_first_period_at_once(alsa_files: AlsaFiles,
                                                     sources: list[SteeredSource]) -> None:
    """Streaming silence in frames of four periods, the gate opening mid-frame sends that frame as
    soon as it holds one live period: silence so far, then the press edge's period."""
    frames = frames_of(ramp(320 * 30))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    up = FrameRecorder()
    press, done = Hold(), Hold()
    first_sends: list[float] = []
    mic = Mic(opener(alsa_files, sources, 30, holds={10: press, 30: done}), FMT, up,
              frame_periods=4, on_first_send=first_sends.append, clock=lambda: 7.0)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        press.wait()  # reads 0..9 done: two whole frames of silence and two periods of a third
        first_sends.clear()
        mic.set_gate(True)
        press.release()
        done.wait()
        sent = up.snapshot()
        assert sent[:2] == [SILENCE * 4] * 2
        assert sent[2] == SILENCE * 2 + frames[10]  # left at once, one live period in it
        assert first_sends == [7.0]
        assert b"".join(sent[3:]) == b"".join(frames[11:30])[:len(b"".join(sent[3:]))]
        assert all(len(x) == 4 * PERIOD for x in sent[3:])
        done.release()
    finally:
        stop_mic(mic, sources)


def test_connect_buffer_holds_frames_and_flushes_a_partial_one(
        alsa_files: AlsaFiles, sources: list[SteeredSource]) -> None:
    """Frames of four periods are buffered while connecting; once ready, the backlog and the
    frame in progress leave together, in order, with nothing lost or doubled."""
    frames = frames_of(ramp(320 * 30))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    up = FrameRecorder()
    ready, done = Hold(), Hold()
    mic = Mic(opener(alsa_files, sources, 30, holds={10: ready, 30: done}), FMT, up,
              frame_periods=4)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.BUFFER)
    mic.start()
    try:
        ready.wait()  # ten periods read: two buffered frames, two periods in the third
        assert up.snapshot() == [] and mic.buffered_frames == 2
        mic.set_uplink(UplinkMode.STREAM)
        # At once, not at the next period: a ForceEndTurn sent next must follow these words.
        assert [len(x) for x in up.snapshot()] == [4 * PERIOD, 4 * PERIOD, 2 * PERIOD]
        ready.release()
        done.wait()
        sent = up.snapshot()
        assert all(len(x) == 4 * PERIOD for x in sent[3:])
        assert b"".join(sent) == b"".join(frames[:len(b"".join(sent)) // PERIOD])
        done.release()
    finally:
        stop_mic(mic, sources)


def test_a_release_sends_the_last_words_at_once(alsa_files: AlsaFiles,
                                                sources: list[SteeredSource]) -> None:
    """The gate shutting mid-frame sends that frame short, live periods and all, instead of
    completing it with silence first."""
    frames = frames_of(ramp(320 * 30))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    up = FrameRecorder()
    release, done = Hold(), Hold()
    mic = Mic(opener(alsa_files, sources, 30, holds={10: release, 30: done}), FMT, up,
              frame_periods=4)
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        release.wait()  # reads 0..9 done: one period alone (the turn's first), two frames, two more
        mic.set_gate(False)
        release.release()
        done.wait()
        sent = up.snapshot()
        assert sent[:3] == [frames[0], b"".join(frames[1:5]), b"".join(frames[5:9])]
        # Period 9 was live; read 10 came after the release: the frame left with period 9 only.
        assert sent[3] == frames[9]
        assert all(x == SILENCE * 4 for x in sent[4:])
        done.release()
    finally:
        stop_mic(mic, sources)


class TurnEnds:
    """The mic's answers to turn ends, with what the sink had been given by each answer."""

    def __init__(self, up: FrameRecorder) -> None:
        self.up = up  # the mic's sink
        self.mic: Mic | None = None  # set once the mic it listens to is built
        self.answers: list[tuple[int, list[bytes], int]] = []  # number, frames sent, periods read
        self.answered = threading.Event()

    def __call__(self, number: int, t: float) -> None:
        # On the mic thread: the snapshot is what the sink holds at the moment of the answer.
        assert self.mic is not None
        self.answers.append((number, self.up.snapshot(), self.mic.frames_read))
        self.answered.set()


def streaming_with_turn_ends(alsa_files: AlsaFiles, sources: list[SteeredSource],
                             holds: dict[int, Hold]) -> tuple[list[bytes], TurnEnds, Mic]:
    """A mic streaming 30 periods of ramp in frames of four, gate open, its turn-end answers
    recorded; started."""
    frames = frames_of(ramp(320 * 30))
    alsa_files.set_mic(b"".join(frames), pad_seconds=0)
    ends = TurnEnds(FrameRecorder())
    mic = Mic(opener(alsa_files, sources, 30, holds=holds), FMT, ends.up, frame_periods=4,
              on_turn_end=ends)
    ends.mic = mic
    mic.set_gate(True)
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    return frames, ends, mic


def test_a_turn_end_is_answered_once_the_words_before_it_are_sent(
        alsa_files: AlsaFiles, sources: list[SteeredSource]) -> None:
    """At a release the mic is asked for the turn's end: it answers once, after the sink has the
    frame holding the last live period, sent short."""
    release, done = Hold(), Hold()
    frames, ends, mic = streaming_with_turn_ends(alsa_files, sources, {10: release, 30: done})
    try:
        release.wait()  # periods 0..9 read; the thread waits for period 10
        mic.set_gate(False)
        assert mic.ask_turn_end() == 1
        release.release()
        assert ends.answered.wait(WAIT)
        done.wait()
        ((number, sent, _),) = ends.answers
        assert number == 1
        assert sent[:4] == [frames[0], b"".join(frames[1:5]), b"".join(frames[5:9]), frames[9]]
        done.release()
    finally:
        stop_mic(mic, sources)


def test_with_the_gate_left_open_a_turn_end_still_flushes_and_answers(
        alsa_files: AlsaFiles, sources: list[SteeredSource]) -> None:
    """Full duplex keeps the gate open after a release: the answer still comes, with every
    period read so far already at the sink (the frame in progress sent short)."""
    release = Hold()
    frames, ends, mic = streaming_with_turn_ends(alsa_files, sources, {10: release})
    try:
        release.wait()
        assert mic.ask_turn_end() == 1
        release.release()
        assert ends.answered.wait(WAIT)
        ((number, sent, read),) = ends.answers
        assert number == 1 and read >= 10
        assert b"".join(sent) == b"".join(frames[:read])
    finally:
        stop_mic(mic, sources)


def test_a_mic_with_no_device_answers_a_turn_end_at_once(alsa_files: AlsaFiles,
                                                         sources: list[SteeredSource]) -> None:
    """No device (silence paced by the clock in its place): a turn end is answered within a
    frame, not left to the session's timeout."""
    up = FrameRecorder()
    ends = TurnEnds(up)
    alsa_files.remove_mic()
    mic = Mic(opener(alsa_files, sources, 30), FMT, up, frame_periods=4, on_turn_end=ends,
              backoff=lambda: itertools.repeat(60.0))
    ends.mic = mic
    mic.set_uplink(UplinkMode.STREAM)
    mic.start()
    try:
        up.wait_for(lambda f: len(f) >= 1)  # missing: silence by the clock
        assert mic.ask_turn_end() == 1
        assert ends.answered.wait(WAIT)
        assert [n for n, _, _ in ends.answers] == [1]
    finally:
        stop_mic(mic, sources)


def test_the_frame_recorder_has_the_shape_of_the_mic_s_sink() -> None:
    """FrameRecorder stands in for the Router as the mic's FrameSink: called the same way."""
    assert shape_differences(FrameRecorder, FrameSink) == []
