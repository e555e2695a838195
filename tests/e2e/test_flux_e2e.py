"""Push-to-talk with Flux: the release ends the turn (ForceEndTurn after the turn's audio), the
server never answers while the button is held, Nova and a server without Flux still work, and a
reload that re-tunes Flux updates the live connection."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from speakerd.config import load_config
from speakerd.emulator import Emulator
from speakerd.emulator.sound import PulseServer
from speakerd.events import State
from tests.support.daemon import WAIT, DaemonRig, wait_until
from tests.support.emulator import TEST_KEY, tone
from tests.support.process import raw_config, write_config

pytestmark = pytest.mark.realtime

NOVA = {"version": "v1", "model": "nova-3"}
TURNS_MID_WORD = 12  # the race it guards against is one of timing: many chances to lose it


def _loud(data: bytes | str) -> bool:
    return isinstance(data, bytes) and any(data[i + 1] not in (0, 255)
                                           for i in range(0, len(data) - 1, 2))


def test_the_release_sends_force_end_turn_after_all_of_the_turns_audio(make_rig: Any) -> None:
    """Hold mode with Flux: one ForceEndTurn per turn, after every loud frame; the agent heard
    all of the words and answered."""
    rig = make_rig()
    rec = rig.pulse.record_speaker()
    spoken = rig.full_turn()
    heard = rec.stop()
    session = rig.emulator.sessions[-1]
    frames = list(session.frames)
    ends = [i for i, f in enumerate(frames)
            if f.kind == "text" and '"ForceEndTurn"' in str(f.data)]
    assert len(ends) == 1
    last_loud = max(i for i, f in enumerate(frames) if _loud(f.data))
    assert ends[0] > last_loud
    provider = session.settings["agent"]["listen"]["provider"]
    assert (provider["version"], provider["eot_threshold"]) == ("v2", 1.0)
    rig.assert_parrot_heard(spoken, heard)


TIMED_OUT = "did not confirm the end of the turn"


def test_a_release_mid_word_sends_the_last_words_before_force_end_turn(
        make_rig: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Released while the user still speaks: every loud frame captured before the release
    reaches the server ahead of ForceEndTurn, so the turn is not cut short (the tail would open
    an utterance that barges in on the reply) and the agent answers each turn. The mic itself
    says when its words are out: the session never waits out its timeout."""
    caplog.set_level(logging.INFO, logger="speakerd.session")
    rig = make_rig()
    for turn in range(TURNS_MID_WORD):
        n = len(rig.states)
        rig.press()
        rig.wait_state(State.LISTENING, after=n)
        session = rig.emulator.sessions[-1]
        onsets = session.sent_types().count("UserStartedSpeaking")
        voice = rig.pulse.play_into_mic(tone(3.0, rig.pulse.rate), name=f"mid-word-{turn}.raw")
        try:
            # The server hears the voice; the release comes while it still sounds.
            assert wait_until(lambda s=session, k=onsets:
                              s.sent_types().count("UserStartedSpeaking") > k, WAIT)
            rig.release()
            rig.wait_state(State.SPEAKING, after=n)
        finally:
            voice.stop()
        rig.wait_state(State.IDLE, after=len(rig.states))
        frames = list(session.frames)
        ends = [i for i, f in enumerate(frames)
                if f.kind == "text" and '"ForceEndTurn"' in str(f.data)]
        assert len(ends) == turn + 1
        assert not any(_loud(f.data) for f in frames[ends[-1]:])
    assert len([r for r in session.replies if r.kind == "turn"]) == TURNS_MID_WORD
    assert not [r for r in caplog.records if TIMED_OUT in r.getMessage()]


