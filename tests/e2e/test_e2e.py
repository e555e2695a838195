"""End to end: the real daemon threads against the emulator, real alsa-lib and mock pins."""

from __future__ import annotations

import time
from typing import Any

import pytest

from speakerd.events import State
from tests.support.alsa import load_wav
from tests.support.daemon import (
    WAIT,
    envelope,
    trim_silence,
    wait_until,
)

pytestmark = pytest.mark.realtime


def _settle_idle(rig: Any) -> None:
    assert wait_until(lambda: rig.state == State.IDLE), rig.state_names()


@pytest.mark.parametrize("dialect", ["v1", "early_access"])
def test_press_speak_release_hears_the_parrot_reply(make_rig: Any, dialect: str) -> None:
    """The user's words come back through the speaker, and the LEDs walk the documented states."""
    rig = make_rig(dialect)
    rec = rig.pulse.record_speaker()
    rig.press()
    rig.wait_state(State.LISTENING)
    spoken = rig.speak("hello.wav")
    rig.release()
    rig.wait_state(State.SPEAKING)
    n = len(rig.states)
    rig.wait_state(State.IDLE, after=n)
    heard = rec.stop()
    assert rig.state_names() == [State.IDLE, State.CONNECTING, State.LISTENING, State.THINKING,
                                 State.SPEAKING, State.IDLE]
    assert rig.led_history()[-6:] == rig.state_names()
    # What the mic heard reaches the speaker.
    rig.assert_parrot_heard(spoken, heard)
    assert rig.emulator.sessions[-1].settings["type"] == (
        "Settings" if dialect == "v1" else "SettingsConfiguration")


def test_press_mid_reply_stops_it_and_the_next_turn_works(make_rig: Any) -> None:
    """A press mid-reply silences the speaker at once; nothing of the old reply plays later."""
    rig = make_rig()
    rig.emulator.options.reply_seconds = 8.0
    rig.press()
    rig.wait_state(State.LISTENING)
    rig.speak("hello.wav")
    rig.release()
    rig.wait_state(State.SPEAKING)
    second = 2 * rig.pulse.rate  # bytes of the monitor's recording: the sound server's clock
    clock = rig.pulse.record_speaker()
    assert wait_until(lambda: clock.bytes_so_far() >= second)  # a second of the reply plays
    clock.stop()
    rec = rig.pulse.record_speaker()
    n = len(rig.states)
    rig.press()
    rig.wait_state(State.LISTENING, after=n)
    # Two seconds with the button held and nothing said: the old reply must not be heard again.
    mark = rec.bytes_so_far()
    assert wait_until(lambda: rec.bytes_so_far() >= mark + 2 * second)
    quiet = envelope(rec.stop(), rig.pulse.rate)
    # Allow 150 ms for the press to reach the speaker thread and the monitor's own latency.
    late = quiet[int(0.15 / 0.02):]
    assert late and max(late) < 200, f"old reply still audible: peak RMS {max(late):.0f}"
    rig.emulator.options.reply_seconds = None
    rec2 = rig.pulse.record_speaker()
    spoken = rig.speak("weather.wav")
    rig.release()
    rig.wait_state(State.SPEAKING, after=n)
    m = len(rig.states)
    rig.wait_state(State.IDLE, after=m)
    rig.assert_parrot_heard(spoken, rec2.stop())


def test_user_started_speaking_in_full_duplex_stops_playback(make_rig: Any) -> None:
    """Full duplex: the agent hears the user mid-reply, and its voice stops the same way."""
    rig = make_rig(audio={"duplex": "full"})
    rig.emulator.options.reply_seconds = 8.0
    rig.press()
    rig.wait_state(State.LISTENING)
    rig.speak("hello.wav")
    rig.release()
    rig.wait_state(State.SPEAKING)
    session = rig.emulator.sessions[-1]
    before = len([e for e in session.events_sent if e.get("type") == "UserStartedSpeaking"])
    rig.emulator.options.reply_seconds = None
    rec = rig.pulse.record_speaker()
    rig.speak("weather.wav", wait=False)  # no button: full duplex streams the mic throughout
    assert wait_until(lambda: len([e for e in session.events_sent
                                   if e.get("type") == "UserStartedSpeaking"]) > before)
    # After the interruption the speaker carries only the parrot of the new utterance.
    n = len(rig.states)
    rig.wait_state(State.IDLE, after=n)
    rig.assert_parrot_heard(load_wav("weather.wav"), rec.stop())


def test_full_duplex_batches_the_mic_only_while_the_agent_speaks(make_rig: Any) -> None:
    """Full duplex: while the agent speaks, whole 80 ms frames reach the server a batch at a
    time (three by default); while the user speaks, one at a time."""
    rig = make_rig(audio={"duplex": "full"})
    rig.emulator.options.reply_seconds = 4.0
    rig.press()
    t_listen = rig.wait_state(State.LISTENING)
    rig.speak("hello.wav")
    t_spoken = time.monotonic()
    rig.release()
    t_speak = rig.wait_state(State.SPEAKING)
    n = len(rig.states)
    t_done = rig.wait_state(State.IDLE, after=n)
    frames = [f for f in rig.emulator.sessions[-1].frames if f.kind == "binary"]

    def gaps(start: float, end: float) -> list[float]:
        times = [f.t for f in frames if start <= f.t <= end]
        return [b - a for a, b in zip(times, times[1:], strict=False)]

    # Frames handed over together arrive microseconds apart; one at a time, a frame's length apart
    # (a busy machine can bunch a few: hence shares, not every gap).
    speaking, listening = gaps(t_speak + 0.3, t_done - 0.3), gaps(t_listen + 0.3, t_spoken)
    together = sum(g < 0.03 for g in speaking) / len(speaking)
    apart = sum(g < 0.03 for g in listening) / len(listening)
    # (Batched, two gaps in three are small; a busy machine bunches a few frames of a turn.)
    assert together >= 0.3 and apart <= 0.5, (together, apart)
    size = rig.cfg.audio.input.frame_ms * rig.cfg.audio.input.sample_rate // 1000 * 2
    assert {len(f.data) for f in frames if t_speak + 0.3 <= f.t <= t_done - 0.3} == {size}


