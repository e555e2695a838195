"""ALSA PCMs: opening one and checking what it granted, the capture source and the playback sink."""

from __future__ import annotations

import errno
import logging
from typing import Any

import alsaaudio

from ..config import AudioInputConfig, AudioOutputConfig
from .formats import AudioDeviceError, AudioFormat, Throttle

# One logger for the package: its journal lines say speakerd.audio, whichever module writes them.
log = logging.getLogger(__package__)

_ALSA_FORMATS = {
    ("linear16", 2): alsaaudio.PCM_FORMAT_S16_LE,
    ("mulaw", 1): alsaaudio.PCM_FORMAT_MU_LAW,
}
_FORMAT_NAMES = {alsaaudio.PCM_FORMAT_S16_LE: "S16_LE", alsaaudio.PCM_FORMAT_MU_LAW: "MU_LAW"}


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
