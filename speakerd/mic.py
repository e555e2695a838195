"""The capture thread: reads the microphone always, gates it, buffers it while connecting."""

from __future__ import annotations

import collections
import logging
import math
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from typing import Protocol

from .audio import AudioDeviceError, AudioFormat, Source, Throttle
from .backoff import device_backoff
from .uplink import UplinkMode
from .worker import Worker

log = logging.getLogger(__name__)

_LEVEL_FRAMES = 25  # periods kept for level(): half a second at 20 ms


class FrameSink(Protocol):
    """Where the mic's frames go (the Router, which hands them to the current link)."""
    def uplink(self, pcm: bytes) -> None: ...


def _available(source: Source) -> int | None:
    """Frames the source holds unread, or None when it cannot say (or its stream is stopped)."""
    avail = getattr(source, "avail", None)
    return avail() if avail is not None else None


class Mic:
    """Owns the capture device and what happens to each period: discarded, buffered or sent.

    Periods are grouped into uplink frames of `frame_periods` periods: one message and one
    thread hop per frame instead of per period. On a device that tells how much it holds
    (AlsaSource.avail), the thread sleeps until a frame's worth is captured and reads it in one
    go, so it wakes once per frame too; a command wakes it at once.
    """

    def __init__(self, open_source: Callable[[], Source], fmt: AudioFormat,
                 sink: FrameSink, *, frame_periods: int = 1, buffer_seconds: float = 10.0,
                 on_device: Callable[[bool, str], None] | None = None,
                 on_first_send: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 backoff: Callable[[], Iterator[float]] | None = None):
        self._open_source = open_source
        self._fmt = fmt
        self._sink = sink
        self._on_device = on_device
        self._on_first_send = on_first_send
        self._clock = clock
        self._backoff = backoff or device_backoff
        self._silence = fmt.silence()
        self._frame_periods = max(1, frame_periods)
        self._frame_bytes = self._frame_periods * fmt.period_bytes
        # The uplink state below is written by the session's thread and read by the mic thread
        # once per period. The lock makes a command and a frame's handling atomic with respect to
        # each other, so a command takes effect exactly at a frame boundary: the next frame read
        # after set_gate()/uplink_buffer() returns is already treated the new way.
        self._lock = threading.Lock()
        self._gate = False
        self._mode = UplinkMode.OFF
        self._first_pending = False
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffer_max = max(1, math.ceil(buffer_seconds / fmt.period_seconds / self._frame_periods))
        # The uplink frame being assembled, period by period; its capacity is reserved once.
        self._frame = bytearray(self._frame_bytes)
        self._frame_len = 0
        self._frame_live = False  # its last period is the microphone's (not silence)
        # Frames ready for the sink, in order (mic thread only; see _send()).
        self._outgoing: collections.deque[bytes] = collections.deque()
        self._overflow = Throttle(5.0, clock)
        self._dropped = 0
        self._recent: collections.deque[bytes] = collections.deque(maxlen=_LEVEL_FRAMES)
        self._worker = Worker("mic", self._run)
        self._stop = self._worker.stopping  # set by stop(); every wait in the thread is on it
        # Set by any command that may need audio again, and by stop(): the idle thread sleeps on it.
        self._wake = threading.Event()
        self.pauses = 0
        self._source: Source | None = None
        self.frames_read = 0
        self.frames_sent = 0
        self._closed_xruns = 0
        # Mic thread only: the gate as the thread last saw it. Periods already captured when a
        # command arrives are treated the old way (they were heard before it); see _read_step().
        self._gate_seen = False

    # --- commands (any thread) -----------------------------------------------------------

    def start(self) -> bool:
        """Start the capture thread; False if a stuck one from before still owns the device."""
        return self._worker.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop capture and close the device; False if the thread is stuck (stuck in a read?)."""
        return self._worker.stop(self._wake.set, timeout)

    def alive(self) -> bool:
        """Whether the capture thread still runs (a stuck one counts)."""
        return self._worker.alive()

    def set_gate(self, live: bool) -> None:
        """True: microphone audio goes up; False: silence of the same cadence."""
        with self._lock:
            if live and not self._gate:
                # A warm press (the uplink already streams): its first byte is the first live frame.
                self._first_pending = True
            self._gate = live
        # After the change, not before: a mic thread going idle re-checks the state once woken.
        self._wake.set()

    def set_uplink(self, mode: UplinkMode) -> None:
        """Where frames go from the next period on: discarded, buffered in order, or sent."""
        with self._lock:
            if mode == self._mode:
                return
            if mode is UplinkMode.OFF or mode is UplinkMode.BUFFER:
                self._buffer.clear()  # off: nothing waits; buffer: the press edge starts afresh
                self._frame_len = 0
            if mode is not UplinkMode.OFF:
                # The turn's first byte is the first frame sent (or buffered) from now on.
                self._first_pending = True
            self._mode = mode
            if mode is UplinkMode.STREAM:
                # Flush now, not at the next period: a message the caller sends after this
                # returns (ForceEndTurn) must follow the buffered words on the wire, the frame
                # being assembled included.
                self._flush_buffer(partial=True)
        # After the change, not before: a mic thread going idle re-checks the state once woken.
        self._wake.set()

    def level(self) -> tuple[float, float]:
        """(rms, peak) of the last half second of raw capture, each 0..1."""
        frames = list(self._recent)  # a snapshot; the deque is appended to by the mic thread
        if not frames:
            return 0.0, 0.0
        samples = array("h", b"".join(frames))
        if sys.byteorder != "little":
            samples.byteswap()
        if not samples:
            return 0.0, 0.0
        peak = max(max(samples), -min(samples)) / 32768
        rms = math.sqrt(sum(map(int.__mul__, samples, samples)) / len(samples)) / 32768
        return rms, min(1.0, peak)

    def peak(self) -> float:
        """The peak of the latest period read, 0..1: one period's samples, cheap enough for an
        LED meter to poll at every frame (level() sums half a second of them)."""
        try:
            frame = self._recent[-1]  # a deque's ends are safe to read while the mic appends
        except IndexError:
            return 0.0
        samples = array("h", frame)
        if not samples:
            return 0.0
        if sys.byteorder != "little":
            samples.byteswap()
        return min(1.0, max(max(samples), -min(samples)) / 32768)

    @property
    def xruns(self) -> int:
        """Capture overruns over every device opened so far."""
        return self._closed_xruns + getattr(self._source, "xruns", 0)

    @property
    def buffered_frames(self) -> int:
        return len(self._buffer)

    # --- the mic thread --------------------------------------------------------------------

    def _handle(self, raw: bytes, gate: bool | None = None) -> None:
        """One period, from the device or the silence pacer: discard it, or add it to the frame.

        `gate`: the gate that applied when the period was captured, if the thread knows it
        (None: the current one). A whole frame is then buffered or sent; so is a partial one
        at the start of a turn (its first byte leaves at once) or when a backlog is waiting.
        """
        with self._lock:
            live = self._gate if gate is None else gate
            if self._mode is UplinkMode.OFF:
                self._frame_len = 0
                return
            if not live:
                self._send_last_words()
            end = self._frame_len + len(raw)
            self._frame[self._frame_len:end] = raw if live else self._silence
            self._frame_len = end
            self._frame_live = live
            streaming = self._mode is UplinkMode.STREAM
            if end < self._frame_bytes and not (
                    streaming and ((self._first_pending and live) or self._buffer)):
                return
            frame = bytes(memoryview(self._frame)[:end])
            self._frame_len = 0
            if not streaming:
                if len(self._buffer) >= self._buffer_max:
                    self._buffer.popleft()
                    self._dropped += 1
                    held = self._overflow.ready()
                    if held is not None:
                        log.warning("connect buffer full (%.1f s): dropping the oldest "
                                    "audio (%d frames so far)",
                                    self._buffer_max * self._frame_bytes / self._fmt.bytes_per_second,
                                    self._dropped)
                self._buffer.append(frame)
                return
            # Streaming: what was buffered goes first, so the server hears the press edge onward
            # in order; _send() hands the frame over before the thread next blocks.
            if self._buffer:
                self._flush_buffer()
            self._note_first_send()
            self._outgoing.append(frame)
            self.frames_sent += 1

    def _send(self) -> None:
        """Hand the frames ready to go to the sink; called just before the thread blocks.

        Sending wakes the socket's thread, which then needs the interpreter lock: handed over
        as this thread goes to sleep, it gets it at once instead of waking twice. Under the lock,
        as a command may flush too (send() only enqueues, so holding it is cheap).
        """
        if self._outgoing:
            with self._lock:
                while self._outgoing:
                    self._sink.uplink(self._outgoing.popleft())

    def _periods_due(self) -> int:
        """Periods to read before the next frame leaves (one when it should leave at once)."""
        with self._lock:
            if self._mode is UplinkMode.STREAM and (self._buffer or (self._first_pending and self._gate)):
                return 1
            left = self._frame_bytes - self._frame_len
        return max(1, -(-left // self._fmt.period_bytes))

    def _read_step(self, source: Source) -> None:
        """Read the periods of the next frame: sleep until they are captured, then read them.

        The sleep is on the command event. Woken by a command, the thread reads only the
        periods captured before it, with the gate they were captured under (the agent must
        not hear the tail of its own voice because the gate opened while those periods
        waited in the device), then looks at the new state.
        """
        need = self._periods_due() if self._frame_periods > 1 else 1
        gate: bool | None = None
        avail = _available(source) if need > 1 else None
        if avail is not None:
            period = self._fmt.period_frames
            short = need * period - avail
            # Sleep until the whole frame is in, plus a quarter period: the reads then return at
            # once. (A read that blocks costs more than a timed wait: the device's own wake-ups
            # come on top. A sound server delivers a period a little after it was captured.)
            self._send()
            if short > 0 and self._wake.wait((short + period / 4) / self._fmt.rate):
                self._wake.clear()
                after = _available(source)
                need = min(need, (after or 0) // period)
            gate = self._gate_seen
        for _ in range(need):
            self._send()
            raw = source.read()
            self.frames_read += 1
            self._recent.append(raw)
            self._handle(raw, gate)
        with self._lock:
            if not self._gate:
                self._send_last_words()
            self._gate_seen = self._gate

    def _send_last_words(self) -> None:
        """Under the lock, streaming, the gate just shut (a release): the frame holding the
        user's last words leaves now, short, rather than after up to a frame of silence; what
        the caller sends once the mic has seen the release then follows them on the wire."""
        if self._frame_live and self._frame_len and self._mode is UplinkMode.STREAM:
            self._outgoing.append(bytes(memoryview(self._frame)[:self._frame_len]))
            self._frame_len = 0
            self.frames_sent += 1
        self._frame_live = False

    def _flush_buffer(self, partial: bool = False) -> None:
        """Send the frames ready, then what the connect buffer holds, in order (and, if asked,
        the frame being assembled); the caller holds the lock. send() only enqueues."""
        while self._outgoing:
            self._sink.uplink(self._outgoing.popleft())
        if self._buffer:
            self._note_first_send()
            while self._buffer:
                self._sink.uplink(self._buffer.popleft())
                self.frames_sent += 1
        if partial and self._frame_len:
            self._note_first_send()
            self._sink.uplink(bytes(memoryview(self._frame)[:self._frame_len]))
            self._frame_len = 0
            self.frames_sent += 1

    def _note_first_send(self) -> None:
        if self._first_pending:
            self._first_pending = False
            if self._on_first_send is not None:
                self._on_first_send(self._clock())

    def _report(self, ok: bool, message: str) -> None:
        if self._on_device is not None:
            try:
                self._on_device(ok, message)
            except Exception:  # a broken callback must not kill the capture thread
                log.exception("on_device callback failed")

    def _close_source(self) -> None:
        if self._source is not None:
            self._closed_xruns += getattr(self._source, "xruns", 0)
            try:
                self._source.close()
            except Exception:  # closing a dead device can fail in many ways; it is gone either way
                log.debug("closing the capture device failed", exc_info=True)
            self._source = None

    def _wait_for_device(self, delays: Iterator[float]) -> bool:
        """Wait out one backoff step, keeping the uplink fed with silence; False when stopping."""
        deadline = self._clock() + next(delays)
        period = self._fmt.period_seconds * self._frame_periods
        next_frame = self._clock() + period
        while not self._stop.is_set():
            now = self._clock()
            if now >= deadline:
                return True
            # Pace silence by the clock so a missing microphone never starves the socket; the
            # wait is on the stop event so stop() is immediate.
            self._send()
            if self._stop.wait(max(0.0, min(next_frame, deadline) - now)):
                return False
            if self._clock() >= next_frame:
                next_frame += period
                for _ in range(self._frame_periods):
                    self._handle(self._silence)
        return False

    def _idle(self) -> bool:
        """Nothing would leave the mic (no socket, gate shut): capture can stop."""
        with self._lock:
            return self._mode is UplinkMode.OFF and not self._gate

    def _sleep_while_idle(self) -> bool:
        """Stop the capture stream until a command needs audio; False when stopping.

        An idle speaker has no socket and its gate is shut: reading 50 periods a second only
        to throw them away was most of its CPU. The device stays open and a stopped stream
        restarts on the next read in well under a period, so the press edge is still captured.
        """
        pause = getattr(self._source, "pause", None)
        if pause is None:
            return True  # a source that cannot stop is simply read and discarded
        self._send()
        self._wake.clear()
        if not self._idle():  # a command raced in between the check and the clear
            return True
        try:
            pause()
        except AudioDeviceError:
            return True  # the next read reports the device properly
        self.pauses += 1
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if not self._idle():
                return True
        return False

    def _silent(self) -> bool:
        """Only silence would leave the mic (a socket, the gate shut): capture can stop."""
        with self._lock:
            return self._mode is not UplinkMode.OFF and not self._gate

    def _pace_silence(self) -> bool:
        """Stop the capture stream and send silence frames by the clock until the gate opens or
        the uplink goes off; False when stopping.

        Connected and nobody talking (half duplex, button up, or the agent speaking), reading
        the microphone only to replace it with silence cost the device's wake-ups and the
        thread's reads; the socket still gets a frame of silence at the frame cadence, so the
        server never sees it quiet. The stream restarts on the next read when the gate opens,
        and the press edge's period is captured from then on.
        """
        pause = getattr(self._source, "pause", None)
        if pause is None:
            return True  # a source that cannot stop is read, and silence sent in its place
        self._send()
        self._wake.clear()
        if not self._silent():  # a command raced in between the check and the clear
            return True
        try:
            pause()
        except AudioDeviceError:
            return True  # the next read reports the device properly
        self.pauses += 1
        frame = self._fmt.period_seconds * self._frame_periods
        due = self._clock() + frame
        while not self._stop.is_set():
            # On the command event: a press opens the gate within a millisecond of the edge.
            self._send()
            if self._wake.wait(max(0.0, due - self._clock())):
                self._wake.clear()
                if not self._silent():
                    return True
                continue
            due += frame
            for _ in range(self._frame_periods):
                self._handle(self._silence)
        return False

    def _run(self) -> None:
        delays: Iterator[float] | None = None
        failed = False
        try:
            while not self._stop.is_set():
                if self._source is None:
                    try:
                        self._source = self._open_source()
                    except AudioDeviceError as exc:
                        # The session logs the one user-facing line for this outage; each
                        # retry is a debug line only, however long the device is missing.
                        log.debug("microphone unavailable: %s", exc)
                        if not failed:
                            self._report(False, f"{exc} ({exc.key})")
                        failed = True
                        delays = delays or self._backoff()
                        if not self._wait_for_device(delays):
                            break
                        continue
                    if failed:
                        log.info("microphone back")
                        self._report(True, "")
                    failed = False
                if self._idle() and not self._sleep_while_idle():
                    break
                if self._silent() and not self._pace_silence():
                    break
                try:
                    self._read_step(self._source)
                except AudioDeviceError as exc:
                    log.debug("microphone lost: %s", exc)
                    self._close_source()
                    self._report(False, f"{exc} ({exc.key})")
                    failed = True
                    # Wait before reopening even after a loss: a device that opens but fails on
                    # every read must not make this loop spin.
                    delays = delays or self._backoff()
                    if not self._wait_for_device(delays):
                        break
                    continue
                delays = None  # a good read ends the outage: the next one starts the backoff afresh
        finally:
            self._close_source()
