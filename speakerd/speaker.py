"""The playback thread: the reply queue into the sink, drain detection, instant interrupts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from . import chimes as chimes_mod
from .audio import AudioDeviceError, AudioFormat, Sink
from .config import ChimesConfig
from .device import DeviceSlot
from .events import PlaybackDrained, PlaybackInterrupted, PlaybackStarted
from .replies import AUDIO as _AUDIO
from .replies import CHIME as _CHIME
from .replies import END as _END
from .replies import MAX_QUEUED_SECONDS, Item, ReplyQueue
from .room import wait_for_room
from .worker import Worker

__all__ = ["MAX_QUEUED_SECONDS", "Speaker"]

log = logging.getLogger(__name__)

_IDLE_WAIT = 0.5  # seconds the idle thread sleeps on its queue; any command wakes it at once


class Speaker:
    """Owns the playback device; plays agent replies and chimes; drops everything on interrupt()."""

    def __init__(self, open_sink: Callable[[], Sink], fmt: AudioFormat, *,
                 on_event: Callable[[PlaybackStarted | PlaybackDrained | PlaybackInterrupted], None],
                 late_audio_timeout: float = 1.5,
                 clock: Callable[[], float] = time.monotonic,
                 backoff: Callable[[], Iterator[float]] | None = None,
                 on_device: Callable[[bool, str], None] | None = None,
                 chimes: ChimesConfig | None = None):
        # Writes go in steps of at most 20 ms (a divisor of the device's period), so a chunk is
        # written as soon as it comes, not held back for a whole period of the device. What the
        # device does in periods stays in its periods: it reports its fill a period at a time
        # (the tail flush waits for that), and a stream that stops mid-period would play stale
        # samples to the period's end (tails and chimes are padded to a whole one).
        self._device_period = fmt.period_frames
        self._pad_to = fmt.period_bytes
        fmt = fmt.write_unit()
        self._fmt = fmt
        self._on_event = on_event
        self._clock = clock
        self._chimes = chimes or ChimesConfig()
        self._period = fmt.period_bytes
        self._pad = fmt.silence_byte
        self._worker = Worker("speaker", self._run)
        self._stop = self._worker.stopping
        # What the callers (session, socket receive thread) share with the speaker thread.
        self._queue = ReplyQueue(fmt, late_audio_timeout=late_audio_timeout, clock=clock,
                                 stopping=self._stop)

        # Thread-only state: touched by the speaker thread alone (and read for is_playing()).
        self._device: DeviceSlot[Sink] = DeviceSlot("speaker", "playback", open_sink, log=log,
                                                     backoff=backoff, on_device=on_device)
        self._cur: int | None = None       # the reply being written
        self._started = False              # PlaybackStarted sent for self._cur
        self._ended: int | None = None     # the last reply whose end marker was played through
        self._pending = bytearray()        # audio of the current reply short of a whole step
        self._frames = 0
        # Grows with every period written (only this thread writes it; others read the int): a
        # reply that sounds but stops growing means the device wedged in a write.
        self.periods_written = 0
        self._xrun_base = 0
        self._active = False               # something was written since the last drop()
        self._stream_bytes = 0             # written since the last drop() (while _active)
        self._missing_reported = 0         # replies discarded while the device is missing

    @property
    def _sink(self) -> Sink | None:
        return self._device.handle

    # --- commands (any thread) -----------------------------------------------------------

    def start(self) -> bool:
        """Start the playback thread; False if a stuck one from before still owns the device."""
        return self._worker.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Drop (never drain) what is queued and close the device; False if the thread is stuck."""
        return self._worker.stop(self._queue.wake_all, timeout)

    def alive(self) -> bool:
        """Whether the playback thread still runs (a stuck one counts)."""
        return self._worker.alive()

    def begin_reply(self) -> int:
        """A new agent reply starts: audio is accepted again; returns its id."""
        return self._queue.begin_reply()

    def play(self, pcm: bytes) -> bool:
        """Queue agent audio for the current reply; False when refused after an interrupt.

        Raises QueueFull past MAX_QUEUED_SECONDS of queued audio (the chunk is not queued).
        """
        return self._queue.play(pcm)

    def queued_seconds(self) -> float:
        """Seconds of reply audio queued ahead of playback now."""
        return self._queue.queued_seconds()

    @property
    def queued_peak(self) -> int:
        """The most reply audio ever queued, in bytes (figures)."""
        return self._queue.queued_peak

    def end_reply(self) -> None:
        """No more audio for the current reply: pad its tail to the end of a device period."""
        self._queue.end_reply()

    def interrupt(self) -> None:
        """Stop the current reply now; its queued and late audio is never played."""
        self._queue.interrupt()

    def chime(self, name: str) -> None:
        """Queue a local chime ("press", "error", "goodbye"); interrupt() does not discard it."""
        cfg = getattr(self._chimes, name, None)
        if cfg is None:
            raise ValueError(f"unknown chime {name!r}")
        if not cfg.enabled or cfg.volume <= 0:
            return
        self._queue.chime(chimes_mod.render(name, self._fmt, float(cfg.volume)))

    def is_playing(self) -> bool:
        """A reply is queued or still sounding."""
        return self._queue.has_audio() or self._cur is not None

    def progress(self) -> int:
        """Write steps written so far (any thread): stalls while nothing goes to the device."""
        return self.periods_written

    @property
    def underruns(self) -> int:
        """Playback underruns over every device opened so far."""
        return self._device.xruns

    # --- the speaker thread ----------------------------------------------------------------

    def _emit(self, event: PlaybackStarted | PlaybackDrained | PlaybackInterrupted) -> None:
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not kill playback
            log.exception("speaker event listener failed on %r", event)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._sink is None and not self._connect():
                    break
                try:
                    self._step()
                except AudioDeviceError as exc:
                    self._lose_device(exc)
        finally:
            if self._sink is not None:
                try:
                    self._sink.drop()
                except AudioDeviceError:
                    pass
                self._device.close()

    def _step(self) -> None:
        """Handle one interrupt, one queued item, or one idle tick."""
        busy = self._active or self._cur is not None or bool(self._pending)
        # While something sounds, wake when the device is about to need us (tail flush, drain
        # detection), not on a fixed tick; otherwise sleep until a command notifies us.
        timeout = self._busy_timeout() if busy else _IDLE_WAIT
        interrupt, item = self._queue.take(timeout)
        if interrupt is not None:
            self._do_interrupt(*interrupt)
        elif item is not None:
            self._do_item(item)
        else:
            self._idle_tick()

    def _busy_timeout(self) -> float:
        """Seconds until the device has played down to where the idle tick has work to do."""
        if self._sink is None or not self._active:
            return self._fmt.period_seconds
        queued = self._sink.delay_frames()
        if self._pending:
            # A short tail goes in only when nothing came for a period and about a period is
            # left to play: padding it any sooner would put silence into audio still arriving.
            queued -= self._device_period
            return min(_IDLE_WAIT, max(self._device_period, queued) / self._fmt.rate)
        return min(_IDLE_WAIT, max(0.001, queued / self._fmt.rate + 0.001))

    def _do_interrupt(self, t_request: float, discarded: int) -> None:
        discarded += len(self._pending)
        self._pending.clear()
        if self._sink is not None:
            discarded += self._sink.delay_frames() * self._fmt.frame_bytes
            self._sink.drop()
        t_dropped = self._clock()
        self._cur = None
        self._active = False
        log.debug("interrupted: %d bytes discarded, %.1f ms after the request",
                  discarded, (t_dropped - t_request) * 1000)
        self._emit(PlaybackInterrupted(t_request, t_dropped, discarded))

    def _do_item(self, item: Item) -> None:
        if item.kind == _CHIME:
            self._flush_tail()
            self._write_all(item.data, pad=True)
            return
        if item.kind == _END:
            if item.reply == self._cur:
                self._flush_tail()
                self._ended = item.reply
            return
        if item.reply != self._cur:
            if self._cur is not None:
                # A new reply straight after the old one: the sound never stopped, so there is
                # no drain to report; the new reply carries on the old one's underrun count.
                self._flush_tail()
            else:
                self._xrun_base = self._device.handle_xruns()
            self._cur = item.reply
            self._started = False
            self._frames = 0
            self._pending.clear()
        if not self._pending and len(item.data) % self._period == 0:
            # The usual case (the agent sends whole steps): written from the chunk itself;
            # what an interrupt cut short is kept as pending, so the interrupt counts it.
            written = self._write_reply(item.data, pad=False)
            if written < len(item.data):
                self._pending += memoryview(item.data)[written:]
            return
        self._pending += item.data
        whole = len(self._pending) - len(self._pending) % self._period
        if whole:
            # A copy, not a view: a live view of the bytearray would forbid resizing it, and an
            # exception's traceback could keep one alive.
            data = bytes(memoryview(self._pending)[:whole])
            written = self._write_reply(data, pad=False)
            del self._pending[:written]

    def _write_reply(self, data: bytes, *, pad: bool) -> int:
        """Write audio of the current reply; returns bytes written."""
        return self._write_all(data, pad=pad, reply=True)

    def _write_all(self, data: bytes, *, pad: bool, reply: bool = False) -> int:
        """Write whole steps, as many per write() as the device has room for, stopping early
        if an interrupt arrives; returns bytes written (without padding).

        pad: silence is added up to the end of a device period (else a partial step is left
        unwritten). For reply audio, each write is counted as it is done (a later one can
        raise) and the first one emits PlaybackStarted.
        """
        total = len(data)
        # The stream's length so far: what was written since the device last stopped.
        if not self._active:
            self._stream_bytes = 0
        fill = -(self._stream_bytes + total) % self._pad_to if pad else 0
        if fill:
            # To the end of the device's period (not of this data's own): where the stream stops.
            data = bytes(data) + self._pad * fill
        view = memoryview(data)
        whole = len(view) - len(view) % self._period
        done = 0
        sink = self._sink
        assert sink is not None
        fb = self._fmt.frame_bytes
        queue = self._queue
        while done < whole:
            # Checked before every write so an interrupt is honoured at once even in the middle
            # of a long chunk. A plain attribute read: the lock is not needed to see it.
            if queue.interrupt_request is not None or self._stop.is_set():
                break
            size = wait_for_room(sink, whole - done, self._fmt, nap=queue.nap, clock=self._clock)
            if queue.interrupt_request is not None or self._stop.is_set():
                break
            sink.write(view[done:done + size])
            self._active = True
            self._stream_bytes += size
            self.periods_written += size // self._period
            real = min(size, total - done)
            done += size
            if reply and self._cur is not None:
                self._frames += real // fb
                if not self._started:
                    self._started = True
                    self._emit(PlaybackStarted(self._cur, self._clock()))
        return min(done, total)

    def _flush_tail(self) -> None:
        """Pad the current reply's partial period with silence and write it."""
        if self._pending and self._cur is not None:
            data = bytes(self._pending)
            self._pending.clear()
            self._write_reply(data, pad=True)

    def _idle_tick(self) -> None:
        if self._sink is None:
            return
        if self._pending:
            # Nothing came for a period and the device is about to run dry: play the short tail
            # now rather than hold it back (the hint end_reply() may never come).
            if self._sink.delay_frames() <= self._device_period:
                self._flush_tail()
            return
        if not self._active:
            if self._cur is not None:
                self._finish(self._clock())
            return
        if self._sink.delay_frames() > 0:
            return
        t = self._clock()
        if self._cur is not None:
            self._finish(t)
        # Keep the device open but stopped while idle: no CPU spent writing silence, no xrun
        # counted while nothing plays, and the next reply starts without an open().
        self._sink.drop()
        self._active = False

    def _finish(self, t: float, *, given_up: bool = False) -> None:
        """The current reply stopped sounding (given_up: the speaker will not play the rest)."""
        reply = self._cur
        if reply is None:
            return
        ended = given_up or self._ended == reply
        underruns = self._device.handle_xruns() - self._xrun_base
        self._cur = None
        # The next play() without begin_reply() is a new reply, not more of this one.
        self._queue.reply_over(reply)
        self._emit(PlaybackDrained(reply, t, max(0, underruns), self._frames, ended))

    def _lose_device(self, exc: AudioDeviceError) -> None:
        """The device failed mid-use: report it, end the reply it was playing, reopen later."""
        self._device.lose(exc)  # the session logs the one user-facing line for this outage
        self._pending.clear()
        self._active = False
        reply = self._cur
        if reply is not None:
            self._queue.refuse_rest(reply)
            self._missing_reported = max(self._missing_reported, reply)
            self._finish(self._clock(), given_up=True)

    def _connect(self) -> bool:
        """Open the device, retrying with backoff; False when stopping."""
        device = self._device
        device.reset_backoff()  # each reopen starts the schedule afresh, right after a loss too
        while not self._stop.is_set():
            if device.open() is not None:
                return True
            deadline = self._clock() + device.next_delay()
            while not self._stop.is_set() and self._clock() < deadline:
                self._discard_while_missing(deadline)
        return False

    def _discard_while_missing(self, deadline: float) -> None:
        """With no device, audio cannot wait: drop it, and tell the session its replies are over."""
        interrupt, items = self._queue.take_all(deadline, _IDLE_WAIT)
        if interrupt is not None:
            self._emit(PlaybackInterrupted(interrupt[0], self._clock(), interrupt[1]))
        for item in items:
            if item.kind == _AUDIO and item.reply > self._missing_reported:
                self._missing_reported = item.reply
                self._emit(PlaybackDrained(item.reply, self._clock(), 0, 0, True))
