"""A model-based test of the conversation: random interleavings of button edges, server events
and faults, on the real Session, Router and event classes, checked after every step against what
a user would state.

The speaker is modelled (`Playback` below) rather than run: the test must decide when audio
finishes playing, and the real playback thread's own behaviour is held against real alsa-lib in
the speaker's component tests. The model follows the same contract: replies are numbered as the
router opens them, an interrupt silences at once, and a drain says whether the reply's end mark
was played through.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from speakerd import connection
from speakerd import protocol as p
from speakerd.config import Config, parse_config
from speakerd.events import (
    AgentConnected,
    AgentDisconnected,
    AgentEventReceived,
    ButtonPressed,
    ButtonReleased,
    DeviceChanged,
    Event,
    FunctionFinished,
    PlaybackDrained,
    PlaybackInterrupted,
    PlaybackStarted,
    State,
    TurnAudioSent,
)
from speakerd.keeper import ERROR_HOLD
from speakerd.playback import DRAIN_GRACE
from speakerd.reconnect import RECONNECT_WINDOW
from speakerd.router import ReplyPlayer, Router
from speakerd.seams import LedControl, MicControl, SpeakerControl
from speakerd.session import Session
from speakerd.uplink import UplinkMode
from tests.support.shapes import shape_differences

# A little slack over each bound: tick() runs when the test advances the clock, not continuously.
SLACK = 0.01


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLink:
    """One connection as the session sees it; records what the daemon sent on it."""

    def __init__(self, settings: str) -> None:
        self.settings = json.loads(settings)
        self.started = False
        self.closed = False
        self.applied = False
        self.failed: list[str] = []
        self.texts: list[dict[str, Any]] = []

    def start(self) -> FakeLink:
        self.started = True
        return self

    def send_audio(self, pcm: bytes) -> None:
        pass

    def send_text(self, text: str, *, after_audio: bool = False) -> None:
        self.texts.append(json.loads(text))

    def close(self) -> None:
        self.closed = True

    def fail(self, reason: str) -> None:
        self.failed.append(reason)

    def answers(self, call_id: str) -> int:
        return sum(1 for t in self.texts if t["type"] == "FunctionCallResponse" and t["id"] == call_id)


class FakeMic:
    """What the session told the mic: the gate, the uplink mode and the batch."""

    def __init__(self) -> None:
        self.live = False
        self.mode = UplinkMode.OFF
        self.batched = False
        self.turn_ends = 0  # turn ends the session asked for

    def set_gate(self, live: bool) -> None:
        self.live = live

    def ask_turn_end(self) -> int:
        self.turn_ends += 1
        return self.turn_ends

    def set_uplink(self, mode: UplinkMode) -> None:
        self.mode = mode

    def set_batched(self, batched: bool) -> None:
        self.batched = batched


class FakeLeds:
    def __init__(self) -> None:
        self.shown: list[State] = []

    def show(self, state: State) -> None:
        self.shown.append(state)


# A local call's own bound (ActionConfig.timeout's default): the runner answers by then.
CALL_TIMEOUT = 5.0


class FakeRunner:
    """Records the calls the session starts and withdraws; the test decides when one finishes,
    and the runner's own timeout answers one that takes too long."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.running: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.cancelled: list[str] = []

    def run(self, call_id: str, name: str, arguments: Any, arguments_error: str = "",
            request: object = None) -> None:
        self.running[call_id] = name
        self.started[call_id] = self.clock()

    def overdue(self) -> list[str]:
        return [c for c in self.running if self.clock() - self.started[c] >= CALL_TIMEOUT]

    def cancel(self, call_id: str) -> None:
        # The call stays finishable: its result may already be on the way (a race the session
        # must handle by never sending it).
        self.cancelled.append(call_id)


@dataclass
class _Item:
    reply: int
    end: bool = False
    turn: int = -1  # the server turn whose audio this is


