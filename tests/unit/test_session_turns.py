"""Push-to-talk the way the API means it: the release ends the turn with ForceEndTurn on Flux,
nothing of the kind without it, and a reload that re-tunes Flux updates the live link."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from speakerd import protocol as p
from speakerd.config import parse_config, turn_taking
from speakerd.daemon import _only_listen_retuned
from speakerd.events import (
    ButtonPressed,
    ButtonReleased,
    ListenChanged,
    PlaybackStarted,
    State,
    TurnAudioSent,
)
from speakerd.turnend import END_TURN_WAIT
from tests.unit.test_session import Rig, make_rig

NOVA = {"version": "v1", "model": "nova-3"}


def _timeline(rig: Rig) -> None:
    """From now on the current link's text frames join the fakes' call log, in order."""
    link = rig.link
    send = link.send_text

    def logged(text: str, *, after_audio: bool = False) -> None:
        send(text, after_audio=after_audio)
        kind = link.texts[-1]["type"]
        # Behind the audio already queued, or ahead of it (AgentLink sends control first).
        rig.calls.append(("link", "send_text", f"{kind} after audio" if after_audio else kind))
    link.send_text = logged  # type: ignore[method-assign]


def _force_end_turns(rig: Rig) -> int:
    return sum(1 for link in rig.links for t in link.texts if t["type"] == "ForceEndTurn")


def _asked(rig: Rig) -> int:
    """The number of the last turn end the session asked the mic for."""
    return rig.session.mic.turn_ends  # type: ignore[attr-defined]


def test_the_release_ends_a_flux_turn_once_the_mic_has_sent_its_words() -> None:
    """Hold mode with Flux: the gate shuts at the release and the mic is asked for the words it
    holds; ForceEndTurn goes when it answers, behind them in the outbox, and only once."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    _timeline(rig)
    rig.send(ButtonReleased(rig.clock()))
    assert rig.session.state == State.THINKING
    assert [c for c in rig.calls if c[0] in ("mic", "link")][-2:] == [
        ("mic", "set_gate", "False"), ("mic", "ask_turn_end", "1")]
    assert _force_end_turns(rig) == 0  # the mic may still hold the last words
    rig.send(TurnAudioSent(1, rig.clock()))
    assert [c for c in rig.calls if c[0] in ("mic", "link")][-1] == (
        "link", "send_text", "ForceEndTurn after audio")
    rig.send(TurnAudioSent(1, rig.clock()))
    rig.advance(END_TURN_WAIT * 2)
    assert _force_end_turns(rig) == 1


def test_full_duplex_ends_the_turn_on_the_mic_s_answer_though_the_gate_stays_open() -> None:
    """Full duplex keeps the mic live after the release; the turn end is still asked for and
    answered at once, not left to the timeout."""
    rig = make_rig(parse_config({"audio": {"duplex": "full"}}))
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    assert ("mic", "set_gate", "False") not in rig.mic_calls()[-3:]
    assert rig.mic_calls()[-1] == ("mic", "ask_turn_end", "1")
    rig.send(TurnAudioSent(1, rig.clock()))
    assert _force_end_turns(rig) == 1


def test_an_answer_to_an_older_turn_end_does_not_end_this_one() -> None:
    """A late answer for the previous release (a quick re-press) leaves this turn's ForceEndTurn
    waiting for its own answer."""
    rig = make_rig()
    _turn(rig)
    assert _force_end_turns(rig) == 1
    rig.send(ButtonPressed(rig.clock()))
    rig.send(ButtonReleased(rig.clock()))
    assert _asked(rig) == 2
    rig.send(TurnAudioSent(1, rig.clock()))
    assert _force_end_turns(rig) == 1
    rig.send(TurnAudioSent(2, rig.clock()))
    assert _force_end_turns(rig) == 2