def test_cold_press_with_slow_settings_loses_no_speech(make_rig: Any) -> None:
    """SettingsApplied delayed 1 s: every sample spoken from the press edge reaches the agent, in order."""
    rig = make_rig()
    rig.emulator.options.settings_delay = 1.0
    rig.press()
    spoken = rig.speak("hello.wav")  # starts at the press edge, long before the socket is ready
    rig.release()
    rig.wait_state(State.SPEAKING)
    got = rig.emulator.sessions[-1].audio_received()
    speech = trim_silence(spoken)
    chunk = 1600  # 50 ms
    offsets = [got.find(speech[i:i + chunk]) for i in range(0, len(speech) - chunk, chunk)]
    assert all(o >= 0 for o in offsets), f"{offsets.count(-1)} of {len(offsets)} chunks lost"
    assert offsets == sorted(offsets)
    first_audio = next(f for f in rig.emulator.sessions[-1].frames if f.kind == "binary")
    applied = next(e for e in rig.emulator.sessions[-1].events_sent
                   if e.get("type") == "SettingsApplied")
    assert first_audio.t >= applied.get("t", first_audio.t) - 0.05


def test_long_reply_in_hold_mode_never_starves_the_socket(make_rig: Any) -> None:
    """A reply five times the server's idle window: silence keeps flowing, no CLIENT_MESSAGE_TIMEOUT."""
    rig = make_rig()
    rig.emulator.options.idle_timeout = 1.0
    rig.emulator.options.reply_seconds = 5.0
    rig.press()
    rig.wait_state(State.LISTENING)
    rig.speak("hello.wav")
    rig.release()
    rig.wait_state(State.SPEAKING)
    n = len(rig.states)
    rig.wait_state(State.IDLE, after=n, timeout=WAIT)
    session = rig.emulator.sessions[-1]
    assert not [e for e in session.events_sent if e.get("type") == "Error"]
    assert not session.closed.is_set()


def test_idle_timeout_closes_the_socket_and_the_next_press_reconnects(make_rig: Any) -> None:
    """The socket is closed session.idle_timeout after the last turn; the next press reconnects."""
    rig = make_rig(session={"idle_timeout": 1.0})
    rig.press()
    rig.wait_state(State.LISTENING)
    rig.speak("hello.wav")
    rig.release()
    rig.wait_state(State.SPEAKING)
    first = rig.emulator.sessions[-1]
    assert wait_until(first.closed.is_set), "idle socket never closed"
    n = len(rig.states)
    rig.press()
    rig.wait_state(State.LISTENING, after=n)
    assert len(rig.emulator.sessions) == 2
    rig.release()


def test_drop_mid_reply_goes_offline_recovers_and_carries_the_context(make_rig: Any) -> None:
    """TCP dropped mid-reply: offline, reconnect with the earlier turns, next press is a full turn."""
    rig = make_rig()
    rig.emulator.options.reply_seconds = 3.0
    rig.emulator.options.drop_mid_reply = True
    rig.press()
    rig.wait_state(State.LISTENING)
    rig.speak("hello.wav")
    rig.release()
    rig.wait_state(State.OFFLINE)
    assert wait_until(lambda: len(rig.emulator.sessions) >= 2)
    second = rig.emulator.sessions[1]
    assert wait_until(lambda: second.settings is not None)
    context = second.settings["agent"]["context"]["messages"]
    assert [m["role"] for m in context][:2] == ["user", "assistant"]
    _settle_idle(rig)
    rig.emulator.options.reply_seconds = None
    rig.full_turn()


def test_toggle_mode_three_turns_then_a_press_ends_it(make_rig: Any) -> None:
    """Toggle: one press starts a hands-free conversation of three turns; the next press ends it."""
    rig = make_rig(button={"mode": "toggle"})
    rig.press()
    rig.release()
    rig.wait_state(State.LISTENING)
    for _ in range(3):
        n = len(rig.states)
        rig.speak("hello.wav")
        rig.wait_state(State.SPEAKING, after=n)
        rig.wait_state(State.LISTENING, after=n + 1)
    user_turns = [t for t in rig.texts if t[0] == "user"]
    assert len(user_turns) == 3
    n = len(rig.states)
    rig.press()
    rig.release()
    rig.wait_state(State.IDLE, after=n)


def test_debug_audio_saves_each_reply_and_uplink_turn_bounded_in_count(make_rig: Any,
                                                                        tmp_path: Any) -> None:
    """log.debug_audio_dir: each turn's uplink and each reply become WAV files, at most N kept."""
    import wave

    folder = tmp_path / "debug-audio"
    rig = make_rig(log={"debug_audio_dir": str(folder), "debug_audio_max_files": 3})
    for _ in range(2):
        rig.full_turn()
    assert wait_until(lambda: len(list(folder.glob("*.wav"))) == 3)
    files = sorted(folder.glob("*.wav"))
    kinds = [f.stem.rsplit("-", 1)[1] for f in files]
    assert set(kinds) == {"uplink", "reply"}
    for f in files:
        with wave.open(str(f)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, rig.pulse.rate)
            assert w.getnframes() > rig.pulse.rate // 2  # at least half a second of audio
        assert oct(f.stat().st_mode & 0o777) == "0o600"
