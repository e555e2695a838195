"""The server's messages as typed events, the same values whichever dialect carried them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .frames import plain


@dataclass(frozen=True)
class ServerEvent:
    """One decoded server message, the same value whichever dialect carried it."""


@dataclass(frozen=True)
class Welcome(ServerEvent):
    """The first frame of a connection (EA `session_id`, V1 `request_id`)."""
    session_id: str


@dataclass(frozen=True)
class SettingsApplied(ServerEvent):
    """The settings message was accepted; audio may flow."""


@dataclass(frozen=True)
class ConversationText(ServerEvent):
    """A final user transcript or one sentence the agent is saying."""
    role: str
    content: str


@dataclass(frozen=True)
class UserStartedSpeaking(ServerEvent):
    """The server heard the start of a user utterance: stop playback now."""


@dataclass(frozen=True)
class AgentThinking(ServerEvent):
    """A thought the LLM does not speak."""
    content: str


@dataclass(frozen=True)
class FunctionCall:
    """One function the agent wants called, arguments already parsed to an object."""
    id: str
    name: str
    arguments: Mapping[str, Any]
    client_side: bool
    # Non-empty when the arguments could not be read as a JSON object: the daemon answers the
    # call with an error instead of dropping it, so the agent's turn does not hang.
    arguments_error: str = ""


@dataclass(frozen=True)
class FunctionCallRequest(ServerEvent):
    """The agent calls one or more functions (EA always one)."""
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True)
class FunctionCalling(ServerEvent):
    """EA debug aid while the server runs a server-side function."""


@dataclass(frozen=True)
class FunctionCallResponse(ServerEvent):
    """The result of a server-side function (V1, informational)."""
    id: str
    name: str
    content: str


@dataclass(frozen=True)
class FunctionCallCancelled(ServerEvent):
    """Calls the daemon must no longer answer."""
    ids: tuple[str, ...]


@dataclass(frozen=True)
class AgentStartedSpeaking(ServerEvent):
    """The first audio of an LLM reply is about to stream; latencies in seconds."""
    total_latency: float | None
    tts_latency: float | None
    ttt_latency: float | None


@dataclass(frozen=True)
class AgentAudioDone(ServerEvent):
    """The server has sent the last audio frame of an utterance (playback may still run)."""


@dataclass(frozen=True)
class EndOfThought(ServerEvent):
    """The user's turn is complete."""


@dataclass(frozen=True)
class History(ServerEvent):
    """V1 echo of a conversation item or of completed function calls, for the context log."""
    role: str
    content: str
    function_calls: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Updated(ServerEvent):
    """An update was applied: what is one of prompt, instructions, speak, think, listen."""
    what: str


@dataclass(frozen=True)
class InjectionRefused(ServerEvent):
    """An InjectAgentMessage was ignored (EA gives no reason)."""
    message: str


@dataclass(frozen=True)
class AgentWarning(ServerEvent):
    """A non-fatal server warning."""
    code: str
    description: str


@dataclass(frozen=True)
class AgentError(ServerEvent):
    """A fatal server error; the server usually closes right after (EA has no code)."""
    code: str
    description: str


@dataclass(frozen=True)
class LatencyReport(ServerEvent):
    """V1 per-turn latency figures in seconds, only those the frame carried."""
    values: Mapping[str, float]


@dataclass(frozen=True)
class UnknownEvent(ServerEvent):
    """A message type this codec does not model; the daemon logs it and carries on."""
    type: str
    payload: Mapping[str, Any]


def event_fields(event: ServerEvent) -> dict[str, Any]:
    """An event's fields as plain data (for logs and tests); nested calls become dicts."""
    return {name: plain(value) for name, value in dataclasses.asdict(event).items()}
