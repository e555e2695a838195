"""Unit tests of the session state machine, driven event by event with recording fakes."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pytest

from speakerd import protocol as p
from speakerd.backoff import exponential_backoff
from speakerd.config import Config, parse_config
from speakerd.connection import Link
from speakerd.events import (
    AgentConnected,
    AgentDisconnected,
    AgentEventReceived,
    ButtonPressed,
    ButtonReleased,
    FunctionFinished,
    PlaybackDrained,
    PlaybackStarted,
    State,
)
from speakerd.playback import DRAIN_GRACE
from speakerd.router import Router
from speakerd.session import Session
from tests.support.shapes import shape_differences


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLink:
    def __init__(self, settings: str) -> None:
        self.settings = json.loads(settings)
        self.audio: list[bytes] = []
        self.texts: list[dict[str, Any]] = []
        self.closed = False
        self.started = False
        self.failed: list[str] = []

    def start(self) -> FakeLink:
        self.started = True
        return self

    def send_audio(self, pcm: bytes) -> None:
        self.audio.append(pcm)

    def send_text(self, text: str, *, after_audio: bool = False) -> None:
        self.texts.append(json.loads(text))

    def close(self) -> None:
        self.closed = True

    def fail(self, reason: str) -> None:
        self.failed.append(reason)


class CallRecorder:
    """Records every call made on it, in order, across the fakes."""

    def __init__(self, log: list[tuple[str, ...]], name: str) -> None:
        self._log, self._name = log, name
        self.playing = False

    def __getattr__(self, attr: str) -> Any:
        def call(*args: Any, **keywords: Any) -> Any:  # keywords (a call's request) not recorded
            self._log.append((self._name, attr, *map(str, args)))
            return 1
        return call

    def is_playing(self) -> bool:
        return self.playing


class MicRecorder(CallRecorder):
    """The mic's calls, and the numbers it gives the turn ends it is asked for."""

    def __init__(self, log: list[tuple[str, ...]]) -> None:
        super().__init__(log, "mic")
        self.turn_ends = 0

    def ask_turn_end(self) -> int:
        self.turn_ends += 1
        self._log.append(("mic", "ask_turn_end", str(self.turn_ends)))
        return self.turn_ends


@dataclasses.dataclass
class Rig:
    session: Session
    clock: Clock
    calls: list[tuple[str, ...]]
    links: list[FakeLink]
    states: list[str]

    @property
    def link(self) -> FakeLink:
        return self.links[-1]

    def send(self, event: Any) -> None:
        self.session.handle(event)
        self.session.tick()

    def server(self, event: p.ServerEvent) -> None:
        self.session.router.event(self.link, event)
        self.send(AgentEventReceived(self.link, event, self.clock()))

    def ready(self) -> None:
        self.send(AgentConnected(self.link, self.clock()))
        self.server(p.SettingsApplied())

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.session.tick()

    def mic_calls(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == "mic"]


def make_rig(cfg: Config | None = None, runner: Any = None) -> Rig:
    cfg = cfg or Config()
    calls: list[tuple[str, ...]] = []
    links: list[FakeLink] = []
    states: list[str] = []
    clock = Clock()

    def connect(settings: str) -> FakeLink:
        links.append(FakeLink(settings))
        return links[-1]

    speaker = CallRecorder(calls, "speaker")
    session = Session(cfg, connect=connect, mic=MicRecorder(calls), speaker=speaker,
                      leds=CallRecorder(calls, "leds"), router=Router(speaker), runner=runner,
                      on_state=states.append, clock=clock, rng=lambda: 0.5)
    session._floor.show(State.IDLE)
    session._floor.apply_audio()
    return Rig(session, clock, calls, links, states)