@dataclass
class Playback:
    """The speaker's contract, with playback time under the test's control."""

    clock: Clock
    late_timeout: float
    reply: int = 0
    open: bool = False
    discarding: bool = False
    late_deadline: float = 0.0
    items: list[_Item] = field(default_factory=list)
    cur: int | None = None
    started: bool = False
    ended: int | None = None
    interrupt_pending: bool = False
    interrupt_upto: int = 0
    cut: bool = False  # interrupted since the last reply started
    periods: int = 0   # grows while audio sounds (time passes in the test's advance())
    # The server turn each queued item belongs to (read from the audio's first byte), and the
    # newest turn the user cut off: its audio must never sound afterwards.
    tags: dict[int, int] = field(default_factory=dict)
    cut_turn: int = -1
    sounded: list[int] = field(default_factory=list)
    last_drain: PlaybackDrained | None = None
    out: list[Event] = field(default_factory=list)

    # --- what the router and the session call ---------------------------------------------

    def begin_reply(self) -> int:
        self.reply += 1
        self.open, self.discarding = True, False
        return self.reply

    def play(self, pcm: bytes) -> bool:
        if self.discarding:
            if self.clock() < self.late_deadline:
                self.late_deadline = self.clock() + self.late_timeout
                return False
            self.discarding = False
        if not self.open:
            self.reply += 1
            self.open = True
        self.items.append(_Item(self.reply, turn=pcm[0]))
        return True

    def end_reply(self) -> None:
        if self.open and not self.discarding:
            self.items.append(_Item(self.reply, end=True))
            self.open = False

    def interrupt(self) -> None:
        # Silence is immediate (within a period); the event follows at the thread's next step.
        self.interrupt_pending = True
        self.cut = True
        self.interrupt_upto = self.reply
        self.discarding, self.open = True, False
        self.late_deadline = self.clock() + self.late_timeout
        self.cur = None

    def chime(self, name: str) -> None:
        pass

    def progress(self) -> int:
        return self.periods

    def is_playing(self) -> bool:
        return self.cur is not None or any(not i.end for i in self.items)

    # --- what the test does as the playback thread ----------------------------------------

    @property
    def audible(self) -> bool:
        return self.cur is not None

    def pump(self) -> None:
        """What the playback thread does at once: report an interrupt, start what is queued."""
        while self.interrupt_pending or self.items:
            self.step()

    def step(self) -> None:
        """Play one queued item, or report an interrupt, or drain what sounds."""
        t = self.clock()
        if self.interrupt_pending:
            self.interrupt_pending = False
            self.items = [i for i in self.items if i.reply > self.interrupt_upto]
            self.out.append(PlaybackInterrupted(t, t, 1))
            return
        if self.items:
            item = self.items.pop(0)
            if item.end:
                if item.reply == self.cur:
                    self.ended = item.reply
                return
            if item.reply != self.cur:
                self.cur, self.started = item.reply, False
            self.sounded.append(item.turn)
            if not self.started:
                self.started = True
                self.cut = False
                self.out.append(PlaybackStarted(item.reply, t))
            return
        self.drain()

    def drain(self) -> None:
        if self.cur is not None and not self.items:
            reply, self.cur = self.cur, None
            if self.reply == reply:
                self.open = False
            self.last_drain = PlaybackDrained(reply, self.clock(), 0, 0, self.ended == reply)
            self.out.append(self.last_drain)

    def lose_device(self) -> None:
        """The device went away mid-reply: the rest of it is refused, the reply is over."""
        if self.cur is not None:
            reply = self.cur
            self.items = [i for i in self.items if i.reply > reply]
            if self.reply == reply:
                self.discarding, self.open = True, False
                self.late_deadline = self.clock() + self.late_timeout
            self.cur = None
            self.last_drain = PlaybackDrained(reply, self.clock(), 0, 0, True)
            self.out.append(self.last_drain)


