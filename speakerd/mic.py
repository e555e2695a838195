"""The capture thread: reads the microphone always, pauses it while idle or silent, paces silence."""

from __future__ import annotations

import collections
import logging
import math
import sys
import time
from array import array
from collections.abc import Callable, Iterator

from .audio import AudioDeviceError, AudioFormat, Source
from .device import DeviceSlot
from .doorbell import Doorbell
from .framing import FrameSink, UplinkFrames
from .uplink import UplinkMode
from .worker import Worker

__all__ = ["FrameSink", "Mic"]

log = logging.getLogger(__name__)

_LEVEL_FRAMES = 25  # periods kept for level(): half a second at 20 ms
# Paced silence (connected, nobody talking) goes up this much at a time, in frames of the usual
# length: nothing waits for silence, so the mic and the socket's thread wake a third as often
# (at 80 ms frames) in the longest state of a conversation, the agent's turn in half duplex.
# Well inside the 20-250 ms Deepgram advises per send, and far from its ~10 s idle cut-off.
SILENCE_PACE = 0.24
# ... but only once the gate has been shut this long: a server that ends the turn on counted
# silence (Nova's end of speech) must count the first second after a release frame by frame.
SILENCE_SETTLE = 1.5


def _available(source: Source) -> int | None:
    """Frames the source holds unread, or None when it cannot say (or its stream is stopped)."""
    avail = getattr(source, "avail", None)
    return avail() if avail is not None else None


