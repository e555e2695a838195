"""The emulator's audio helpers: G.711, resampling, framing and uplink speech detection."""

from __future__ import annotations

import struct
import warnings

from hypothesis import given, settings
from hypothesis import strategies as st

from speakerd.emulator import audio
from speakerd.emulator.cli import _is_loopback
from tests.support.emulator import silence, tone

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the standard library's G.711: an independent oracle

RATE = 16000


def test_ulaw_decode_matches_the_standard_library_for_every_code() -> None:
    """Every mu-law byte decodes as audioop decodes it."""
    codes = bytes(range(256))
    assert audio.ulaw_decode(codes) == audioop.ulaw2lin(codes, 2)


def test_ulaw_encode_matches_the_standard_library_for_every_sample() -> None:
    """Encoding agrees with audioop for all 65536 16-bit values."""
    pcm = struct.pack("<65536h", *range(-32768, 32768))
    assert audio.ulaw_encode(pcm) == audioop.lin2ulaw(pcm, 2)


@given(st.sampled_from([8000, 16000, 24000, 48000]), st.sampled_from([8000, 16000, 24000,
                                                                      32000, 48000]),
       st.integers(1, 2000))
def test_resample_length_follows_the_rate_ratio(src: int, dst: int, n: int) -> None:
    """n samples at src become round(n * dst / src) samples at dst."""
    out = audio.resample(bytes(2 * n), src, dst)
    assert len(out) == 2 * max(1, round(n * dst / src))


def test_resample_keeps_a_constant_and_endpoints() -> None:
    """Interpolation of a constant signal is that constant; same rate is the identity."""
    pcm = struct.pack("<100h", *([1234] * 100))
    assert set(struct.unpack("<150h", audio.resample(pcm, 16000, 24000))) == {1234}
    assert audio.resample(pcm, 16000, 16000) == pcm


@given(st.binary(max_size=5000), st.sampled_from(["linear16", "mulaw"]),
       st.sampled_from([8000, 16000, 24000]), st.integers(5, 100))
def test_split_frames_cuts_whole_samples_and_loses_nothing(data: bytes, encoding: str,
                                                           rate: int, frame_ms: int) -> None:
    """Frames join back to the input; all but the last hold whole samples."""
    width = audio.sample_width(encoding)
    data = data[:len(data) // width * width]
    frames = audio.split_frames(data, encoding, rate, frame_ms)
    assert b"".join(frames) == data
    assert all(len(f) % width == 0 and f for f in frames)


def test_speech_pattern_is_loud_enough_to_count_as_speech() -> None:
    """The synthetic reply voice is above the default speech threshold."""
    assert audio.rms(audio.speech_pattern(0.5, RATE)) > 500


def _detect(stream: bytes, cuts: list[int], encoding: str = "linear16",
            end_of_speech: float = 0.3) -> list[audio.SpeechEvent]:
    det = audio.SpeechDetector(encoding, RATE, 500.0, end_of_speech)
    events: list[audio.SpeechEvent] = []
    start = 0
    for cut in sorted(cuts) + [len(stream)]:
        events += det.feed(stream[start:cut])
        start = max(start, cut)
    return events


def test_detector_finds_onset_and_end_by_sample_position() -> None:
    """Onset at the first loud window; end after end_of_speech of silence; PCM is the speech."""
    speech = tone(0.4, RATE)
    stream = silence(0.1, RATE) + speech + silence(0.5, RATE)
    events = _detect(stream, [])
    assert events == [audio.SpeechStarted(1600),
                      audio.SpeechEnded(1600 + 6400 + 4800, speech)]


def test_detector_ignores_silence_and_quiet_noise() -> None:
    """Digital silence and noise under the threshold never start a turn."""
    quiet = tone(1.0, RATE, amplitude=300)
    assert _detect(silence(1.0, RATE) + quiet, []) == []


def test_detector_reads_mulaw() -> None:
    """Mu-law uplink audio is decoded before its energy is measured."""
    stream = audioop.lin2ulaw(silence(0.1, RATE) + tone(0.4, RATE) + silence(0.5, RATE), 2)
    kinds = [type(e).__name__ for e in _detect(stream, [], encoding="mulaw")]
    assert kinds == ["SpeechStarted", "SpeechEnded"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2 * RATE * 2), max_size=12))
def test_detector_does_not_depend_on_how_the_stream_is_chunked(cuts: list[int]) -> None:
    """The same bytes give the same events however they are split into frames."""
    stream = (silence(0.1, RATE) + tone(0.3, RATE) + silence(0.1, RATE) + tone(0.2, RATE)
              + silence(0.4, RATE) + tone(0.2, RATE) + silence(0.4, RATE))
    assert _detect(stream, cuts) == _detect(stream, [])


def test_detector_finish_ends_an_utterance_early() -> None:
    """finish() (ForceEndTurn, a stopped uplink) ends the utterance in progress, once."""
    det = audio.SpeechDetector("linear16", RATE, 500.0, 1.0)
    det.feed(tone(0.2, RATE))
    assert det.in_speech
    ended = det.finish()
    assert ended is not None and len(ended.pcm) == len(tone(0.2, RATE))
    assert det.finish() is None


def test_loopback_check() -> None:
    """Only loopback addresses count as loopback for the CLI's warning."""
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.2")
