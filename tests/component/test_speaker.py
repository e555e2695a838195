"""The playback thread against real alsa-lib (file-backed devices, a spy around the real sink)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator

import pytest

from speakerd import chimes
from speakerd.audio import AudioDeviceError, AudioFormat, open_sink
from speakerd.config import ChimeConfig, ChimesConfig
from speakerd.events import PlaybackDrained, PlaybackInterrupted, PlaybackStarted
from speakerd.speaker import Speaker
from tests.support.alsa import WAIT, AlsaFiles, DeviceLog, SpySink, ramp, wait_until

FMT = AudioFormat(rate=16000, period_frames=320)
PERIOD = FMT.period_bytes


class Events:
    """Collects speaker events; a test waits for one on a condition."""

    def __init__(self) -> None:
        self.items: list[object] = []
        self._cond = threading.Condition()  # on_event runs in the speaker thread

    def __call__(self, event: object) -> None:
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def wait_for(self, kind: type, count: int = 1, timeout: float = WAIT) -> list[object]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: sum(isinstance(e, kind) for e in self.items) >= count, timeout)
            assert ok, f"no {kind.__name__} (x{count}) in {self.items}"
            return [e for e in self.items if isinstance(e, kind)]


def padded(pcm: bytes, fill: bytes = b"\x00", period: int = PERIOD) -> bytes:
    return pcm + fill * (-len(pcm) % period)


def quick_backoff() -> Iterator[float]:
    return itertools.repeat(0.02)


@pytest.fixture
def spies(alsa_files: AlsaFiles) -> list[SpySink]:
    """Every sink the speaker opened, each a SpySink around a real AlsaSink."""
    return []


def spy_opener(alsa_files: AlsaFiles, spies: list[SpySink], **cfg: object) -> Callable[[], SpySink]:
    # The device's period is FMT's (20 ms), in a buffer of three: the write counts below follow.
    geometry: dict[str, object] = {"period_ms": 20, "periods": 3, **cfg}

    def open_it() -> SpySink:
        spy = SpySink(open_sink(alsa_files.output_config(**geometry)))
        spies.append(spy)
        return spy
    return open_it


def test_reply_played_bit_exact_with_padded_tail(alsa_files: AlsaFiles,
                                                 spies: list[SpySink]) -> None:
    """Odd-sized chunks are re-chunked into whole periods; end_reply pads the tail with silence."""
    events = Events()
    speaker = Speaker(spy_opener(alsa_files, spies), FMT, on_event=events)
    reply = ramp(320 * 7 + 123)
    assert speaker.begin_reply() == 1
    for size in (1000, 2, 638, 3000):
        assert speaker.play(reply[:size])
        reply_left = reply[size:]
        reply = reply_left
    assert speaker.play(reply)
    speaker.end_reply()
    assert speaker.is_playing()
    speaker.start()
    drained = events.wait_for(PlaybackDrained)[0]
    speaker.stop()
    expected = ramp(320 * 7 + 123)
    assert alsa_files.speaker_bytes() == padded(expected)
    assert isinstance(drained, PlaybackDrained)
    assert (drained.reply, drained.frames, drained.underruns) == (1, 320 * 7 + 123, 0)
    started = events.wait_for(PlaybackStarted)[0]
    assert isinstance(started, PlaybackStarted) and started.reply == 1
    assert started.t <= drained.t
    assert not speaker.is_playing()
    sizes = [c.size for c in spies[0].calls if c.name == "write"]
    # Whole periods, several to a write when the device has room: fewer calls, fewer wake-ups.
    assert sizes and all(size % PERIOD == 0 for size in sizes) and max(sizes) > PERIOD


def test_a_chunk_into_a_long_period_device_is_written_whole_and_unpadded(
        alsa_files: AlsaFiles, spies: list[SpySink]) -> None:
    """With 40 ms device periods, a 100 ms chunk is written at once, all of it, no silence added."""
    events = Events()
    fmt = AudioFormat(rate=16000, period_frames=640)  # the device's period: 40 ms
    speaker = Speaker(spy_opener(alsa_files, spies, period_ms=40, periods=5), fmt, on_event=events)
    chunk = ramp(1600)  # 100 ms: two and a half of the device's periods
    speaker.start()
    try:
        speaker.begin_reply()
        assert speaker.play(chunk)
        assert wait_until(lambda: sum(c.size for s in spies for c in s.calls if c.name == "write")
                          >= len(chunk), WAIT)
        events.wait_for(PlaybackStarted)
        # Nothing of it held back for the next chunk, and no period's worth of silence after it.
        assert sum(c.size for c in spies[0].calls if c.name == "write") == len(chunk)
        assert alsa_files.speaker_bytes() == chunk
    finally:
        speaker.stop()


def test_a_reply_tail_is_padded_to_a_whole_device_period(alsa_files: AlsaFiles,
                                                        spies: list[SpySink]) -> None:
    """With 40 ms device periods, a reply's tail is padded so the stream stops on a period's end."""
    events = Events()
    fmt = AudioFormat(rate=16000, period_frames=640)
    speaker = Speaker(spy_opener(alsa_files, spies, period_ms=40, periods=5), fmt, on_event=events)
    reply = ramp(1300)  # 81.25 ms: past two periods, and not a whole number of 20 ms steps
    speaker.begin_reply()
    assert speaker.play(reply)
    speaker.end_reply()
    speaker.start()
    try:
        events.wait_for(PlaybackDrained)
    finally:
        speaker.stop()
    assert alsa_files.speaker_bytes() == padded(reply, period=fmt.period_bytes)


def test_interrupt_drops_queue_and_device(alsa_files: AlsaFiles, spies: list[SpySink]) -> None:
    """After interrupt() nothing more of the old reply is written, the device is dropped, and
    the next reply plays in full."""
    events = Events()
    opened = spy_opener(alsa_files, spies)
    hold_box: list[object] = []

    def open_with_hold() -> SpySink:
        spy = opened()
        hold_box.append(spy.hold_before_write(10))
        return spy
    speaker = Speaker(open_with_hold, FMT, on_event=events)
    old = ramp(320 * 100)
    speaker.play(old)  # no begin_reply(): reply 1 starts implicitly
    speaker.start()
    assert wait_until(lambda: bool(hold_box))
    hold = hold_box[0]
    hold.wait()  # type: ignore[attr-defined]
    speaker.interrupt()  # from the test thread while the speaker is inside write #10
    assert speaker.play(ramp(320 * 5, 32000)) is False  # late audio of the old reply
    hold.release()  # type: ignore[attr-defined]
    interrupted = events.wait_for(PlaybackInterrupted)[0]
    new = ramp(320 * 5, base=-30000)
    assert speaker.begin_reply() == 2
    assert speaker.play(new)
    speaker.end_reply()
    events.wait_for(PlaybackDrained)
    speaker.stop()

    spy = spies[0]
    through_held = spy.calls[10].written  # the write in progress when interrupt() came
    assert spy.calls[10].name == "write" and spy.calls[11].name == "drop"
    assert alsa_files.speaker_bytes() == old[:through_held] + new
    first_drop = next(c for c in spy.calls if c.name == "drop")
    assert first_drop.written == through_held  # dropped right after the write in progress
    assert isinstance(interrupted, PlaybackInterrupted)
    assert interrupted.discarded_bytes == len(old) - through_held
    assert interrupted.t_request <= interrupted.t_dropped
    started = [e.reply for e in events.items if isinstance(e, PlaybackStarted)]
    drained = [e.reply for e in events.items if isinstance(e, PlaybackDrained)]
    assert started == [1, 2] and drained == [2]


def test_late_audio_refused_until_quiet_for_timeout(alsa_files: AlsaFiles,
                                                    spies: list[SpySink]) -> None:
    """Late audio is refused while it keeps coming; after late_audio_timeout of quiet, audio
    starts a new reply, so a false trigger cannot mute the agent for good."""
    now = [100.0]
    events = Events()
    speaker = Speaker(spy_opener(alsa_files, spies), FMT, on_event=events,
                      late_audio_timeout=1.5, clock=lambda: now[0])
    assert speaker.play(ramp(320 * 3))  # reply 1, never started
    speaker.interrupt()
    for t in (100.5, 101.5, 102.9):  # each refusal pushes the deadline on
        now[0] = t
        assert speaker.play(ramp(320)) is False
    speaker.end_reply()  # ignored while discarding
    now[0] = 104.5  # 1.6 s of quiet
    fresh = ramp(320 * 2, base=-30000)
    assert speaker.play(fresh)
    speaker.end_reply()
    speaker.start()
    events.wait_for(PlaybackDrained)
    speaker.stop()
    assert alsa_files.speaker_bytes() == fresh
    assert [type(e).__name__ for e in events.items] == [
        "PlaybackInterrupted", "PlaybackStarted", "PlaybackDrained"]
    assert [getattr(e, "reply", None) for e in events.items][1:] == [2, 2]


def test_replies_without_markers_are_numbered_in_turn(alsa_files: AlsaFiles,
                                                      spies: list[SpySink]) -> None:
    """play() with no begin_reply() starts the next reply once the previous one has drained."""
    events = Events()
    speaker = Speaker(spy_opener(alsa_files, spies), FMT, on_event=events)
    speaker.start()
    try:
        speaker.play(ramp(320 * 2))
        events.wait_for(PlaybackDrained, 1)
        assert not speaker.is_playing()
        speaker.play(ramp(320 * 2))
        speaker.end_reply()
        events.wait_for(PlaybackDrained, 2)
        assert speaker.begin_reply() == 3
    finally:
        speaker.stop()
    drained = [e for e in events.items if isinstance(e, PlaybackDrained)]
    assert [e.reply for e in drained] == [1, 2]
    assert [e.frames for e in drained] == [640, 640]


def test_chimes_honour_config_and_survive_interrupt(alsa_files: AlsaFiles,
                                                   spies: list[SpySink]) -> None:
    """A disabled chime is silent; an enabled one plays at its volume through the same sink and
    is not discarded by an interrupt."""
    cfg = ChimesConfig(press=ChimeConfig(enabled=True, volume=0.5),
                       error=ChimeConfig(enabled=False))
    events = Events()
    speaker = Speaker(spy_opener(alsa_files, spies), FMT, on_event=events, chimes=cfg)
    speaker.play(ramp(320 * 4))
    speaker.chime("error")
    speaker.chime("press")
    speaker.interrupt()  # barge-in: the reply goes, the press chime stays
    press = chimes.render("press", FMT, 0.5)
    speaker.start()
    try:
        events.wait_for(PlaybackInterrupted)
        assert wait_until(lambda: bool(spies) and spies[0].written >= len(padded(press)))
    finally:
        speaker.stop()
    assert alsa_files.speaker_bytes() == padded(press)
    with pytest.raises(ValueError):
        speaker.chime("fanfare")


def test_mulaw_reply_padded_with_mulaw_silence(alsa_files: AlsaFiles,
                                               spies: list[SpySink]) -> None:
    """A mu-law reply is written byte for byte and its tail padded with 0xFF, mu-law's zero."""
    fmt = AudioFormat(rate=8000, period_frames=160, sample_width=1, encoding="mulaw")
    events = Events()
    speaker = Speaker(spy_opener(alsa_files, spies, sample_rate=8000, encoding="mulaw"), fmt,
                      on_event=events)
    data = bytes(range(256)) * 3 + b"\x10" * 5
    speaker.play(data)
    speaker.end_reply()
    speaker.start()
    events.wait_for(PlaybackDrained)
    speaker.stop()
    assert alsa_files.speaker_bytes() == data + b"\xff" * (-len(data) % 160)


