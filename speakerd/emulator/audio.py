"""The emulator's audio: G.711 mu-law, resampling, reply synthesis and uplink speech detection."""

from __future__ import annotations

import math
import operator
import sys
from array import array
from dataclasses import dataclass

WINDOW_MS = 20
_BIAS = 0x84
_CLIP14 = 8159


def _ulaw_to_linear(code: int) -> int:
    """One G.711 mu-law byte to a 16-bit sample."""
    u = ~code & 0xFF
    exponent = (u >> 4) & 0x07
    sample = (((u & 0x0F) << 3) + _BIAS) << exponent
    sample -= _BIAS
    return -sample if u & 0x80 else sample


def _linear_to_ulaw(sample: int) -> int:
    """One 16-bit sample to a G.711 mu-law byte (the reference algorithm on 14-bit values)."""
    value = sample >> 2  # arithmetic shift, as the reference does, so negatives round down
    mask = 0xFF
    if value < 0:
        value = -value
        mask = 0x7F
    value = min(value, _CLIP14) + (_BIAS >> 2)
    segment = max(0, value.bit_length() - 6)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


# Decoding goes through two byte-translation tables (low and high byte of the little-endian
# sample) so a whole frame decodes at C speed: the uplink is decoded 50 times a second.
_ULAW_DECODED = [_ulaw_to_linear(c) & 0xFFFF for c in range(256)]
_ULAW_LO = bytes(v & 0xFF for v in _ULAW_DECODED)
_ULAW_HI = bytes(v >> 8 for v in _ULAW_DECODED)
# Encoding is only for reply audio (built once per reply), so a 64 Ki-entry table indexed by
# the unsigned view of the sample is simple and fast enough.
_ULAW_ENCODE = bytes(_linear_to_ulaw(s - 65536 if s >= 32768 else s) for s in range(65536))


def ulaw_decode(data: bytes) -> bytes:
    """Mu-law bytes to little-endian signed 16-bit PCM."""
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(_ULAW_LO)
    out[1::2] = data.translate(_ULAW_HI)
    return bytes(out)


