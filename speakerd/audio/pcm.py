"""The audio formats and device seams; the only module that talks to ALSA (through pyalsaaudio)."""

from __future__ import annotations

import ctypes
import errno
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import alsaaudio

from .config import AudioInputConfig, AudioOutputConfig

log = logging.getLogger(__name__)

_ALSA_FORMATS = {
    ("linear16", 2): alsaaudio.PCM_FORMAT_S16_LE,
    ("mulaw", 1): alsaaudio.PCM_FORMAT_MU_LAW,
}
_FORMAT_NAMES = {alsaaudio.PCM_FORMAT_S16_LE: "S16_LE", alsaaudio.PCM_FORMAT_MU_LAW: "MU_LAW"}


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

    @classmethod
    def from_input(cls, cfg: AudioInputConfig) -> AudioFormat:
        return cls(rate=cfg.sample_rate, period_frames=cfg.sample_rate * cfg.period_ms // 1000)

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


# Set once: alsa-lib keeps only the address of its error handler.
_alsa_quiet = False


def quiet_alsa_lib() -> bool:
    """Stop alsa-lib printing its own error lines to stderr, i.e. into the journal.

    alsa-lib prints a dozen `ALSA lib conf.c:...` lines for every failed open, and a missing
    card is retried with backoff; the session logs one line per outage that names the device
    and its config key, and each retry is a debug line of our own.

    The handler must be C that ignores its arguments, not a Python callback: alsa-lib calls it
    holding its configuration lock, and a Python callback may hand the GIL to a thread that
    then waits for that lock in its own snd_pcm_open (pyalsaaudio keeps the GIL there), which
    deadlocked the daemon on a reload while a missing card was being retried. libc's getpid
    takes no arguments and changes nothing; the calling conventions of the platforms we run on
    let a callee ignore arguments it was passed. (It is also no libffi closure, which
    MemoryDenyWriteExecute= could refuse.)
    """
    global _alsa_quiet
    if _alsa_quiet:
        return True
    try:
        # The soname pyalsaaudio is linked against, so this is the library already loaded.
        lib = ctypes.CDLL("libasound.so.2")
        noop = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p)
        lib.snd_lib_error_set_handler.argtypes = [ctypes.c_void_p]
        if lib.snd_lib_error_set_handler(noop) != 0:
            return False
    except (OSError, AttributeError) as exc:
        log.debug("alsa-lib's error lines stay on stderr: %s", exc)
        return False
    _alsa_quiet = True
    return True


def _plug_hint(device: str) -> str:
    if device.startswith("hw:"):
        return f"; try device 'plug{device}', which converts the rate and format"
    if device.startswith("plughw:"):
        return ""
    return "; a 'plughw:CARD=<name>' device converts the rate and format"


def _open_pcm(kind: int, device: str, fmt: AudioFormat, periods: int, key: str) -> Any:
    """Open a PCM and check that the device granted what we asked for."""
    alsa_format = _ALSA_FORMATS.get((fmt.encoding, fmt.sample_width))
    if alsa_format is None:
        raise AudioDeviceError(key, f"unsupported encoding {fmt.encoding!r} "
                                    f"width {fmt.sample_width}")
    direction = "capture" if kind == alsaaudio.PCM_CAPTURE else "playback"
    try:
        pcm = alsaaudio.PCM(type=kind, mode=alsaaudio.PCM_NORMAL, device=device, rate=fmt.rate,
                            channels=fmt.channels, format=alsa_format, periodsize=fmt.period_frames,
                            periods=periods)
    except alsaaudio.ALSAAudioError as exc:
        hint = _plug_hint(device) if "Invalid argument" in str(exc) else ""
        raise AudioDeviceError(
            key, f"cannot open {direction} device {device!r}: {exc}{hint}") from None
    info = pcm.info()
    problems = []
    if info.get("rate") != fmt.rate:
        problems.append(f"rate {info.get('rate')} Hz instead of {fmt.rate} Hz")
    if info.get("channels") != fmt.channels:
        problems.append(f"{info.get('channels')} channels instead of {fmt.channels}")
    if info.get("format") != alsa_format:
        problems.append(f"format {info.get('format_name')} instead of {_FORMAT_NAMES[alsa_format]}")
    if problems:
        pcm.close()
        raise AudioDeviceError(key, f"{direction} device {device!r} cannot do "
                                    f"{', '.join(problems)}{_plug_hint(device)}")
    if info.get("period_size") != fmt.period_frames:
        # Harmless for correctness (we always read and write whole periods of our own size), but
        # it changes the latency, so say it once.
        log.info("%s device %s granted a period of %s frames (asked %d)", direction, device,
                 info.get("period_size"), fmt.period_frames)
    log.debug("opened %s device %s: rate %s, period %s, buffer %s frames", direction, device,
              info.get("rate"), info.get("period_size"), info.get("buffer_size"))
    return pcm


