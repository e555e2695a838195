"""The conversation state machine: the sole owner of state, handling one event at a time."""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import protocol
from .config import Config
from .router import Router

log = logging.getLogger(__name__)

# How long `speaking` waits after local playback drained before it decides the reply is over
# when the agent never said AgentAudioDone (an interrupted reply may never get one).
DRAIN_GRACE = 0.6
# How long the error pattern stays up before the speaker is usable again.
ERROR_HOLD = 3.0
# How long to keep trying to reconnect after a drop before going back to idle.
RECONNECT_WINDOW = 120.0
# The conversation carried across a reconnect is bounded so the settings message stays small.
MAX_CONTEXT = 50
# How long an interrupted turn's line waits for the speaker's interrupt→silence figure.
INTERRUPT_REPORT_WAIT = 0.5
# The longest inbox wait: the loop otherwise sleeps until its next deadline, so an idle speaker
# wakes rarely; this bound only guards against a deadline computed wrong.
TICK = 2.0


# --- events (past-tense facts posted into the inbox) -----------------------------------

@dataclass(frozen=True)
class ButtonPressed:
    """The button went down."""
    t: float


@dataclass(frozen=True)
class ButtonReleased:
    """The button came up."""
    t: float


@dataclass(frozen=True)
class UplinkStarted:
    """The first audio frame after a press left for the agent."""
    t: float


@dataclass(frozen=True)
class DeviceChanged:
    """An audio device went away or came back."""
    device: str
    ok: bool
    message: str


# --- what the session drives (seams, so the logic is testable alone) -------------------

class Link(Protocol):
    def send_audio(self, pcm: bytes) -> None: ...
    def send_text(self, text: str) -> None: ...
    def close(self) -> None: ...


class MicControl(Protocol):
    def set_gate(self, live: bool) -> None: ...
    def uplink_off(self) -> None: ...
    def uplink_buffer(self) -> None: ...
    def uplink_stream(self) -> None: ...


class SpeakerControl(Protocol):
    def interrupt(self) -> None: ...
    def chime(self, name: str) -> None: ...
    def is_playing(self) -> bool: ...


class LedControl(Protocol):
    def show(self, state: str) -> None: ...


class Runner(Protocol):
    def run(self, call_id: str, name: str, arguments: Any, arguments_error: str = "") -> None: ...


class Log(Protocol):
    def new_conversation(self) -> str: ...
    def append(self, kind: str, **fields: Any) -> None: ...


class StatusSink(Protocol):
    def status(self, text: str) -> None: ...
    def watchdog(self) -> None: ...


def exponential_backoff(initial: float, maximum: float,
                        rng: Callable[[], float] = random.random) -> Iterator[float]:
    """Delays that double up to a ceiling, each with ±20 % jitter so fleets do not stampede."""
    delay = initial
    while True:
        yield delay * (0.8 + 0.4 * rng())
        delay = min(delay * 2, maximum)