def ulaw_encode(pcm: bytes) -> bytes:
    """Little-endian signed 16-bit PCM to mu-law bytes."""
    samples = array("H", pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return bytes(map(_ULAW_ENCODE.__getitem__, samples))


def _samples(pcm: bytes) -> array[int]:
    """Little-endian int16 bytes as an array of ints (an odd trailing byte is ignored)."""
    a = array("h", pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _pcm(samples: array[int]) -> bytes:
    """An int16 array as little-endian bytes."""
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def rms(pcm: bytes) -> float:
    """Root mean square of little-endian int16 PCM (0 for empty input)."""
    a = _samples(pcm)
    if not a:
        return 0.0
    return math.sqrt(sum(map(operator.mul, a, a)) / len(a))


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Linear-interpolation resampling of little-endian int16 PCM."""
    src = _samples(pcm)
    if src_rate == dst_rate or not src:
        return _pcm(src)
    n_out = max(1, round(len(src) * dst_rate / src_rate))
    step = src_rate / dst_rate
    last = len(src) - 1
    out = array("h", bytes(2 * n_out))
    for i in range(n_out):
        x = i * step
        j = int(x)
        if j >= last:
            out[i] = src[last]
            continue
        frac = x - j
        out[i] = int(src[j] + (src[j + 1] - src[j]) * frac)
    return _pcm(out)


def encode(pcm: bytes, encoding: str) -> bytes:
    """Linear16 PCM in the wire encoding (`linear16` or `mulaw`)."""
    return ulaw_encode(pcm) if encoding == "mulaw" else pcm


def decode(data: bytes, encoding: str) -> bytes:
    """Wire audio (`linear16` or `mulaw`) as linear16 PCM."""
    return ulaw_decode(data) if encoding == "mulaw" else data


def sample_width(encoding: str) -> int:
    """Bytes per sample on the wire."""
    return 1 if encoding == "mulaw" else 2


def speech_pattern(seconds: float, rate: int, amplitude: int = 6000) -> bytes:
    """Speech-like linear16 audio: a 440 Hz voice gated into 4 syllables a second."""
    n = max(0, round(seconds * rate))
    out = array("h", bytes(2 * n))
    for i in range(n):
        t = i / rate
        # A raised-cosine syllable envelope never quite reaches zero, so it reads as one utterance.
        envelope = 0.55 - 0.45 * math.cos(2 * math.pi * 4 * t)
        out[i] = int(amplitude * envelope * math.sin(2 * math.pi * 440 * t))
    return _pcm(out)


# Frame sizes vary around the nominal one, as the real server's TTS chunks do, so a client that
# assumes a fixed frame size fails here rather than on the real service.
_FRAME_JITTER = (1.0, 0.75, 1.25, 0.9, 1.1)


def split_frames(audio: bytes, encoding: str, rate: int, frame_ms: int) -> list[bytes]:
    """Cut wire audio into whole-sample frames of about `frame_ms`, slightly varied."""
    width = sample_width(encoding)
    nominal = max(1, rate * max(1, frame_ms) // 1000)
    frames: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(audio):
        size = max(1, round(nominal * _FRAME_JITTER[i % len(_FRAME_JITTER)])) * width
        frames.append(audio[pos:pos + size])
        pos += size
        i += 1
    return frames


@dataclass(frozen=True)
class SpeechStarted:
    """Speech onset at this sample position of the uplink stream."""
    position: int


@dataclass(frozen=True)
class SpeechEnded:
    """End of an utterance: its linear16 PCM at the input rate, onset to the last loud window."""
    position: int
    pcm: bytes


SpeechEvent = SpeechStarted | SpeechEnded


class SpeechDetector:
    """Energy-based turn detection on the uplink, by sample position rather than arrival time."""

    def __init__(self, encoding: str, sample_rate: int, threshold: float, end_of_speech: float,
                 max_seconds: float = 120.0) -> None:
        self.encoding = encoding
        self.sample_rate = sample_rate
        # Knobs a test may change between turns; read on every window.
        self.threshold = threshold
        self.end_of_speech = end_of_speech
        self.window = max(1, sample_rate * WINDOW_MS // 1000)
        self._window_bytes = self.window * sample_width(encoding)
        self._silent_window = bytes([0xFF if encoding == "mulaw" else 0]) * self._window_bytes
        self._max_bytes = int(max_seconds * sample_rate) * 2
        self._carry = b""
        self.position = 0  # samples consumed so far
        self.in_speech = False
        self._utterance = bytearray()
        self._loud_end = 0  # bytes of _utterance up to the end of the last loud window
        self._silence = 0  # samples of trailing silence in the current utterance

    def feed(self, data: bytes) -> list[SpeechEvent]:
        """Consume uplink bytes; return the onsets and ends they complete, in order."""
        events: list[SpeechEvent] = []
        buf = self._carry + data if self._carry else data
        whole = len(buf) - len(buf) % self._window_bytes
        for start in range(0, whole, self._window_bytes):
            chunk = buf[start:start + self._window_bytes]
            # The push-to-talk uplink is mostly digital silence; a compare is far cheaper than RMS.
            if chunk == self._silent_window:
                loud = False
                pcm = bytes(2 * self.window)
            else:
                pcm = decode(chunk, self.encoding)
                loud = rms(pcm) > self.threshold
            self._window(pcm, loud, events)
        self._carry = bytes(buf[whole:])
        return events

    def _window(self, pcm: bytes, loud: bool, events: list[SpeechEvent]) -> None:
        """Advance the turn state by one window."""
        if not self.in_speech:
            if loud:
                self.in_speech = True
                self._utterance = bytearray()
                self._silence = 0
                events.append(SpeechStarted(self.position))
        if self.in_speech:
            if len(self._utterance) < self._max_bytes:
                self._utterance += pcm
            if loud:
                self._silence = 0
                self._loud_end = len(self._utterance)
            else:
                self._silence += self.window
                if self._silence >= self.end_of_speech * self.sample_rate:
                    self.position += self.window
                    ended = self.finish()
                    if ended is not None:
                        events.append(ended)
                    return
        self.position += self.window

    def finish(self) -> SpeechEnded | None:
        """End the current utterance now (a forced end of turn); None when nobody is speaking."""
        if not self.in_speech:
            return None
        self.in_speech = False
        pcm = bytes(self._utterance[:self._loud_end])
        self._utterance = bytearray()
        self._loud_end = 0
        self._silence = 0
        return SpeechEnded(self.position, pcm)
