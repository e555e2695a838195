"""The websocket to the Voice Agent, the only websocket-client import: link, frames, handshake."""

from .frames import MAX_CONTROL, MAX_FRAGMENTS, MAX_MESSAGE, FrameRefused, MaskKeys
from .handshake import ConnectFailed
from .link import CLOSE_SEND_TIMEOUT, MAX_CONTROL_QUEUED, OUTBOX_FRAMES, AgentLink

__all__ = [
    "CLOSE_SEND_TIMEOUT",
    "MAX_CONTROL",
    "MAX_CONTROL_QUEUED",
    "MAX_FRAGMENTS",
    "MAX_MESSAGE",
    "OUTBOX_FRAMES",
    "AgentLink",
    "ConnectFailed",
    "FrameRefused",
    "MaskKeys",
]
