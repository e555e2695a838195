"""One emulated agent connection: its receive loop, turn detection and the reply engine."""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed, InvalidState
from websockets.sync.server import ServerConnection

from . import emulator_audio as audio
from .emulator_wire import (
    EA,
    SETTINGS_TYPE,
    TIMEOUT_TEXT,
    UNPARSABLE_TEXT,
    UPDATE_ACKS,
    V1,
    ClientMessageError,
    Negotiated,
    check_message,
    error,
    function_call_request,
    function_response_id,
    is_known_type,
    parse_json,
    validate_settings,
    warning,
    welcome,
)

log = logging.getLogger(__name__)

DEFAULT_TRANSCRIPTS = ("what is the weather like today", "tell me a joke",
                       "turn the volume down a little", "thank you, goodbye")


@dataclass
class EmulatorOptions:
    """The emulator's knobs; mutable so a test can change them between turns."""
    api_key: str = "emulator-key"
    idle_timeout: float = 10.0
    speech_threshold: float = 500.0
    end_of_speech: float = 0.6
    reply_latency: float = 0.05
    reply_pace: float = 10.0
    reply_frame_ms: int = 40
    reply_seconds: float | None = None
    transcripts: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSCRIPTS))
    agent_started_speaking: bool = True
    history: bool = True
    slip_frames: int = 0
    audio_done_after_interrupt: bool = True
    strict_keys: bool = True  # reject mis-placed settings keys, as the real server does
    record: bool = True  # keep every client frame (tests); the CLI turns it off for long runs
    # faults; drop_mid_reply, stall_mid_reply and error_then_close are one-shot: they reset
    # themselves when they fire, so a reconnecting client gets a healthy session.
    refuse_status: int | None = None
    settings_delay: float = 0.0
    drop_mid_reply: bool = False
    stall_mid_reply: bool = False
    error_then_close: str | None = None
    error_close_code: int | None = None  # after any Error; None: no status (client sees 1005)
    unknown_types: bool = False
    warnings: bool = False
    function_timeout: float = 5.0


@dataclass(frozen=True)
class RecordedFrame:
    """One frame the client sent, with its arrival time (time.monotonic())."""
    t: float
    kind: str  # "text" | "binary"
    data: bytes | str


@dataclass
class ReplyRecord:
    """One utterance the emulator spoke or began to speak; filled in as it streams."""
    kind: str  # "greeting" | "turn" | "inject" | "say"
    text: str
    audio: bytearray = field(default_factory=bytearray)
    frames: int = 0
    interrupted: bool = False
    done: bool = False


class SessionHost(Protocol):
    """What a session needs from the emulator that owns it."""
    options: EmulatorOptions

    def next_transcript(self) -> str: ...
    def take_calls(self) -> list[tuple[str, dict[str, Any]]]: ...
    def take_fault(self, name: str) -> Any: ...
    def changed(self) -> None: ...
    def emit(self, session: EmulatedSession, line: str) -> None: ...


@dataclass(frozen=True)
class _Turn:
    """A finished user turn, spoken or injected."""
    transcript: str
    pcm: bytes
    ended: float
    injected: bool


@dataclass(frozen=True)
class _Speech:
    """Speech that is not an answer: greeting, injected agent message, unsolicited `say`."""
    kind: str
    text: str
    seconds: float
    announce: bool  # False when its ConversationText already went out (the greeting)


class _Reply:
    """Cancellation state of the reply being prepared or streamed; guarded by the send lock."""

    def __init__(self) -> None:
        self.cancel = threading.Event()  # set on barge-in or close; wakes pacing and waits
        self.interrupted = False
        self.slip_left = 0
        self.audio_started = False
        self.finished = False


class _PendingCall:
    """A client-side function call waiting for its FunctionCallResponse."""

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.answered = threading.Event()  # set by the response, or by barge-in/close to give up
        self.content: str | None = None


class _Closed(Exception):
    """The connection is gone; the reply engine stops."""


def _speech_seconds(text: str) -> float:
    """How long synthesised speech for this text lasts (about a talker's pace, bounded)."""
    return max(0.5, min(4.0, 0.06 * len(text)))


