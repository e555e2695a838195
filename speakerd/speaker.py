"""The playback thread: a reply-stamped queue into the sink, drain detection, instant interrupts."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import chimes as chimes_mod
from .audio import AudioDeviceError, AudioFormat, QueueFull, Sink
from .backoff import device_backoff
from .config import ChimesConfig
from .events import PlaybackDrained, PlaybackInterrupted, PlaybackStarted
from .worker import Worker

log = logging.getLogger(__name__)

_AUDIO, _END, _CHIME = "audio", "end", "chime"
_IDLE_WAIT = 0.5  # seconds the idle thread sleeps on its queue; any command wakes it at once
# Reply audio queued ahead of playback, in seconds of sound. The agent sends faster than real
# time, but a reply longer than this arriving all at once is a flood, not speech: refused.
MAX_QUEUED_SECONDS = 60.0


@dataclass(frozen=True)
class _Item:
    kind: str
    reply: int
    data: bytes


class Speaker:
    """Owns the playback device; plays agent replies and chimes; drops everything on interrupt()."""

    def __init__(self, open_sink: Callable[[], Sink], fmt: AudioFormat, *,
                 on_event: Callable[[PlaybackStarted | PlaybackDrained | PlaybackInterrupted], None],
                 late_audio_timeout: float = 1.5,
                 clock: Callable[[], float] = time.monotonic,
                 backoff: Callable[[], Iterator[float]] | None = None,
                 on_device: Callable[[bool, str], None] | None = None,
                 chimes: ChimesConfig | None = None):
        self._open_sink = open_sink
        self._fmt = fmt
        self._on_event = on_event
        self._late_timeout = late_audio_timeout
        self._clock = clock
        self._backoff = backoff or device_backoff
        self._on_device = on_device
        self._chimes = chimes or ChimesConfig()
        self._period = fmt.period_bytes
        self._pad = fmt.silence_byte

        # Everything below up to the thread-only section is shared between the callers
        # (session, socket receive thread) and the speaker thread, and guarded by this condition.
        # Callers only append and set flags, then notify so the thread wakes without polling.
        self._cond = threading.Condition()
        self._items: collections.deque[_Item] = collections.deque()
        self._queued = 0           # bytes of reply audio in _items
        self._max_queued = int(MAX_QUEUED_SECONDS * fmt.rate) * fmt.frame_bytes
        self.queued_peak = 0       # the most reply audio ever queued, in bytes (figures)
        self._reply = 0            # the newest reply id handed out
        self._reply_open = False   # play() adds to self._reply; False: the next play() starts one
        self._discarding = False   # after interrupt(): late audio of the old reply is refused...
        self._late_deadline = 0.0  # ...until this time (pushed on by each refused chunk)
        self._interrupt: tuple[float, int] | None = None  # (request time, last reply to drop)
        self._worker = Worker("speaker", self._run)
        self._stop = self._worker.stopping

        # Thread-only state: touched by the speaker thread alone (and read for is_playing()).
        self._sink: Sink | None = None
        self._cur: int | None = None       # the reply being written
        self._started = False              # PlaybackStarted sent for self._cur
        self._ended: int | None = None     # the last reply whose end marker was played through
        self._lost = False                 # the device failed; say when it is back
        self._pending = bytearray()        # audio of the current reply short of a whole period
        self._frames = 0
        # Grows with every period written (only this thread writes it; others read the int): a
        # reply that sounds but stops growing means the device wedged in a write.
        self.periods_written = 0
        self._xrun_base = 0
        self._active = False               # something was written since the last drop()
        self._missing_reported = 0         # replies discarded while the device is missing
        self._closed_xruns = 0

    # --- commands (any thread) -----------------------------------------------------------

    def start(self) -> bool:
        """Start the playback thread; False if a stuck one from before still owns the device."""
        return self._worker.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Drop (never drain) what is queued and close the device; False if the thread is stuck."""
        return self._worker.stop(self._wake_all, timeout)

    def alive(self) -> bool:
        """Whether the playback thread still runs (a stuck one counts)."""
        return self._worker.alive()

    def _wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def begin_reply(self) -> int:
        """A new agent reply starts: audio is accepted again; returns its id."""
        with self._cond:
            self._reply += 1
            self._reply_open = True
            self._discarding = False
            return self._reply

    def play(self, pcm: bytes) -> bool:
        """Queue agent audio for the current reply; False when refused after an interrupt.

        Raises QueueFull past MAX_QUEUED_SECONDS of queued audio (the chunk is not queued).
        """
        with self._cond:
            if self._discarding:
                now = self._clock()
                if now < self._late_deadline:
                    self._late_deadline = now + self._late_timeout
                    return False
                # No audio for late_audio_timeout: what comes now is a new reply whose start
                # marker we never saw; a false trigger must not mute the agent for good.
                self._discarding = False
            if not self._reply_open:
                self._reply += 1
                self._reply_open = True
            if pcm:
                if self._queued + len(pcm) > self._max_queued:
                    raise QueueFull(f"over {MAX_QUEUED_SECONDS:g} s of reply audio queued")
                self._items.append(_Item(_AUDIO, self._reply, bytes(pcm)))
                self._queued += len(pcm)
                self.queued_peak = max(self.queued_peak, self._queued)
                self._cond.notify()
            return True

    def queued_seconds(self) -> float:
        """Seconds of reply audio queued ahead of playback now."""
        with self._cond:
            return self._queued / (self._fmt.rate * self._fmt.frame_bytes)

    def _recount(self) -> None:
        """Under the lock, after items were removed in bulk."""
        self._queued = sum(len(i.data) for i in self._items if i.kind == _AUDIO)

    def end_reply(self) -> None:
        """No more audio for the current reply: pad its tail to a whole period."""
        with self._cond:
            if self._reply_open and not self._discarding:
                self._items.append(_Item(_END, self._reply, b""))
                self._reply_open = False
                self._cond.notify()

    def interrupt(self) -> None:
        """Stop the current reply now; its queued and late audio is never played."""
        with self._cond:
            now = self._clock()
            t_request = self._interrupt[0] if self._interrupt is not None else now
            self._interrupt = (t_request, self._reply)
            self._discarding = True
            self._late_deadline = now + self._late_timeout
            self._reply_open = False
            self._cond.notify()

    def chime(self, name: str) -> None:
        """Queue a local chime ("press", "error", "goodbye"); interrupt() does not discard it."""
        cfg = getattr(self._chimes, name, None)
        if cfg is None:
            raise ValueError(f"unknown chime {name!r}")
        if not cfg.enabled or cfg.volume <= 0:
            return
        data = chimes_mod.render(name, self._fmt, float(cfg.volume))
        with self._cond:
            self._items.append(_Item(_CHIME, 0, data))
            self._cond.notify()

    def is_playing(self) -> bool:
        """A reply is queued or still sounding."""
        with self._cond:
            if any(item.kind == _AUDIO for item in self._items):
                return True
        return self._cur is not None

    def progress(self) -> int:
        """Periods written so far (any thread): stalls while nothing goes to the device."""
        return self.periods_written

    @property
    def underruns(self) -> int:
        """Playback underruns over every device opened so far."""
        return self._closed_xruns + self._sink_xruns()

    # --- the speaker thread ----------------------------------------------------------------

    def _emit(self, event: PlaybackStarted | PlaybackDrained | PlaybackInterrupted) -> None:
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not kill playback
            log.exception("speaker event listener failed on %r", event)

    def _report(self, ok: bool, message: str) -> None:
        if self._on_device is not None:
            try:
                self._on_device(ok, message)
            except Exception:
                log.exception("on_device callback failed")

    def _sink_xruns(self) -> int:
        return int(getattr(self._sink, "xruns", 0))

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
                self._close_sink()

    def _step(self) -> None:
        """Handle one interrupt, one queued item, or one idle tick."""
        busy = self._active or self._cur is not None or bool(self._pending)
        # While something sounds, wake when the device is about to need us (tail flush, drain
        # detection), not on a fixed tick; otherwise sleep until a command notifies us.
        timeout = self._busy_timeout() if busy else _IDLE_WAIT
        with self._cond:
            if self._interrupt is None and not self._items and not self._stop.is_set():
                self._cond.wait(timeout)
            interrupt = self._take_interrupt()
            item = self._items.popleft() if interrupt is None and self._items else None
            if item is not None and item.kind == _AUDIO:
                self._queued -= len(item.data)
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
            queued -= self._fmt.period_frames
            return min(_IDLE_WAIT, max(self._fmt.period_seconds, queued / self._fmt.rate))
        return min(_IDLE_WAIT, max(0.001, queued / self._fmt.rate + 0.001))

    def _take_interrupt(self) -> tuple[float, int] | None:
        """Under the lock: claim a pending interrupt and remove the queued audio it covers."""
        if self._interrupt is None:
            return None
        t_request, upto = self._interrupt
        self._interrupt = None
        kept: collections.deque[_Item] = collections.deque()
        discarded = 0
        for item in self._items:
            if item.kind == _CHIME or item.reply > upto:
                kept.append(item)
            else:
                discarded += len(item.data)
        self._items = kept
        self._recount()
        return t_request, discarded

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

    def _do_item(self, item: _Item) -> None:
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
                self._xrun_base = self._sink_xruns()
            self._cur = item.reply
            self._started = False
            self._frames = 0
            self._pending.clear()
        if not self._pending and len(item.data) % self._period == 0:
            # The usual case (the agent sends whole periods): written from the chunk itself;
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
        """Write whole periods, as many per write() as the device has room for, stopping early
        if an interrupt arrives; returns bytes written (without padding).

        pad: the last partial period is padded with silence (else it is left unwritten). For
        reply audio, each write is counted as it is done (a later one can raise) and the
        first one emits PlaybackStarted.
        """
        total = len(data)
        if pad and total % self._period:
            data = bytes(data) + self._pad * (self._period - total % self._period)
        view = memoryview(data)
        whole = len(view) - len(view) % self._period
        done = 0
        sink = self._sink
        assert sink is not None
        fb = self._fmt.frame_bytes
        while done < whole:
            # Checked before every write so an interrupt is honoured at once even in the middle
            # of a long chunk. A plain attribute read: the lock is not needed to see it.
            if self._interrupt is not None or self._stop.is_set():
                break
            size = self._wait_for_room(sink, whole - done)
            if self._interrupt is not None or self._stop.is_set():
                break
            sink.write(view[done:done + size])
            self._active = True
            self.periods_written += size // self._period
            real = min(size, total - done)
            done += size
            if reply and self._cur is not None:
                self._frames += real // fb
                if not self._started:
                    self._started = True
                    self._emit(PlaybackStarted(self._cur, self._clock()))
        return min(done, total)

    def _wait_for_room(self, sink: Sink, want: int) -> int:
        """Wait until the device has room, on the condition rather than in write(); returns how
        many bytes (whole periods, at most `want`) to write now.

        A blocking write() cannot be cut short; this wait can: interrupt() notifies it, so the
        drop happens within a millisecond or so of the request. With a backlog the writes are
        half a buffer each, so a long buffer costs few wake-ups. A sink that does not say its
        buffer size is written one period at a time (write() blocks instead).
        """
        buffer = int(getattr(sink, "buffer_frames", 0) or 0)
        period = self._fmt.period_frames
        if buffer < 2 * period:
            return min(want, self._period)
        fb = self._fmt.frame_bytes
        # What is worth a wake-up: half the buffer (whole periods), or all that is wanted.
        target = min(want, max(period, buffer // 2 // period * period) * fb)
        deadline = self._clock() + 4 * buffer / self._fmt.rate  # a stuck device: let write() block
        while True:
            free = (buffer - sink.delay_frames()) // period * period * fb
            if free >= target:
                return min(want, free)
            if self._clock() >= deadline:
                return min(want, self._period)
            with self._cond:
                if self._interrupt is not None or self._stop.is_set():
                    return 0
                # Sleep about as long as the device needs to play out the missing room.
                self._cond.wait(max(0.001, (target - free) / fb / self._fmt.rate))

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
            if self._sink.delay_frames() <= self._fmt.period_frames:
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
        underruns = self._sink_xruns() - self._xrun_base
        self._cur = None
        with self._cond:
            if self._reply == reply and not any(i.reply == reply for i in self._items):
                # The next play() without begin_reply() is a new reply, not more of this one.
                self._reply_open = False
        self._emit(PlaybackDrained(reply, t, max(0, underruns), self._frames, ended))

    def _close_sink(self) -> None:
        if self._sink is not None:
            self._closed_xruns += self._sink_xruns()
            try:
                self._sink.close()
            except Exception:  # a dead device can fail to close in many ways; it is gone either way
                log.debug("closing the playback device failed", exc_info=True)
            self._sink = None

    def _lose_device(self, exc: AudioDeviceError) -> None:
        """The device failed mid-use: report it, end the reply it was playing, reopen later."""
        # The session logs the one user-facing line for this outage.
        log.debug("speaker lost: %s", exc)
        self._close_sink()
        self._report(False, f"{exc} ({exc.key})")
        self._pending.clear()
        self._active = False
        reply = self._cur
        if reply is not None:
            with self._cond:
                # The rest of this reply would start mid-sentence on the new device: refuse it
                # like late audio after an interrupt.
                self._items = collections.deque(
                    i for i in self._items if i.kind == _CHIME or i.reply > reply)
                self._recount()
                if self._reply == reply:
                    self._discarding = True
                    self._late_deadline = self._clock() + self._late_timeout
                    self._reply_open = False
            self._missing_reported = max(self._missing_reported, reply)
            self._finish(self._clock(), given_up=True)
        self._lost = True

    def _connect(self) -> bool:
        """Open the device, retrying with backoff; False when stopping."""
        delays: Iterator[float] | None = None
        failed = False
        while not self._stop.is_set():
            try:
                self._sink = self._open_sink()
            except AudioDeviceError as exc:
                # The session logs the one user-facing line; each retry is a debug line only.
                log.debug("speaker unavailable: %s", exc)
                if not failed and not self._lost:  # a loss was reported already
                    self._report(False, f"{exc} ({exc.key})")
                failed = True
                delays = delays or self._backoff()
                deadline = self._clock() + next(delays)
                while not self._stop.is_set() and self._clock() < deadline:
                    self._discard_while_missing(deadline)
                continue
            if failed or self._lost:
                log.info("speaker back")
                self._report(True, "")
                self._lost = False
            return True
        return False

    def _discard_while_missing(self, deadline: float) -> None:
        """With no device, audio cannot wait: drop it, and tell the session its replies are over."""
        with self._cond:
            if not self._items and self._interrupt is None:
                # Woken by any command or by stop(); the deadline is the next reopen attempt.
                self._cond.wait(max(0.0, min(deadline - self._clock(), _IDLE_WAIT)))
            interrupt = self._take_interrupt()
            items = list(self._items)
            self._items.clear()
            self._queued = 0
        if interrupt is not None:
            self._emit(PlaybackInterrupted(interrupt[0], self._clock(), interrupt[1]))
        for item in items:
            if item.kind == _AUDIO and item.reply > self._missing_reported:
                self._missing_reported = item.reply
                self._emit(PlaybackDrained(item.reply, self._clock(), 0, 0, True))
