"""Client messages as text frames: config values to plain JSON data, compact and ASCII-only."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any


def plain(value: Any) -> Any:
    """Config values (mappings, tuples) as the dicts and lists json understands."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    # YAML turns an unquoted 2025-01-31 into a date; in a pass-through it means the text.
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} cannot be sent as JSON")


def dumps(message: Mapping[str, Any]) -> str:
    """Compact JSON; ASCII-only so a stray surrogate can never fail the socket's UTF-8 encoding."""
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        # The message is not echoed: settings may carry third-party credentials in headers.
        raise ValueError(f"cannot encode {message.get('type')}: {exc}") from None


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in extra replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = plain(value)
    return out


def key_values(headers: Mapping[str, str]) -> list[dict[str, str]]:
    """EA spells a header map as [{key, value}]."""
    return [{"key": str(k), "value": str(v)} for k, v in headers.items()]
