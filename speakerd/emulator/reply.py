"""The emulator's reply engine: one thread per connection that plays the agent's side of a turn."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import audio
from .link import Link
from .options import EmulatorOptions, ReplyRecord
from .wire import V1, Negotiated, function_call_request, warning

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """A finished user turn, spoken (with its PCM at the input rate) or injected."""
    transcript: str
    pcm: bytes
    ended: float
    injected: bool


@dataclass(frozen=True)
class Speech:
    """Speech that is not an answer: greeting, injected agent message, unsolicited `say`."""
    kind: str
    text: str
    seconds: float
    announce: bool  # False when its ConversationText already went out (the greeting)


def speech_seconds(text: str) -> float:
    """How long synthesised speech for this text lasts (about a talker's pace, bounded)."""
    return max(0.5, min(4.0, 0.06 * len(text)))


class _Reply:
    """Cancellation state of the reply being prepared or streamed; guarded by the send lock."""

    def __init__(self) -> None:
        self.cancel = threading.Event()  # set on barge-in or close; wakes pacing and waits
        self.interrupted = False
        self.slip_left = 0
        self.finished = False


class _PendingCall:
    """A client-side function call waiting for its FunctionCallResponse."""

    def __init__(self) -> None:
        self.answered = threading.Event()  # set by the response, or by barge-in/close to give up
        self.content: str | None = None


class _Closed(Exception):
    """The connection is gone; the engine stops."""


class ReplyEngine:
    """Runs turns and speeches in order on its own thread; the receive side interrupts it."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._host = link.host
        self.negotiated: Negotiated | None = None  # set once, before the first job
        # The engine's inbox; None is the stop sentinel.
        self._jobs: queue.Queue[Turn | Speech | None] = queue.Queue()
        self._current: _Reply | None = None  # guarded by link.send_lock
        self._calls: dict[str, _PendingCall] = {}  # guarded by link.send_lock
        self._audio_done_owed = False  # guarded by link.send_lock
        self._thread = threading.Thread(target=self._work, name=f"emulator-reply-{link.number}",
                                        daemon=True)

    # --- called from other threads -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def post(self, job: Turn | Speech) -> None:
        self._jobs.put(job)

    def busy(self) -> bool:
        """Whether a reply is being prepared or spoken, or one is waiting."""
        with self._link.send_lock:
            reply = self._current
            return (reply is not None and not reply.finished) or not self._jobs.empty()

    def interrupt_locked(self) -> None:
        """Barge-in: stop the reply in progress (the caller holds the send lock)."""
        reply = self._current
        if reply is not None and not reply.finished and not reply.interrupted:
            reply.interrupted = True
            reply.slip_left = max(0, self._host.options.slip_frames)
            reply.cancel.set()
            for call in self._calls.values():
                call.answered.set()

    def answer(self, call_id: str, content: str) -> bool:
        """A FunctionCallResponse arrived; False when no call with that id is waiting."""
        with self._link.send_lock:
            pending = self._calls.get(call_id)
            if pending is None or pending.answered.is_set():
                return False
            pending.content = content
            pending.answered.set()
            return True

    def cancel_all(self) -> None:
        """Give up on everything now (closing). Lock-free: a send stuck on a client that
        stopped reading may hold the send lock, and stopping must not wait for it."""
        reply = self._current
        if reply is not None:
            reply.interrupted = True
            reply.cancel.set()
        for call in list(self._calls.values()):
            call.answered.set()

    def stop(self) -> None:
        """Stop the thread; bounded."""
        self.cancel_all()
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=3.0)  # it waits only on events cancel_all() has set
            if self._thread.is_alive():
                log.warning("session %d: reply thread did not stop", self._link.number)

    # --- the engine's thread ---------------------------------------------------------------

    def _work(self) -> None:
        while not self._link.closing.is_set():
            try:
                # Timeout only as a backstop: the stop sentinel normally wakes it.
                job = self._jobs.get(timeout=1.0)
            except queue.Empty:
                continue
            if job is None:
                break
            try:
                if isinstance(job, Turn):
                    self._turn(job)
                else:
                    self._speak(job)
            except _Closed:
                break
            except Exception:
                log.exception("session %d: reply failed", self._link.number)

    def _new_reply(self) -> _Reply:
        with self._link.send_lock:
            self._current = _Reply()
            return self._current

    def _pay_audio_done(self) -> None:
        """AgentAudioDone for an interrupted reply, after the new user's turn (observed order)."""
        with self._link.send_lock:
            if self._audio_done_owed:
                self._audio_done_owed = False
                self._link.send_json({"type": "AgentAudioDone"})

    def _turn(self, job: Turn) -> None:
        link, options, neg = self._link, self._host.options, self.negotiated
        assert neg is not None
        reply = self._new_reply()
        code = self._host.take_fault("error_then_close")
        if code:
            link.fail(str(code), f"Emulated failure: {code}")
            raise _Closed
        link.send_json({"type": "ConversationText", "role": "user", "content": job.transcript})
        link.history("user", job.transcript)
        link.send_json({"type": "EndOfThought"})
        self._pay_audio_done()
        if options.unknown_types:
            link.send_json({"type": "EmulatorTurnNote", "note": "clients must ignore this"})
        if options.warnings and link.dialect == V1:
            link.send_json(warning("SLOW_THINK_REQUEST", "The think provider is slow."))
        said: list[str] = []
        for name, arguments in self._host.take_calls():
            result = self._function_call(reply, name, arguments)
            if reply.cancel.is_set():
                return
            said.append(f"{name} returned {result}." if result is not None
                        else f"{name} did not answer.")
        said.append(f"You said: {job.transcript}.")
        text = " ".join(said)
        if options.reply_seconds is None and job.pcm:
            # Parrot: the user's own words at the output rate, so one round trip proves that
            # what the mic heard reaches the speaker.
            pcm = audio.resample(job.pcm, neg.input_rate, neg.output_rate)
        else:
            seconds = options.reply_seconds or speech_seconds(text)
            pcm = audio.speech_pattern(seconds, neg.output_rate)
        wire = audio.encode(pcm, neg.output_encoding)
        # Latency counts from the end of the turn, so building the audio does not add to it.
        if reply.cancel.wait(max(0.0, job.ended + options.reply_latency - time.monotonic())):
            with link.send_lock:
                reply.finished = True  # barged in while thinking: nothing was said
            return
        self._stream(reply, "turn", text, wire, announce=True,
                     started_speaking=options.agent_started_speaking, since=job.ended)

    def _speak(self, job: Speech) -> None:
        neg = self.negotiated
        assert neg is not None
        reply = self._new_reply()
        self._pay_audio_done()
        wire = audio.encode(audio.speech_pattern(job.seconds, neg.output_rate),
                            neg.output_encoding)
        self._stream(reply, job.kind, job.text, wire, announce=job.announce,
                     started_speaking=False, since=time.monotonic())

    def _function_call(self, reply: _Reply, name: str, arguments: dict[str, Any]) -> str | None:
        """One function call round trip in the dialect's shape; the result, None on timeout."""
        link, neg = self._link, self.negotiated
        assert neg is not None
        decl = neg.functions.get(name)
        client_side = decl.client_side if decl is not None else True
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        if not client_side:
            # The server calls endpoint functions itself; the client only hears about it.
            content = json.dumps({"ok": True})
            if link.dialect == V1:
                link.send_json(function_call_request(V1, call_id, name, arguments, False))
                link.send_json({"type": "FunctionCallResponse", "id": call_id, "name": name,
                                "content": content})
                self._function_history(call_id, name, arguments, False, content)
            else:
                link.send_json({"type": "FunctionCalling", "function_name": name,
                                "input": arguments})
            return content
        pending = _PendingCall()
        with link.send_lock:
            self._calls[call_id] = pending
            if reply.cancel.is_set():
                pending.answered.set()
        link.send_json(function_call_request(link.dialect, call_id, name, arguments, True))
        # Set by the response, or by barge-in/close; the timeout is the knob the real server has.
        pending.answered.wait(self._host.options.function_timeout)
        with link.send_lock:
            self._calls.pop(call_id, None)
        if reply.cancel.is_set() or link.closing.is_set():
            return None
        if pending.content is None:
            if link.dialect == V1:
                link.send_json(warning("FUNCTION_CALL_FAILED",
                                       f"No response to function call {name}."))
            return None
        self._function_history(call_id, name, arguments, True, pending.content)
        return pending.content

    def _function_history(self, call_id: str, name: str, arguments: dict[str, Any],
                          client_side: bool, content: str) -> None:
        if self._link.history_on():
            self._link.send_json({"type": "History", "function_calls": [
                {"id": call_id, "name": name, "client_side": client_side,
                 "arguments": json.dumps(arguments), "response": content}]})

    def _stream(self, reply: _Reply, kind: str, text: str, wire: bytes, *, announce: bool,
                started_speaking: bool, since: float) -> None:
        """Say one utterance: its text, then paced audio frames, then AgentAudioDone."""
        link, neg = self._link, self.negotiated
        assert neg is not None
        with link.send_lock:
            if reply.interrupted:
                reply.finished = True
                return
            if announce:
                link.send_json({"type": "ConversationText", "role": "assistant",
                                "content": text})
                link.history("assistant", text)
            if started_speaking:
                total = time.monotonic() - since
                link.send_json({"type": "AgentStartedSpeaking", "total_latency": total,
                                "tts_latency": total * 0.4, "ttt_latency": total * 0.6})
        record = ReplyRecord(kind, text)
        link.add_reply(record)
        frames = audio.split_frames(wire, neg.output_encoding, neg.output_rate,
                                    self._host.options.reply_frame_ms)
        bytes_per_second = neg.output_rate * audio.sample_width(neg.output_encoding)
        start = time.monotonic()
        sent = 0
        for i, frame in enumerate(frames):
            if i == len(frames) // 2 and i > 0:
                self._mid_reply(self._host.options)
                start += self._gap(reply, start, sent / bytes_per_second)
            pace = self._host.options.reply_pace
            if pace > 0 and not reply.interrupted:
                # Paced by audio position, not by frame count; cancel wakes it at once.
                reply.cancel.wait(start + sent / bytes_per_second / pace - time.monotonic())
            if link.closing.is_set():
                raise _Closed
            with link.send_lock:
                if reply.interrupted:
                    if reply.slip_left <= 0:
                        break
                    reply.slip_left -= 1
                if not link.send_frame(frame):
                    raise _Closed
                record.audio += frame
                record.frames += 1
            sent += len(frame)
        with link.send_lock:
            reply.finished = True
            record.interrupted = reply.interrupted
            record.done = True
            if not reply.interrupted:
                link.send_json({"type": "AgentAudioDone"})
            elif self._host.options.audio_done_after_interrupt:
                self._audio_done_owed = True
        state = " (interrupted)" if record.interrupted else ""
        link.emit(f"-> audio {len(record.audio) / bytes_per_second:.2f} s in "
                  f"{record.frames} frames{state}")
        self._host.changed()

    def _gap(self, reply: _Reply, start: float, audio_seconds: float) -> float:
        """The reply_gap pause: until what was sent has played out at real time, then reply_gap
        more; ends early on barge-in or close. Returns how long it paused."""
        gap = self._host.options.reply_gap
        if gap <= 0 or reply.interrupted:
            return 0.0
        paused_at = time.monotonic()
        self._link.emit(f"pausing the reply for {gap:.2f} s after it drains")
        reply.cancel.wait(max(0.0, start + audio_seconds + gap - paused_at))
        # The rest keeps the pace it had, counted from the end of the pause.
        return time.monotonic() - paused_at

    def _mid_reply(self, options: EmulatorOptions) -> None:
        """Halfway through a reply: the one-shot transport faults and unknown messages."""
        link = self._link
        if options.unknown_types:
            link.send_json({"type": "EmulatorAudioNote", "note": "clients must ignore this"})
        if self._host.take_fault("drop_mid_reply"):
            link.close_reason = "dropped"
            link.emit("dropping the connection mid-reply")
            link.abort()
            raise _Closed
        if self._host.take_fault("stall_mid_reply"):
            link.emit("stalling mid-reply")
            link.stall()
            link.closing.wait()  # silent until the client gives up or the emulator stops
            raise _Closed