@dataclass
class Turn:
    """Figures of one user turn, logged as one INFO line."""
    number: int
    press: float
    first_byte: float | None = None
    speech_end: float | None = None
    first_audio: float | None = None
    agent: protocol.AgentStartedSpeaking | None = None
    interrupt_to_silence: float | None = None
    underruns: int = 0
    logged: bool = False

    def line(self) -> str:
        parts = [f"turn {self.number}:"]
        if self.first_byte is not None:
            parts.append(f"press→first byte {_ms(self.first_byte - self.press)}")
        if self.speech_end is not None and self.first_audio is not None:
            parts.append(f"end of speech→first audio {_ms(self.first_audio - self.speech_end)}")
        if self.agent is not None and self.agent.total_latency is not None:
            parts.append(f"agent total {self.agent.total_latency:.2f} s (tts {_s(self.agent.tts_latency)}, "
                         f"ttt {_s(self.agent.ttt_latency)})")
        if self.interrupt_to_silence is not None:
            parts.append(f"interrupt→silence {_ms(self.interrupt_to_silence)}")
        parts.append(f"underruns {self.underruns}")
        return " ".join([parts[0], ", ".join(parts[1:])])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _s(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


# --- the session -----------------------------------------------------------------------

@dataclass
class _Conn:
    link: Any
    ready: bool = False
    up_at: float | None = None


@dataclass
class Session:
    """Owns the conversation state; every change happens on its own thread, one event at a time."""

    cfg: Config
    connect: Callable[[str], Any]  # settings text -> a started link
    mic: MicControl
    speaker: SpeakerControl
    leds: LedControl
    router: Router
    runner: Runner | None = None
    convlog: Log | None = None
    status: StatusSink | None = None
    on_state: Callable[[str], None] | None = None
    on_text: Callable[[str, str], None] | None = None
    clock: Callable[[], float] = time.monotonic
    rng: Callable[[], float] = random.random
    watchdog_interval: float | None = None

    state: str = "idle"
    turns: list[Turn] = field(default_factory=list)
    last_error: str = ""

    def __post_init__(self) -> None:
        # Unbounded on purpose: posting must never block a gpiozero, audio or socket thread.
        self._inbox: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conn: _Conn | None = None
        self._held = False
        self._conversation = False  # toggle mode: a hands-free conversation is on
        self._released_while_connecting = False
        self._awaiting_user_turn = False
        self._turn_started: float | None = None
        self._turn: Turn | None = None
        self._turn_count = 0
        self._interrupted: tuple[Turn, float] | None = None
        self._deadline: float | None = None
        self._drained_at: float | None = None
        self._audio_done = False
        self._hangup_after_reply = False
        self._last_activity = self.clock()
        self._offline_since: float | None = None
        self._reconnect_at: float | None = None
        self._backoff: Iterator[float] | None = None
        self._auth_failures = 0
        self._auth_retry_at = 0.0
        self._context: list[protocol.ContextItem] = []
        self._conversation_id: str | None = None
        self._gate_live: bool | None = None
        self._uplink: str | None = None
        self._last_watchdog = 0.0
        self._devices: dict[str, str] = {}

    # --- thread --------------------------------------------------------------------------

    def post(self, event: object) -> None:
        """Any thread: hand an event to the session; never blocks."""
        self._inbox.put(event)

    def start(self) -> None:
        self._show("idle")
        self._apply_audio()
        self._thread = threading.Thread(target=self._run, name="session", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Idempotent: stop the loop and close the socket without draining anything."""
        self._stop.set()
        self._inbox.put(None)  # the sentinel wakes the loop at once
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the session thread did not stop")
        if self._conn is not None:
            self._conn.link.close()
            self._conn = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._inbox.get(timeout=self._next_wait())
            except queue.Empty:
                event = None
            if event is not None:
                self.handle(event)
            self.tick()

    # --- the dispatcher ------------------------------------------------------------------

    def handle(self, event: object) -> None:
        """Apply one event (session thread only)."""
        from .agent import LinkDown, LinkUp, Received  # the agent module imports nothing of ours

        if isinstance(event, ButtonPressed):
            self._on_press(event.t)
        elif isinstance(event, ButtonReleased):
            self._on_release(event.t)
        elif isinstance(event, Received):
            if self._conn is not None and event.link is self._conn.link:
                self._last_activity = self.clock()
                self._on_server(event.event, event.t)
        elif isinstance(event, LinkUp):
            if self._conn is not None and event.link is self._conn.link:
                self._conn.up_at = event.t
                log.info("connected to the agent")
        elif isinstance(event, LinkDown):
            if self._conn is not None and event.link is self._conn.link:
                self._on_link_down(event)
        elif isinstance(event, UplinkStarted):
            if self._turn is not None and self._turn.first_byte is None:
                self._turn.first_byte = event.t
        elif isinstance(event, DeviceChanged):
            self._on_device(event)
        else:
            self._on_other(event)

    def _on_other(self, event: object) -> None:
        name = type(event).__name__
        if name == "PlaybackStarted":
            self._on_playback_started(event)
        elif name == "PlaybackDrained":
            self._on_playback_drained(event)
        elif name == "PlaybackInterrupted":
            self._on_playback_interrupted(event)
        elif name == "FunctionResult":
            self._on_function_result(event)
        else:
            log.debug("ignored %s", name)

    # --- the button ----------------------------------------------------------------------

    def _on_press(self, t: float) -> None:
        self._last_activity = self.clock()
        if self.cfg.button.mode == "toggle" and self._conversation:
            self._end_conversation("ended by the button")
            return
        if self.state == "error" and self.clock() < self._auth_retry_at:
            # The key was refused a moment ago: say so again rather than hammer the service.
            self.speaker.chime("error")
            return
        interrupting = self.speaker.is_playing() or self.state in ("thinking", "speaking")
        if interrupting:
            self.speaker.interrupt()
        self._held = self.cfg.button.mode == "hold"
        self._conversation = self.cfg.button.mode == "toggle"
        self._released_while_connecting = False
        self._hangup_after_reply = False
        self.speaker.chime("press")
        self._begin_turn(t, interrupting)
        self.router.record_turn(True)
        if self._conn is not None and self._conn.ready:
            self._set_state("listening")
        else:
            self._ensure_connected()
            self._set_state("connecting")
        self._apply_audio()

    def _on_release(self, t: float) -> None:
        if self.cfg.button.mode != "hold" or not self._held:
            return
        self._held = False
        self._last_activity = self.clock()
        if self._turn is not None:
            self._turn.speech_end = t
        if self.state == "connecting":
            # The words are in the connect buffer; the turn is handed over once the link is ready.
            self._released_while_connecting = True
        elif self.state == "listening":
            self._set_state("thinking")
        self._apply_audio()

    def _begin_turn(self, t: float, interrupting: bool = False) -> None:
        if interrupting and self._turn is not None and not self._turn.logged:
            # Its line waits for the speaker's report of how fast the reply went quiet.
            self._interrupted = (self._turn, self.clock() + INTERRUPT_REPORT_WAIT)
        else:
            self._log_turn()
        self._turn_count += 1
        self._turn = Turn(self._turn_count, press=t)
        self._turn_started = self.clock()
        self.turns.append(self._turn)
        del self.turns[:-100]

    def _on_playback_interrupted(self, ev: Any) -> None:
        if not getattr(ev, "discarded_bytes", 1):
            return  # nothing was playing: no figure to report
        turn = self._interrupted[0] if self._interrupted is not None else self._turn
        if turn is not None:
            turn.interrupt_to_silence = ev.t_dropped - ev.t_request
        self._flush_interrupted()

    def _flush_interrupted(self) -> None:
        if self._interrupted is not None:
            turn, self._interrupted = self._interrupted[0], None
            if not turn.logged:
                turn.logged = True
                log.info("%s", turn.line())

    def _log_turn(self) -> None:
        if self._turn is not None and not self._turn.logged:
            self._turn.logged = True
            log.info("%s", self._turn.line())

    # --- the connection ------------------------------------------------------------------

    def _ensure_connected(self) -> None:
        if self._conn is not None:
            return
        if self._conversation_id is None and self.convlog is not None:
            self._conversation_id = self.convlog.new_conversation()
        cfg = self.cfg
        if self._context and cfg.agent.greeting:
            # Carrying on after a drop: the agent must not greet the user again mid-conversation.
            cfg = dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, greeting=""))
        dialect = protocol.Dialect(cfg.agent.dialect)
        settings = protocol.encode_settings(cfg, dialect, tuple(self._context))
        link = self.connect(settings)
        self._conn = _Conn(link)
        self.router.reset(link)
        self._uplink = None  # force the uplink mode to be re-applied for the new link
        self._deadline = self.clock() + cfg.agent.connect_timeout + cfg.session.reply_timeout

    def _close_link(self) -> None:
        if self._conn is not None:
            self._conn.link.close()
            self._conn = None
            self.router.reset(None)
        self._apply_audio()

    def _on_ready(self) -> None:
        assert self._conn is not None
        self._conn.ready = True
        self._deadline = None
        self._auth_failures = 0
        self._backoff = None
        self._reconnect_at = None
        if self._offline_since is not None:
            log.info("reconnected after %.1f s", self.clock() - self._offline_since)
            self._offline_since = None
        if self.state in ("connecting", "offline"):
            if self._held or (self._conversation and not self._released_while_connecting):
                self._set_state("listening")
            elif self._released_while_connecting:
                self._set_state("thinking")
            else:
                self._set_state("listening" if self._conversation else "idle")
        self._apply_audio()

    def _on_link_down(self, event: Any) -> None:
        was_ready = self._conn is not None and self._conn.ready
        self._conn = None
        self.router.reset(None)
        if event.requested:
            self._apply_audio()
            return
        in_turn = self.state in ("connecting", "listening", "thinking", "speaking") or self._conversation
        if event.status in (401, 403):
            self._auth_failures += 1
            delay = min(self.cfg.session.reconnect_initial * 2 ** self._auth_failures,
                        self.cfg.session.reconnect_max)
            self._auth_retry_at = self.clock() + delay
            log.error("%s; check the key (next try allowed in %.0f s)", event.reason, delay)
            self._fail(f"{event.reason}; check the key (next try allowed in {delay:.0f} s)")
            return
        log.warning("agent link down: %s", event.reason)
        self.last_error = event.reason
        if in_turn or self.state == "offline":
            self._go_offline(event.reason)
        else:
            # A warm socket closed while idle: nothing to recover, the next press reconnects.
            log.info("idle connection closed; the next press reconnects")
            if was_ready:
                self._set_state("idle")
            self._apply_audio()

    def _go_offline(self, reason: str) -> None:
        now = self.clock()
        if self._offline_since is None:
            self._offline_since = now
            self._backoff = exponential_backoff(self.cfg.session.reconnect_initial,
                                                self.cfg.session.reconnect_max, self.rng)
        self._held = False
        self._released_while_connecting = False
        self._deadline = None
        assert self._backoff is not None
        delay = next(self._backoff)
        if now - self._offline_since > RECONNECT_WINDOW:
            log.warning("giving up reconnecting after %.0f s: %s", now - self._offline_since, reason)
            self._offline_since = None
            self._conversation = False
            self._set_state("idle")
        else:
            self._reconnect_at = now + delay
            log.info("reconnecting in %.1f s", delay)
            self._set_state("offline")
        self._apply_audio()

    # --- server events -------------------------------------------------------------------

    def _on_server(self, ev: protocol.ServerEvent, t: float) -> None:
        if isinstance(ev, protocol.SettingsApplied):
            self._on_ready()
        elif isinstance(ev, protocol.ConversationText):
            self._on_text(ev)
        elif isinstance(ev, protocol.UserStartedSpeaking):
            if self.state in ("speaking", "thinking") and self._conversation:
                self._set_state("listening")
                self._apply_audio()
        elif isinstance(ev, protocol.AgentStartedSpeaking):
            if self._turn is not None:
                self._turn.agent = ev
        elif isinstance(ev, protocol.AgentAudioDone):
            self._audio_done = True
        elif isinstance(ev, protocol.FunctionCallRequest):
            self._on_function_request(ev)
        elif isinstance(ev, protocol.AgentError):
            log.error("agent error %s: %s", ev.code or "(no code)", ev.description)
            self._fail(f"agent error {ev.code}: {ev.description}".strip())
        elif isinstance(ev, protocol.AgentWarning):
            log.warning("agent warning %s: %s", ev.code or "(no code)", ev.description)
        elif isinstance(ev, protocol.UnknownEvent):
            log.info("ignored an unknown message type from the agent: %s", ev.type[:64])
        elif isinstance(ev, protocol.InjectionRefused):
            log.info("the agent refused an injected message: %s", ev.message)
        if self.state == "thinking" and self._deadline is not None:
            # Any sign of life from the agent restarts the wait for its reply.
            self._deadline = self.clock() + self.cfg.session.reply_timeout

    def _on_text(self, ev: protocol.ConversationText) -> None:
        # Transcripts stay out of the system journal at INFO: they are the user's words.
        log.debug("%s: %s", ev.role, ev.content)
        if self.on_text is not None:
            self.on_text(ev.role, ev.content)
        self._context.append(protocol.ContextItem(ev.role, ev.content))
        del self._context[:-MAX_CONTEXT]
        if self.convlog is not None:
            self.convlog.append("text", role=ev.role, content=ev.content)
        if ev.role == "user" and self._conversation and self.state == "listening":
            if self._turn is not None:
                self._turn.speech_end = self.clock()
            self._set_state("thinking")
            self._apply_audio()

    def _on_function_request(self, ev: protocol.FunctionCallRequest) -> None:
        for call in ev.calls:
            if self.convlog is not None:
                self.convlog.append("function_call", id=call.id, name=call.name,
                                    arguments=dict(call.arguments), client_side=call.client_side)
            if not call.client_side:
                continue  # the server runs it; nothing to do here
            if self.runner is None:
                self._send_function_result(call.id, call.name, '{"error": "no local functions"}')
                continue
            self.runner.run(call.id, call.name, call.arguments, call.arguments_error)

    def _on_function_result(self, res: Any) -> None:
        if self.convlog is not None:
            self.convlog.append("function_result", id=res.call_id, name=res.name, ok=res.ok,
                                content=res.content)
        if res.end_conversation:
            self._hangup_after_reply = True
        self._send_function_result(res.call_id, res.name, res.content)

    def _send_function_result(self, call_id: str, name: str, content: str) -> None:
        if self._conn is None:
            log.warning("function %s finished after the connection closed; result dropped", name)
            return
        dialect = protocol.Dialect(self.cfg.agent.dialect)
        self._conn.link.send_text(protocol.encode_function_response(dialect, call_id, name, content))

    # --- playback ------------------------------------------------------------------------

    def _on_playback_started(self, ev: Any) -> None:
        self._drained_at = None
        if self._turn is not None and self._turn.first_audio is None:
            self._turn.first_audio = ev.t
        # Even with the button still held: the agent's end-of-turn detection may answer before
        # the release, and the LEDs must say what the user hears.
        if self.state in ("thinking", "idle", "listening"):
            self._set_state("speaking")
            self._apply_audio()

    def _on_playback_drained(self, ev: Any) -> None:
        if self._turn is not None:
            self._turn.underruns += getattr(ev, "underruns", 0)
        if self.state != "speaking":
            return
        # The speaker knows whether AgentAudioDone closed *this* reply; the session-level flag is
        # only a fallback for a speaker that cannot tell.
        ended = getattr(ev, "ended", None)
        if ended or (ended is None and self._audio_done):
            self._reply_finished()
        else:
            self._drained_at = self.clock()

    def _reply_finished(self) -> None:
        self._drained_at = None
        self._audio_done = False
        self._log_turn()
        if self._hangup_after_reply:
            self._hangup_after_reply = False
            self._end_conversation("the agent ended the conversation", close=True)
            return
        self._set_state("listening" if self._conversation else "idle")
        self._apply_audio()

    def _end_conversation(self, why: str, close: bool = False) -> None:
        log.info("conversation over: %s", why)
        self.speaker.interrupt()
        self.speaker.chime("goodbye")
        self._conversation = False
        self._held = False
        self._log_turn()
        if self.state == "offline":
            # Nobody is waiting for the conversation any more: stop trying to bring it back.
            self._reconnect_at = None
            self._offline_since = None
            close = True
        if close:
            self._close_link()
            self._forget_conversation()
        self._set_state("idle")
        self._apply_audio()

    def _forget_conversation(self) -> None:
        self._context.clear()
        self._conversation_id = None

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.speaker.interrupt()
        self.speaker.chime("error")
        self._held = False
        self._conversation = False
        self._offline_since = None
        self._reconnect_at = None
        self._close_link()
        self._forget_conversation()
        self._deadline = self.clock() + ERROR_HOLD
        self._set_state("error")
        self._apply_audio()

    def _on_device(self, ev: DeviceChanged) -> None:
        if ev.ok:
            self._devices.pop(ev.device, None)
            log.info("%s is back", ev.device)
        else:
            self._devices[ev.device] = ev.message
            log.warning("%s unavailable: %s", ev.device, ev.message)
        self._publish_status()

    # --- time ----------------------------------------------------------------------------

    def _next_wait(self) -> float:
        """Seconds until the earliest deadline tick() acts on (at most TICK)."""
        now = self.clock()
        due = [self._reconnect_at, self._deadline]
        if self._interrupted is not None:
            due.append(self._interrupted[1])
        if self._drained_at is not None:
            due.append(self._drained_at + DRAIN_GRACE)
        if self.watchdog_interval and self.status is not None:
            due.append(self._last_watchdog + self.watchdog_interval)
        if self.state == "idle" and self._conn is not None and self._conn.ready:
            due.append(self._last_activity + self.cfg.session.idle_timeout)
        if self.state == "listening" and self._held and self._turn_started is not None:
            due.append(self._turn_started + self.cfg.session.max_turn_seconds)
        waits = [t - now for t in due if t is not None]
        return min([TICK, *waits]) if waits and min(waits) > 0.005 else (0.005 if waits else TICK)

    def tick(self) -> None:
        """Deadlines and the watchdog; called after every event and every TICK."""
        now = self.clock()
        due = self.watchdog_interval and now - self._last_watchdog >= self.watchdog_interval
        if due and self.status is not None:
            self._last_watchdog = now
            self.status.watchdog()
        if self._interrupted is not None and now >= self._interrupted[1]:
            self._flush_interrupted()
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            if self._conn is None:  # a press may have reconnected already
                self._ensure_connected()
                self._apply_audio()
        if self._drained_at is not None and now - self._drained_at >= DRAIN_GRACE:
            self._reply_finished()
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._on_deadline()
        if (self.state == "listening" and self._held and self._turn_started is not None
                and now - self._turn_started > self.cfg.session.max_turn_seconds):
            log.warning("button held for over %.0f s: handing the turn over",
                        self.cfg.session.max_turn_seconds)
            self._on_release(now)
        if (self.state == "idle" and self._conn is not None and self._conn.ready
                and now - self._last_activity >= self.cfg.session.idle_timeout):
            if self.speaker.is_playing():
                self._last_activity = now  # the agent is still talking: that is activity
            else:
                log.info("closing the idle connection after %.0f s", now - self._last_activity)
                self._close_link()
                self._forget_conversation()

    def _on_deadline(self) -> None:
        if self.state == "error":
            self._set_state("idle")
            self._apply_audio()
        elif self.state in ("connecting", "offline") and self._conn is not None and not self._conn.ready:
            reason = "the agent did not apply the settings in time"
            log.warning("%s", reason)
            link = self._conn.link
            self._conn = None
            link.close()
            self._go_offline(reason)
        elif self.state == "thinking":
            # A healthy agent answers or at least says something; silence this long means the
            # link is suspect (a stalled server may still answer pings), so start afresh.
            log.warning("no reply from the agent within %.0f s; reconnecting at the next press",
                        self.cfg.session.reply_timeout)
            self.last_error = "no reply from the agent"
            self._log_turn()
            self._conversation = False
            self._close_link()
            self._set_state("idle")
            self._apply_audio()

    # --- outputs -------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        log.info("state %s → %s", self.state, state)
        if self.state == "listening":
            self.router.record_turn(False)
        self.state = state
        self._last_activity = self.clock()
        if state == "thinking":
            self._audio_done = False
            self._deadline = self.clock() + self.cfg.session.reply_timeout
        elif state in ("listening", "speaking", "idle") and self._conn is not None and self._conn.ready:
            self._deadline = None
        self._show(state)

    def _show(self, state: str) -> None:
        self.leds.show(state)
        self._publish_status()
        if self.on_state is not None:
            self.on_state(state)

    def _publish_status(self) -> None:
        if self.status is None:
            return
        text = self.state
        if self._devices:
            text += "; " + "; ".join(f"{d}: {m}" for d, m in sorted(self._devices.items()))
        if self.last_error:
            text += f"; last error: {self.last_error}"
        self.status.status(text[:200])

    def _apply_audio(self) -> None:
        """Derive the mic gate and the uplink mode from the state (only changes are sent)."""
        ready = self._conn is not None and self._conn.ready
        full = self.cfg.audio.duplex == "full"
        if self.cfg.button.mode == "hold":
            live = self._held or (full and ready)
        else:
            live = self._conversation and (full or self.state != "speaking")
        if self._conn is None:
            uplink = "off"
        elif ready:
            uplink = "stream"
        elif self._held or self._conversation or self._released_while_connecting:
            uplink = "buffer"
        else:
            uplink = "off"
        if live != self._gate_live:
            self._gate_live = live
            self.mic.set_gate(live)
        if uplink != self._uplink:
            self._uplink = uplink
            {"off": self.mic.uplink_off, "buffer": self.mic.uplink_buffer,
             "stream": self.mic.uplink_stream}[uplink]()
