"""The local control socket (`speakerd ctl`): press, release, status and reload over a Unix socket.

One thread owns the listening socket and every connection. Each connection carries one JSON
request line and gets one JSON reply line; the thread only calls the small thread-safe
`Controls` methods (which post events to the session), so the session stays the only writer
of state. Access is by file permission: the socket is 0660, group-owned by the opt-in group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
DEFAULT_SOCKET = f"/run/speakerd/{SOCKET_NAME}"
# The group whose members may use the socket besides root (scripts/install creates it; the unit
# gives the socket to it, since the sandboxed service itself may not chown).
GROUP = "speakerd-ctl"
COMMANDS = ("press", "release", "status", "reload")
# One request is a short JSON line; anything longer is not a client of ours.
MAX_REQUEST = 1024
# At most this many connections are served at once; more are refused, so a stuck or hostile
# local client cannot make the thread hold an unbounded number of sockets.
MAX_CLIENTS = 8
# A client has this long to send its request; the thread never waits on a slow one.
CLIENT_TIMEOUT = 2.0
# Replies are a few hundred bytes; a client that does not take them this fast is dropped.
SEND_TIMEOUT = 0.5
_BACKLOG = 8


class Controls(Protocol):
    """What the socket may do to the daemon; every method is quick and safe from any thread."""

    def press(self) -> None: ...
    def release(self) -> None: ...
    def status(self) -> dict[str, Any]: ...
    def ask_reload(self) -> int:
        """Ask for a reload; returns this request's number (a reload covering it reports it)."""
        ...


