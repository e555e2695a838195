"""Fixtures: real alsa-lib devices backed by files (bit-exact, unpaced), and helpers around them.

The spoken fixtures in tests/data/audio were made once, with eSpeak NG 1.51 and SoX 14.4.2, by:

    cd tests/data/audio
    espeak-ng --stdout "Hello speaker" \
        | sox -D -t wav - -r 16000 -c 1 -b 16 -e signed-integer hello.wav pad 0.3 1.0
    espeak-ng --stdout "What is the weather tomorrow?" \
        | sox -D -t wav - -r 16000 -c 1 -b 16 -e signed-integer weather.wav pad 0.3 1.0

(`-D` turns dithering off, so the output is the same on every run.)
"""

from __future__ import annotations

import array
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from speakerd.audio import AudioDeviceError
from speakerd.config import AudioInputConfig, AudioOutputConfig
from speakerd.emulator.sound import read_wav
from speakerd.emulator.sound import wait_until as wait_until  # the suite's one polling wait

AUDIO_DATA = Path(__file__).resolve().parent.parent / "data" / "audio"
RATE = 16000
WAIT = 10.0  # generous timeout for every wait in the audio tests


def fixture_path(name: str) -> Path:
    """The path of a committed audio fixture, e.g. fixture_path("hello")."""
    path = AUDIO_DATA / (name if name.endswith(".wav") else f"{name}.wav")
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def load_wav(name_or_path: str | Path) -> bytes:
    """The raw frames (16 kHz mono S16_LE) of a fixture name or WAV path."""
    return read_wav(Path(name_or_path) if isinstance(name_or_path, Path)
                    else fixture_path(name_or_path))


def ramp(frames: int, start: int = 0, *, base: int = 1000, span: int = 20000) -> bytes:
    """S16_LE mono samples encoding their own index: base + (index % span); never silence."""
    samples = array.array("h", (base + (i % span) for i in range(start, start + frames)))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def ramp_index(sample: int, *, base: int = 1000, span: int = 20000) -> int:
    """The index (mod span) a ramp sample encodes."""
    return sample - base


def samples(pcm: bytes) -> array.array:
    """S16_LE bytes as an array of ints."""
    out = array.array("h", pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder != "little":
        out.byteswap()
    return out


@dataclass
class AlsaFiles:
    """A self-contained ALSA config: `default` captures from `mic` and plays into `speaker`."""

    dir: Path
    config: Path
    mic: Path
    speaker: Path
    device: str = "default"

    def write_config(self) -> None:
        """(Re)write the asoundrc; capture and playback are separate so they never share a file."""
        self._replace_config(
            "# self-contained test config: the file plugin over null (exact, no clock)\n"
            "pcm.!default {\n"
            "    type asym\n"
            f'    playback.pcm {{ type file slave.pcm {{ type null }} file "{self.speaker}" '
            'format "raw" }\n'
            '    capture.pcm { type file slave.pcm { type null } file "/dev/null" '
            f'infile "{self.mic}" format "raw" }}\n'
            "}\n")

    def add_pcm(self, name: str) -> None:
        """Define one more PCM `name` on the same files (a device that appears while running)."""
        text = self.config.read_text()
        text += (f"pcm.{name} {{\n    type asym\n"
                 f'    playback.pcm {{ type file slave.pcm {{ type null }} file "{self.speaker}" '
                 'format "raw" }\n'
                 '    capture.pcm { type file slave.pcm { type null } file "/dev/null" '
                 f'infile "{self.mic}" format "raw" }}\n}}\n')
        self._replace_config(text)

    def _replace_config(self, text: str) -> None:
        # alsa-lib reloads its config when the file's inode or mtime (whole seconds) changes;
        # an in-place rewrite within the same second would go unnoticed, a new inode never does.
        tmp = self.config.with_suffix(".new")
        tmp.write_text(text)
        os.replace(tmp, self.config)

    def set_mic(self, pcm: bytes, *, pad_seconds: float = 1.0, rate: int = RATE,
                frame_bytes: int = 2) -> int:
        """Make the capture device return `pcm` then silence; returns the padded length in bytes.

        Reads past the end of an infile return garbage, so pad and never read past the end.
        """
        padding = b"\x00" * (int(pad_seconds * rate) * frame_bytes)
        self.mic.write_bytes(pcm + padding)
        return len(pcm) + len(padding)

    def remove_mic(self) -> None:
        """The capture device disappears: opening it fails until set_mic() is called again."""
        self.mic.unlink(missing_ok=True)

    def speaker_bytes(self) -> bytes:
        """What was written to the playback device; complete only after the PCM is closed."""
        return self.speaker.read_bytes() if self.speaker.exists() else b""

    def input_config(self, **overrides: Any) -> AudioInputConfig:
        return replace(AudioInputConfig(device=self.device, sample_rate=RATE), **overrides)

    def output_config(self, **overrides: Any) -> AudioOutputConfig:
        return replace(AudioOutputConfig(device=self.device, sample_rate=RATE), **overrides)


@pytest.fixture
def alsa_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AlsaFiles]:
    """File-backed ALSA devices via ALSA_CONFIG_PATH; the mic starts as 1 s of silence."""
    root = tmp_path / "alsa"
    root.mkdir()
    files = AlsaFiles(dir=root, config=root / "asoundrc", mic=root / "mic.raw",
                      speaker=root / "speaker.raw")
    files.write_config()
    files.set_mic(b"", pad_seconds=1.0)
    # alsa-lib re-reads its config at the next open when this changes, so an in-process
    # monkeypatch is enough; it also keeps a host's own ALSA and PulseAudio hooks out.
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(files.config))
    yield files