def test_cold_press_buffers_from_the_edge_then_streams_after_settings_applied() -> None:
    """A cold press opens the gate and buffers first; the buffer is sent only once settings apply."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == State.CONNECTING
    assert rig.mic_calls()[-2:] == [("mic", "set_gate", "True"), ("mic", "set_uplink", "buffer")]
    rig.send(AgentConnected(rig.link, rig.clock()))
    assert ("mic", "set_uplink", "stream") not in rig.mic_calls()
    rig.server(p.SettingsApplied())
    assert rig.mic_calls()[-1] == ("mic", "set_uplink", "stream")
    assert rig.session.state == State.LISTENING


def test_release_while_connecting_hands_the_turn_over_once_ready() -> None:
    """Releasing before the socket is ready keeps the words buffered and goes to thinking on ready."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.send(ButtonReleased(rig.clock()))
    assert rig.session.state == State.CONNECTING
    assert rig.mic_calls()[-1] == ("mic", "set_gate", "False")
    rig.ready()
    assert rig.session.state == State.THINKING
    # The buffered words stream, then the turn's end is asked of the mic (ForceEndTurn after it).
    assert rig.mic_calls()[-2:] == [("mic", "set_uplink", "stream"), ("mic", "ask_turn_end", "1")]


def test_hold_mode_full_turn_walks_the_led_states() -> None:
    """press → speak → release → reply → drained gives the documented state sequence."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.server(p.ConversationText("user", "hello"))
    rig.server(p.ConversationText("assistant", "hi"))
    rig.send(PlaybackStarted(1, rig.clock()))
    rig.server(p.AgentAudioDone())
    rig.send(PlaybackDrained(1, rig.clock(), 0, 0, True))
    assert rig.states == [State.IDLE, State.CONNECTING, State.LISTENING, State.THINKING,
                          State.SPEAKING, State.IDLE]


def test_press_mid_reply_interrupts_and_listens() -> None:
    """A press while speaking interrupts playback at once and the user is talking again."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.send(PlaybackStarted(1, rig.clock()))
    assert rig.session.state == State.SPEAKING
    rig.calls.clear()
    rig.send(ButtonPressed(rig.clock()))
    assert ("speaker", "interrupt") in rig.calls
    assert rig.session.state == State.LISTENING
    assert ("mic", "set_gate", "True") in rig.calls


