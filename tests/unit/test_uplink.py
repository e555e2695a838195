"""The audio policy as a table: for each situation, is the mic gate open and where do frames go."""

from __future__ import annotations

import itertools

import pytest

from speakerd.events import State
from speakerd.uplink import UplinkMode, uplink_policy

OFF, BUFFER, STREAM = UplinkMode.OFF, UplinkMode.BUFFER, UplinkMode.STREAM

# (mode, duplex, state, held, conversation, linked, ready, handing_over) -> (live, uplink)
TABLE = [
    # idle, no socket: nothing leaves the mic, which may stop capturing
    ("hold", "half", State.IDLE, False, False, False, False, False, False, OFF),
    # the press edge: the gate opens and frames wait in the connect buffer
    ("hold", "half", State.CONNECTING, True, False, True, False, False, True, BUFFER),
    # released while connecting: the gate shuts, the buffered words wait for the link
    ("hold", "half", State.CONNECTING, False, False, True, False, True, False, BUFFER),
    # a warm socket, button held: the mic streams
    ("hold", "half", State.LISTENING, True, False, True, True, False, True, STREAM),
    # released: silence of the same cadence keeps the socket alive
    ("hold", "half", State.THINKING, False, False, True, True, False, False, STREAM),
    # the agent speaks while the button is still held: half duplex never lets it hear itself
    ("hold", "half", State.SPEAKING, True, False, True, True, False, False, STREAM),
    # full duplex: the mic is up whenever the socket is, so a voice can interrupt
    ("hold", "full", State.SPEAKING, False, False, True, True, False, True, STREAM),
    ("hold", "full", State.IDLE, False, False, True, True, False, True, STREAM),
    # full duplex before the settings apply: nothing is buffered without a press
    ("hold", "full", State.IDLE, False, False, True, False, False, False, OFF),
    # toggle: a hands-free conversation listens, thinks with the mic open...
    ("toggle", "half", State.LISTENING, False, True, True, True, False, True, STREAM),
    ("toggle", "half", State.THINKING, False, True, True, True, False, True, STREAM),
    # ...and shuts it while the agent speaks (half duplex)
    ("toggle", "half", State.SPEAKING, False, True, True, True, False, False, STREAM),
    ("toggle", "full", State.SPEAKING, False, True, True, True, False, True, STREAM),
    # toggle, connecting: the words from the press on are buffered
    ("toggle", "half", State.CONNECTING, False, True, True, False, False, True, BUFFER),
    # offline mid-conversation: no socket, frames go nowhere
    ("toggle", "half", State.OFFLINE, False, True, False, False, False, True, OFF),
    # the conversation is over but the socket is warm: silence keeps it open
    ("toggle", "half", State.IDLE, False, False, True, True, False, False, STREAM),
]


@pytest.mark.parametrize("mode, duplex, state, held, conversation, linked, ready, handing_over, live, uplink",
                         TABLE)
def test_the_uplink_policy_table(mode: str, duplex: str, state: State, held: bool, conversation: bool,
                                 linked: bool, ready: bool, handing_over: bool, live: bool,
                                 uplink: UplinkMode) -> None:
    """Each row: what a user would expect the microphone to do in that situation."""
    got = uplink_policy(hold=mode == "hold", full_duplex=duplex == "full", state=state, held=held,
                        conversation=conversation, linked=linked, ready=ready,
                        handing_over=handing_over)
    assert (got.live, got.mode) == (live, uplink)


def test_half_duplex_never_opens_the_mic_while_speaking() -> None:
    """Whatever else holds, half duplex and state speaking mean the gate is shut."""
    for mode in ("hold", "toggle"):
        for flags in range(32):
            held, conversation, linked, ready, handing_over = (bool(flags >> i & 1) for i in range(5))
            got = uplink_policy(hold=mode == "hold", full_duplex=False, state=State.SPEAKING,
                                held=held, conversation=conversation, linked=linked, ready=ready,
                                handing_over=handing_over)
            assert not got.live


def test_frames_wait_for_each_other_only_while_the_agent_speaks_in_full_duplex() -> None:
    """Batched: full duplex, state speaking, the mic up (for a voice barge-in); else each frame
    goes up as it fills, the user's own turn above all."""
    for mode, duplex, state in itertools.product(("hold", "toggle"), ("half", "full"), State):
        for flags in range(32):
            held, conversation, linked, ready, handing_over = (bool(flags >> i & 1) for i in range(5))
            got = uplink_policy(hold=mode == "hold", full_duplex=duplex == "full", state=state,
                                held=held, conversation=conversation, linked=linked, ready=ready,
                                handing_over=handing_over)
            want = duplex == "full" and state is State.SPEAKING and got.live
            assert got.batched == want, (mode, duplex, state, flags)