class Conversation(RuleBasedStateMachine):
    """The user, the agent server and the devices, acting on one real Session in random order."""

    @initialize(mode=st.sampled_from(["hold", "toggle"]), duplex=st.sampled_from(["half", "full"]),
                idle=st.sampled_from([30.0, 5.0]))
    def start(self, mode: str, duplex: str, idle: float) -> None:
        self.cfg: Config = parse_config({"button": {"mode": mode}, "audio": {"duplex": duplex},
                                         "session": {"idle_timeout": idle},
                                         "functions": [{"name": "lamp", "action": {"type": "gpio",
                                                                                   "pin": "GPIO5"}}]})
        self.clock = Clock()
        self.mic = FakeMic()
        self.leds = FakeLeds()
        self.runner = FakeRunner(self.clock)
        self.links: list[FakeLink] = []
        self.presses = 0  # button presses so far (each begins at most one turn)
        self.playback = Playback(self.clock, self.cfg.session.late_audio_timeout)
        self.router = Router(self.playback)
        self.session = Session(self.cfg, connect=self._connect, mic=self.mic, speaker=self.playback,
                               leds=self.leds, router=self.router, runner=self.runner,
                               on_state=self._shown, clock=self.clock, rng=lambda: 0.5)
        self.session._floor.show(self.session.state)
        self.session._floor.apply_audio()
        self.entered = (self.session.state, self.clock())
        self.last_server = self.last_press = self.clock()
        self.server_turn = 0
        self.drained_at: float | None = None
        self.held = False
        self.call_ids = (f"call-{n}" for n in itertools.count())
        self.calls: dict[str, tuple[FakeLink, int | None]] = {}  # id -> (asked on, answers at cancel)
        self.states: list[State] = [self.session.state]
        self._sounded_checked = 0

    # --- plumbing ----------------------------------------------------------------------

    def _shown(self, state: State) -> None:
        """What the LEDs say is already true of the microphone when they say it."""
        if state is State.LISTENING:
            assert self.mic.live, "listening shown with the mic gate shut"
        if state is State.SPEAKING and self.cfg.audio.duplex == "half":
            assert not self.mic.live, "speaking shown with the mic gate open"

    def _connect(self, settings: str) -> FakeLink:
        self.links.append(FakeLink(settings))
        self.server_turn += 1  # a new server: the old link's cut-off reply cannot come over it
        return self.links[-1]

    @property
    def link(self) -> FakeLink | None:
        return self.links[-1] if self.links and not self.links[-1].closed else None

    def handle(self, event: Event) -> None:
        before = self.session.state
        self.session.handle(event)
        self.session.tick()
        self._flush()
        self._note(before)

    def _flush(self) -> None:
        self.playback.pump()
        while self.playback.out:
            event = self.playback.out.pop(0)
            if isinstance(event, PlaybackDrained) and not event.ended:
                self.drained_at = self.clock()
            if isinstance(event, PlaybackStarted | PlaybackInterrupted):
                self.drained_at = None
            before = self.session.state
            self.session.handle(event)
            self.session.tick()
            self._note(before)
            self.playback.pump()

    def _note(self, before: State) -> None:
        after = self.session.state
        if before is State.SPEAKING and after in (State.IDLE, State.LISTENING) and not self.playback.cut:
            # A reply ends by its own mark, or after a pause longer than the grace; a pause
            # between two sentences must not end it (the mic would open under the agent's voice).
            drain = self.playback.last_drain
            assert drain is not None and (drain.ended or (
                self.drained_at is not None
                and self.clock() - self.drained_at >= DRAIN_GRACE - SLACK)), \
                "speaking ended at a pause in the reply"
        if self.session.state is not before:
            self.entered = (self.session.state, self.clock())
        if self.states[-1] is not self.session.state:
            self.states.append(self.session.state)

    def server(self, event: p.ServerEvent, link: FakeLink | None = None) -> None:
        link = link or self.link
        if link is None:
            return
        # agent-rx: the router first, then the session; an old link's receive thread may still
        # deliver after the swap, and both must ignore it.
        self.router.event(link, event)
        self.last_server = self.clock()
        self.handle(AgentEventReceived(link, event, self.clock()))

    # --- the user ------------------------------------------------------------------------

    @precondition(lambda self: not self.held)  # the button reports alternating edges
    @rule(server_ready=st.sampled_from([True, True, True, False]))
    def press(self, server_ready: bool = False) -> None:
        """A press; a healthy server then applies the settings of a link it opened at once."""
        if self.session.state in (State.THINKING, State.SPEAKING) or self.playback.audible:
            self.playback.cut_turn = self.server_turn  # the user takes the floor from this reply
        self.playback.interrupt()  # the button callback silences the speaker itself
        self.held = True
        self.presses += 1
        self.last_press = self.clock()
        self.handle(ButtonPressed(self.clock()))
        if server_ready and self.link is not None and not self.link.applied:
            self.settings_applied(late=False)

    @precondition(lambda self: self.held)
    @rule()
    def release(self) -> None:
        self.held = False
        self.last_press = self.clock()
        self.handle(ButtonReleased(self.clock()))

    @precondition(lambda self: self.mic.turn_ends > 0)
    @rule(data=st.data())
    def mic_sent_its_words(self, data: st.DataObject) -> None:
        """The mic answers a turn end it was asked for, the latest or an older one (a release's
        ForceEndTurn waits for the latest, or for its timeout)."""
        number = data.draw(st.integers(1, self.mic.turn_ends))
        self.handle(TurnAudioSent(number, self.clock()))

    # --- the agent server ------------------------------------------------------------------

    @precondition(lambda self: self.link is not None and not self.link.applied)
    @rule(late=st.booleans())
    def settings_applied(self, late: bool) -> None:
        link = self.link
        assert link is not None
        if late:
            self.advance(5.0)
            if link.closed:
                return
        link.applied = True
        self.handle(AgentConnected(link, self.clock()))
        self.server(p.SettingsApplied(), link)

    @rule(times=st.integers(1, 2))
    def user_started_speaking(self, times: int) -> None:
        for _ in range(times):  # the server may say it twice
            if self.mic.live and self.link is not None:
                self.playback.cut_turn = self.server_turn  # it abandons the reply it was giving
            self.server(p.UserStartedSpeaking())

    @rule()
    def user_text(self) -> None:
        self.server(p.ConversationText("user", "what is the weather"))

    @rule(announce=st.booleans())
    def reply_starts(self, announce: bool) -> None:
        self.server_turn += 1
        if announce:
            self.server(p.AgentStartedSpeaking(0.5, 0.2, 0.3))
        self.server(p.ConversationText("assistant", "it is sunny"))

    @rule(frames=st.integers(1, 3))
    def reply_audio(self, frames: int) -> None:
        link = self.link
        if link is not None:
            for _ in range(frames):
                self.router.audio(link, bytes([self.server_turn % 256]) + b"\x00" * 319)
            self._flush()

    @rule()
    def audio_done(self) -> None:
        self.server(p.AgentAudioDone())

    def stale_link_speaks(self) -> None:
        old = [link for link in self.links[:-1]]
        if old:
            self.server(p.ConversationText("assistant", "from a dead link"), old[-1])
            self.server(p.AgentAudioDone(), old[-1])

    @precondition(lambda self: self.link is not None and self.link.applied)
    @rule()
    def function_call(self) -> None:
        call_id = next(self.call_ids)
        assert self.link is not None
        self.calls[call_id] = (self.link, None)
        self.server(p.FunctionCallRequest((p.FunctionCall(call_id, "lamp", {}, True),)))

    @precondition(lambda self: bool(self.calls))
    @rule(data=st.data())
    def function_cancelled(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(sorted(self.calls)))
        link, _ = self.calls[call_id]
        self.calls[call_id] = (link, link.answers(call_id))
        self.server(p.FunctionCallCancelled((call_id,)), link)

    @precondition(lambda self: bool(self.runner.running))
    @rule(data=st.data())
    def function_finishes(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(sorted(self.runner.running)))
        name = self.runner.running.pop(call_id)
        self.handle(FunctionFinished(call_id, name, '{"ok": true}', True))
        link, at_cancel = self.calls[call_id]
        if at_cancel is None and link is self.link:
            assert link.answers(call_id) == 1, f"{call_id} answered {link.answers(call_id)} times"

    @rule(kind=st.sampled_from(["drop", "refused key", "server error", "agent error",
                                "speaker lost", "stale link"]))
    def fault(self, kind: str) -> None:
        link = self.link
        if kind == "speaker lost":
            self.speaker_lost()
        elif kind == "stale link":
            self.stale_link_speaks()
        elif kind == "agent error":
            self.server(p.AgentError("INTERNAL_SERVER_ERROR", "boom"))
        elif link is not None:
            link.closed = True
            status = {"drop": None, "refused key": 401, "server error": 500}[kind]
            self.handle(AgentDisconnected(link, self.clock(), "connection lost", status))

    @rule(done=st.booleans(), announce=st.booleans(), frames=st.integers(1, 3))
    def agent_replies(self, done: bool, announce: bool, frames: int) -> None:
        """A burst of a reply as the server sends it: its text, audio, maybe its end."""
        self.reply_starts(announce)
        self.reply_audio(frames)
        if done:
            self.audio_done()

    @rule()
    def user_says(self) -> None:
        """The server hears an utterance: onset, transcript, end of thought."""
        self.server(p.UserStartedSpeaking())
        self.user_text()
        self.server(p.EndOfThought())

    # --- the devices and time ------------------------------------------------------------

    @rule()
    def audio_runs_dry(self) -> None:
        """What was received has played out (a pause in the reply, or its end)."""
        if self.playback.audible:
            self.playback.periods += 1
        self.playback.drain()
        self._flush()

    def speaker_lost(self) -> None:
        self.handle(DeviceChanged("speaker", False, "gone (made so by the test)"))
        self.playback.lose_device()
        self._flush()
        self.handle(DeviceChanged("speaker", True, ""))

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.0, 5.0, 11.0, 31.0]))
    def advance(self, seconds: float) -> None:
        # Time passes: what was received plays out; then in small steps, as the session's own
        # timed wake-ups would come.
        self.audio_runs_dry()
        end = self.clock() + seconds
        while self.clock() < end:
            self.clock.now = min(end, self.clock() + 0.25)
            if self.playback.audible:
                self.playback.periods += 12
            for call_id in self.runner.overdue():
                name = self.runner.running.pop(call_id)
                self.last_server = self.clock()  # the answer restarts the agent's reply wait
                self.handle(FunctionFinished(call_id, name, '{"error": "timed out"}', False))
            before = self.session.state
            self.session.tick()
            self._flush()
            self._note(before)

    # --- what a user would say --------------------------------------------------------------

    @invariant()
    def the_agent_never_hears_itself(self) -> None:
        """Half duplex: the microphone never goes up while the agent's voice plays."""
        if self.cfg.audio.duplex == "half" and self.playback.audible:
            assert not self.mic.live, f"mic open while the agent speaks (state {self.session.state})"

    @invariant()
    def only_an_interruption_waits_for_a_batch(self) -> None:
        """The user's own turn goes up frame by frame; frames wait for each other exactly while
        the agent speaks in full duplex (the mic is up for a voice barge-in)."""
        want = (self.cfg.audio.duplex == "full" and self.session.state is State.SPEAKING
                and self.mic.live)
        assert self.mic.batched == want, f"uplink batched {self.mic.batched} in state {self.session.state}"

    @invariant()
    def speaking_is_what_the_user_hears(self) -> None:
        """The state is speaking while agent audio plays, and only briefly after it stopped."""
        state = self.session.state
        if self.playback.audible:
            assert state is State.SPEAKING, f"agent audio plays in state {state}"
        elif state is State.SPEAKING:
            grace = self.drained_at is not None and self.clock() - self.drained_at <= DRAIN_GRACE + SLACK
            assert grace or self.playback.interrupt_pending, "speaking with nothing playing"

    @invariant()
    def no_state_outlives_its_timeout(self) -> None:
        state, since = self.entered
        s = self.cfg.session
        age = self.clock() - since
        bound = {
            State.CONNECTING: self.cfg.agent.connect_timeout + s.reply_timeout,
            State.THINKING: s.reply_timeout + max(0.0, self.last_server - since),
            State.ERROR: ERROR_HOLD,
            State.OFFLINE: RECONNECT_WINDOW + s.reconnect_max + self.cfg.agent.connect_timeout
            + s.reply_timeout,
        }.get(state)
        if state is State.LISTENING:
            if self.held and self.cfg.button.mode == "hold":
                bound = s.max_turn_seconds
            else:  # nobody holds the button: nothing said for the idle timeout ends it
                bound = s.idle_timeout + max(0.0, max(self.last_server, self.last_press) - since)
        if bound is not None:
            assert age <= bound + 0.25 + SLACK, f"{state} for {age:.2f} s (bound {bound:.2f} s)"

    @invariant()
    def a_reply_the_user_cut_off_never_sounds_again(self) -> None:
        """After a press or a barge-in, the old reply's late audio is discarded, however late."""
        cut = self.playback.cut_turn
        late = [turn for turn in self.playback.sounded[self._sounded_checked:] if turn <= cut]
        self._sounded_checked = len(self.playback.sounded)
        assert not late, f"audio of turn {late[0]} played after the user cut it off (turn {cut})"

    @invariant()
    def a_turn_is_ended_at_most_once(self) -> None:
        """At most one ForceEndTurn per turn, whichever of the mic's report, its timeout or
        the next press sends it (a release, or the session's own when held too long)."""
        sent = sum(1 for link in self.links for t in link.texts if t["type"] == "ForceEndTurn")
        assert sent <= self.presses, f"{sent} ForceEndTurn for {self.presses} presses"

    @invariant()
    def an_owed_turn_end_is_not_forgotten(self) -> None:
        """A release's ForceEndTurn waits for the mic's answer at most END_TURN_WAIT."""
        owed = self.session._turn_end.at
        assert owed is None or self.clock() <= owed + SLACK, "a turn end outlived its wait"

    @invariant()
    def a_call_is_answered_at_most_once(self) -> None:
        """Never twice, and never after the agent withdrew it."""
        for call_id, (link, at_cancel) in self.calls.items():
            assert link.answers(call_id) <= 1
            if at_cancel is not None:
                assert link.answers(call_id) == at_cancel, f"{call_id} answered after its cancel"

    def teardown(self) -> None:
        """After any sequence, a press gives a full turn."""
        if not hasattr(self, "session"):
            return
        self.release()
        # Let every timeout, backoff and refused-key pause run out, with a healthy server.
        for _ in range(400):
            if self.link is not None and not self.link.applied:
                self.settings_applied(late=False)
            if self.session.state is State.IDLE and not self.session._floor.conversation:
                break
            if self.session._floor.conversation and self.session.state is State.LISTENING:
                self.press()  # toggle: end the conversation
                continue
            self.advance(1.0)
        assert self.session.state is State.IDLE, f"did not settle: {self.session.state}"
        while self.session._reconnect.key_blocked():  # a refused key's pause
            self.advance(1.0)
        mark = len(self.states)
        self.press()
        if self.link is not None and not self.link.applied:
            self.settings_applied(late=False)
        assert self.session.state is State.LISTENING, self.session.state
        assert self.mic.live and self.mic.mode is UplinkMode.STREAM
        self.server(p.UserStartedSpeaking())
        if self.cfg.button.mode == "hold":
            self.release()
        self.user_text()
        self.reply_starts(announce=True)
        self.reply_audio(3)
        self.audio_done()
        assert self.session.state is State.SPEAKING
        self.audio_runs_dry()
        turn = [state for state in self.states[mark:] if state is not State.CONNECTING]
        assert turn[:3] == [State.LISTENING, State.THINKING, State.SPEAKING], turn
        assert self.session.state is (State.IDLE if self.cfg.button.mode == "hold" else State.LISTENING)


@pytest.fixture(autouse=True)
def _quiet_session() -> Iterator[None]:
    """The session logs each state change at INFO: thousands of steps would spend their time there."""
    logger = logging.getLogger("speakerd")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


# The number of random sequences: 200 keep the unit tier fast; CI sets SPEAKERD_MODEL_EXAMPLES
# higher for a longer search.
EXAMPLES = int(os.environ.get("SPEAKERD_MODEL_EXAMPLES", "200"))
Conversation.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_conversation = Conversation.TestCase


def test_the_model_s_fakes_have_the_shape_of_the_seams_they_stand_in_for() -> None:
    """Each fake the model drives the session through is called as the real part would be."""
    pairs = [(FakeLink, connection.Link), (FakeMic, MicControl), (FakeLeds, LedControl),
             (FakeRunner, connection.Runner), (Playback, SpeakerControl), (Playback, ReplyPlayer)]
    assert [d for fake, seam in pairs for d in shape_differences(fake, seam)] == []
