"""The shape of a stream and the device seams (Source, Sink) the audio threads are written against."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import AudioInputConfig, AudioOutputConfig

# The speaker writes reply audio in whole units of at most this long, whatever the device's
# period: a 100 ms chunk into 80 ms periods would otherwise leave 60 ms waiting for the next
# chunk, or padded with silence when it is late. The device's period only sets how often the
# device (and a sound server's thread in our process) wakes up; the writes are per chunk.
WRITE_UNIT_MS = 20


@dataclass(frozen=True)
class AudioFormat:
    """The shape of one stream: rate, period, channels, sample width and encoding."""

    rate: int
    period_frames: int
    channels: int = 1
    sample_width: int = 2
    encoding: str = "linear16"

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_width

    @property
    def period_bytes(self) -> int:
        return self.period_frames * self.frame_bytes

    @property
    def period_seconds(self) -> float:
        return self.period_frames / self.rate

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.frame_bytes

    @property
    def silence_byte(self) -> bytes:
        """One byte of digital silence: 0 for linear PCM, 0xFF for mu-law (its code for zero)."""
        return b"\xff" if self.encoding == "mulaw" else b"\x00"

    def silence(self) -> bytes:
        """One period of digital silence."""
        return self.silence_byte * self.period_bytes

    def write_unit(self) -> AudioFormat:
        """This format with the period the speaker writes in: the largest divisor of the
        device's period no longer than WRITE_UNIT_MS (the period itself if it is that short)."""
        limit = max(1, self.rate * WRITE_UNIT_MS // 1000)
        unit = next(n for n in range(min(limit, self.period_frames), 0, -1)
                    if self.period_frames % n == 0)
        return dataclasses.replace(self, period_frames=unit)

    @classmethod
    def from_input(cls, cfg: AudioInputConfig) -> AudioFormat:
        return cls(rate=cfg.sample_rate, period_frames=cfg.sample_rate * cfg.period // 1000)

    @classmethod
    def from_output(cls, cfg: AudioOutputConfig) -> AudioFormat:
        width = 1 if cfg.encoding == "mulaw" else 2
        return cls(rate=cfg.sample_rate, period_frames=cfg.sample_rate * cfg.period_ms // 1000,
                   sample_width=width, encoding=cfg.encoding)


class AudioDeviceError(Exception):
    """An audio device that cannot be opened or has failed; `key` is the config key naming it."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class QueueFull(Exception):
    """More reply audio arrived than the speaker may queue: the sender is not pacing itself."""


class Source(Protocol):
    """Where captured PCM comes from, one period at a time."""

    def read(self) -> bytes:
        """Exactly one period; blocks about one period on a real device; raises AudioDeviceError."""
        ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Where PCM for the speaker goes."""

    def write(self, pcm: bytes | memoryview) -> None:
        """Whole periods; blocks at most about a period when the device buffer is full."""
        ...

    def drop(self) -> None:
        """Discard what is queued in the device now."""
        ...

    def drain(self) -> None: ...

    def close(self) -> None: ...

    def delay_frames(self) -> int:
        """Frames still queued in the device (0 when drained)."""
        ...


class Throttle:
    """Lets a repeated log line through at most once per interval, counting what it held back."""

    def __init__(self, interval: float = 5.0, clock: Any = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")
        self.suppressed = 0

    def ready(self) -> int | None:
        """None to stay quiet; else how many occurrences were held back since the last line."""
        now = self._clock()
        if now < self._next:
            self.suppressed += 1
            return None
        self._next = now + self.interval
        held, self.suppressed = self.suppressed, 0
        return held