# --- wrappers around real devices, for steering a thread from a test --------------------


class Hold:
    """A point where a wrapped device blocks until the test releases it."""

    def __init__(self) -> None:
        self.reached = threading.Event()  # set by the device thread when it arrives
        self.released = threading.Event()  # set by the test to let it go on

    def wait(self, timeout: float = WAIT) -> None:
        assert self.reached.wait(timeout), "the device thread never reached the hold point"

    def release(self) -> None:
        self.released.set()


class SteeredSource:
    """Wraps a real Source: can hold before a given read and stops (blocks) after `limit` reads.

    The file plugin is unpaced and returns garbage past the infile's end, so a capture test
    bounds the reads; a held or exhausted read blocks like a real device waiting for audio.
    """

    def __init__(self, inner: Any, limit: int, *, fail_at: int | None = None):
        self.inner = inner
        self.limit = limit
        self.fail_at = fail_at  # this read raises AudioDeviceError, as an unplugged device would
        self.reads = 0
        self.holds: dict[int, Hold] = {}
        self.exhausted = threading.Event()  # set when a read past the limit blocks
        self.unblock = threading.Event()  # set by the test before stopping the mic thread
        self.xruns = 0
        self._period = b""

    def hold_before(self, read_number: int) -> Hold:
        """Block before returning read number `read_number` (0-based) until released."""
        hold = self.holds[read_number] = Hold()
        return hold

    def read(self) -> bytes:
        hold = self.holds.get(self.reads)
        if hold is not None:
            hold.reached.set()
            assert hold.released.wait(WAIT), "the test never released the hold"
        if self.reads == self.fail_at:
            raise AudioDeviceError("audio.input.device", "capture device 'default' failed: "
                                   "No such device (unplugged by the test)")
        if self.reads >= self.limit:
            # Block like a device with no audio, then give silence so the thread can see stop().
            self.exhausted.set()
            self.unblock.wait(WAIT)
            return bytes(len(self._period))
        data: bytes = self.inner.read()
        self._period = data
        self.reads += 1
        return data

    def close(self) -> None:
        self.unblock.set()
        self.inner.close()


@dataclass
class SinkCall:
    """One call on a SpySink: its name, the bytes written so far, and the write's size."""

    name: str
    written: int
    size: int = 0
    delay: int = 0  # for drop: frames the device still held just before it
    t: float = 0.0  # time.monotonic() of the call


@dataclass
class SpySink:
    """Wraps a real Sink and records every call; can hold a given write until released."""

    inner: Any
    calls: list[SinkCall] = field(default_factory=list)
    written: int = 0
    holds: dict[int, Hold] = field(default_factory=dict)
    writes: int = 0

    def __post_init__(self) -> None:
        self.drop_seen = threading.Event()

    @property
    def xruns(self) -> int:
        return int(getattr(self.inner, "xruns", 0))

    @property
    def buffer_frames(self) -> int:
        return int(getattr(self.inner, "buffer_frames", 0))

    def hold_before_write(self, write_number: int) -> Hold:
        hold = self.holds[write_number] = Hold()
        return hold

    def write(self, pcm: bytes) -> None:
        hold = self.holds.get(self.writes)
        if hold is not None:
            hold.reached.set()
            assert hold.released.wait(WAIT), "the test never released the hold"
        self.inner.write(pcm)
        self.writes += 1
        self.written += len(pcm)
        self.calls.append(SinkCall("write", self.written, len(pcm), t=time.monotonic()))

    def drop(self) -> None:
        delay = int(self.inner.delay_frames())
        t = time.monotonic()
        self.inner.drop()
        self.calls.append(SinkCall("drop", self.written, delay=delay, t=t))
        self.drop_seen.set()

    def drain(self) -> None:
        self.calls.append(SinkCall("drain", self.written))
        self.inner.drain()

    def delay_frames(self) -> int:
        return int(self.inner.delay_frames())

    def close(self) -> None:
        self.calls.append(SinkCall("close", self.written))
        self.inner.close()

    def names(self) -> list[str]:
        return [c.name for c in self.calls]


class DeviceLog:
    """Records on_device() calls and lets a test wait for one."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str]] = []
        self._cond = threading.Condition()  # notified on every call from the device thread

    def __call__(self, ok: bool, message: str) -> None:
        with self._cond:
            self.calls.append((ok, message))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.calls) >= count, timeout), self.calls