def test_drain_without_audio_done_ends_speaking_after_the_grace() -> None:
    """AgentAudioDone is only a hint: a drained speaker ends the reply after a short grace."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.send(PlaybackStarted(1, rig.clock()))
    rig.send(PlaybackDrained(1, rig.clock(), 0, 0, False))
    assert rig.session.state == State.SPEAKING
    rig.advance(DRAIN_GRACE - 0.1)
    assert rig.session.state == State.SPEAKING
    rig.advance(0.2)
    assert rig.session.state == State.IDLE


def test_idle_timeout_closes_the_socket_and_the_next_press_reconnects() -> None:
    """The warm socket is closed after session.idle_timeout; a later press opens a new one."""
    cfg = parse_config({"session": {"idle_timeout": 5}})
    rig = make_rig(cfg)
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.send(PlaybackStarted(1, rig.clock()))
    rig.send(PlaybackDrained(1, rig.clock(), 0, 0, True))
    first = rig.link
    rig.advance(4.0)
    assert not first.closed
    rig.advance(1.5)
    assert first.closed
    rig.send(ButtonPressed(rig.clock()))
    assert len(rig.links) == 2 and rig.session.state == State.CONNECTING


def test_drop_mid_reply_goes_offline_and_reconnects_with_the_context() -> None:
    """A lost link mid-conversation shows offline, retries with backoff, and resends the turns."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.server(p.ConversationText("user", "what time is it"))
    rig.send(ButtonReleased(rig.clock()))
    rig.server(p.ConversationText("assistant", "it is noon"))
    rig.send(PlaybackStarted(1, rig.clock()))
    rig.send(AgentDisconnected(rig.link, rig.clock(), "connection lost"))
    assert rig.session.state == State.OFFLINE
    assert len(rig.links) == 1
    rig.advance(0.6)  # reconnect_initial 0.5 with the jitter at its midpoint
    assert len(rig.links) == 2
    messages = rig.link.settings["agent"]["context"]["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "what time is it"), ("assistant", "it is noon")]
    rig.ready()
    assert rig.session.state == State.IDLE


def test_key_refused_shows_error_and_does_not_hammer() -> None:
    """A 401 at the handshake shows error; presses during the backoff do not reconnect."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.send(AgentDisconnected(rig.link, rig.clock(), "the agent refused the API key (HTTP 401)", status=401))
    assert rig.session.state == State.ERROR
    rig.send(ButtonPressed(rig.clock()))
    assert len(rig.links) == 1
    rig.advance(5.0)
    assert rig.session.state == State.IDLE
    rig.send(ButtonPressed(rig.clock()))
    assert len(rig.links) == 2


def test_agent_error_ends_the_conversation_with_the_error_chime() -> None:
    """A server Error is fatal: error chime, error state, socket closed."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.server(p.AgentError("INTERNAL_SERVER_ERROR", "boom"))
    assert rig.session.state == State.ERROR
    assert ("speaker", "chime", State.ERROR) in rig.calls
    assert rig.link.closed


def test_thinking_without_any_answer_times_out_to_idle() -> None:
    """No reply within session.reply_timeout never wedges the state machine."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    assert rig.session.state == State.THINKING
    rig.advance(Config().session.reply_timeout + 0.5)
    assert rig.session.state == State.IDLE


def test_toggle_mode_keeps_listening_between_turns_and_a_press_ends_it() -> None:
    """Toggle: press starts a hands-free conversation, turns come from the agent, press ends it."""
    rig = make_rig(parse_config({"button": {"mode": "toggle"}}))
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    for n in range(3):
        rig.server(p.UserStartedSpeaking())
        rig.server(p.ConversationText("user", f"question {n}"))
        assert rig.session.state == State.THINKING
        rig.send(PlaybackStarted(n + 1, rig.clock()))
        assert rig.session.state == State.SPEAKING
        assert rig.session._floor.gate_live is False  # half duplex: the agent never hears itself
        rig.send(PlaybackDrained(n + 1, rig.clock(), 0, 0, True))
        assert rig.session.state == State.LISTENING
        assert rig.session._floor.gate_live is True
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == State.IDLE
    assert ("speaker", "chime", "goodbye") in rig.calls


def test_router_drops_late_audio_of_an_interrupted_reply() -> None:
    """After UserStartedSpeaking, later sentences of the old reply never reopen playback."""
    calls: list[tuple[str, ...]] = []
    speaker = CallRecorder(calls, "speaker")
    router = Router(speaker)
    link = object()
    router.reset(link)
    router.event(link, p.ConversationText("assistant", "sentence one"))
    router.event(link, p.UserStartedSpeaking())
    router.event(link, p.ConversationText("assistant", "sentence two"))
    assert [c[1] for c in calls] == ["begin_reply", "interrupt"]
    router.event(link, p.ConversationText("user", "stop"))
    router.event(link, p.ConversationText("assistant", "ok"))
    assert [c[1] for c in calls] == ["begin_reply", "interrupt", "begin_reply"]
    router.audio(object(), b"\0\0")  # audio of a stale link never reaches the speaker
    assert calls[-1][1] == "begin_reply"


@pytest.mark.parametrize("initial,maximum", [(0.5, 30.0), (1.0, 4.0)])
def test_backoff_doubles_to_a_ceiling_with_jitter(initial: float, maximum: float) -> None:
    """Reconnect delays double up to the ceiling, each within ±20 % jitter."""
    delays = exponential_backoff(initial, maximum, rng=lambda: 1.0)
    values = [next(delays) for _ in range(10)]
    assert values[0] == pytest.approx(initial * 1.2)
    assert max(values) == pytest.approx(maximum * 1.2)
    assert values == sorted(values)


def test_ending_a_toggle_conversation_while_offline_stops_the_reconnects() -> None:
    """Toggle: a press while offline ends the conversation, and no reconnect follows."""
    rig = make_rig(parse_config({"button": {"mode": "toggle"}}))
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(AgentDisconnected(rig.link, rig.clock(), "connection lost"))
    assert rig.session.state == State.OFFLINE
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == State.IDLE
    rig.advance(60.0)
    assert len(rig.links) == 1


# --- the conversation defects a look-alike event class hid ------------------------------------


def _speaking(rig: Rig, reply: int = 1) -> None:
    """Press, release, and the agent's reply starts playing."""
    rig.send(ButtonPressed(rig.clock()))
    if not rig.session.connected:
        rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.server(p.ConversationText("user", "hello"))
    rig.server(p.ConversationText("assistant", "hi there"))
    rig.send(PlaybackStarted(reply, rig.clock()))
    assert rig.session.state == State.SPEAKING


@pytest.mark.parametrize("mode", ["hold", "toggle"])
def test_a_late_audio_done_of_an_interrupted_reply_does_not_end_the_next_one(mode: str) -> None:
    """The session ends a reply only on the speaker's own end mark: the old reply's late
    AgentAudioDone changes nothing, and a pause in the new reply (drained, not ended) stays
    speaking with the mic gate shut in half duplex. (That the speaker reports the mark right is
    held by the speaker's component test and the end-to-end test.)"""
    rig = make_rig(parse_config({"button": {"mode": mode}}))
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    if mode == "hold":
        rig.send(ButtonReleased(rig.clock()))
    rig.server(p.ConversationText("user", "tell me a story"))
    rig.server(p.ConversationText("assistant", "once upon a time"))
    rig.send(PlaybackStarted(1, rig.clock()))
    # The user interrupts with a press (toggle mode too: half duplex cannot hear a voice).
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == State.LISTENING
    if mode == "hold":
        rig.send(ButtonReleased(rig.clock()))
    rig.server(p.UserStartedSpeaking())
    rig.server(p.ConversationText("user", "stop, tell me the weather"))
    rig.server(p.EndOfThought())
    rig.server(p.AgentAudioDone())  # owed by the interrupted reply (observed order)
    rig.server(p.ConversationText("assistant", "sunny"))
    rig.send(PlaybackStarted(2, rig.clock()))
    assert rig.session.state == State.SPEAKING
    rig.send(PlaybackDrained(2, rig.clock(), 0, 0, False))  # a pause in the new reply
    rig.advance(0.5)
    assert rig.session.state == State.SPEAKING
    assert rig.session._floor.gate_live is False
    rig.send(PlaybackStarted(3, rig.clock()))  # the rest of it
    rig.send(PlaybackDrained(3, rig.clock(), 0, 0, True))
    assert rig.session.state == (State.IDLE if mode == "hold" else State.LISTENING)


def test_a_withdrawn_function_call_is_never_answered() -> None:
    """FunctionCallCancelled: the runner is told to stop and its late result is not sent."""
    runner = CallRecorder([], "runner")
    rig = make_rig(runner=runner)
    _speaking(rig)
    call = p.FunctionCall("call-1", "slow_thing", {}, client_side=True)
    rig.server(p.FunctionCallRequest((call,)))
    assert ("runner", "run", "call-1", "slow_thing", "{}", "") in runner._log
    rig.server(p.FunctionCallCancelled(("call-1",)))
    assert ("runner", "cancel", "call-1") in runner._log
    rig.send(FunctionFinished("call-1", "slow_thing", '{"ok": true}', True))
    assert not [t for t in rig.link.texts if t["type"] == "FunctionCallResponse"]


def test_every_function_call_gets_exactly_one_answer() -> None:
    """A call asked twice is run once; its result is sent once even if delivered twice."""
    runner = CallRecorder([], "runner")
    rig = make_rig(runner=runner)
    _speaking(rig)
    call = p.FunctionCall("call-2", "lamp", {}, client_side=True)
    rig.server(p.FunctionCallRequest((call, call)))
    assert [c for c in runner._log if c[1] == "run"] == [("runner", "run", "call-2", "lamp", "{}", "")]
    rig.send(FunctionFinished("call-2", "lamp", '{"ok": true}', True))
    rig.send(FunctionFinished("call-2", "lamp", '{"ok": true}', True))
    answers = [t for t in rig.link.texts if t["type"] == "FunctionCallResponse"]
    assert [a["id"] for a in answers] == ["call-2"]


def test_the_router_knows_a_link_before_its_threads_start() -> None:
    """A server that speaks the moment the socket opens is heard: the link is routed before start()."""
    calls: list[tuple[str, ...]] = []
    speaker = CallRecorder(calls, "speaker")
    router = Router(speaker)

    class EagerLink(FakeLink):
        def start(self) -> FakeLink:
            # What a fast server's first frames do on the receive thread as soon as it runs.
            router.event(self, p.SettingsApplied())
            router.event(self, p.ConversationText("assistant", "hello, I am your speaker"))
            router.audio(self, b"\x01\x00" * 160)
            return super().start()

    links: list[FakeLink] = []

    def connect(settings: str) -> FakeLink:
        links.append(EagerLink(settings))
        return links[-1]

    session = Session(Config(), connect=connect, mic=CallRecorder(calls, "mic"), speaker=speaker,
                      leds=CallRecorder(calls, "leds"), router=router, clock=Clock(), rng=lambda: 0.5)
    session.handle(ButtonPressed(0.0))
    assert links and links[0].started
    assert ("speaker", "begin_reply") in calls
    assert any(c[:2] == ("speaker", "play") for c in calls), calls


def test_an_old_links_event_cannot_change_how_the_new_links_reply_starts() -> None:
    """The router checks "is this my link" and acts on the event in one step: a link swap waits."""
    calls: list[tuple[str, ...]] = []
    router = Router(CallRecorder(calls, "speaker"))
    old, new = object(), object()
    router.reset(old)
    checked, go_on = threading.Event(), threading.Event()

    class SlowText(p.ConversationText):
        """A real ConversationText whose role is read slowly, as a preempted thread would."""
        @property  # type: ignore[misc]
        def role(self) -> str:
            checked.set()
            go_on.wait(5)
            return "assistant"

    rx = threading.Thread(target=router.event, args=(old, SlowText.__new__(SlowText)))
    rx.start()
    assert checked.wait(5)
    swap = threading.Thread(target=router.reset, args=(new,))
    swap.start()
    swap.join(0.2)  # the swap must wait for the old link's event to finish
    go_on.set()
    rx.join(5)
    swap.join(5)
    calls.clear()
    router.event(new, p.ConversationText("assistant", "the new link's first reply"))
    assert ("speaker", "begin_reply") in calls


def test_the_router_plays_a_links_audio_only_after_its_settings_applied() -> None:
    """Audio a server sends before it applied our settings (the audio format among them) is
    never played; the same link's audio after SettingsApplied is."""
    calls: list[tuple[str, ...]] = []
    router = Router(CallRecorder(calls, "speaker"))
    link = object()
    router.reset(link)
    router.audio(link, b"\x01\x00" * 160)
    assert not any(c[1] == "play" for c in calls)
    router.event(link, p.SettingsApplied())
    router.audio(link, b"\x01\x00" * 160)
    assert [c[1] for c in calls if c[1] == "play"] == ["play"]


def test_toggle_a_press_while_the_agent_speaks_interrupts_and_the_next_ends() -> None:
    """Toggle: a press mid-reply silences the agent and listens on; a press while listening ends."""
    rig = make_rig(parse_config({"button": {"mode": "toggle"}}))
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.server(p.ConversationText("user", "tell me a story"))
    rig.server(p.ConversationText("assistant", "once upon a time"))
    rig.send(PlaybackStarted(1, rig.clock()))
    rig.calls.clear()
    rig.send(ButtonPressed(rig.clock()))
    assert ("speaker", "interrupt") in rig.calls
    assert rig.session.state == State.LISTENING and rig.session._floor.conversation
    assert rig.session._floor.gate_live is True
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == State.IDLE and not rig.session._floor.conversation
    assert ("speaker", "chime", "goodbye") in rig.calls


def test_a_press_while_the_agent_thinks_drops_the_reply_it_was_about_to_give() -> None:
    """The user took the floor: the old turn's reply is not played; the next turn's is."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.server(p.ConversationText("user", "what is the time"))
    assert rig.session.state == State.THINKING
    rig.send(ButtonPressed(rig.clock()))  # never mind
    rig.calls.clear()
    rig.server(p.ConversationText("assistant", "it is noon"))  # the old turn's answer
    assert ("speaker", "begin_reply") not in rig.calls
    rig.send(ButtonReleased(rig.clock()))
    rig.server(p.ConversationText("user", "what is the weather"))
    rig.server(p.ConversationText("assistant", "sunny"))
    assert ("speaker", "begin_reply") in rig.calls


def test_settings_that_cannot_be_encoded_show_an_error_and_the_session_lives_on() -> None:
    """A pass-through that slipped past the config check is an error state with a reason, not a
    dead session thread; the next press tries again."""
    base = Config()
    cfg = dataclasses.replace(base, agent=dataclasses.replace(
        base.agent, settings_passthrough={"x": {1, 2}}))
    rig = make_rig(cfg)
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == State.ERROR
    assert rig.session.last_error.startswith("cannot send the settings: ")
    assert rig.links == []
    rig.advance(10)
    assert rig.session.state == State.IDLE


def test_a_flood_of_agent_events_drops_the_link_not_a_button_edge() -> None:
    """Past the inbox's cap the agent's events are refused and its link failed; presses still land."""
    from speakerd.inbox import MAX_QUEUED_AGENT_EVENTS

    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    for _ in range(MAX_QUEUED_AGENT_EVENTS + 50):
        rig.session.post(AgentEventReceived(rig.link, p.AgentThinking("x"), rig.clock()))
    rig.session.post(ButtonReleased(rig.clock()))
    assert rig.session.inbox_peak == MAX_QUEUED_AGENT_EVENTS
    assert rig.link.failed and "faster than they can be handled" in rig.link.failed[0]
    queued = []
    while (event := rig.session._inbox.get(0)) is not None:
        queued.append(event)
    assert isinstance(queued[-1], ButtonReleased)
    assert len(queued) == MAX_QUEUED_AGENT_EVENTS + 1


def test_the_context_carried_to_the_next_link_is_bounded() -> None:
    """Fifty 1 MiB transcripts become a context bounded per line and in total."""
    from speakerd.connection import MAX_CONTEXT, MAX_CONTEXT_ITEM, MAX_CONTEXT_TOTAL

    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    for i in range(60):
        rig.server(p.ConversationText("user" if i % 2 else "assistant", "x" * (1 << 20)))
    lines, chars = rig.session._link.context_size()
    assert lines <= MAX_CONTEXT and chars <= MAX_CONTEXT_TOTAL
    assert chars == (MAX_CONTEXT_TOTAL // MAX_CONTEXT_ITEM) * MAX_CONTEXT_ITEM


def _thinking(rig: Rig) -> None:
    rig.send(ButtonPressed(rig.clock()))
    if not rig.session.connected:
        rig.ready()
    rig.server(p.UserStartedSpeaking())
    rig.send(ButtonReleased(rig.clock()))
    assert rig.session.state == State.THINKING


def test_a_refused_keys_pause_holds_in_idle_too() -> None:
    """Once the error display is over, a press inside the key's pause still does not reconnect."""
    rig = make_rig(parse_config({"session": {"reconnect_initial": 10, "reconnect_max": 60}}))
    rig.send(ButtonPressed(rig.clock()))
    rig.send(AgentDisconnected(rig.link, rig.clock(), "refused (HTTP 401)", status=401))
    rig.advance(5.0)  # past the error hold: idle, the pause (20 s) still running
    assert rig.session.state == State.IDLE
    rig.send(ButtonPressed(rig.clock()))
    assert len(rig.links) == 1 and ("speaker", "chime", "error") in rig.calls


def test_a_running_function_keeps_the_agent_thinking() -> None:
    """A local call may run longer than the reply timeout: the turn waits for its answer."""
    runner = CallRecorder([], "runner")
    rig = make_rig(runner=runner)
    _thinking(rig)
    rig.server(p.FunctionCallRequest((p.FunctionCall("c1", "slow", {}, True),)))
    rig.advance(Config().session.reply_timeout * 2)
    assert rig.session.state == State.THINKING and not rig.link.closed
    rig.send(FunctionFinished("c1", "slow", '{"ok": true}', True))
    rig.advance(Config().session.reply_timeout + 0.5)
    assert rig.session.state == State.IDLE  # answered, and still nothing: the usual timeout


def test_a_click_with_nothing_said_goes_back_to_idle_and_keeps_the_link() -> None:
    """Nothing heard: no error, and the warm socket stays open for the next press."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.advance(Config().session.reply_timeout + 0.5)
    assert rig.session.state == State.IDLE
    assert not rig.link.closed and rig.session.last_error == ""


def test_heard_but_unanswered_closes_the_suspect_link() -> None:
    """The server heard the user but never answered: the link is closed and the error shown."""
    rig = make_rig()
    _thinking(rig)
    rig.advance(Config().session.reply_timeout + 0.5)
    assert rig.session.state == State.IDLE and rig.link.closed
    assert rig.session.last_error == "no reply from the agent"


def test_a_wedged_speaker_gives_the_reply_up() -> None:
    """Speaking while the device takes nothing for a while: the reply is given up, not waited on."""
    rig = make_rig()
    _speaking(rig)
    rig.advance(6.0)  # the fake speaker's progress never moves
    assert rig.session.state == State.IDLE
    assert rig.session.last_error == "the speaker stopped playing"


def test_a_reply_the_speaker_could_not_play_ends_the_turn() -> None:
    """With the speaker missing, a discarded reply ends thinking at once instead of timing out."""
    rig = make_rig()
    _thinking(rig)
    rig.send(PlaybackDrained(1, rig.clock(), 0, 0, True))
    assert rig.session.state == State.IDLE


def test_an_agent_that_ends_the_conversation_without_a_word_still_ends_it() -> None:
    """end_conversation with no goodbye spoken: the conversation ends at the reply timeout."""
    runner = CallRecorder([], "runner")
    rig = make_rig(parse_config({"button": {"mode": "toggle"}}), runner=runner)
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.server(p.ConversationText("user", "goodbye"))
    rig.server(p.FunctionCallRequest((p.FunctionCall("c2", "bye", {}, True),)))
    rig.send(FunctionFinished("c2", "bye", '{"ok": true}', True, end_conversation=True))
    rig.advance(Config().session.reply_timeout + 0.5)
    assert rig.session.state == State.IDLE and rig.link.closed
    assert ("speaker", "chime", "goodbye") in rig.calls


def test_the_last_error_clears_once_a_reply_is_heard() -> None:
    """The status line's last error stays only until the speaker works again."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.send(AgentDisconnected(rig.link, rig.clock(), "connection lost"))
    assert rig.session.last_error == "connection lost"
    rig.advance(1.0)
    rig.ready()
    _speaking(rig)
    rig.send(PlaybackDrained(1, rig.clock(), 0, 0, True))
    assert rig.session.last_error == ""


def test_after_a_barge_in_the_old_replys_late_audio_is_never_played() -> None:
    """A press takes the floor: audio of the reply it cut off is refused however late it comes,
    until the next reply begins."""
    calls: list[tuple[str, ...]] = []
    router = Router(CallRecorder(calls, "speaker"))
    link = object()
    router.reset(link)
    router.event(link, p.SettingsApplied())
    router.event(link, p.ConversationText("assistant", "a long story"))
    router.barge_in()
    calls.clear()
    router.audio(link, b"\x01\x00" * 160)  # seconds later: still the old reply
    assert not any(c[1] == "play" for c in calls)
    router.event(link, p.ConversationText("user", "something else"))
    router.event(link, p.ConversationText("assistant", "sure"))
    router.audio(link, b"\x01\x00" * 160)
    assert [c[1] for c in calls if c[1] in ("begin_reply", "play")] == ["begin_reply", "play"]


def test_the_fake_link_has_the_shape_of_the_seam() -> None:
    """FakeLink is called as the session calls a real Link."""
    assert shape_differences(FakeLink, Link) == []
