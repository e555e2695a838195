"""The client messages other than the settings: KeepAlive, function answers, ForceEndTurn and
UpdateListen."""

from __future__ import annotations

from ..config import Config, is_flux
from .dialect import Dialect
from .frames import dumps
from .providers import listen_provider_v1

# UpdateListen clears language_hints when they are omitted; every other tunable an update
# omits keeps its old value, so dropping one needs a new connection.
_CLEARED_WHEN_OMITTED = {"language_hints"}


def encode_keepalive() -> str:
    """The KeepAlive text frame (same in both dialects)."""
    return dumps({"type": "KeepAlive"})


def encode_function_response(dialect: Dialect | str, call_id: str, name: str, content: str) -> str:
    """The answer to a client-side call: V1 {id, name, content}, EA {function_call_id, output}."""
    if Dialect(dialect) is Dialect.V1:
        return dumps({"type": "FunctionCallResponse", "id": call_id, "name": name,
                      "content": content})
    return dumps({"type": "FunctionCallResponse", "function_call_id": call_id, "output": content})


def encode_force_end_turn() -> str:
    """V1 ForceEndTurn: end the user's turn now (Flux listen only; it has no other field)."""
    return dumps({"type": "ForceEndTurn"})


def encode_update_listen(old: Config, new: Config) -> str | None:
    """V1 UpdateListen taking a live link from old's listen settings to new's, or None when the
    change cannot be one: early access, not Flux on both sides, another model, or a setting
    dropped that an update would keep. The update carries the whole provider, identity included.
    """
    if not (old.agent.dialect == new.agent.dialect == Dialect.V1.value):
        return None
    if not (is_flux(old) and is_flux(new)):
        return None
    before, after = listen_provider_v1(old), listen_provider_v1(new)
    if before["model"] != after["model"] or set(before) - set(after) - _CLEARED_WHEN_OMITTED:
        return None
    return dumps({"type": "UpdateListen", "listen": {"provider": after}})
