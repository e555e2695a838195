"""Opening the websocket: TLS, the key's one header, no redirect or proxy, and why an open failed."""

from __future__ import annotations

import ssl
import urllib.parse

import websocket

from ..textsafe import shown
from .frames import MaskKeys, read_ahead


class ConnectFailed(Exception):
    """The socket did not open: the reason to report, and the HTTP status if the server gave one."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def sslopt(url: str, ca_file: str) -> dict[str, object]:
    """websocket-client's TLS options for `url`: none for ws://, a verifying context for wss://."""
    if not url.startswith("wss://"):
        # Plain ws:// (loopback only) has no TLS: loading the system's CA store would cost
        # 1.8 MB of memory for nothing.
        return {}
    # Verification stays on; a CA file adds to the system's trust store (e.g. a local test
    # server's certificate), it does not replace it.
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return {"context": context}


def connect(url: str, api_key: str, *, timeout: float, ca_file: str) -> websocket.WebSocket:
    """An open websocket to `url`, or ConnectFailed saying why not (never with the key in it)."""
    ws: websocket.WebSocket | None = None
    try:
        ws = websocket.WebSocket(sslopt=sslopt(url, ca_file), enable_multithread=True,
                                 skip_utf8_validation=True)
        ws.set_mask_key(MaskKeys())
        options: dict[str, object] = {}
        host = urllib.parse.urlsplit(url).hostname or ""
        if url.startswith("ws://"):
            # Plain ws:// is for this machine only: never through a proxy that would read it.
            options["http_no_proxy"] = [host]
        # The key goes only into this header, only to this URL: a redirect would re-send it
        # wherever the Location points, so none is followed. websocket-client does not log
        # headers unless its trace is enabled, which we never do.
        ws.connect(url, header=[f"Authorization: Token {api_key}"],
                   timeout=timeout, redirect_limit=0, **options)
        read_ahead(ws)
    except websocket.WebSocketBadStatusException as exc:
        raise ConnectFailed(_handshake_reason(exc.status_code), exc.status_code) from None
    except Exception as exc:  # noqa: BLE001 - any connect failure is a disconnect with a reason
        response = getattr(ws, "handshake_response", None)
        status = getattr(response, "status", None)
        if isinstance(status, int) and 300 <= status < 400:
            raise ConnectFailed(f"the agent's server redirected the connection (HTTP {status}); "
                                "redirects are not followed", status) from None
        raise ConnectFailed(f"cannot connect: {describe(exc)}") from None
    return ws


def _handshake_reason(status: int) -> str:
    if status in (401, 403):
        return f"the agent refused the API key (HTTP {status})"
    if status == 429:
        return "the agent is rate-limiting us (HTTP 429)"
    return f"the agent refused the connection (HTTP {status})"


def describe(exc: BaseException) -> str:
    """An exception as one line for a disconnect's reason."""
    # The text may come from the peer (a status line, a close reason): escaped and cut.
    return shown(str(exc) or type(exc).__name__, 200)
