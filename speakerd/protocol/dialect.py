"""The two wire dialects, where each one lives, and the one error decoding raises."""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping


class Dialect(enum.StrEnum):
    """The two wire dialects; the values are those of the config key agent.dialect."""

    V1 = "v1"
    EARLY_ACCESS = "early_access"


DEFAULT_URLS: Mapping[Dialect, str] = types.MappingProxyType({
    Dialect.V1: "wss://agent.deepgram.com/v1/agent/converse",
    Dialect.EARLY_ACCESS: "wss://agent.deepgram.com/agent",
})

PATHS: Mapping[Dialect, str] = types.MappingProxyType({
    Dialect.V1: "/v1/agent/converse",
    Dialect.EARLY_ACCESS: "/agent",
})


class ProtocolError(ValueError):
    """A text frame that is not a well-formed server message; the only exception decode() raises.

    The message names the message type and field, never the field's value (it may be long, and
    function arguments may carry anything).
    """