class AlsaSource:
    """A capture PCM that returns whole periods and recovers overruns."""

    KEY = "audio.input.device"

    def __init__(self, device: str, fmt: AudioFormat, periods: int = 4):
        self.device = device
        self.fmt = fmt
        self.xruns = 0
        self._throttle = Throttle()
        self._pcm = _open_pcm(alsaaudio.PCM_CAPTURE, device, fmt, periods, self.KEY)

    def _fail(self, why: str) -> AudioDeviceError:
        return AudioDeviceError(self.KEY, f"capture device {self.device!r} failed: {why}")

    def read(self) -> bytes:
        want = self.fmt.period_bytes
        chunks: list[bytes] = []
        have = 0
        empty_reads = 0
        while have < want:
            try:
                frames, data = self._pcm.read()
            except alsaaudio.ALSAAudioError as exc:
                raise self._fail(str(exc)) from None
            if frames == -errno.EPIPE:
                # An overrun: pyalsaaudio re-prepares the stream on the next read; the lost audio
                # is gone, so count it and carry on.
                self.xruns += 1
                held = self._throttle.ready()
                if held is not None:
                    log.warning("capture overrun on %s (%d in total)", self.device, self.xruns)
                continue
            if frames < 0:
                raise self._fail(f"error {frames}")
            if not data:
                # A blocking read never returns nothing; guard against a device that does so we
                # do not spin forever on it.
                empty_reads += 1
                if empty_reads > 100:
                    raise self._fail("no data")
                continue
            chunks.append(data)
            have += len(data)
        out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(out) > want:  # cannot happen with periodsize == our period; keep the contract anyway
            out = out[:want]
        return out

    def avail(self) -> int | None:
        """Frames captured and not yet read; None when the stream is not running (read starts it)."""
        try:
            frames = int(self._pcm.avail())
            # Only an empty reading needs the state (a stopped stream also reads 0): one call
            # into the device per frame instead of two.
            if frames <= 0 and self._pcm.state() != alsaaudio.PCM_STATE_RUNNING:
                return None
        except alsaaudio.ALSAAudioError as exc:
            raise self._fail(str(exc)) from None
        return max(0, frames)

    def pause(self) -> None:
        """Stop capturing (the device stays open); the next read() restarts the stream."""
        try:
            self._pcm.drop()
        except alsaaudio.ALSAAudioError as exc:
            raise self._fail(str(exc)) from None

    def close(self) -> None:
        try:
            self._pcm.close()
        except alsaaudio.ALSAAudioError:
            pass


class AlsaSink:
    """A playback PCM with a small buffer, underrun recovery, drop() and a queued-frames reading."""

    KEY = "audio.output.device"

    def __init__(self, device: str, fmt: AudioFormat, periods: int = 3):
        self.device = device
        self.fmt = fmt
        self.xruns = 0
        self._throttle = Throttle()
        self._pcm = _open_pcm(alsaaudio.PCM_PLAYBACK, device, fmt, periods, self.KEY)
        self.buffer_frames = int(self._pcm.info().get("buffer_size", fmt.period_frames * periods))

    def _underrun(self) -> None:
        self.xruns += 1
        if self._throttle.ready() is not None:
            log.warning("playback underrun on %s (%d in total)", self.device, self.xruns)

    def _fail(self, exc: BaseException) -> AudioDeviceError:
        return AudioDeviceError(self.KEY, f"playback device {self.device!r} failed: {exc}")

    def write(self, pcm: bytes | memoryview) -> None:
        view = memoryview(pcm)
        fb = self.fmt.frame_bytes
        retries = 0
        try:
            if self._pcm.state() == alsaaudio.PCM_STATE_XRUN:
                # The device ran dry since our last write; pyalsaaudio re-prepares it in write().
                self._underrun()
            while len(view):
                try:
                    frames = self._pcm.write(view)
                except alsaaudio.ALSAAudioError as exc:
                    if "Broken pipe" not in str(exc) or retries > 2:
                        raise
                    # An underrun in the middle of this write; the next write re-prepares.
                    self._underrun()
                    retries += 1
                    continue
                if frames < 0:
                    if frames != -errno.EPIPE or retries > 2:
                        raise self._fail(OSError(-frames, errno.errorcode.get(-frames, "?")))
                    self._underrun()
                    retries += 1
                    continue
                if frames == 0:
                    # Only a non-blocking PCM returns 0; ours blocks, so this is a broken device.
                    retries += 1
                    if retries > 100:
                        raise self._fail(OSError(errno.EIO, "device accepts no data"))
                    continue
                view = view[frames * fb:]
        except alsaaudio.ALSAAudioError as exc:
            raise self._fail(exc) from None

    def drop(self) -> None:
        try:
            self._pcm.drop()
        except alsaaudio.ALSAAudioError as exc:
            raise self._fail(exc) from None

    def drain(self) -> None:
        try:
            if self._pcm.state() == alsaaudio.PCM_STATE_RUNNING:
                self._pcm.drain()
        except alsaaudio.ALSAAudioError as exc:
            raise self._fail(exc) from None

    def delay_frames(self) -> int:
        try:
            state = self._pcm.state()
            if state not in (alsaaudio.PCM_STATE_RUNNING, alsaaudio.PCM_STATE_PREPARED,
                             alsaaudio.PCM_STATE_DRAINING):
                return 0  # SETUP after drop(), XRUN after running dry: nothing is queued
            avail = self._pcm.avail()
        except alsaaudio.ALSAAudioError as exc:
            raise self._fail(exc) from None
        if avail < 0:
            return 0
        return max(0, self.buffer_frames - avail)

    def close(self) -> None:
        try:
            self._pcm.close()
        except alsaaudio.ALSAAudioError:
            pass


