"""One emulated agent connection: what the client sent, the receive loop and turn detection."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection

from . import audio
from .link import Link, SessionHost
from .options import EmulatorOptions, RecordedFrame, ReplyRecord
from .reply import ReplyEngine, Speech, Turn, speech_seconds
from .wire import (
    EA,
    SETTINGS_TYPE,
    TIMEOUT_TEXT,
    UNPARSABLE_TEXT,
    UPDATE_ACKS,
    V1,
    ClientMessageError,
    Listening,
    Negotiated,
    check_message,
    error,
    function_response_id,
    is_known_type,
    listening_of,
    parse_json,
    validate_settings,
    warning,
    welcome,
)

FORCE_END_TURN_UNSUPPORTED_TEXT = ("ForceEndTurn requires a Deepgram V2 (Flux) listen provider. "
                                   "The current turn was not ended.")

log = logging.getLogger(__name__)


class EmulatedSession:
    """One accepted connection: records what the client sends and answers it as the agent."""

    def __init__(self, number: int, dialect: str, request_id: str, conn: ServerConnection,
                 host: SessionHost) -> None:
        self.number = number
        self.dialect = dialect
        self.request_id = request_id
        self.settings: dict[str, Any] | None = None
        self.negotiated: Negotiated | None = None
        self.frames: list[RecordedFrame] = []
        self.applied = threading.Event()  # SettingsApplied was sent
        self.closed = threading.Event()  # the connection and both threads are finished
        self.odd_frames = 0
        self._stopping = False  # set by begin_stop(): the emulator is shutting down
        self._conn = conn
        self._host = host
        self._link = Link(number, dialect, conn, host)
        self._engine = ReplyEngine(self._link)
        self.events_sent: list[dict[str, Any]] = self._link.events_sent  # every JSON sent + "t"
        self.replies: list[ReplyRecord] = self._link.replies
        self._json_in: list[dict[str, Any]] = []  # guarded by the link's record lock
        self._detector: audio.SpeechDetector | None = None  # the receive thread's alone
        self.listening = Listening()  # the turn-taking the settings (or an update) asked for
        self._last_client = time.monotonic()
        self._last_audio = self._last_client

    # --- what tests read ---------------------------------------------------------------

    @property
    def close_reason(self) -> str:
        """Why the connection ended: an error code, "dropped", "stalled", "client closed (…)"."""
        return self._link.close_reason

    def texts(self, type: str | None = None) -> list[dict[str, Any]]:
        """Client JSON messages received, in order, optionally only those of one type."""
        with self._link.record_lock:
            return [dict(m) for m in self._json_in if type is None or m.get("type") == type]

    def audio_received(self) -> bytes:
        """All uplink audio bytes in order."""
        with self._link.record_lock:
            return b"".join(f.data for f in self.frames
                            if f.kind == "binary" and isinstance(f.data, bytes))

    def sent_types(self) -> list[str]:
        """Types of every JSON message sent, in order."""
        with self._link.record_lock:
            return [str(e.get("type")) for e in self.events_sent]

    @property
    def live(self) -> bool:
        """Whether the connection is still being served."""
        return not self._link.closing.is_set()

    # --- commands from the emulator ----------------------------------------------------

    def say(self, text: str, seconds: float) -> None:
        """Speak unsolicited, after whatever is being said now."""
        self._engine.post(Speech("say", text, seconds, announce=True))

    def begin_stop(self) -> None:
        """Make both threads give up at once (the emulator is stopping)."""
        self._stopping = True
        self._link.closing.set()
        self._engine.cancel_all()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self._link.abort()

    # --- the connection's own thread ---------------------------------------------------

    def run(self) -> None:
        """Serve the connection until it closes (runs on the server's handler thread)."""
        self._link.send_json(welcome(self.dialect, self.request_id))
        self._engine.start()
        try:
            self._receive_loop()
        except Exception:
            log.exception("session %d failed", self.number)
            self._link.close_reason = self._link.close_reason or "emulator crashed"
        finally:
            self._finish()

    def _receive_loop(self) -> None:
        link = self._link
        while not link.closing.is_set():
            options = self._host.options
            deadline = self._last_client + options.idle_timeout
            if self._detector is not None and self._detector.in_speech:
                deadline = min(deadline, self._last_audio + self._starved_after(options))
            # Capped so a changed idle_timeout knob is noticed within a second; the cap costs
            # one wake-up a second, nothing while frames flow.
            timeout = min(max(0.0, deadline - time.monotonic()), 1.0)
            try:
                data = self._conn.recv(timeout=timeout)
            except TimeoutError:
                self._on_quiet()
                continue
            except ConnectionClosed:
                break
            self._last_client = time.monotonic()
            self._record(data)
            if link.stalled:
                continue
            try:
                if isinstance(data, bytes):
                    self._on_audio(data)
                else:
                    self._on_text(data)
            except ClientMessageError as exc:
                link.fail(exc.code, exc.description)
                break

    def _flux_turns(self, options: EmulatorOptions) -> bool:
        return self.listening.flux and options.flux_turns

    def _end_of_turn(self, options: EmulatorOptions) -> float:
        """Seconds of silence after speech that end a turn by the server's own detection.

        Nova: the end-of-speech knob. Flux: the same as its model's detection, or its
        eot_timeout_ms if shorter; with eot_threshold 1.0 the model ends no turn, and only the
        timeout (or ForceEndTurn) does.
        """
        if not self._flux_turns(options):
            return options.end_of_speech
        if not self.listening.model_ends_turns:
            return self.listening.eot_timeout
        return min(options.end_of_speech, self.listening.eot_timeout)

    def _starved_after(self, options: EmulatorOptions) -> float:
        """Wall time without any uplink audio that ends an utterance (the uplink stopped)."""
        return max(2 * self._end_of_turn(options), 1.0)

    def _on_quiet(self) -> None:
        """No client frame within the receive timeout: idle cut-off or a starved utterance."""
        if self._link.stalled:
            return
        options = self._host.options
        now = time.monotonic()
        if now - self._last_client >= options.idle_timeout:
            # Agent speech never resets this timer, as on the real server.
            self._link.fail("CLIENT_MESSAGE_TIMEOUT", TIMEOUT_TEXT)
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
        with self._link.record_lock:
            self.frames.append(RecordedFrame(self._last_client, kind, data))

    def _on_text(self, text: str) -> None:
        link = self._link
        msg = parse_json(text)
        with link.record_lock:
            self._json_in.append(msg)
        kind = msg["type"]
        link.emit(f"<- {kind}")
        log.debug("session %d received %s", self.number, kind)
        settings_type = SETTINGS_TYPE[self.dialect]
        strict = self._host.options.strict_keys
        if self.negotiated is None:
            if kind == settings_type:
                negotiated = validate_settings(self.dialect, msg, strict)
                self._apply_settings(msg, negotiated)
                return
            if is_known_type(self.dialect, kind):
                raise ClientMessageError(
                    "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS",
                    f"Received a {kind} message before the {settings_type} message.")
            raise ClientMessageError("UNPARSABLE_CLIENT_MESSAGE", UNPARSABLE_TEXT)
        if kind == settings_type:
            raise ClientMessageError("SETTINGS_ALREADY_APPLIED",
                                     "Settings can only be sent once per session.")
        check_message(self.dialect, msg, strict)
        if kind == "UpdateListen":
            self._update_listen(msg["listen"]["provider"])
        elif kind == "ForceEndTurn":
            self._force_end_turn()
        elif kind in UPDATE_ACKS:
            link.send_json({"type": UPDATE_ACKS[kind]})
        elif kind == "InjectUserMessage":
            # A typed turn barges in like a spoken one, without UserStartedSpeaking.
            with link.send_lock:
                self._engine.interrupt_locked()
            self._engine.post(Turn(msg["content"], b"", time.monotonic(), injected=True))
        elif kind == "InjectAgentMessage":
            self._inject_agent_message(msg["message"])
        elif kind == "FunctionCallResponse":
            call_id, content = function_response_id(self.dialect, msg)
            if not self._engine.answer(call_id, content):
                log.info("session %d: response for unknown function call %s ignored",
                         self.number, call_id)
        # KeepAlive: no reply; like every frame it has reset the idle timer.

    def _force_end_turn(self) -> None:
        """End the user's turn at once (Flux only); no turn in progress: ignored, no reply."""
        if not self._flux_turns(self._host.options):
            self._link.send_json(warning("FORCE_END_TURN_UNSUPPORTED",
                                         FORCE_END_TURN_UNSUPPORTED_TEXT))
            return
        ended = self._detector.finish() if self._detector is not None else None
        if ended is not None:
            self._link.emit("turn ended by ForceEndTurn")
            self._speech_ended(ended)

    def _update_listen(self, provider: dict[str, Any]) -> None:
        """New tunables for the session's listen provider; its identity cannot change."""
        now = self.listening
        if (provider.get("version") == "v2") != now.flux or str(provider.get("model", "")) != (
                now.model):
            self._link.send_json(warning(
                "UPDATE_LISTEN_UNSUPPORTED_FIELDS_CHANGED",
                "UpdateListen cannot change the listen provider's type, version or model; "
                "the listen settings are unchanged."))
            return
        self.listening = listening_of(provider, now)
        self._link.send_json({"type": "ListenUpdated"})

    def _apply_settings(self, msg: dict[str, Any], negotiated: Negotiated) -> None:
        link, options = self._link, self._host.options
        self.settings = msg
        self.negotiated = negotiated
        self.listening = negotiated.listening
        self._engine.negotiated = negotiated
        link.history_allowed = negotiated.history
        self._detector = audio.SpeechDetector(
            negotiated.input_encoding, negotiated.input_rate, options.speech_threshold,
            self._end_of_turn(options))
        greeting = negotiated.greeting
        if greeting:
            # Observed on the real server: the greeting's text may precede SettingsApplied.
            link.send_json({"type": "ConversationText", "role": "assistant",
                            "content": greeting})
            link.history("assistant", greeting)
        if options.settings_delay > 0:
            link.closing.wait(options.settings_delay)  # a fault knob; ends early on stop
        with link.send_lock:
            # Set before the client can see SettingsApplied (so say() right after it works),
            # and under the send lock, so nothing queued meanwhile can overtake it.
            self.applied.set()
            link.send_json({"type": "SettingsApplied"})
        self._host.changed()
        if greeting:
            self._engine.post(Speech("greeting", greeting, speech_seconds(greeting),
                                     announce=False))

    def _inject_agent_message(self, text: str) -> None:
        det = self._detector
        reason = ("user is speaking" if det is not None and det.in_speech
                  else "agent is speaking" if self._engine.busy() else "")
        if not reason:
            self._engine.post(Speech("inject", text, speech_seconds(text), announce=True))
        elif self.dialect == V1:
            self._link.send_json({"type": "InjectionRefused",
                                  "message": f"Injection refused: the {reason}."})
        else:
            self._link.send_json({"type": "InjectionRefused"})

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
                self._link.send_json(warning("USER_AUDIO_FORMAT", text) if self.dialect == V1
                                     else error(EA, "USER_AUDIO_FORMAT", text))
        det = self._detector
        det.threshold = options.speech_threshold
        det.end_of_speech = self._end_of_turn(options)
        for event in det.feed(data):
            if isinstance(event, audio.SpeechStarted):
                # One step under the send lock, so no reply frame beyond slip_frames can
                # follow UserStartedSpeaking.
                with self._link.send_lock:
                    self._engine.interrupt_locked()
                    self._link.send_json({"type": "UserStartedSpeaking"})
                    if options.duplicate_user_started_speaking:
                        self._link.send_json({"type": "UserStartedSpeaking"})
            else:
                self._speech_ended(event)

    def _speech_ended(self, event: audio.SpeechEnded) -> None:
        transcript = self._host.next_transcript()
        rate = self._detector.sample_rate if self._detector else 16000
        self._link.emit(f"user turn ended: {len(event.pcm) / 2 / rate:.2f} s of speech")
        self._engine.post(Turn(transcript, event.pcm, time.monotonic(), injected=False))

    def _finish(self) -> None:
        link = self._link
        link.closing.set()
        self._engine.stop()
        # A no-op when already closed; 1001 (going away) when the emulator is stopping.
        link.close(1001 if self._stopping else 1000)
        if not link.close_reason:
            code = self._conn.close_code
            link.close_reason = f"client closed ({code})" if code is not None else "client closed"
        link.emit(f"closed: {link.close_reason}")
        self.closed.set()
        self._host.changed()
