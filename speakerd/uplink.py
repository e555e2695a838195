"""The audio policy: whether the microphone or silence goes up, and where the frames go."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .events import State


class UplinkMode(enum.StrEnum):
    """What the mic thread does with each period."""

    OFF = "off"        # no socket: read and discard (an idle mic even stops its stream)
    BUFFER = "buffer"  # the socket is connecting: keep frames in order from the press edge
    STREAM = "stream"  # the settings are applied: send the buffer, then every frame


@dataclass(frozen=True)
class Uplink:
    """The mic gate (True: the microphone; False: silence of the same cadence), the mode, and
    whether live frames may wait for each other (see Mic.set_batched)."""
    live: bool
    mode: UplinkMode
    batched: bool = False


def uplink_policy(*, hold: bool, full_duplex: bool, state: State, held: bool, conversation: bool,
                  linked: bool, ready: bool, handing_over: bool) -> Uplink:
    """The one rule for the uplink, as a pure function of the session's facts.

    hold: the button mode is hold-to-talk (else toggle); held: the button is down in hold mode;
    conversation: a hands-free (toggle) conversation is on; linked/ready: a socket exists / its
    settings were applied; handing_over: released while connecting, the words wait in the buffer.

    Half duplex never sends the microphone while the agent's voice plays (state speaking), so
    the agent cannot hear itself; full duplex relies on the device's echo cancellation and keeps
    the microphone up so the user can interrupt by voice. Only then are live frames batched:
    the user's own turn, and an interruption once the server heard it, go up frame by frame.
    """
    speaking = state is State.SPEAKING
    if hold:
        live = (held and (full_duplex or not speaking)) or (full_duplex and ready)
    else:
        live = conversation and (full_duplex or not speaking)
    if not linked:
        mode = UplinkMode.OFF
    elif ready:
        mode = UplinkMode.STREAM
    elif held or conversation or handing_over:
        mode = UplinkMode.BUFFER
    else:
        mode = UplinkMode.OFF
    # A held button too: the agent answers while it is held only once the server has ended the
    # turn (a pause, with Nova), so words said after that are an interruption like any other.
    return Uplink(live, mode, batched=live and speaking)
