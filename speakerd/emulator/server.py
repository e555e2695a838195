"""The emulator's server: the handshake (paths, auth, refusals) and the sessions it owns."""

from __future__ import annotations

import hmac
import logging
import threading
import time
import types
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from .connection import EmulatedSession
from .options import EmulatorOptions
from .wire import EA, PATHS, V1

__all__ = ["Emulator"]

log = logging.getLogger(__name__)

_PATH_OF = {V1: "/v1/agent/converse", EA: "/agent"}
_DIALECT_ALIASES = {"v1": V1, "early_access": EA, "ea": EA}
_AUTH_SCHEMES = ("token", "bearer")
# The knobs reset to these when a one-shot fault fires.
_ONE_SHOT = {"drop_mid_reply": False, "stall_mid_reply": False, "error_then_close": None}


class Emulator:
    """The server: accepts, authenticates and routes connections, and owns their sessions."""

    def __init__(self, options: EmulatorOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0, on_event: Callable[[str], None] | None = None) -> None:
        self.options = options if options is not None else EmulatorOptions()
        self.host = host
        self.port = port
        self.sessions: list[EmulatedSession] = []
        self.rejected: list[tuple[float, int]] = []  # (time, HTTP status) of refused upgrades
        self._on_event = on_event
        # Guards sessions, rejected, the pending calls, the transcript cursor and one-shot knobs.
        self._lock = threading.Lock()
        # Notified whenever a session records or sends something; wait_for() sleeps on it.
        self._changed = threading.Condition()
        self._calls: list[tuple[str, dict[str, Any]]] = []
        self._transcript_index = 0
        self._request_ids: dict[int, str] = {}
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Emulator:
        """Listen and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        self._server = serve(
            self._handle, self.host, self.port,
            process_request=self._process_request, process_response=self._process_response,
            select_subprotocol=_select_subprotocol,
            # close_timeout bounds every close handshake with a client that never answers it.
            close_timeout=1, compression=None,
            # The real server's pings are undocumented; none keeps an idle emulator at 0 % CPU.
            ping_interval=None, max_size=2**22,
            logger=logging.getLogger(f"{__name__}.server"))
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="emulator-accept", daemon=True)
        self._thread.start()
        log.info("agent emulator listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        """Close every connection and stop serving; bounded, idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            sessions = list(self.sessions)
        for session in sessions:
            session.begin_stop()
        # shutdown() closes each connection with a handshake of up to close_timeout and waits
        # for the handlers; run it aside so a wedged peer cannot hold stop() for long.
        stopper = threading.Thread(target=server.shutdown, name="emulator-stop", daemon=True)
        stopper.start()
        stopper.join(timeout=5.0)
        if stopper.is_alive():
            for session in sessions:
                session.abort()
            stopper.join(timeout=5.0)
            if stopper.is_alive():
                log.warning("agent emulator: connections did not close")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        log.info("agent emulator stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.stop()

    # --- what tests and the CLI use --------------------------------------------------------

    def url(self, dialect: str = "v1") -> str:
        """The websocket URL of a dialect ("v1", or "early_access"/"ea")."""
        path = _PATH_OF[_DIALECT_ALIASES[dialect]]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{path}"

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until predicate() is true (re-checked on every change and every 50 ms)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # Short waits too, since a predicate may depend on the client, not on us.
                self._changed.wait(min(remaining, 0.05))
        return True

    def call_function(self, name: str, arguments: dict[str, Any]) -> None:
        """At the next user turn, call this function before replying (calls queue up in order)."""
        with self._lock:
            self._calls.append((name, dict(arguments)))

    def say(self, text: str, seconds: float) -> None:
        """Make the newest live session speak unsolicited, like InjectAgentMessage."""
        with self._lock:
            live = [s for s in self.sessions if s.live and s.applied.is_set()]
        if not live:
            raise RuntimeError("no connected session has applied its settings")
        live[-1].say(text, seconds)

    # --- SessionHost -----------------------------------------------------------------------

    def next_transcript(self) -> str:
        """The next scripted user transcript (cycled)."""
        with self._lock:
            scripted = list(self.options.transcripts) or ["hello"]
            text = scripted[self._transcript_index % len(scripted)]
            self._transcript_index += 1
            return text

    def take_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """The queued function calls, now owned by the caller."""
        with self._lock:
            calls, self._calls = self._calls, []
            return calls

    def take_fault(self, name: str) -> Any:
        """Read a one-shot fault knob and reset it when it is set."""
        with self._lock:
            value = getattr(self.options, name)
            if value:
                setattr(self.options, name, _ONE_SHOT[name])
            return value

    def changed(self) -> None:
        """Wake wait_for()."""
        with self._changed:
            self._changed.notify_all()

    def emit(self, number: int, dialect: str, line: str) -> None:
        """One event line for the CLI."""
        if self._on_event is not None:
            self._on_event(f"[{number} {dialect}] {line}")

    # --- handshake and connections -----------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """Route by path, then the refuse knob, then auth; None lets the upgrade proceed."""
        with self._lock:
            self._request_ids[id(conn)] = str(uuid.uuid4())
        status: int | None = None
        if urlsplit(request.path).path not in PATHS:
            status, text = 404, "Not Found\n"
        elif self.options.refuse_status:
            status = self.options.refuse_status
            text = "Refused by the emulator.\n"
        elif not _authorized(request.headers, self.options.api_key):
            status, text = 401, "Unauthorized: send 'Authorization: Token <key>'.\n"
        if status is None:
            return None
        with self._lock:
            self.rejected.append((time.monotonic(), status))
        log.info("agent emulator refused an upgrade with %d", status)
        if self._on_event is not None:
            self._on_event(f"[-] refused {request.path} with HTTP {status}")
        self.changed()
        return conn.respond(status, text)

    def _process_response(self, conn: ServerConnection, request: Request,
                          response: Response) -> Response | None:
        with self._lock:
            if response.status_code == 101:
                request_id = self._request_ids.get(id(conn))
            else:
                request_id = self._request_ids.pop(id(conn), None)
        if request_id is not None:
            response.headers["dg-request-id"] = request_id
        return None

    def _handle(self, conn: ServerConnection) -> None:
        """One connection's handler thread: build its session and serve it."""
        with self._lock:
            request_id = self._request_ids.pop(id(conn), None) or str(uuid.uuid4())
            assert conn.request is not None
            dialect = PATHS[urlsplit(conn.request.path).path]
            session = EmulatedSession(len(self.sessions) + 1, dialect, request_id, conn, self)
            self.sessions.append(session)
        self.changed()
        session.run()


def _authorized(headers: Headers, key: str) -> bool:
    """Whether the upgrade carries the key as `Token`/`Bearer` or as sub-protocols."""
    wanted = key.encode()
    auth = headers.get("Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() in _AUTH_SCHEMES and hmac.compare_digest(value.strip().encode(),
                                                                   wanted):
            return True
    offered = [p.strip() for h in headers.get_all("Sec-WebSocket-Protocol") for p in h.split(",")]
    return (len(offered) >= 2 and offered[0].lower() in _AUTH_SCHEMES
            and hmac.compare_digest(offered[1].encode(), wanted))


def _select_subprotocol(conn: ServerConnection, offered: Any) -> Any:
    """Echo `token`/`bearer` when the key came as sub-protocols, as Deepgram does."""
    for proto in offered:
        if str(proto).lower() in _AUTH_SCHEMES:
            return proto
    return None
