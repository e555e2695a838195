"""Every event that enters the session's inbox, and the states a user reads.

Events are past-tense facts, posted by the thread that saw them happen (a gpiozero callback, the
mic, a link's receive thread, the speaker, a function worker) and applied by the session thread,
one at a time. Each is defined here once; the session dispatches on their types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: this module imports nothing of ours at run time
    from .config import Config
    from .protocol import ServerEvent


class State(enum.StrEnum):
    """What the speaker is doing; the values are the words of the log, the status line and the
    LED config (`leds[].patterns`)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    OFFLINE = "offline"
    ERROR = "error"


# --- the button and the mic -----------------------------------------------------------------

@dataclass(frozen=True)
class ButtonPressed:
    """The button went down (or `speakerd ctl press`)."""
    t: float


@dataclass(frozen=True)
class ButtonReleased:
    """The button came up."""
    t: float


@dataclass(frozen=True)
class UplinkStarted:
    """The first audio frame of a turn left for the agent."""
    t: float


@dataclass(frozen=True)
class TurnAudioSent:
    """The mic handed over every period captured before turn end `number` was asked for (a
    release): a message sent now follows the user's last words on the wire."""
    number: int
    t: float


@dataclass(frozen=True)
class DeviceChanged:
    """An audio device went away (ok False, with the reason) or came back."""
    device: str
    ok: bool
    message: str


# --- the agent link -------------------------------------------------------------------------
# `link` is the AgentLink that posted the event: the session acts only on its current link's.

@dataclass(frozen=True)
class AgentConnected:
    """The socket is open and the settings message was sent."""
    link: object
    t: float


@dataclass(frozen=True)
class AgentDisconnected:
    """The socket closed or never opened; `status` is the HTTP status of a refused upgrade."""
    link: object
    t: float
    reason: str
    status: int | None = None
    requested: bool = False  # we closed it ourselves


@dataclass(frozen=True)
class AgentEventReceived:
    """A decoded server message from a link."""
    link: object
    event: ServerEvent
    t: float


# --- the speaker ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PlaybackStarted:
    """The first period of a reply went to the device."""
    reply: int
    t: float


@dataclass(frozen=True)
class PlaybackDrained:
    """A reply stopped sounding: its queue and the device buffer are empty.

    `ended` says whether the agent had marked this reply complete (its AgentAudioDone was
    played through, or the speaker gave the reply up); False means the audio ran dry first
    and more of it may still come.
    """
    reply: int
    t: float
    underruns: int
    frames: int
    ended: bool


@dataclass(frozen=True)
class PlaybackInterrupted:
    """An interrupt took effect: the queue was discarded and the device dropped."""
    t_request: float
    t_dropped: float
    discarded_bytes: int


# --- local functions ------------------------------------------------------------------------

@dataclass(frozen=True)
class FunctionFinished:
    """A local function call produced its answer: the JSON content for the agent."""
    call_id: str
    name: str
    content: str
    ok: bool
    end_conversation: bool = False


# --- the config -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ListenChanged:
    """A reload changed only the agent's listen settings: a live link is re-tuned, not closed."""
    cfg: Config


Event = (ButtonPressed | ButtonReleased | UplinkStarted | TurnAudioSent | DeviceChanged
         | AgentConnected | AgentDisconnected | AgentEventReceived | PlaybackStarted | PlaybackDrained
         | PlaybackInterrupted | FunctionFinished | ListenChanged)