def test_device_missing_at_start_then_appearing(alsa_files: AlsaFiles,
                                                spies: list[SpySink]) -> None:
    """A missing speaker is reported and retried; replies meanwhile end at once; once the device
    appears it is used."""
    events = Events()
    device = DeviceLog()
    speaker = Speaker(spy_opener(alsa_files, spies, device="late_speaker"), FMT, on_event=events,
                      on_device=device, backoff=quick_backoff)
    speaker.start()
    try:
        device.wait_for(1)
        assert device.calls[0][0] is False and "late_speaker" in device.calls[0][1]
        speaker.play(ramp(320 * 3))  # reply 1 cannot be heard: it must not wedge the session
        drained = events.wait_for(PlaybackDrained)[0]
        assert isinstance(drained, PlaybackDrained) and (drained.reply, drained.frames) == (1, 0)
        alsa_files.add_pcm("late_speaker")
        device.wait_for(2)
        assert device.calls[1] == (True, "")
        reply = ramp(320 * 4, base=-30000)
        assert speaker.begin_reply() == 2
        speaker.play(reply)
        speaker.end_reply()
        events.wait_for(PlaybackDrained, 2)
    finally:
        speaker.stop()
    assert alsa_files.speaker_bytes() == reply


def test_device_lost_mid_reply_is_reopened(alsa_files: AlsaFiles, spies: list[SpySink]) -> None:
    """A write that fails ends that reply (reported as drained), the rest of it is refused, the
    device is reopened and the next reply plays."""
    events = Events()
    device = DeviceLog()
    opened = spy_opener(alsa_files, spies)

    def open_failing_first() -> SpySink:
        spy = opened()
        if len(spies) == 1:
            real_write = spy.inner.write

            def write(pcm: bytes) -> None:
                if spy.writes == 5:
                    raise AudioDeviceError("audio.output.device", "playback device failed: "
                                                                  "Input/output error")
                real_write(pcm)
            spy.inner.write = write
        return spy
    speaker = Speaker(open_failing_first, FMT, on_event=events, on_device=device,
                      backoff=quick_backoff)
    speaker.play(ramp(320 * 20))
    speaker.start()
    try:
        device.wait_for(2)
        assert device.calls[0][0] is False and "Input/output error" in device.calls[0][1]
        assert device.calls[1] == (True, "")
        drained = events.wait_for(PlaybackDrained)[0]
        assert isinstance(drained, PlaybackDrained) and drained.reply == 1
        assert drained.frames == spies[0].written // FMT.frame_bytes  # the writes that worked
        assert speaker.play(ramp(320)) is False  # the rest of reply 1 arrives late: refused
        assert speaker.begin_reply() == 2
        new = ramp(320 * 3, base=-30000)
        speaker.play(new)
        speaker.end_reply()
        events.wait_for(PlaybackDrained, 2)
    finally:
        speaker.stop()
    assert spies[0].writes == 5 and spies[0].written % PERIOD == 0
    assert alsa_files.speaker_bytes() == new  # the reopened device's file