def open_source(cfg: AudioInputConfig) -> AlsaSource:
    """Open the microphone named by the config; raises AudioDeviceError."""
    return AlsaSource(cfg.device, AudioFormat.from_input(cfg), cfg.periods)


def open_sink(cfg: AudioOutputConfig) -> AlsaSink:
    """Open the speaker named by the config; raises AudioDeviceError."""
    return AlsaSink(cfg.device, AudioFormat.from_output(cfg), cfg.periods)


class AlsaMixer:
    """One mixer control (e.g. Master) for the agent's volume function."""

    KEY = "functions.action.control"

    def __init__(self, card: str, control: str):
        self.card = card
        self.control = control
        # One mixer handle per call keeps this safe to use from any thread; the mixer is rarely
        # touched, so there is nothing to gain from holding it open.
        self._lock = threading.Lock()
        self._open().close()

    def _open(self) -> Any:
        candidates = [self.card]
        if ":" not in self.card and self.card != "default":
            candidates.append(f"hw:CARD={self.card}")
        errors = []
        for device in candidates:
            try:
                return alsaaudio.Mixer(control=self.control, device=device)
            except alsaaudio.ALSAAudioError as exc:
                errors.append(str(exc))
        try:
            available = ", ".join(alsaaudio.mixers(device=self.card)) or "none"
        except alsaaudio.ALSAAudioError:
            available = "unknown (the card cannot be opened)"
        raise AudioDeviceError(self.KEY, f"no mixer control {self.control!r} on card {self.card!r} "
                                         f"({'; '.join(errors)}); controls there: {available}")

    def get_percent(self) -> int:
        with self._lock:
            mixer = self._open()
            try:
                values = mixer.getvolume()
            except alsaaudio.ALSAAudioError as exc:
                raise AudioDeviceError(self.KEY, f"cannot read {self.control!r}: {exc}") from None
            finally:
                mixer.close()
        return round(sum(values) / len(values)) if values else 0

    def set_percent(self, p: int) -> None:
        p = max(0, min(100, int(p)))
        with self._lock:
            mixer = self._open()
            try:
                mixer.setvolume(p)
            except alsaaudio.ALSAAudioError as exc:
                raise AudioDeviceError(self.KEY, f"cannot set {self.control!r}: {exc}") from None
            finally:
                mixer.close()


def list_devices() -> dict[str, Any]:
    """Sound cards and PCM names, for `speakerd devices`."""
    cards = []
    for index in alsaaudio.card_indexes():
        try:
            card_id, name = alsaaudio.card_name(index)
        except alsaaudio.ALSAAudioError:
            continue
        cards.append({"index": index, "id": card_id, "name": name,
                      "device": f"plughw:CARD={card_id}"})
    return {
        "cards": cards,
        "playback": list(alsaaudio.pcms(alsaaudio.PCM_PLAYBACK)),
        "capture": list(alsaaudio.pcms(alsaaudio.PCM_CAPTURE)),
    }
