"""Unit tests of the session state machine, driven event by event with recording fakes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from speakerd import protocol as p
from speakerd.agent import LinkDown, LinkUp, Received
from speakerd.config import Config, parse_config
from speakerd.router import Router
from speakerd.session import ButtonPressed, ButtonReleased, Session, exponential_backoff


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

    def send_audio(self, pcm: bytes) -> None:
        self.audio.append(pcm)

    def send_text(self, text: str) -> None:
        self.texts.append(json.loads(text))

    def close(self) -> None:
        self.closed = True


class Recorder:
    """Records every call made on it, in order, across the fakes."""

    def __init__(self, log: list[tuple[str, ...]], name: str) -> None:
        self._log, self._name = log, name
        self.playing = False

    def __getattr__(self, attr: str) -> Any:
        def call(*args: Any) -> Any:
            self._log.append((self._name, attr, *map(str, args)))
            return 1
        return call

    def is_playing(self) -> bool:
        return self.playing


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
        self.send(Received(self.link, event, self.clock()))

    def ready(self) -> None:
        self.send(LinkUp(self.link, self.clock()))
        self.server(p.SettingsApplied())

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.session.tick()

    def mic_calls(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == "mic"]


def make_rig(cfg: Config | None = None) -> Rig:
    cfg = cfg or Config()
    calls: list[tuple[str, ...]] = []
    links: list[FakeLink] = []
    states: list[str] = []
    clock = Clock()

    def connect(settings: str) -> FakeLink:
        links.append(FakeLink(settings))
        return links[-1]

    speaker = Recorder(calls, "speaker")
    session = Session(cfg, connect=connect, mic=Recorder(calls, "mic"), speaker=speaker,
                      leds=Recorder(calls, "leds"), router=Router(speaker),
                      on_state=states.append, clock=clock, rng=lambda: 0.5)
    session._show("idle")
    session._apply_audio()
    return Rig(session, clock, calls, links, states)


@dataclasses.dataclass(frozen=True)
class PlaybackDrained:
    reply: int
    t: float
    underruns: int = 0
    frames: int = 0
    ended: bool | None = None


@dataclasses.dataclass(frozen=True)
class PlaybackStarted:
    reply: int
    t: float


def test_cold_press_buffers_from_the_edge_then_streams_after_settings_applied() -> None:
    """A cold press opens the gate and buffers first; the buffer is sent only once settings apply."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == "connecting"
    assert rig.mic_calls()[-2:] == [("mic", "set_gate", "True"), ("mic", "uplink_buffer")]
    rig.send(LinkUp(rig.link, rig.clock()))
    assert ("mic", "uplink_stream") not in rig.mic_calls()
    rig.server(p.SettingsApplied())
    assert rig.mic_calls()[-1] == ("mic", "uplink_stream")
    assert rig.session.state == "listening"


def test_release_while_connecting_hands_the_turn_over_once_ready() -> None:
    """Releasing before the socket is ready keeps the words buffered and goes to thinking on ready."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.send(ButtonReleased(rig.clock()))
    assert rig.session.state == "connecting"
    assert rig.mic_calls()[-1] == ("mic", "set_gate", "False")
    rig.ready()
    assert rig.session.state == "thinking"
    assert rig.mic_calls()[-1] == ("mic", "uplink_stream")


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
    rig.send(PlaybackDrained(1, rig.clock(), ended=True))
    assert rig.states == ["idle", "connecting", "listening", "thinking", "speaking", "idle"]


def test_press_mid_reply_interrupts_and_listens() -> None:
    """A press while speaking interrupts playback at once and the user is talking again."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.send(PlaybackStarted(1, rig.clock()))
    assert rig.session.state == "speaking"
    rig.calls.clear()
    rig.send(ButtonPressed(rig.clock()))
    assert ("speaker", "interrupt") in rig.calls
    assert rig.session.state == "listening"
    assert ("mic", "set_gate", "True") in rig.calls