def test_a_mic_that_never_reports_does_not_hold_the_turn_open() -> None:
    """No word from the mic (stuck, or its device gone): ForceEndTurn goes after END_TURN_WAIT."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    rig.advance(END_TURN_WAIT / 2)
    assert _force_end_turns(rig) == 0
    rig.advance(END_TURN_WAIT)
    assert _force_end_turns(rig) == 1


def test_a_press_before_the_mic_reports_ends_the_last_turn_first() -> None:
    """Pressed again at once: the owed ForceEndTurn goes before the new turn opens the gate."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.ready()
    rig.send(ButtonReleased(rig.clock()))
    _timeline(rig)
    before = len(rig.calls)
    rig.send(ButtonPressed(rig.clock()))
    sent = [c for c in rig.calls[before:] if c[0] in ("mic", "link")]
    assert sent.index(("link", "send_text", "ForceEndTurn after audio")) < sent.index(
        ("mic", "set_gate", "True"))
    rig.advance(END_TURN_WAIT * 2)
    assert _force_end_turns(rig) == 1


def test_a_release_while_connecting_ends_the_turn_once_the_buffer_streams() -> None:
    """Released before the link was ready: ForceEndTurn follows the switch to streaming, which
    sends the buffered words first (the mic having handed over what it captured)."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.send(ButtonReleased(rig.clock()))
    _timeline(rig)
    assert _force_end_turns(rig) == 0  # nothing before the settings are applied
    rig.ready()
    tail = [c for c in rig.calls if c[0] in ("mic", "link")][-2:]
    assert tail == [("mic", "set_uplink", "stream"), ("mic", "ask_turn_end", "1")]
    rig.send(TurnAudioSent(1, rig.clock()))
    assert [c for c in rig.calls if c[0] in ("mic", "link")][-1] == (
        "link", "send_text", "ForceEndTurn after audio")


@pytest.mark.parametrize("raw", [
    {"agent": {"listen": NOVA}},
    {"agent": {"dialect": "early_access", "listen": NOVA}},
    {"button": {"mode": "toggle"}},
], ids=["nova", "early-access", "toggle"])
def test_no_force_end_turn_without_flux_or_a_release(raw: dict[str, Any]) -> None:
    """Nova, early access and toggle mode never send ForceEndTurn: the agent ends the turn."""
    rig = make_rig(parse_config(raw))
    for _ in range(2):
        rig.send(ButtonPressed(rig.clock()))
        if rig.session.state == State.CONNECTING:
            rig.ready()
        rig.send(ButtonReleased(rig.clock()))
        rig.server(p.ConversationText("user", "hello"))
    assert _force_end_turns(rig) == 0


def _turn(rig: Rig) -> None:
    rig.send(ButtonPressed(rig.clock()))
    if rig.session.state == State.CONNECTING:
        rig.ready()
    _release(rig)


def _release(rig: Rig) -> None:
    """The release, and the mic's answer that it has sent the words captured before it."""
    rig.send(ButtonReleased(rig.clock()))
    rig.send(TurnAudioSent(_asked(rig), rig.clock()))


def test_a_release_while_a_late_reply_sounds_still_ends_the_turn() -> None:
    """Pressed again while the agent thought, the old reply then sounding under the thumb: the
    release still ends the new turn (Flux would otherwise wait for its timeout)."""
    rig = make_rig()
    _turn(rig)
    rig.send(ButtonPressed(rig.clock()))
    assert rig.session.state == State.LISTENING
    rig.send(PlaybackStarted(1, rig.clock()))
    assert rig.session.state == State.SPEAKING
    _release(rig)
    assert _force_end_turns(rig) == 2