def test_stop_drops_never_drains(alsa_files: AlsaFiles, spies: list[SpySink]) -> None:
    """stop() during a reply finishes at most the write in progress, then drops and closes."""
    opened = spy_opener(alsa_files, spies)
    holds: list[object] = []

    def open_with_hold() -> SpySink:
        spy = opened()
        holds.append(spy.hold_before_write(5))
        return spy
    speaker = Speaker(open_with_hold, FMT, on_event=lambda e: None)
    speaker.play(ramp(320 * 50))
    speaker.start()
    assert wait_until(lambda: bool(holds))
    holds[0].wait()  # type: ignore[attr-defined]
    stopper = threading.Thread(target=speaker.stop)
    stopper.start()
    assert wait_until(lambda: speaker._stop.is_set())
    holds[0].release()  # type: ignore[attr-defined]
    stopper.join(WAIT)
    assert not stopper.is_alive()
    names = spies[0].names()
    assert "drain" not in names
    assert names[-2:] == ["drop", "close"]
    assert spies[0].writes == 6  # the write in progress, then nothing more
    assert not any(t.name == "speaker" for t in threading.enumerate())
    speaker.stop()  # idempotent


def test_a_reply_is_ended_only_by_its_own_mark(alsa_files: AlsaFiles, spies: list[SpySink]) -> None:
    """Audio that runs dry is reported not ended; the late mark of an interrupted reply does not
    end the next reply; the reply's own end_reply() does."""
    events = Events()
    speaker = Speaker(spy_opener(alsa_files, spies), FMT, on_event=events)
    assert speaker.begin_reply() == 1
    speaker.play(ramp(320 * 3))
    speaker.interrupt()
    speaker.end_reply()  # AgentAudioDone owed by the interrupted reply, arriving late
    assert speaker.begin_reply() == 2
    speaker.play(ramp(320 * 2))
    speaker.start()
    try:
        first = events.wait_for(PlaybackDrained)[0]  # a pause in the agent's reply
        speaker.play(ramp(320 * 2, base=-20000))  # the rest of it
        speaker.end_reply()
        second = events.wait_for(PlaybackDrained, 2)[1]
    finally:
        speaker.stop()
    assert isinstance(first, PlaybackDrained) and isinstance(second, PlaybackDrained)
    assert (first.reply, first.ended) == (2, False)
    assert (second.reply, second.ended) == (3, True)


