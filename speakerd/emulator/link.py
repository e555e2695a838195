"""One connection's write side, shared by its receive and reply threads."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed, InvalidState
from websockets.sync.server import ServerConnection

from .options import EmulatorOptions, ReplyRecord

log = logging.getLogger(__name__)


class SessionHost(Protocol):
    """What a session needs from the emulator that owns it."""
    options: EmulatorOptions

    def next_transcript(self) -> str: ...
    def take_calls(self) -> list[tuple[str, dict[str, Any]]]: ...
    def take_fault(self, name: str) -> Any: ...
    def changed(self) -> None: ...
    def emit(self, number: int, dialect: str, line: str) -> None: ...


class Link:
    """The write side of one connection: every send, its record, closing and faults."""

    def __init__(self, number: int, dialect: str, conn: ServerConnection,
                 host: SessionHost) -> None:
        self.number = number
        self.dialect = dialect
        self.host = host
        self.events_sent: list[dict[str, Any]] = []
        self.replies: list[ReplyRecord] = []
        # Guards the recorded lists, which tests read while the threads append to them.
        self.record_lock = threading.Lock()
        # Serialises everything sent, and makes "interrupt the reply + send UserStartedSpeaking"
        # atomic against the reply engine's "check interrupted + send frame", so no frame beyond
        # slip_frames can follow UserStartedSpeaking. Reentrant: helpers send while holding it.
        self.send_lock = threading.RLock()
        self.closing = threading.Event()  # the session is ending; every wait watches it
        self.history_allowed = True  # the settings' flags.history
        self.close_reason = ""
        self._conn = conn
        self._stalled = False

    @property
    def stalled(self) -> bool:
        """Whether the stall fault fired: nothing is sent or answered any more."""
        return self._stalled

    def emit(self, line: str) -> None:
        self.host.emit(self.number, self.dialect, line)

    def send_json(self, msg: dict[str, Any]) -> bool:
        """Send one JSON message and record it; False when it could not be sent."""
        with self.send_lock:
            if self._stalled:
                return False
            # Recorded before it is sent, so a test that has received a message always finds
            # it here; only this lock's holder appends, so on failure it is still the last one.
            with self.record_lock:
                self.events_sent.append({**msg, "t": time.monotonic()})
            try:
                self._conn.send(json.dumps(msg))
            except ConnectionClosed:
                with self.record_lock:
                    self.events_sent.pop()
                return False
        kind = msg.get("type")
        log.debug("session %d sent %s", self.number, kind)
        detail = (f" {msg.get('role')}: {msg.get('content')}" if kind == "ConversationText"
                  else f" {msg.get('code')}" if kind in ("Error", "Warning") else "")
        self.emit(f"-> {kind}{detail}")
        self.host.changed()
        return True

    def send_frame(self, frame: bytes) -> bool:
        """Send one binary audio frame; False when it could not be sent."""
        try:
            self._conn.send(frame)
        except ConnectionClosed:
            return False
        return True

    def history(self, role: str, content: str) -> None:
        """V1 History echo of a conversation item, unless switched off."""
        if self.history_on():
            self.send_json({"type": "History", "role": role, "content": content})

    def history_on(self) -> bool:
        return self.dialect == "v1" and self.host.options.history and self.history_allowed

    def add_reply(self, record: ReplyRecord) -> None:
        with self.record_lock:
            self.replies.append(record)

    def stall(self) -> None:
        """From now on send nothing and answer nothing."""
        with self.send_lock:
            self._stalled = True
        self.close_reason = "stalled"

    def fail(self, code: str, description: str) -> None:
        """Send the dialect's Error and close the connection (the real server's way out)."""
        if self.dialect == "v1":
            self.send_json({"type": "Error", "description": description, "code": code})
        else:
            self.send_json({"type": "Error", "message": description})
        self.close_reason = code
        self.emit(f"closing after {code}")
        self.closing.set()
        self.close(self.host.options.error_close_code)

    def close(self, code: int | None) -> None:
        """Close with this status, or with none (the client then reports 1005)."""
        try:
            if code is None:
                # websockets has no public way to close without a status; the real server does
                # exactly that, so send the empty close frame through the protocol object.
                with self._conn.send_context():
                    self._conn.protocol.send_close()
            else:
                self._conn.close(code)
        except (ConnectionClosed, InvalidState):
            pass

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (also unblocks a stuck send)."""
        try:
            self._conn.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