class Mic:
    """Owns the capture device and its thread; UplinkFrames decides what each period becomes.

    Periods are grouped into uplink frames of `frame_periods` periods: one message and one
    thread hop per frame instead of per period. On a device that tells how much it holds
    (AlsaSource.avail), the thread sleeps until a frame's worth is captured and reads it in one
    go, so it wakes once per frame too; a command wakes it at once.
    """

    def __init__(self, open_source: Callable[[], Source], fmt: AudioFormat,
                 sink: FrameSink, *, frame_periods: int = 1, batch_frames: int = 1,
                 buffer_seconds: float = 10.0,
                 on_device: Callable[[bool, str], None] | None = None,
                 on_first_send: Callable[[float], None] | None = None,
                 on_turn_end: Callable[[int, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 backoff: Callable[[], Iterator[float]] | None = None):
        self._fmt = fmt
        self._clock = clock
        self._on_turn_end = on_turn_end
        self._frames = UplinkFrames(fmt, sink, frame_periods=frame_periods,
                                    buffer_seconds=buffer_seconds, on_first_send=on_first_send,
                                    clock=clock, log=log)
        self._frame_periods = self._frames.frame_periods
        self._batch_frames = max(1, batch_frames)  # see set_batched()
        self._send = self._frames.send  # called before every block: hands the ready frames over
        self._handle = self._frames.handle
        self._device: DeviceSlot[Source] = DeviceSlot("microphone", "capture", open_source, log=log,
                                                       backoff=backoff, on_device=on_device)
        self._recent: collections.deque[bytes] = collections.deque(maxlen=_LEVEL_FRAMES)
        self._worker = Worker("mic", self._run)
        self._stop = self._worker.stopping  # set by stop(); every wait in the thread is on it
        # Rung by any command that may need audio again, and by stop(): every sleep of the thread
        # is on it (a Doorbell: the sends it wakes agent-tx for cost less than through an Event).
        self._wake = Doorbell()
        self.pauses = 0
        self.frames_read = 0
        # Mic thread only: the gate as the thread last saw it. Periods already captured when a
        # command arrives are treated the old way (they were heard before it); see _read_step().
        self._gate_seen = False

    # --- commands (any thread) -----------------------------------------------------------

    def start(self) -> bool:
        """Start the capture thread; False if a stuck one from before still owns the device."""
        return self._worker.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop capture and close the device; False if the thread is stuck (stuck in a read?)."""
        return self._worker.stop(self._wake.ring, timeout)

    def alive(self) -> bool:
        """Whether the capture thread still runs (a stuck one counts)."""
        return self._worker.alive()

    def set_gate(self, live: bool) -> None:
        """True: microphone audio goes up; False: silence of the same cadence."""
        self._frames.set_gate(live)
        # After the change, not before: a mic thread going idle re-checks the state once woken.
        self._wake.ring()

    def ask_turn_end(self) -> int:
        """The user's turn ends now (a release): the thread sends what it captured up to here,
        the frame in progress short, then reports this number to on_turn_end."""
        number = self._frames.ask_turn_end()
        self._wake.ring()  # a sleeping thread answers at once, not at the end of its frame
        return number

    def set_uplink(self, mode: UplinkMode) -> None:
        """Where frames go from the next period on: discarded, buffered in order, or sent."""
        self._frames.set_uplink(mode)
        # After the change, not before: a mic thread going idle re-checks the state once woken.
        self._wake.ring()

    def set_batched(self, batched: bool) -> None:
        """True: live frames go up `batch_frames` at a time (the agent speaking in full duplex:
        see AudioInputConfig.speaking_batch_ms); False: each as soon as it is full."""
        self._frames.set_batch(self._batch_frames if batched else 1)
        # A shorter batch is due sooner: a sleeping thread looks again at once.
        self._wake.ring()

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
        return self._device.xruns

    @property
    def buffered_frames(self) -> int:
        return len(self._frames.buffer)

    @property
    def frames_sent(self) -> int:
        """Frames handed to the sink (or to the connect buffer's flush) so far."""
        return self._frames.frames_sent

    # --- the mic thread --------------------------------------------------------------------

    def _read_step(self, source: Source) -> None:
        """Read the periods of the next frame: sleep until they are captured, then read them.

        The sleep is on the command event. Woken by a command, the thread reads only the
        periods captured before it, with the gate they were captured under (the agent must
        not hear the tail of its own voice because the gate opened while those periods
        waited in the device), then looks at the new state.
        """
        need = self._frames.periods_due() if self._frame_periods > 1 else 1
        gate: bool | None = None
        # Turn ends asked for before the device is looked at are answered after these reads.
        asked = self._frames.turn_ends_asked
        avail = _available(source) if need > 1 else None
        if avail is not None:
            period = self._fmt.period_frames
            short = need * period - avail
            # Sleep until the whole frame is in, plus a quarter period: the reads then return at
            # once. (A read that blocks costs more than a timed wait: the device's own wake-ups
            # come on top. A sound server delivers a period a little after it was captured.)
            self._send()
            if short > 0 and self._wake.wait((short + period / 4) / self._fmt.rate):
                asked = self._frames.turn_ends_asked  # before what is captured now is counted
                after = _available(source)
                need = min(need, (after or 0) // period)
            gate = self._gate_seen
        for _ in range(need):
            if avail is None:
                self._send()  # this read may block; after a wait for the whole batch it cannot
            raw = source.read()
            self.frames_read += 1
            self._recent.append(raw)
            self._handle(raw, gate)
        self._gate_seen = self._frames.gate_after_reads()
        self._answer_turn_end(asked)

    def _answer_turn_end(self, asked: int | None = None) -> None:
        """Turn ends asked for (up to `asked`; None: all) whose periods are handled by now: once
        they are with the uplink, what the session sends next (ForceEndTurn) follows them."""
        number = self._frames.turn_end_due(asked)
        if number is not None:
            self._send()
            if self._on_turn_end is not None:
                self._on_turn_end(number, self._clock())

    def _wait_for_device(self) -> bool:
        """Wait out one backoff step, keeping the uplink fed with silence; False when stopping."""
        deadline = self._clock() + self._device.next_delay()
        period = self._fmt.period_seconds * self._frame_periods
        next_frame = self._clock() + period
        while not self._stop.is_set():
            now = self._clock()
            if now >= deadline:
                return True
            # Pace silence by the clock so a missing microphone never starves the socket; the
            # wait is on the stop event so stop() is immediate. No device, no words: a turn end
            # is answered within a frame.
            self._answer_turn_end()
            self._send()
            if self._stop.wait(max(0.0, min(next_frame, deadline) - now)):
                return False
            if self._clock() >= next_frame:
                next_frame += period
                self._frames.silence_frame()
        return False

    def _pause(self, still: Callable[[], bool]) -> bool:
        """Stop the capture stream if `still()` holds once the wake event is cleared; whether it
        stopped. A source that cannot stop is read on (and its periods discarded or replaced
        with silence), a command that raced in between the check and the clear wins, and a
        device error is left to the next read, which reports the device properly."""
        pause = getattr(self._device.handle, "pause", None)
        if pause is None:
            return False
        self._send()
        self._wake.clear()
        if not still():
            return False
        try:
            pause()
        except AudioDeviceError:
            return False
        self.pauses += 1
        return True

    def _sleep_while_idle(self) -> bool:
        """Stop the capture stream until a command needs audio; False when stopping.

        An idle speaker has no socket and its gate is shut: reading 50 periods a second only
        to throw them away was most of its CPU. The device stays open and a stopped stream
        restarts on the next read in well under a period, so the press edge is still captured.
        """
        if not self._pause(self._frames.idle):
            return True
        while not self._stop.is_set():
            self._answer_turn_end()  # nothing leaves, so nothing to wait for
            self._wake.wait()
            if not self._frames.idle():
                return True
        return False

    def _pace_silence(self) -> bool:
        """Stop the capture stream and send silence frames by the clock until the gate opens or
        the uplink goes off; False when stopping.

        Connected and nobody talking (half duplex, button up, or the agent speaking), reading
        the microphone only to replace it with silence cost the device's wake-ups and the
        thread's reads; the socket still gets silence by the clock, SILENCE_PACE at a time, so
        the server never sees it quiet. The stream restarts on the next read when the gate opens,
        and the press edge's period is captured from then on.
        """
        if not self._pause(self._frames.silent):
            return True
        frame = self._fmt.period_seconds * self._frame_periods
        batch = max(1, int(SILENCE_PACE / frame + 1e-9))
        settled = self._clock() + SILENCE_SETTLE
        step = 1  # frames of silence owed at `due`: the time since the last ones went
        due = self._clock() + frame
        while not self._stop.is_set():
            # On the command event: a press opens the gate within a millisecond of the edge.
            self._answer_turn_end()  # only silence leaves from here on: nothing to wait for
            self._send()
            if self._wake.wait(max(0.0, due - self._clock())):
                if not self._frames.silent():
                    return True
                continue
            for _ in range(step):
                self._frames.silence_frame()
            step = 1 if due < settled else batch
            due += frame * step
        return False

    def _run(self) -> None:
        device = self._device
        try:
            while not self._stop.is_set():
                source = device.handle
                if source is None:
                    source = device.open()
                    if source is None:
                        if not self._wait_for_device():
                            break
                        continue
                if self._frames.idle() and not self._sleep_while_idle():
                    break
                # Not straight after live periods: those still in the device (the user's last
                # words at a release) are read and sent first, the stream stopped after.
                if not self._gate_seen and self._frames.silent() and not self._pace_silence():
                    break
                try:
                    self._read_step(source)
                except AudioDeviceError as exc:
                    device.lose(exc)
                    # Wait before reopening even after a loss: a device that opens but fails on
                    # every read must not make this loop spin.
                    if not self._wait_for_device():
                        break
                    continue
                device.reset_backoff()  # a good read ends the outage: the next one starts afresh
        finally:
            device.close()
