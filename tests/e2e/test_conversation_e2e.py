"""End to end, half duplex, both button modes: an interrupted reply's late AgentAudioDone and a
pause inside the next reply leave the state `speaking` and the uplink silent while the agent's
voice is audible (the real daemon, the emulator, PulseAudio-backed ALSA, mock pins)."""

from __future__ import annotations

import array
import math
from typing import Any

import pytest

from speakerd.events import State
from tests.support.daemon import WAIT, wait_until

pytestmark = pytest.mark.realtime

GAP = 0.5  # seconds of silence inside the new reply, as a pause between two sentences
EDGE = 0.06  # a state change reaches the mic within a frame or two: frames this close are not judged


def _tone(rate: int, seconds: float, level: float = 0.3) -> bytes:
    """A steady hum in the room: the microphone hears it the whole time."""
    n = int(rate * seconds)
    return array.array("h", (int(32767 * level * math.sin(2 * math.pi * 300 * i / rate))
                             for i in range(n))).tobytes()


def _spans(states: list[tuple[State, float]], state: State, after: int) -> list[tuple[float, float]]:
    """The (start, end) times of each stretch of `state` from index `after` on."""
    spans, start = [], None
    for i, (s, t) in enumerate(states):
        if i < after:
            continue
        if s is state and start is None:
            start = t
        elif s is not state and start is not None:
            spans.append((start, t))
            start = None
    return spans


@pytest.mark.parametrize("mode", ["hold", "toggle"])
def test_a_late_audio_done_and_a_pause_never_end_the_new_reply_early(make_rig: Any, mode: str) -> None:
    """Press mid-reply, speak, release: the old reply's AgentAudioDone arrives late and the new
    reply pauses for half a second, yet the state stays `speaking` until it has played, and no
    microphone audio goes up while the agent's voice is audible."""
    rig = make_rig(button={"mode": mode})
    emu = rig.emulator
    # Transcripts come from the emulator's own end-of-turn in toggle mode: a short silence.
    emu.options.end_of_speech = 1.5 if mode == "hold" else 0.6
    emu.options.audio_done_after_interrupt = True
    # Replies streamed near real time, as a server does: the first, long one is still being
    # sent when the user barges in (the server then owes its AgentAudioDone until after the
    # next turn), and the second one's pause really empties the speaker.
    emu.options.reply_seconds = 6.0
    emu.options.reply_pace = 1.25
    rig.press()
    if mode == "toggle":
        rig.release()  # a click: toggle mode listens on hands-free
    rig.wait_state(State.LISTENING)
    rig.speak("hello.wav")
    if mode == "hold":
        rig.release()
    rig.wait_state(State.SPEAKING)
    assert wait_until(lambda: rig.daemon.parts is not None and rig.daemon.parts.speaker.is_playing())
    # The user interrupts: press (toggle mode too: a half-duplex speaker cannot hear a voice).
    emu.options.reply_seconds = 3.0
    emu.options.reply_gap = GAP
    n = len(rig.states)
    rig.press()
    if mode == "toggle":
        rig.release()
    rig.wait_state(State.LISTENING, after=n)
    rig.speak("weather.wav")
    if mode == "hold":
        rig.release()
    session = emu.sessions[-1]
    # The hum starts with the new reply and lasts past its end.
    speaking_at = rig.wait_state(State.SPEAKING, after=n)
    hum = rig.pulse.play_into_mic(_tone(rig.pulse.rate, 3.0 + GAP + 2.0))
    after_reply = State.IDLE if mode == "hold" else State.LISTENING
    m = next(i for i, (s, t) in enumerate(rig.states) if t >= speaking_at and s is State.SPEAKING)
    rig.wait_state(after_reply, after=m, timeout=WAIT)
    hum.stop()
    # The interrupted reply's AgentAudioDone really came late: after the new user turn's text.
    with session._link.record_lock:
        sent = [(e.get("type"), e.get("role")) for e in session.events_sent]
    last_user = max(i for i, e in enumerate(sent) if e == ("ConversationText", "user"))
    first_reply = min(i for i, e in enumerate(sent) if e == ("ConversationText", "assistant")
                      and i > last_user)
    assert ("AgentAudioDone", None) in sent[last_user:first_reply], (sent, rig.state_names())
    # One unbroken stretch of speaking for the new reply, long enough to hold the pause.
    spans = _spans(rig.states, State.SPEAKING, m)
    assert len(spans) == 1, rig.state_names()
    start, end = spans[0]
    assert end - start >= 3.0 + GAP - 0.3, (start, end)
    # Half duplex: while the agent was audible, only silence went up.
    loud = [f for f in session.frames if f.kind == "binary" and start + EDGE <= f.t <= end - EDGE
            and max(array.array("h", bytes(f.data)), default=0) > 1000]
    assert not loud, f"{len(loud)} frames of microphone audio went up while the agent spoke"