def test_back_to_back_replies_report_one_drain(alsa_files: AlsaFiles, spies: list[SpySink]) -> None:
    """A reply queued straight after another plays on without a drain in between (the sound never
    stopped), then drains once, ended."""
    events = Events()
    speaker = Speaker(spy_opener(alsa_files, spies), FMT, on_event=events)
    speaker.begin_reply()
    speaker.play(ramp(320 * 2))
    speaker.end_reply()
    speaker.begin_reply()
    speaker.play(ramp(320 * 2, base=-20000))
    speaker.end_reply()
    speaker.start()
    try:
        events.wait_for(PlaybackStarted, 2)
        events.wait_for(PlaybackDrained)
        wait_until(lambda: not speaker.is_playing())
    finally:
        speaker.stop()
    drained = [e for e in events.items if isinstance(e, PlaybackDrained)]
    assert [(e.reply, e.ended) for e in drained] == [(2, True)]


def test_a_speaker_thread_that_will_not_stop_is_kept_not_doubled(
        alsa_files: AlsaFiles, spies: list[SpySink]) -> None:
    """stop() that times out keeps the stuck thread: start() refuses to add a second device owner."""
    opened = spy_opener(alsa_files, spies)
    holds: list[object] = []

    def open_with_hold() -> SpySink:
        spy = opened()
        holds.append(spy.hold_before_write(1))
        return spy
    speaker = Speaker(open_with_hold, FMT, on_event=lambda e: None)
    speaker.play(ramp(320 * 10))
    speaker.start()
    wait_until(lambda: bool(holds))
    holds[0].wait()  # type: ignore[attr-defined]
    try:
        assert speaker.stop(timeout=0.1) is False
        assert speaker.alive()
        assert speaker.start() is False
        assert sum(t.name == "speaker" for t in threading.enumerate()) == 1
    finally:
        holds[0].release()  # type: ignore[attr-defined]
    assert speaker.stop() is True
    assert not speaker.alive()
    assert len(spies) == 1