def test_a_refused_force_end_turn_is_logged_once_and_not_sent_again_on_that_link(
        caplog: pytest.LogCaptureFixture) -> None:
    """FORCE_END_TURN_UNSUPPORTED: one warning per link, and that link gets no more of them."""
    rig = make_rig()
    caplog.set_level(logging.INFO, logger="speakerd.session")
    refused = p.AgentWarning(p.FORCE_END_TURN_UNSUPPORTED, "needs Flux")
    for _ in range(3):
        _turn(rig)
        rig.server(refused)
        rig.server(p.ConversationText("user", "hello"))
        rig.server(p.ConversationText("assistant", "hi"))
        rig.server(p.AgentAudioDone())
    warnings = [r for r in caplog.records if "ForceEndTurn" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert _force_end_turns(rig) == 1 and len(rig.links) == 1
    rig.session._link.close()  # a new link may take it again
    _turn(rig)
    assert len(rig.links) == 2 and _force_end_turns(rig) == 2


def test_a_listen_retune_updates_the_live_link() -> None:
    """ListenChanged on a ready link sends UpdateListen now; the next link's settings carry it."""
    rig = make_rig()
    _turn(rig)
    new = parse_config({"agent": {"listen": {"eot_timeout_ms": 30000}}})
    rig.send(ListenChanged(new))
    update = rig.link.texts[-1]
    assert update["type"] == "UpdateListen"
    assert update["listen"]["provider"]["eot_timeout_ms"] == 30000
    rig.session._link.close()
    _turn(rig)
    assert rig.link.settings["agent"]["listen"]["provider"]["eot_timeout_ms"] == 30000


def test_a_listen_retune_waits_for_settings_applied() -> None:
    """A link still connecting gets its UpdateListen right after SettingsApplied, not before."""
    rig = make_rig()
    rig.send(ButtonPressed(rig.clock()))
    rig.send(ListenChanged(parse_config({"agent": {"listen": {"keyterms": ["Pi"]}}})))
    assert rig.link.texts == []
    rig.ready()
    assert rig.link.texts[0]["type"] == "UpdateListen"


# --- the pure rules behind it ----------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ({}, (1.0, 60000)),
    ({"button": {"mode": "toggle"}}, (None, None)),
    ({"audio": {"duplex": "full"}}, (None, None)),
    ({"agent": {"listen": {"eot_threshold": 0.8}}}, (0.8, None)),
    ({"agent": {"listen": {"eot_timeout_ms": 20000}}}, (1.0, 20000)),
    ({"agent": {"listen": NOVA}}, (None, None)),
])
def test_turn_taking_follows_the_button_mode(raw: dict[str, Any],
                                             expected: tuple[Any, Any]) -> None:
    """Hold mode in half duplex leaves the turn to the button; otherwise the server decides."""
    assert turn_taking(parse_config(raw)) == expected


@pytest.mark.parametrize("old,new,kept", [
    ({}, {"agent": {"listen": {"eot_timeout_ms": 30000}}}, True),
    ({}, {"agent": {"listen": {"keyterms": ["Pi"]}}}, True),
    ({"agent": {"listen": {"keyterms": ["Pi"]}}}, {}, False),  # an update would keep the old
    ({}, {"agent": {"listen": {"model": "flux-general-multi"}}}, False),  # another model
    ({}, {"agent": {"listen": NOVA}}, False),  # Nova: no UpdateListen
    ({}, {"agent": {"listen": {"eot_timeout_ms": 30000}}, "session": {"idle_timeout": 5}},
     False),  # more than the listen settings changed
    ({}, {}, False),  # nothing changed
])
def test_only_a_flux_retune_keeps_the_link_on_reload(old: dict[str, Any], new: dict[str, Any],
                                                     kept: bool) -> None:
    """The reload keeps the link only when an UpdateListen can carry the whole change."""
    assert _only_listen_retuned(parse_config(old), parse_config(new)) is kept
    if kept:
        assert p.encode_update_listen(parse_config(old), parse_config(new)) is not None


def test_language_hints_may_be_dropped_by_an_update() -> None:
    """language_hints are cleared when omitted, so dropping them is an update, not a reconnect."""
    multi = {"model": "flux-general-multi"}
    old = parse_config({"agent": {"language": "de", "listen": {**multi, "language_hints": ["de"]}}})
    new = parse_config({"agent": {"language": "de", "listen": multi}})
    text = p.encode_update_listen(old, new)
    assert text is not None and "language_hints" not in text
