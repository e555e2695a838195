"""The conversation state machine: the sole owner of state, handling one event at a time; each
event goes to the part whose job it is (the floor, the link's keeper, the agent's messages)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import timers
from .config import Config, ProviderSecrets
from .connection import Connection, Link, Log, Runner
from .events import (
    AgentConnected,
    AgentDisconnected,
    AgentEventReceived,
    ButtonPressed,
    ButtonReleased,
    DeviceChanged,
    Event,
    FunctionFinished,
    ListenChanged,
    PlaybackDrained,
    PlaybackInterrupted,
    PlaybackStarted,
    State,
    TurnAudioSent,
    UplinkStarted,
)
from .floor import Floor
from .inbox import Inbox
from .keeper import LinkKeeper
from .playback import SPEAKING_STALL, ReplyTracker
from .reconnect import Reconnect
from .router import Router
from .seams import LedControl, MicControl, SpeakerControl
from .serverevents import ServerEvents
from .statusline import StatusLine, StatusSink
from .turnend import TurnEnd
from .turns import Turn, TurnLog
from .worker import Worker

log = logging.getLogger(__name__)

# Each deadline's action clears its own; past this many in one tick one does not (a bug).
MAX_ACTIONS_PER_TICK = 16


@dataclass
class Session:
    """Owns the conversation state; every change happens on its own thread, one event at a time."""

    cfg: Config
    connect: Callable[[str], Link]  # settings text -> an unstarted link
    mic: MicControl
    speaker: SpeakerControl
    leds: LedControl
    router: Router
    runner: Runner | None = None
    convlog: Log | None = None
    status: StatusSink | None = None
    on_state: Callable[[State], None] | None = None
    on_text: Callable[[str, str], None] | None = None
    clock: Callable[[], float] = time.monotonic
    rng: Callable[[], float] = random.random
    watchdog_interval: float | None = None
    secrets: ProviderSecrets | None = None  # the providers' secrets the settings carry

    def __post_init__(self) -> None:
        self._inbox = Inbox()
        self._worker = Worker("session", self._run)
        self._link = Connection(self.cfg, self.connect, self.router,
                                Reconnect(self.cfg.session, self.clock, self.rng), self.clock,
                                runner=self.runner, convlog=self.convlog, secrets=self.secrets)
        self._reconnect = self._link.reconnect
        self._turns = TurnLog(self.clock)
        self._reply = ReplyTracker()
        self._status_line = StatusLine(self.status, self.watchdog_interval, self.clock)
        self._floor = Floor(self.cfg, self._link, self.mic, self.leds, self.router,
                            self._status_line, self.clock, self.on_state)
        self._turn_end = TurnEnd(self.mic, self._link.end_turn, self.clock)
        self._keeper = LinkKeeper(self._floor, self._link, self._turn_end, self.speaker,
                                  self._reply, self.clock)
        self._server = ServerEvents(self._floor, self._link, self._keeper, self._reply,
                                    self._turns, self.clock, self.on_text)

    # --- thread --------------------------------------------------------------------------

    def post(self, event: Event) -> None:
        """Any thread: hand an event to the session; never blocks (a flooding agent loses its link)."""
        self._inbox.post(event)

    def start(self) -> None:
        self._floor.show(self.state)
        self._floor.apply_audio()
        self._worker.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Idempotent: stop the loop and close the socket without draining anything."""
        # The sentinel wakes the loop at once.
        stopped = self._worker.stop(self._inbox.wake, timeout)
        # Only the link itself (its close() is thread-safe): the connection's own records belong
        # to the session thread, which may not have stopped.
        link = self._link.link
        if link is not None:
            link.close()
        return stopped

    def _run(self) -> None:
        while not self._worker.stopping.is_set():
            event = self._inbox.get(self._next_wait())
            if event is not None:
                self.handle(event)
            self.tick()

    # --- what others may read (any thread; plain attribute reads) ------------------------

    @property
    def state(self) -> State:
        """The conversation's state now."""
        return self._floor.state

    @property
    def last_error(self) -> str:
        """What went wrong last, until a reply is heard ("" when nothing did)."""
        return self._floor.last_error

    @property
    def link(self) -> Link | None:
        """The current agent link, if any."""
        return self._link.link

    @property
    def connected(self) -> bool:
        """Whether a link's settings are applied now."""
        return self._floor.connected

    def connected_seconds(self) -> float:
        """Seconds a socket was open since start: what the agent bills."""
        return self._link.connected_seconds()

    @property
    def inbox_peak(self) -> int:
        """The most agent events ever waiting in the inbox (figures)."""
        return self._inbox.peak

    @property
    def turns(self) -> list[Turn]:
        """The recent turns, oldest first."""
        return self._turns.turns

    # --- the dispatcher ------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Apply one event (session thread only)."""
        match event:
            case ButtonPressed(t=t):
                self._on_press(t)
            case ButtonReleased(t=t):
                self._on_release(t)
            case AgentEventReceived(link=link, event=server_event):
                if self._link.is_current(link):
                    self._floor.touch()
                    self._server.handle(server_event)
            case AgentConnected(link=link, t=t):
                if self._link.is_current(link):
                    self._link.opened(t)
                    log.info("connected to the agent")
            case AgentDisconnected(link=link):
                if self._link.is_current(link):
                    self._keeper.down(event)
            case UplinkStarted(t=t):
                self._turns.uplink_started(t)
            case TurnAudioSent(number=number):
                self._turn_end.audio_sent(number)
            case DeviceChanged():
                self._on_device(event)
            case PlaybackStarted():
                self._on_playback_started(event)
            case PlaybackDrained():
                self._on_playback_drained(event)
            case PlaybackInterrupted():
                self._on_playback_interrupted(event)
            case FunctionFinished():
                if self._link.answer(event) and event.end_conversation:
                    self._floor.hangup_after_reply = True
            case ListenChanged(cfg=cfg):
                self.cfg = self._floor.cfg = cfg
                self._link.listen_changed(cfg)
            case _:
                log.warning("ignored an unknown event %s", type(event).__name__)

    # --- the button ----------------------------------------------------------------------

    def _on_press(self, t: float) -> None:
        self._floor.touch()
        self._turn_end.send_owed()  # the last turn ends before this one's words (best effort)
        toggle = self.cfg.button.mode == "toggle"
        busy = self.state in (State.THINKING, State.SPEAKING)
        if toggle and self._floor.conversation and not busy:
            # A press while the agent talks or thinks interrupts it (below); any other press
            # of a hands-free conversation ends it.
            self._end_conversation("ended by the button")
            return
        if self._reconnect.key_blocked():
            # The key was refused a moment ago: say so again rather than hammer the service.
            self.speaker.chime("error")
            return
        interrupting = busy or self._reply.playing or self.speaker.is_playing()
        if interrupting:
            self.router.barge_in()
        self._reply.silent()
        self._floor.held = not toggle
        self._floor.conversation = toggle
        self._floor.handing_over = False
        self._floor.hangup_after_reply = False
        self.speaker.chime("press")
        self._turns.begin(t, interrupting)
        self._floor.heard = False
        self.router.record_turn(True)
        if self.connected:
            self._floor.go(State.LISTENING)
            return
        if self._link.link is None:
            self._reconnect.cancel()  # this press connects now: no scheduled attempt needed
            if not self._keeper.open():
                return
        self._floor.go(State.CONNECTING)

    def _on_release(self, t: float) -> None:
        if self.cfg.button.mode != "hold" or not self._floor.held:
            return
        self._floor.held = False
        self._floor.touch()
        self._turns.speech_ended(t)
        if self.state is State.CONNECTING:
            # The words are in the connect buffer; the turn is handed over once the link is ready.
            self._floor.handing_over = True
        elif self.state is State.LISTENING:
            self._floor.set_state(State.THINKING)
        self._floor.apply_audio()
        if self.state is not State.CONNECTING:
            # Whatever the state (a late reply to the last turn may be sounding), the release
            # ends the user's turn; with none in progress the server ignores it.
            self._turn_end.owe()

    # --- playback ------------------------------------------------------------------------

    def _on_playback_started(self, ev: PlaybackStarted) -> None:
        self._reply.started(self.speaker.progress(), self.clock())
        self._turns.audio_started(ev.t)
        # Even with the button still held: the agent's end-of-turn detection may answer before
        # the release, and the LEDs must say what the user hears.
        if self.state in (State.THINKING, State.IDLE, State.LISTENING):
            self._floor.go(State.SPEAKING)

    def _on_playback_drained(self, ev: PlaybackDrained) -> None:
        self._turns.underran(ev.underruns)
        self._reply.stopped()
        if self.state is State.THINKING and ev.ended and not ev.frames:
            # The speaker gave a reply up without playing any of it (the device is missing):
            # it is over as far as the user can tell; waiting for it would only time out.
            self._reply_finished()
            return
        if self.state is not State.SPEAKING:
            return
        # Only the agent's own mark says the reply is complete; audio that merely ran dry may
        # resume (a pause between sentences), so it gets a grace before the reply counts as over.
        if ev.ended:
            self._reply_finished()
        else:
            self._reply.ran_dry(self.clock())

    def _on_playback_interrupted(self, ev: PlaybackInterrupted) -> None:
        self._reply.stopped()
        if ev.discarded_bytes:
            self._turns.silenced(ev.t_dropped - ev.t_request)
        if self.state is State.SPEAKING:
            self._reply_finished()  # cut short: nothing sounds any more

    def _reply_finished(self) -> None:
        self._reply.silent()
        if self._turns.reply_heard:
            self._floor.last_error = ""  # a reply was heard: whatever went wrong before is over
        self._turns.log()
        if self._floor.hangup_after_reply:
            self._floor.hangup_after_reply = False
            self._end_conversation("the agent ended the conversation", close=True)
            return
        self._floor.go(State.LISTENING if self._floor.held or self._floor.conversation else State.IDLE)

    def _end_conversation(self, why: str, close: bool = False) -> None:
        log.info("conversation over: %s", why)
        self.speaker.interrupt()
        self._reply.silent()
        self.speaker.chime("goodbye")
        self._floor.conversation = False
        self._floor.held = False
        self._turns.log()
        if self.state is State.OFFLINE:
            # Nobody is waiting for the conversation any more: stop trying to bring it back.
            self._reconnect.cancel()
            close = True
        if close:
            self._keeper.hang_up()
        self._floor.go(State.IDLE)

    def _on_device(self, ev: DeviceChanged) -> None:
        self._status_line.device_changed(ev)
        if ev.ok:
            log.info("%s is back", ev.device)
        else:
            log.warning("%s unavailable: %s", ev.device, ev.message)
        self._floor.publish_status()

    # --- time ----------------------------------------------------------------------------

    def _timers(self) -> list[tuple[float, timers.Action]]:
        """Every pending deadline and what to do when it comes; each action clears its own."""
        s = self.cfg.session
        return timers.pending([
            (self._reconnect.next_try, self._keeper.retry),
            (self._turn_end.at, self._turn_end.timed_out),
            (self._floor.deadline, self._on_deadline),
            (self._turns.report_due, self._turns.flush_interrupted),
            (self._link.deadline if self._link.pending else None, self._keeper.connect_timed_out),
            (self._reply.over_at(), self._reply_finished),
            (self._status_line.watchdog_due(), self._status_line.pet_watchdog),
            (self._keeper.idle_close_at(), self._idle_timed_out),
            (self._turns.started + s.max_turn_seconds
             if self.state is State.LISTENING and self._floor.held and self._turns.started is not None
             else None, self._turn_too_long),
            (self._reply.stall_check_at(self.state is State.SPEAKING), self._check_playback),
        ])

    def _next_wait(self) -> float:
        """Seconds until the earliest deadline (at most timers.TICK)."""
        return timers.next_wait((at for at, _ in self._timers()), self.clock())

    def tick(self) -> None:
        """Act on every deadline that has come; called after every event and every wake-up."""
        for _ in range(MAX_ACTIONS_PER_TICK):
            now = self.clock()
            due = timers.first_due(self._timers(), now)
            if due is None:
                return
            due()
        log.error("deadlines keep firing; a timer is not cleared by its action")

    def _check_playback(self) -> None:
        if not self._reply.stalled(self.speaker.progress(), self.clock()):
            return
        log.error("the speaker has written nothing for %.0f s: giving the reply up", SPEAKING_STALL)
        self._reply_finished()
        self._floor.last_error = "the speaker stopped playing"
        self._floor.publish_status()

    def _turn_too_long(self) -> None:
        log.warning("button held for over %.0f s: handing the turn over",
                    self.cfg.session.max_turn_seconds)
        self._on_release(self.clock())

    def _idle_timed_out(self) -> None:
        if self.speaker.is_playing():
            self._floor.touch()  # something still sounds: that is activity
        elif self.state is State.LISTENING and self._floor.conversation:
            self._end_conversation(f"nothing said for {self.cfg.session.idle_timeout:.0f} s",
                                   close=True)
        else:
            self._keeper.close_idle()

    def _on_deadline(self) -> None:
        """The current state's own timeout: the error pattern's hold, or the wait for a reply."""
        self._floor.deadline = None
        if self.state is State.ERROR:
            self._floor.go(State.IDLE)
        elif self.state is State.THINKING and self._link.owes_calls:
            # A local function is still running (each is bounded by its own timeout, and its
            # answer restarts the wait): the agent cannot reply before it has the result.
            self._floor.wait_for_reply()
        elif self.state is State.THINKING and self._floor.hangup_after_reply:
            self._end_conversation("the agent ended the conversation", close=True)
        elif self.state is State.THINKING and not self._floor.heard:
            # A click with nothing said: the server had nothing to answer. The link is healthy.
            log.info("nothing was heard in this turn")
            self._turns.log()
            self._floor.go(State.LISTENING if self._floor.conversation else State.IDLE)
        elif self.state is State.THINKING:
            # A healthy agent answers or at least says something; silence this long means the
            # link is suspect (a stalled server may still answer pings), so start afresh.
            log.warning("no reply from the agent within %.0f s; reconnecting at the next press",
                        self.cfg.session.reply_timeout)
            self._floor.last_error = "no reply from the agent"
            self._turns.log()
            self._floor.conversation = False
            self._keeper.close()
            self._floor.go(State.IDLE)