def test_full_duplex_ends_each_turn_on_the_mic_s_word(make_rig: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Full duplex keeps the mic live after a release (a speakerphone): the mic still says when
    the turn's words are out, so ForceEndTurn goes then, never after the session's timeout."""
    caplog.set_level(logging.INFO, logger="speakerd.session")
    rig = make_rig(audio={"duplex": "full"})
    for _ in range(3):
        rig.full_turn()
    (session,) = rig.emulator.sessions
    assert len(session.texts("ForceEndTurn")) == 3
    assert not [r for r in caplog.records if TIMED_OUT in r.getMessage()]


@pytest.mark.parametrize("listen,answers_while_held", [({}, False), (NOVA, True)],
                         ids=["flux", "nova"])
def test_flux_never_answers_while_the_button_is_held(make_rig: Any, listen: dict[str, Any],
                                                     answers_while_held: bool) -> None:
    """Holding the button through a pause longer than the server's end-of-speech: Flux waits
    for the release; Nova (the old way) answers under the user's thumb."""
    rig = make_rig(agent={"listen": listen})
    rig.press()
    rig.wait_state(State.LISTENING)
    rig.speak("hello.wav")
    # Past the emulator's end-of-speech (1.5 s) with room to spare, button still down.
    pause = 2 * rig.emulator.options.end_of_speech + 1.0
    answered = wait_until(lambda: bool(rig.emulator.sessions[-1].replies), pause)
    assert answered is answers_while_held
    rig.release()
    rig.wait_state(State.SPEAKING)
    texts = rig.emulator.sessions[-1].texts("ForceEndTurn")
    assert len(texts) == (0 if listen else 1)


def test_a_server_without_flux_turns_warns_once_and_every_turn_still_ends(
        make_rig: Any, caplog: pytest.LogCaptureFixture) -> None:
    """FORCE_END_TURN_UNSUPPORTED: logged once for the link, never sent again on it, and the
    server's own end-of-speech ends the next turns."""
    caplog.set_level(logging.WARNING, logger="speakerd.session")
    rig = make_rig()
    rig.emulator.options.flux_turns = False
    for _ in range(3):
        rig.full_turn()
    (session,) = rig.emulator.sessions
    assert len(session.texts("ForceEndTurn")) == 1
    warnings = [e for e in session.events_sent if e.get("code") == "FORCE_END_TURN_UNSUPPORTED"]
    assert len(warnings) == 1
    logged = [r for r in caplog.records if "ForceEndTurn" in r.getMessage()]
    assert len(logged) == 1
    assert len([r for r in session.replies if r.kind == "turn"]) == 3


def test_nova_in_hold_mode_sends_no_force_end_turn(make_rig: Any) -> None:
    """Without Flux nothing of ForceEndTurn is sent and no warning comes back; turns work."""
    rig = make_rig(agent={"listen": NOVA})
    rig.full_turn()
    rig.full_turn()
    (session,) = rig.emulator.sessions
    assert session.texts("ForceEndTurn") == []
    assert not [e for e in session.events_sent if e.get("type") == "Warning"]


def test_a_reload_that_retunes_flux_updates_the_live_link_and_a_new_model_reconnects(
        agent_emulator: Emulator, pulse_audio: PulseServer, mock_pins: Any,
        tmp_path: Path) -> None:
    """Only Flux tunables changed: UpdateListen on the open link (ListenUpdated), same session.
    Another model: the link is rebuilt and the next press connects with it."""
    key = tmp_path / "deepgram_api_key"  # a reload reads the key again, here
    key.write_text(TEST_KEY + "\n", encoding="utf-8")
    key.chmod(0o600)
    path = tmp_path / "speakerd.yaml"
    state = tmp_path / "state"
    base = raw_config(agent_emulator, pulse_audio, state, session={"idle_timeout": 60.0},
                      agent={"api_key_file": str(key)})
    write_config(path, base)
    rig = DaemonRig(load_config(path), agent_emulator, pulse_audio, mock_pins)
    rig.daemon.config_path = str(path)
    rig.daemon.start()
    try:
        rig.full_turn()
        (session,) = agent_emulator.sessions
        write_config(path, {**base, "agent": {**base["agent"],
                                              "listen": {"eot_timeout_ms": 30000}}})
        assert rig.daemon.reload()
        assert agent_emulator.wait_for(lambda: "ListenUpdated" in session.sent_types(), WAIT)
        (update,) = session.texts("UpdateListen")
        assert update["listen"]["provider"]["eot_timeout_ms"] == 30000
        assert session.listening.eot_timeout == 30.0
        rig.full_turn()
        assert len(agent_emulator.sessions) == 1 and session.live
        write_config(path, {**base, "agent": {**base["agent"], "listen": {
            "model": "flux-general-multi", "language_hints": ["en"]}}})
        assert rig.daemon.reload()
        assert agent_emulator.wait_for(lambda: session.closed.is_set(), WAIT)
        rig.full_turn()
        assert len(agent_emulator.sessions) == 2
        provider = agent_emulator.sessions[-1].settings["agent"]["listen"]["provider"]
        assert provider["model"] == "flux-general-multi"
    finally:
        rig.daemon.stop()