def test_drain_without_audio_done_ends_speaking_after_the_grace() -> None:
    """AgentAudioDone is only a hint: a drained speaker ends the reply after a short grace."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.send(PlaybackStarted(1, rig.clock()))
    rig.send(PlaybackDrained(1, rig.clock(), ended=False))
    assert rig.session.state == "speaking"
    rig.advance(1.0)
    assert rig.session.state == "idle"


def test_idle_timeout_closes_the_socket_and_the_next_press_reconnects() -> None:
    """The warm socket is closed after session.idle_timeout; a later press opens a new one."""
    cfg = parse_config({"session": {"idle_timeout": 5}})
    rig = make_rig(cfg)
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.send(PlaybackStarted(1, rig.clock()))
    rig.send(PlaybackDrained(1, rig.clock(), ended=True))
    first = rig.link
    rig.advance(4.0)
    assert not first.closed
    rig.advance(1.5)
    assert first.closed
    rig.send(ButtonPressed(rig.clock()))
    assert len(rig.links) == 2 and rig.session.state == "connecting"


def test_drop_mid_reply_goes_offline_and_reconnects_with_the_context() -> None:
    """A lost link mid-conversation shows offline, retries with backoff, and resends the turns."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.server(p.ConversationText("user", "what time is it"))
    rig.send(ButtonReleased(rig.clock()))
    rig.server(p.ConversationText("assistant", "it is noon"))
    rig.send(PlaybackStarted(1, rig.clock()))
    rig.send(LinkDown(rig.link, rig.clock(), "connection lost"))
    assert rig.session.state == "offline"
    assert len(rig.links) == 1
    rig.advance(0.6)  # reconnect_initial 0.5 with the jitter at its midpoint
    assert len(rig.links) == 2
    messages = rig.link.settings["agent"]["context"]["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "what time is it"), ("assistant", "it is noon")]
    rig.ready()
    assert rig.session.state == "idle"


def test_key_refused_shows_error_and_does_not_hammer() -> None:
    """A 401 at the handshake shows error; presses during the backoff do not reconnect."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.send(LinkDown(rig.link, rig.clock(), "the agent refused the API key (HTTP 401)", status=401))
    assert rig.session.state == "error"
    rig.send(ButtonPressed(rig.clock()))
    assert len(rig.links) == 1
    rig.advance(5.0)
    assert rig.session.state == "idle"
    rig.send(ButtonPressed(rig.clock()))
    assert len(rig.links) == 2


def test_agent_error_ends_the_conversation_with_the_error_chime() -> None:
    """A server Error is fatal: error chime, error state, socket closed."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.server(p.AgentError("INTERNAL_SERVER_ERROR", "boom"))
    assert rig.session.state == "error"
    assert ("speaker", "chime", "error") in rig.calls
    assert rig.link.closed


def test_thinking_without_any_answer_times_out_to_idle() -> None:
    """No reply within session.reply_timeout never wedges the state machine."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    assert rig.session.state == "thinking"
    rig.advance(Config().session.reply_timeout + 0.5)
    assert rig.session.state == "idle"


def test_toggle_mode_keeps_listening_between_turns_and_a_press_ends_it() -> None:
    """Toggle: press starts a hands-free conversation, turns come from the agent, press ends it."""
    rig = make_rig(parse_config({"button": {"mode": "toggle"}}))
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    for n in range(3):
        rig.server(p.UserStartedSpeaking())
        rig.server(p.ConversationText("user", f"question {n}"))
        assert rig.session.state == "thinking"
        rig.send(PlaybackStarted(n + 1, rig.clock()))
        assert rig.session.state == "speaking"
        assert rig.session._gate_live is False  # half duplex: the agent never hears itself
        rig.send(PlaybackDrained(n + 1, rig.clock(), ended=True))
        assert rig.session.state == "listening"
        assert rig.session._gate_live is True
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == "idle"
    assert ("speaker", "chime", "goodbye") in rig.calls


def test_router_drops_late_audio_of_an_interrupted_reply() -> None:
    """After UserStartedSpeaking, later sentences of the old reply never reopen playback."""
    calls: list[tuple[str, ...]] = []
    speaker = Recorder(calls, "speaker")
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
    rig.send(LinkDown(rig.link, rig.clock(), "connection lost"))
    assert rig.session.state == "offline"
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == "idle"
    rig.advance(60.0)
    assert len(rig.links) == 1
