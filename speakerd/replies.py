"""The speaker's queue: reply-stamped audio and chimes, what an interrupt drops, late audio refused."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .audio import AudioFormat, QueueFull
from .doorbell import Doorbell

AUDIO, END, CHIME = "audio", "end", "chime"
# Reply audio queued ahead of playback, in seconds of sound. The agent sends faster than real
# time, but a reply longer than this arriving all at once is a flood, not speech: refused.
MAX_QUEUED_SECONDS = 60.0


@dataclass(frozen=True)
class Item:
    """One entry of the queue: reply audio, a reply's end marker, or a chime (reply 0)."""
    kind: str
    reply: int
    data: bytes


class ReplyQueue:
    """Owns what waits for the playback thread, shared with the callers (session, socket thread).

    Everything here is guarded by the lock. Callers only append and set flags, then ring the
    playback thread's doorbell once the lock is released (the last thing they do), so it wakes
    without polling, and without waiting for the lock. It looks at the queue, waits for a ring,
    and looks again.
    """

    def __init__(self, fmt: AudioFormat, *, late_audio_timeout: float, clock: Callable[[], float],
                 stopping: threading.Event):
        self._fmt = fmt
        self._late_timeout = late_audio_timeout
        self._clock = clock
        self._stop = stopping  # the playback thread's; a wait here ends when it is set
        self._lock = threading.Lock()
        self._bell = Doorbell()
        self.items: collections.deque[Item] = collections.deque()
        self._queued = 0           # bytes of reply audio in items
        self._max_queued = int(MAX_QUEUED_SECONDS * fmt.rate) * fmt.frame_bytes
        self.queued_peak = 0       # the most reply audio ever queued, in bytes (figures)
        self._reply = 0            # the newest reply id handed out
        self._reply_open = False   # play() adds to self._reply; False: the next play() starts one
        self._discarding = False   # after interrupt(): late audio of the old reply is refused...
        self._late_deadline = 0.0  # ...until this time (pushed on by each refused chunk)
        # (request time, last reply to drop). Read without the lock by the writer before every
        # write: a plain attribute read, so an interrupt is honoured mid-chunk.
        self.interrupt_request: tuple[float, int] | None = None

    # --- the callers -----------------------------------------------------------------------

    def begin_reply(self) -> int:
        with self._lock:
            self._reply += 1
            self._reply_open = True
            self._discarding = False
            return self._reply

    def play(self, pcm: bytes) -> bool:
        with self._lock:
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
                self.items.append(Item(AUDIO, self._reply, bytes(pcm)))
                self._queued += len(pcm)
                self.queued_peak = max(self.queued_peak, self._queued)
        if pcm:
            self._bell.ring()
        return True

    def queued_seconds(self) -> float:
        with self._lock:
            return self._queued / (self._fmt.rate * self._fmt.frame_bytes)

    def end_reply(self) -> None:
        with self._lock:
            ended = self._reply_open and not self._discarding
            if ended:
                self.items.append(Item(END, self._reply, b""))
                self._reply_open = False
        if ended:
            self._bell.ring()

    def interrupt(self) -> None:
        with self._lock:
            now = self._clock()
            request = self.interrupt_request
            t_request = request[0] if request is not None else now
            self.interrupt_request = (t_request, self._reply)
            self._discarding = True
            self._late_deadline = now + self._late_timeout
            self._reply_open = False
        self._bell.ring()

    def chime(self, data: bytes) -> None:
        with self._lock:
            self.items.append(Item(CHIME, 0, data))
        self._bell.ring()

    def has_audio(self) -> bool:
        """Reply audio is queued."""
        with self._lock:
            return any(item.kind == AUDIO for item in self.items)

    def wake_all(self) -> None:
        self._bell.ring()

    # --- the playback thread ---------------------------------------------------------------

    def take(self, timeout: float) -> tuple[tuple[float, int] | None, Item | None]:
        """Wait up to `timeout` for work; then (the interrupt claimed, else the next item)."""
        with self._lock:
            idle = self.interrupt_request is None and not self.items
        if idle and not self._stop.is_set():
            self._bell.wait(timeout)
        with self._lock:
            interrupt = self._take_interrupt()
            item = self.items.popleft() if interrupt is None and self.items else None
            if item is not None and item.kind == AUDIO:
                self._queued -= len(item.data)
        return interrupt, item

    def take_all(self, deadline: float, most: float) -> tuple[tuple[float, int] | None, list[Item]]:
        """With no device: wait for work until `deadline` (`most` seconds at most), then claim
        the interrupt and everything queued."""
        with self._lock:
            idle = not self.items and self.interrupt_request is None
        if idle:
            # Woken by any command or by stop(); the deadline is the next reopen attempt.
            self._bell.wait(max(0.0, min(deadline - self._clock(), most)))
        with self._lock:
            interrupt = self._take_interrupt()
            items = list(self.items)
            self.items.clear()
            self._queued = 0
        return interrupt, items

    def nap(self, seconds: float) -> bool:
        """Sleep up to `seconds` unless an interrupt or stop() is pending; False if one is."""
        if self.interrupt_request is not None or self._stop.is_set():
            return False
        self._bell.wait(seconds)
        return True

    def reply_over(self, reply: int) -> None:
        """`reply` stopped sounding: unless more of it waits, the next play() starts a new one."""
        with self._lock:
            if self._reply == reply and not any(i.reply == reply for i in self.items):
                self._reply_open = False

    def refuse_rest(self, reply: int) -> None:
        """The device was lost playing `reply`: the rest would start mid-sentence on the new
        device, so it is dropped and refused like late audio after an interrupt."""
        with self._lock:
            self.items = collections.deque(i for i in self.items if i.kind == CHIME or i.reply > reply)
            self._recount()
            if self._reply == reply:
                self._discarding = True
                self._late_deadline = self._clock() + self._late_timeout
                self._reply_open = False

    def _take_interrupt(self) -> tuple[float, int] | None:
        """Under the lock: claim a pending interrupt and remove the queued audio it covers."""
        if self.interrupt_request is None:
            return None
        t_request, upto = self.interrupt_request
        self.interrupt_request = None
        kept: collections.deque[Item] = collections.deque()
        discarded = 0
        for item in self.items:
            if item.kind == CHIME or item.reply > upto:
                kept.append(item)
            else:
                discarded += len(item.data)
        self.items = kept
        self._recount()
        return t_request, discarded

    def _recount(self) -> None:
        """Under the lock, after items were removed in bulk."""
        self._queued = sum(len(i.data) for i in self.items if i.kind == AUDIO)
