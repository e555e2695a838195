"""The Voice Agent wire codec: both dialects' JSON messages to and from typed values.

Pure functions only (no sockets, no threads, no clock): the agent module moves the frames, the
session consumes the events. This package is the only code that knows how the V1 dialect
(`Settings`, `/v1/agent/converse`) differs from the early-access one (`SettingsConfiguration`,
`/agent`): `events` (typed server events), `decode`, `settings` (the settings message of each
dialect, its provider blocks in `providers`) and `messages` (every other client message).
"""

from .decode import decode
from .dialect import DEFAULT_URLS, PATHS, Dialect, ProtocolError
from .events import (
    AgentAudioDone,
    AgentError,
    AgentStartedSpeaking,
    AgentThinking,
    AgentWarning,
    ConversationText,
    EndOfThought,
    FunctionCall,
    FunctionCallCancelled,
    FunctionCalling,
    FunctionCallRequest,
    FunctionCallResponse,
    History,
    InjectionRefused,
    LatencyReport,
    ServerEvent,
    SettingsApplied,
    UnknownEvent,
    Updated,
    UserStartedSpeaking,
    Welcome,
    event_fields,
)
from .messages import (
    encode_force_end_turn,
    encode_function_response,
    encode_keepalive,
    encode_update_listen,
)
from .settings import ContextItem, build_settings, encode_settings

# The warning a server without a Flux listen provider answers ForceEndTurn with.
FORCE_END_TURN_UNSUPPORTED = "FORCE_END_TURN_UNSUPPORTED"

__all__ = [
    "AgentAudioDone",
    "AgentError",
    "AgentStartedSpeaking",
    "AgentThinking",
    "AgentWarning",
    "build_settings",
    "ContextItem",
    "ConversationText",
    "decode",
    "DEFAULT_URLS",
    "Dialect",
    "encode_force_end_turn",
    "encode_function_response",
    "encode_keepalive",
    "encode_settings",
    "encode_update_listen",
    "EndOfThought",
    "event_fields",
    "FORCE_END_TURN_UNSUPPORTED",
    "FunctionCall",
    "FunctionCallCancelled",
    "FunctionCallRequest",
    "FunctionCalling",
    "FunctionCallResponse",
    "History",
    "InjectionRefused",
    "LatencyReport",
    "PATHS",
    "ProtocolError",
    "ServerEvent",
    "SettingsApplied",
    "UnknownEvent",
    "Updated",
    "UserStartedSpeaking",
    "Welcome",
]
