"""The mic's uplink frames: each period gated, grouped into frames, buffered while connecting, sent."""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable
from typing import Protocol

from .audio import AudioFormat, Throttle
from .uplink import UplinkMode


class FrameSink(Protocol):
    """Where the mic's frames go (the Router, which hands them to the current link)."""
    def uplink(self, pcm: bytes) -> None: ...


class UplinkFrames:
    """Owns the uplink state (the gate, the mode, the connect buffer, the frame being assembled).

    Commands come from the session's thread, periods from the mic thread. The lock makes a
    command and a frame's handling atomic with respect to each other, so a command takes effect
    exactly at a frame boundary: the next frame read after set_gate()/set_uplink() returns is
    already treated the new way.
    """

    def __init__(self, fmt: AudioFormat, sink: FrameSink, *, frame_periods: int, buffer_seconds: float,
                 on_first_send: Callable[[float], None] | None, clock: Callable[[], float],
                 log: logging.Logger):
        self._fmt = fmt
        self._sink = sink
        self._on_first_send = on_first_send
        self._clock = clock
        self._log = log
        self.silence = fmt.silence()
        self.frame_periods = max(1, frame_periods)
        self._frame_bytes = self.frame_periods * fmt.period_bytes
        self._lock = threading.Lock()  # see the class docstring
        self.gate = False  # written under the lock; a plain read sees the last command's
        self._mode = UplinkMode.OFF
        self._first_pending = False
        self.buffer: collections.deque[bytes] = collections.deque()
        self._buffer_max = max(1, math.ceil(buffer_seconds / fmt.period_seconds / self.frame_periods))
        # The uplink frame being assembled, period by period; its capacity is reserved once.
        self._frame = bytearray(self._frame_bytes)
        self._frame_len = 0
        self._frame_live = False  # its last period is the microphone's (not silence)
        self._batch = 1  # frames per hand-over while the gate is open (see periods_due)
        # Frames ready for the sink, in order (mic thread only; see send()).
        self._outgoing: collections.deque[bytes] = collections.deque()
        self._overflow = Throttle(5.0, clock)
        self._dropped = 0
        self.frames_sent = 0
        # Turn ends asked for (the session, at a release) and answered (the mic thread, once the
        # periods captured before the ask are with the sink): a count, so an answer names its ask.
        self.turn_ends_asked = 0
        self._turn_ends_done = 0

    # --- commands (the session's thread) ------------------------------------------------

    def set_gate(self, live: bool) -> None:
        with self._lock:
            if live and not self.gate:
                # A warm press (the uplink already streams): its first byte is the first live frame.
                self._first_pending = True
            self.gate = live

    def set_uplink(self, mode: UplinkMode) -> None:
        with self._lock:
            if mode == self._mode:
                return
            if mode is UplinkMode.OFF or mode is UplinkMode.BUFFER:
                self.buffer.clear()  # off: nothing waits; buffer: the press edge starts afresh
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

    def ask_turn_end(self) -> int:
        """The user's turn ends here (a release): the mic thread sends what it captured up to
        now, the partial frame short, then answers this number (see turn_end_due)."""
        with self._lock:
            self.turn_ends_asked += 1
            return self.turn_ends_asked

    # --- the mic thread -------------------------------------------------------------------

    def turn_end_due(self, upto: int | None = None) -> int | None:
        """The newest turn end asked for (up to `upto`) and not answered yet, after queueing the
        frame being assembled (short) for send(); None when none is waiting. Called once the
        periods captured before that ask have been handled."""
        with self._lock:
            newest = self.turn_ends_asked if upto is None else min(upto, self.turn_ends_asked)
            if self._turn_ends_done >= newest:
                return None
            self._turn_ends_done = newest
            self._send_short(live_only=False)
            return self._turn_ends_done

    def idle(self) -> bool:
        """Nothing would leave the mic (no socket, gate shut): capture can stop."""
        with self._lock:
            return self._mode is UplinkMode.OFF and not self.gate

    def silent(self) -> bool:
        """Only silence would leave the mic (a socket, the gate shut): capture can stop."""
        with self._lock:
            return self._mode is not UplinkMode.OFF and not self.gate

    def set_batch(self, frames: int) -> None:
        with self._lock:
            self._batch = max(1, frames)

    def periods_due(self) -> int:
        """Periods to read before the next frames leave: the frame being assembled and, while the
        gate is open, the rest of its batch (one period when a frame should leave at once)."""
        with self._lock:
            if self._mode is UplinkMode.STREAM and (self.buffer or (self._first_pending and self.gate)):
                return 1
            batch = self._batch if self.gate and self._mode is UplinkMode.STREAM else 1
            left = self._frame_bytes * batch - self._frame_len
        return max(1, -(-left // self._fmt.period_bytes))

    def handle(self, raw: bytes, gate: bool | None = None) -> None:
        """One period, from the device or the silence pacer: discard it, or add it to the frame.

        `gate`: the gate that applied when the period was captured, if the thread knows it
        (None: the current one). A whole frame is then buffered or sent; so is a partial one
        at the start of a turn (its first byte leaves at once) or when a backlog is waiting.
        """
        with self._lock:
            live = self.gate if gate is None else gate
            if self._mode is UplinkMode.OFF:
                self._frame_len = 0
                return
            if not live:
                self._send_last_words()
            end = self._frame_len + len(raw)
            self._frame[self._frame_len:end] = raw if live else self.silence
            self._frame_len = end
            self._frame_live = live
            streaming = self._mode is UplinkMode.STREAM
            if end < self._frame_bytes and not (
                    streaming and ((self._first_pending and live) or self.buffer)):
                return
            frame = self._take_frame()
            if not streaming:
                if len(self.buffer) >= self._buffer_max:
                    self.buffer.popleft()
                    self._dropped += 1
                    held = self._overflow.ready()
                    if held is not None:
                        self._log.warning("connect buffer full (%.1f s): dropping the oldest "
                                          "audio (%d frames so far)",
                                          self._buffer_max * self._frame_bytes / self._fmt.bytes_per_second,
                                          self._dropped)
                self.buffer.append(frame)
                return
            # Streaming: what was buffered goes first, so the server hears the press edge onward
            # in order; send() hands the frame over before the thread next blocks.
            if self.buffer:
                self._flush_buffer()
            self._note_first_send()
            self._outgoing.append(frame)
            self.frames_sent += 1

    def silence_frame(self) -> None:
        """One frame of silence, from the pacer that stands in for a stopped or missing device."""
        for _ in range(self.frame_periods):
            self.handle(self.silence)

    def send(self) -> None:
        """Hand the frames ready to go to the sink; called just before the thread blocks.

        Sending wakes the socket's thread, which then needs the interpreter lock: handed over
        as this thread goes to sleep, it gets it at once instead of waking twice. Under the lock,
        as a command may flush too (send() only enqueues, so holding it is cheap).
        """
        if self._outgoing:
            with self._lock:
                while self._outgoing:
                    self._sink.uplink(self._outgoing.popleft())

    def gate_after_reads(self) -> bool:
        """After a frame's reads: the gate now, the user's last words sent first if it is shut."""
        with self._lock:
            if not self.gate:
                self._send_last_words()
            return self.gate

    def _send_last_words(self) -> None:
        """Under the lock, streaming, the gate just shut (a release): the frame holding the
        user's last words leaves now, short, rather than after up to a frame of silence; what
        the caller sends once the mic has seen the release then follows them on the wire."""
        self._send_short(live_only=True)

    def _send_short(self, *, live_only: bool) -> None:
        """Under the lock, streaming: the frame being assembled is queued for send() as it is,
        short (live_only: only if its last period is the microphone's)."""
        if (self._frame_live or not live_only) and self._frame_len and self._mode is UplinkMode.STREAM:
            self._outgoing.append(self._take_frame())
            self.frames_sent += 1
        self._frame_live = False

    def _take_frame(self) -> bytes:
        """The frame assembled so far, which starts afresh (the caller holds the lock)."""
        frame = bytes(memoryview(self._frame)[:self._frame_len])
        self._frame_len = 0
        return frame

    def _flush_buffer(self, partial: bool = False) -> None:
        """Send the frames ready, then what the connect buffer holds, in order (and, if asked,
        the frame being assembled); the caller holds the lock. send() only enqueues."""
        while self._outgoing:
            self._sink.uplink(self._outgoing.popleft())
        if self.buffer:
            self._note_first_send()
            while self.buffer:
                self._sink.uplink(self.buffer.popleft())
                self.frames_sent += 1
        if partial and self._frame_len:
            self._note_first_send()
            self._sink.uplink(self._take_frame())
            self.frames_sent += 1

    def _note_first_send(self) -> None:
        if self._first_pending:
            self._first_pending = False
            if self._on_first_send is not None:
                self._on_first_send(self._clock())