class LinkMeter:
    """Connected time to the agent (what is billed), fed by link up/down reports from any thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        # Link threads report ups and downs while the control thread reads the totals.
        self._lock = threading.Lock()
        self._up: dict[int, float] = {}
        self._closed_seconds = 0.0

    def up(self, link: object) -> None:
        with self._lock:
            self._up.setdefault(id(link), self._clock())

    def down(self, link: object) -> None:
        with self._lock:
            since = self._up.pop(id(link), None)
            if since is not None:
                self._closed_seconds += self._clock() - since

    @property
    def connected(self) -> bool:
        with self._lock:
            return bool(self._up)

    def seconds(self) -> float:
        """Seconds any link was open since the daemon started (overlaps counted once per link)."""
        now = self._clock()
        with self._lock:
            return self._closed_seconds + sum(now - t for t in self._up.values())


@dataclass(frozen=True)
class ReloadOutcome:
    """How the latest reload ended; it read the config after every request up to `covers`."""
    count: int = 0
    covers: int = 0
    ok: bool = True
    message: str = ""


class ServiceControls:
    """What the socket may do to the running daemon: the button's press and release, status, reload.

    It reaches the current generation of parts through `parts()` (a reload replaces them) and
    only posts events or reads small values, so the session stays the only writer of state.
    """

    def __init__(self, parts: Callable[[], Any], request_reload: Callable[[], None],
                 meter: LinkMeter, clock: Callable[[], float] = time.monotonic) -> None:
        self._parts = parts
        self._request_reload = request_reload
        self._meter = meter
        self._clock = clock
        # Written by the main thread only, replaced whole so the control thread reads a
        # consistent outcome without a lock.
        self.reload_outcome = ReloadOutcome()
        # Reload requests, numbered; only the control thread counts, the main thread reads.
        self.tickets = 0

    def press(self) -> None:
        parts = self._parts()
        if parts is not None:
            parts.press(self._clock())

    def release(self) -> None:
        parts = self._parts()
        if parts is not None:
            parts.release(self._clock())

    def ask_reload(self) -> int:
        self.tickets += 1
        ticket = self.tickets
        self._request_reload()
        return ticket

    def reloaded(self, covers: int, ok: bool, message: str) -> None:
        """The main thread finished a reload that read the config after request `covers`."""
        self.reload_outcome = ReloadOutcome(self.reload_outcome.count + 1, covers, ok, message)

    def status(self) -> dict[str, Any]:
        """State, last error, the agent link and the last turn, read without stopping anything."""
        parts = self._parts()
        session = parts.session if parts is not None else None
        turns = list(session.turns) if session is not None else []
        last = turns[-1] if turns else None
        outcome = self.reload_outcome
        return {
            "state": str(session.state) if session is not None else "starting",
            "last_error": session.last_error if session is not None else "",
            "agent_connected": self._meter.connected,
            "connected_seconds": round(self._meter.seconds(), 1),
            "uptime_seconds": round(self._clock() - self._meter.started, 1),
            "turns": last.number if last is not None else 0,
            "last_turn": {**last.figures(), "line": last.line()} if last is not None else None,
            "reload": {"count": outcome.count, "covers": outcome.covers, "ok": outcome.ok,
                       "message": outcome.message},
        }


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    buf: bytes = b""


class ControlServer:
    """Owns the control socket: one thread, a bounded number of short-lived connections."""

    def __init__(self, path: str, controls: Controls, *, mode: int = 0o660,
                 max_clients: int = MAX_CLIENTS, client_timeout: float = CLIENT_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._controls = controls
        self._mode = mode
        self._max_clients = max_clients
        self._client_timeout = client_timeout
        self._clock = clock
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        # stop() writes to this pair so the select() in the thread returns at once.
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self.refused = 0

    def start(self) -> ControlServer:
        """Bind (replacing a stale socket file, never anything else), listen, serve on a thread."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self.path)
            # bind() applied the umask (0077 under the unit); open it to the group on purpose.
            os.chmod(self.path, self._mode)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._thread.start()
        log.info("control socket at %s", self.path)
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Idempotent: stop the thread, close every socket, remove the socket file."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the control thread did not stop")
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if self._thread is None or not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    # --- the control thread ------------------------------------------------------------------

    def _run(self) -> None:
        assert self._sock is not None
        clients: dict[int, _Client] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            try:
                while not self._stopping.is_set():
                    now = self._clock()
                    wait = min((c.deadline for c in clients.values()), default=now + 60.0) - now
                    for key, _ in sel.select(max(0.0, wait)):
                        if key.fileobj is self._sock:
                            self._accept(sel, clients)
                        elif key.fileobj is not self._wake_r and key.fd in clients:
                            self._readable(sel, clients, clients[key.fd])
                    now = self._clock()
                    for client in [c for c in clients.values() if now >= c.deadline]:
                        self._finish(sel, clients, client, {"ok": False, "error": "request timed out"})
            finally:
                for client in list(clients.values()):
                    self._close(sel, clients, client)

    def _accept(self, sel: selectors.BaseSelector, clients: dict[int, _Client]) -> None:
        assert self._sock is not None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("control socket: accept failed: %s", exc)
            return
        conn.setblocking(False)
        if len(clients) >= self._max_clients:
            self.refused += 1
            self._reply(conn, {"ok": False, "error": "busy: too many control connections"})
            conn.close()
            return
        client = _Client(conn, self._clock() + self._client_timeout)
        clients[conn.fileno()] = client
        sel.register(conn, selectors.EVENT_READ)

    def _readable(self, sel: selectors.BaseSelector, clients: dict[int, _Client],
                  client: _Client) -> None:
        try:
            chunk = client.sock.recv(MAX_REQUEST + 1 - len(client.buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(sel, clients, client)
            return
        client.buf += chunk
        line, newline, _ = client.buf.partition(b"\n")
        if newline or (not chunk and client.buf):
            self._finish(sel, clients, client, self._handle(line, client.sock))
        elif not chunk:
            self._close(sel, clients, client)  # connected and left without a word
        elif len(client.buf) > MAX_REQUEST:
            self._finish(sel, clients, client,
                         {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})

    def _handle(self, line: bytes, conn: socket.socket) -> dict[str, Any]:
        try:
            request = json.loads(line.decode("utf-8"))
            command = request.get("command") if isinstance(request, dict) else None
        except (UnicodeDecodeError, ValueError):
            return {"ok": False, "error": "not a JSON request"}
        if command not in COMMANDS:
            return {"ok": False, "error": f"unknown command (one of {', '.join(COMMANDS)})"}
        if command != "status":
            log.debug("control: %s from uid %s", command, _peer_uid(conn))
        try:
            if command == "press":
                self._controls.press()
                return {"ok": True}
            if command == "release":
                self._controls.release()
                return {"ok": True}
            if command == "reload":
                return {"ok": True, "ticket": self._controls.ask_reload()}
            return {"ok": True, **self._controls.status()}
        except Exception:  # noqa: BLE001 - a failing command must not end the control thread
            log.exception("control: %s failed", command)
            return {"ok": False, "error": f"{command} failed (see the service log)"}

    def _finish(self, sel: selectors.BaseSelector, clients: dict[int, _Client], client: _Client,
                reply: dict[str, Any]) -> None:
        self._reply(client.sock, reply)
        # Closing with unread bytes (the rest of an over-long request) makes the client's next
        # read fail before it sees the reply; what is already here is dropped first, bounded.
        with contextlib.suppress(OSError):
            client.sock.setblocking(False)
            for _ in range(16):
                if not client.sock.recv(4096):
                    break
        self._close(sel, clients, client)

    @staticmethod
    def _reply(conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.settimeout(SEND_TIMEOUT)
            conn.sendall(json.dumps(reply).encode("utf-8") + b"\n")
        except OSError:
            pass  # the client went away; nothing to tell it

    @staticmethod
    def _close(sel: selectors.BaseSelector, clients: dict[int, _Client], client: _Client) -> None:
        clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(client.sock)
        client.sock.close()


def _peer_uid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[1])


# --- the client ------------------------------------------------------------------------------

class ControlError(Exception):
    """The control socket could not be reached or refused the request."""


def request(command: str, path: str = DEFAULT_SOCKET, timeout: float = 5.0) -> dict[str, Any]:
    """Send one command and return the reply; raises ControlError with a reason a user can act on."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path} (is speakerd running?)") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run as root or join the group "
                               f"{GROUP} (sudo usermod -aG {GROUP} $USER, then log in again)") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        data = b""
        try:
            try:
                sock.sendall(json.dumps({"command": command}).encode("utf-8") + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before it read a word (busy): the reply waiting here says why
            while not data.endswith(b"\n") and len(data) < 1 << 16:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError(f"{path}: no valid reply") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: no valid reply")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "refused")))
    return reply


def wait_reload(path: str = DEFAULT_SOCKET, timeout: float = 30.0) -> dict[str, Any]:
    """Ask for a reload and wait until one that read the config after the request has finished."""
    ticket = int(request("reload", path)["ticket"])
    deadline = time.monotonic() + timeout
    tick = threading.Event()  # never set: a timed wait between polls
    while time.monotonic() < deadline:
        status = request("status", path)
        outcome = status.get("reload") or {}
        if int(outcome.get("covers", 0)) >= ticket:
            return dict(outcome)
        tick.wait(0.05)
    raise ControlError(f"the daemon did not finish the reload within {timeout:.0f} s")