class EmulatedSession:
    """One accepted connection: records what the client sends and plays the agent's part."""

    def __init__(self, number: int, dialect: str, request_id: str, conn: ServerConnection,
                 host: SessionHost) -> None:
        self.number = number
        self.dialect = dialect
        self.request_id = request_id
        self.settings: dict[str, Any] | None = None
        self.negotiated: Negotiated | None = None
        self.frames: list[RecordedFrame] = []
        self.events_sent: list[dict[str, Any]] = []
        self.replies: list[ReplyRecord] = []
        self.applied = threading.Event()  # SettingsApplied was sent
        self.closed = threading.Event()  # the connection and both threads are finished
        self.close_reason = ""
        self.odd_frames = 0
        self._conn = conn
        self._host = host
        self._json_in: list[dict[str, Any]] = []
        # Guards the recorded lists, which tests read while the session appends to them.
        self._record_lock = threading.Lock()
        # Serialises everything sent, and makes "interrupt the reply + send UserStartedSpeaking"
        # atomic against the reply engine's "check interrupted + send frame", so no frame beyond
        # slip_frames can follow UserStartedSpeaking. Reentrant: helpers send while holding it.
        self._send_lock = threading.RLock()
        self._current: _Reply | None = None
        self._calls: dict[str, _PendingCall] = {}
        self._audio_done_owed = False
        self._stalled = False
        self._closing = threading.Event()  # the session is ending; every wait watches it
        # The reply engine's inbox; None is the stop sentinel.
        self._jobs: queue.Queue[_Turn | _Speech | None] = queue.Queue()
        self._detector: audio.SpeechDetector | None = None
        self._last_client = time.monotonic()
        self._last_audio = self._last_client
        self._worker = threading.Thread(target=self._work, name=f"emulator-reply-{number}",
                                        daemon=True)

    # --- what tests read ---------------------------------------------------------------

    def texts(self, type: str | None = None) -> list[dict[str, Any]]:
        """Client JSON messages received, in order, optionally only those of one type."""
        with self._record_lock:
            return [dict(m) for m in self._json_in if type is None or m.get("type") == type]

    def audio_received(self) -> bytes:
        """All uplink audio bytes in order."""
        with self._record_lock:
            return b"".join(f.data for f in self.frames
                            if f.kind == "binary" and isinstance(f.data, bytes))

    def sent_types(self) -> list[str]:
        """Types of every JSON message sent, in order."""
        with self._record_lock:
            return [str(e.get("type")) for e in self.events_sent]

    @property
    def live(self) -> bool:
        """Whether the connection is still being served."""
        return not self._closing.is_set()

    # --- commands from the emulator ----------------------------------------------------

    def say(self, text: str, seconds: float) -> None:
        """Speak unsolicited, after whatever is being said now."""
        self._jobs.put(_Speech("say", text, seconds, announce=True))

    def begin_stop(self) -> None:
        """Make the reply engine give up at once (the emulator is stopping)."""
        self._closing.set()
        # No send lock here: a send blocked on a client that stopped reading may hold it, and
        # stop() must not wait for that. Setting events and a flag is safe without it.
        reply = self._current
        if reply is not None:
            reply.interrupted = True
            reply.cancel.set()
        for call in list(self._calls.values()):
            call.answered.set()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        try:
            self._conn.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- the connection's own thread ---------------------------------------------------

    def run(self) -> None:
        """Serve the connection until it closes (runs on the server's handler thread)."""
        self._send_json(welcome(self.dialect, self.request_id))
        self._worker.start()
        try:
            self._receive_loop()
        except Exception:
            log.exception("session %d failed", self.number)
            self.close_reason = self.close_reason or "emulator crashed"
        finally:
            self._finish()

    def _receive_loop(self) -> None:
        while not self._closing.is_set():
            options = self._host.options
            now = time.monotonic()
            deadline = self._last_client + options.idle_timeout
            if self._detector is not None and self._detector.in_speech:
                deadline = min(deadline, self._last_audio + self._starved_after(options))
            # Capped so a changed idle_timeout knob is noticed within a second; the cap costs
            # one wake-up a second, nothing while frames flow.
            timeout = min(max(0.0, deadline - now), 1.0)
            try:
                data = self._conn.recv(timeout=timeout)
            except TimeoutError:
                self._on_quiet()
                continue
            except ConnectionClosed:
                break
            self._last_client = time.monotonic()
            self._record(data)
            if self._stalled:
                continue
            try:
                if isinstance(data, bytes):
                    self._on_audio(data)
                else:
                    self._on_text(data)
            except ClientMessageError as exc:
                self._fail(exc.code, exc.description)
                break

    @staticmethod
    def _starved_after(options: EmulatorOptions) -> float:
        """Wall time without any uplink audio that ends an utterance (the uplink stopped)."""
        return max(2 * options.end_of_speech, 1.0)

    def _on_quiet(self) -> None:
        """No client frame within the receive timeout: idle cut-off or a starved utterance."""
        if self._stalled:
            return
        options = self._host.options
        now = time.monotonic()
        if now - self._last_client >= options.idle_timeout:
            self._fail("CLIENT_MESSAGE_TIMEOUT", TIMEOUT_TEXT)
            return
        det = self._detector
        if det is not None and det.in_speech and now - self._last_audio >= self._starved_after(
                options):
            ended = det.finish()
            if ended is not None:
                self._speech_ended(ended)

    def _record(self, data: bytes | str) -> None:
        if not self._host.options.record:
            return
        kind = "binary" if isinstance(data, bytes) else "text"
        with self._record_lock:
            self.frames.append(RecordedFrame(self._last_client, kind, data))

    def _on_text(self, text: str) -> None:
        msg = parse_json(text)
        with self._record_lock:
            self._json_in.append(msg)
        kind = msg["type"]
        self._host.emit(self, f"<- {kind}")
        log.debug("session %d received %s", self.number, kind)
        if self.negotiated is None:
            if kind != SETTINGS_TYPE[self.dialect]:
                if is_known_type(self.dialect, kind):
                    raise ClientMessageError(
                        "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS",
                        f"Received a {kind} message before the {SETTINGS_TYPE[self.dialect]} "
                        "message.")
                raise ClientMessageError("UNPARSABLE_CLIENT_MESSAGE", UNPARSABLE_TEXT)
            negotiated = validate_settings(self.dialect, msg, self._host.options.strict_keys)
            self._apply_settings(msg, negotiated)
            return
        check_message(self.dialect, msg)
        if kind == SETTINGS_TYPE[self.dialect]:
            raise ClientMessageError("SETTINGS_ALREADY_APPLIED",
                                     "Settings can only be sent once per session.")
        if kind in UPDATE_ACKS:
            self._send_json({"type": UPDATE_ACKS[kind]})
        elif kind == "InjectUserMessage":
            with self._send_lock:
                self._interrupt_locked()
            self._jobs.put(_Turn(msg["content"], b"", time.monotonic(), injected=True))
        elif kind == "InjectAgentMessage":
            self._inject_agent_message(msg["message"])
        elif kind == "FunctionCallResponse":
            call_id, content = function_response_id(self.dialect, msg)
            with self._send_lock:
                pending = self._calls.get(call_id)
                if pending is not None and not pending.answered.is_set():
                    pending.content = content
                    pending.answered.set()
            if pending is None:
                log.info("session %d: response for unknown function call %s ignored",
                         self.number, call_id)
        elif kind == "ForceEndTurn" and self._detector is not None:
            ended = self._detector.finish()
            if ended is not None:
                self._speech_ended(ended)
        # KeepAlive: no reply; it only resets the idle timer (done for every frame).

    def _apply_settings(self, msg: dict[str, Any], negotiated: Negotiated) -> None:
        options = self._host.options
        self.settings = msg
        self.negotiated = negotiated
        self._detector = audio.SpeechDetector(
            negotiated.input_encoding, negotiated.input_rate, options.speech_threshold,
            options.end_of_speech)
        greeting = negotiated.greeting
        if greeting:
            # Observed on the real server: the greeting's text may precede SettingsApplied.
            self._send_json({"type": "ConversationText", "role": "assistant",
                             "content": greeting})
            self._history("assistant", greeting)
        if options.settings_delay > 0:
            self._closing.wait(options.settings_delay)  # a fault knob; ends early on stop
        self._send_json({"type": "SettingsApplied"})
        self.applied.set()
        self._host.changed()
        if greeting:
            self._jobs.put(_Speech("greeting", greeting, _speech_seconds(greeting),
                                   announce=False))

    def _inject_agent_message(self, text: str) -> None:
        det = self._detector
        with self._send_lock:
            agent_busy = ((self._current is not None and not self._current.finished)
                          or not self._jobs.empty())
        reason = ("user is speaking" if det is not None and det.in_speech
                  else "agent is speaking" if agent_busy else "")
        if not reason:
            self._jobs.put(_Speech("inject", text, _speech_seconds(text), announce=True))
        elif self.dialect == V1:
            self._send_json({"type": "InjectionRefused",
                             "message": f"Injection refused: the {reason}."})
        else:
            self._send_json({"type": "InjectionRefused"})

    def _on_audio(self, data: bytes) -> None:
        if self.negotiated is None or self._detector is None:
            raise ClientMessageError(
                "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS",
                f"Received binary audio before the {SETTINGS_TYPE[self.dialect]} message.")
        self._last_audio = time.monotonic()
        options = self._host.options
        if self.negotiated.input_encoding == "linear16" and len(data) % 2:
            self.odd_frames += 1
            if self.odd_frames == 1:
                # Non-fatal, once per session: V1 warns; EA's only channel is Error{message},
                # which its docs use for exactly this (the stream is still read on).
                text = (f"Binary message of {len(data)} bytes is not a whole number of "
                        "linear16 samples.")
                self._send_json(warning("USER_AUDIO_FORMAT", text) if self.dialect == V1
                                else error(EA, "USER_AUDIO_FORMAT", text))
        det = self._detector
        det.threshold = options.speech_threshold
        det.end_of_speech = options.end_of_speech
        for event in det.feed(data):
            if isinstance(event, audio.SpeechStarted):
                with self._send_lock:
                    self._interrupt_locked()
                    self._send_json({"type": "UserStartedSpeaking"})
            else:
                self._speech_ended(event)

    def _speech_ended(self, event: audio.SpeechEnded) -> None:
        transcript = self._host.next_transcript()
        rate = self._detector.sample_rate if self._detector else 16000
        self._host.emit(self, f"user turn ended: {len(event.pcm) / 2 / rate:.2f} s of speech")
        self._jobs.put(_Turn(transcript, event.pcm, time.monotonic(), injected=False))

    def _interrupt_locked(self) -> None:
        """Barge-in: stop the reply in progress (caller holds the send lock)."""
        reply = self._current
        if reply is not None and not reply.finished and not reply.interrupted:
            reply.interrupted = True
            reply.slip_left = max(0, self._host.options.slip_frames)
            reply.cancel.set()
            for call in self._calls.values():
                call.answered.set()

    def _cancel_everything(self) -> None:
        with self._send_lock:
            reply = self._current
            if reply is not None:
                reply.interrupted = True
                reply.slip_left = 0
                reply.cancel.set()
            for call in self._calls.values():
                call.answered.set()

    def _fail(self, code: str, description: str) -> None:
        """Send the dialect's Error and close the connection (the real server's way out)."""
        self._send_json(error(self.dialect, code, description))
        self.close_reason = code
        self._host.emit(self, f"closing after {code}")
        self._closing.set()
        self._close(self._host.options.error_close_code)

    def _close(self, code: int | None) -> None:
        try:
            if code is None:
                # websockets has no public way to close without a status; the real server does
                # exactly that (clients see 1005), so send the empty close frame ourselves.
                with self._conn.send_context():
                    self._conn.protocol.send_close()
            else:
                self._conn.close(code)
        except (ConnectionClosed, InvalidState):
            pass

    def _finish(self) -> None:
        self._closing.set()
        self._cancel_everything()
        self._jobs.put(None)
        self._worker.join(timeout=3.0)  # it waits only on events this session has set
        if self._worker.is_alive():
            log.warning("session %d: reply thread did not stop", self.number)
        self._close(1000)
        if not self.close_reason:
            code = self._conn.close_code
            self.close_reason = f"client closed ({code})" if code is not None else "client closed"
        self._host.emit(self, f"closed: {self.close_reason}")
        self.closed.set()
        self._host.changed()

    # --- sending -------------------------------------------------------------------------

    def _send_json(self, msg: dict[str, Any]) -> bool:
        with self._send_lock:
            if self._stalled:
                return False
            try:
                self._conn.send(json.dumps(msg))
            except ConnectionClosed:
                return False
            with self._record_lock:
                self.events_sent.append({**msg, "t": time.monotonic()})
        kind = msg.get("type")
        log.debug("session %d sent %s", self.number, kind)
        detail = (f" {msg.get('role')}: {msg.get('content')}" if kind == "ConversationText"
                  else f" {msg.get('code')}" if kind in ("Error", "Warning") else "")
        self._host.emit(self, f"-> {kind}{detail}")
        self._host.changed()
        return True

    def _history(self, role: str, content: str) -> None:
        if self._history_on():
            self._send_json({"type": "History", "role": role, "content": content})

    def _history_on(self) -> bool:
        return (self.dialect == V1 and self._host.options.history
                and (self.negotiated is None or self.negotiated.history))

    # --- the reply engine's thread -------------------------------------------------------

    def _work(self) -> None:
        while not self._closing.is_set():
            try:
                # Timeout only as a backstop: the stop sentinel normally wakes it.
                job = self._jobs.get(timeout=1.0)
            except queue.Empty:
                continue
            if job is None:
                break
            try:
                if isinstance(job, _Turn):
                    self._turn(job)
                else:
                    self._speak(job)
            except _Closed:
                break
            except Exception:
                log.exception("session %d: reply failed", self.number)

    def _new_reply(self) -> _Reply:
        with self._send_lock:
            self._current = _Reply()
            return self._current

    def _pay_audio_done(self) -> None:
        """AgentAudioDone for an interrupted reply, after the new user's turn (observed order)."""
        with self._send_lock:
            if self._audio_done_owed:
                self._audio_done_owed = False
                self._send_json({"type": "AgentAudioDone"})

    def _turn(self, job: _Turn) -> None:
        options = self._host.options
        reply = self._new_reply()
        code = self._host.take_fault("error_then_close")
        if code:
            self._fail(str(code), f"Emulated failure: {code}")
            raise _Closed
        self._send_json({"type": "ConversationText", "role": "user", "content": job.transcript})
        self._history("user", job.transcript)
        self._send_json({"type": "EndOfThought"})
        self._pay_audio_done()
        if options.unknown_types:
            self._send_json({"type": "EmulatorTurnNote", "note": "clients must ignore this"})
        if options.warnings and self.dialect == V1:
            self._send_json(warning("SLOW_THINK_REQUEST", "The think provider is slow."))
        said: list[str] = []
        for name, arguments in self._host.take_calls():
            result = self._function_call(reply, name, arguments)
            if reply.cancel.is_set():
                return
            said.append(f"{name} returned {result}." if result is not None
                        else f"{name} did not answer.")
        said.append(f"You said: {job.transcript}.")
        text = " ".join(said)
        neg = self.negotiated
        assert neg is not None
        if options.reply_seconds is None and job.pcm:
            pcm = audio.resample(job.pcm, neg.input_rate, neg.output_rate)
        else:
            seconds = options.reply_seconds or _speech_seconds(text)
            pcm = audio.speech_pattern(seconds, neg.output_rate)
        wire = audio.encode(pcm, neg.output_encoding)
        if reply.cancel.wait(max(0.0, job.ended + options.reply_latency - time.monotonic())):
            with self._send_lock:
                reply.finished = True  # barged in while thinking: nothing was said
            return
        self._stream(reply, "turn", text, wire, announce=True,
                     started_speaking=options.agent_started_speaking, since=job.ended)

    def _speak(self, job: _Speech) -> None:
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
        neg = self.negotiated
        assert neg is not None
        decl = neg.functions.get(name)
        client_side = decl.client_side if decl is not None else True
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        if not client_side:
            # The server calls endpoint functions itself; the client only hears about it.
            content = json.dumps({"ok": True})
            if self.dialect == V1:
                self._send_json(function_call_request(V1, call_id, name, arguments, False))
                self._send_json({"type": "FunctionCallResponse", "id": call_id, "name": name,
                                 "content": content})
                self._function_history(call_id, name, arguments, False, content)
            else:
                self._send_json({"type": "FunctionCalling", "function_name": name,
                                 "input": arguments})
            return content
        pending = _PendingCall(call_id, name)
        with self._send_lock:
            self._calls[call_id] = pending
            if reply.cancel.is_set():
                pending.answered.set()
        self._send_json(function_call_request(self.dialect, call_id, name, arguments, True))
        # Set by the response, or by barge-in/close; the timeout is the knob the real server has.
        pending.answered.wait(self._host.options.function_timeout)
        with self._send_lock:
            self._calls.pop(call_id, None)
        if reply.cancel.is_set() or self._closing.is_set():
            return None
        if pending.content is None:
            if self.dialect == V1:
                self._send_json(warning("FUNCTION_CALL_FAILED",
                                        f"No response to function call {name}."))
            return None
        self._function_history(call_id, name, arguments, True, pending.content)
        return pending.content

    def _function_history(self, call_id: str, name: str, arguments: dict[str, Any],
                          client_side: bool, content: str) -> None:
        if self._history_on():
            self._send_json({"type": "History", "function_calls": [
                {"id": call_id, "name": name, "client_side": client_side,
                 "arguments": json.dumps(arguments), "response": content}]})

    def _stream(self, reply: _Reply, kind: str, text: str, wire: bytes, *, announce: bool,
                started_speaking: bool, since: float) -> None:
        """Say one utterance: its text, then paced audio frames, then AgentAudioDone."""
        options = self._host.options
        neg = self.negotiated
        assert neg is not None
        with self._send_lock:
            if reply.interrupted:
                reply.finished = True
                return
            if announce:
                self._send_json({"type": "ConversationText", "role": "assistant",
                                 "content": text})
                self._history("assistant", text)
            if started_speaking:
                total = time.monotonic() - since
                self._send_json({"type": "AgentStartedSpeaking", "total_latency": total,
                                 "tts_latency": total * 0.4, "ttt_latency": total * 0.6})
            reply.audio_started = True
        record = ReplyRecord(kind, text)
        with self._record_lock:
            self.replies.append(record)
        frames = audio.split_frames(wire, neg.output_encoding, neg.output_rate,
                                    options.reply_frame_ms)
        bytes_per_second = neg.output_rate * audio.sample_width(neg.output_encoding)
        start = time.monotonic()
        sent = 0
        for i, frame in enumerate(frames):
            if i == len(frames) // 2 and i > 0:
                self._mid_reply(options)
            pace = self._host.options.reply_pace
            if pace > 0 and not reply.interrupted:
                # Paced by audio position, not by frame count; cancel wakes it at once.
                reply.cancel.wait(start + sent / bytes_per_second / pace - time.monotonic())
            if self._closing.is_set():
                raise _Closed
            with self._send_lock:
                if reply.interrupted:
                    if reply.slip_left <= 0:
                        break
                    reply.slip_left -= 1
                if not self._send_frame(frame):
                    raise _Closed
                record.audio += frame
                record.frames += 1
            sent += len(frame)
        with self._send_lock:
            reply.finished = True
            record.interrupted = reply.interrupted
            record.done = True
            if not reply.interrupted:
                self._send_json({"type": "AgentAudioDone"})
            elif self._host.options.audio_done_after_interrupt:
                self._audio_done_owed = True
        state = " (interrupted)" if record.interrupted else ""
        self._host.emit(self, f"-> audio {len(record.audio) / bytes_per_second:.2f} s in "
                              f"{record.frames} frames{state}")
        self._host.changed()

    def _mid_reply(self, options: EmulatorOptions) -> None:
        """Halfway through a reply: the one-shot transport faults and unknown messages."""
        if options.unknown_types:
            self._send_json({"type": "EmulatorAudioNote", "note": "clients must ignore this"})
        if self._host.take_fault("drop_mid_reply"):
            self.close_reason = "dropped"
            self._host.emit(self, "dropping the connection mid-reply")
            self.abort()
            raise _Closed
        if self._host.take_fault("stall_mid_reply"):
            self._host.emit(self, "stalling mid-reply")
            with self._send_lock:
                self._stalled = True
            self.close_reason = "stalled"
            self._closing.wait()  # silent until the client gives up or the emulator stops
            raise _Closed

    def _send_frame(self, frame: bytes) -> bool:
        try:
            self._conn.send(frame)
        except ConnectionClosed:
            return False
        return True
