"""The websocket to the Voice Agent: one connection's lifecycle, its outbox and its rx/tx threads."""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from collections.abc import Callable

import websocket

from .. import protocol
from ..doorbell import Doorbell
from ..events import AgentConnected, AgentDisconnected, AgentEventReceived
from ..textsafe import shown
from .frames import FrameRefused, close_code, read_message
from .handshake import ConnectFailed, connect, describe

# One logger for the package: its journal lines say speakerd.agent, whichever module writes them.
log = logging.getLogger(__package__)

# Enough for several seconds of uplink audio frames (40 s of 80 ms ones) if the network
# hiccups; past that the oldest audio is dropped rather than letting memory grow without bound.
# Only audio is ever dropped.
OUTBOX_FRAMES = 500
# Control messages (function answers, settings) are never dropped; so many unsent means the peer
# stopped reading, and the link is dropped instead of the queue growing.
MAX_CONTROL_QUEUED = 2000
# A close handshake with a peer that stopped reading must not hold the tx thread long.
CLOSE_SEND_TIMEOUT = 0.5


class AgentLink:
    """One websocket connection: connects, sends settings first, then audio and JSON in order.

    Threads: `agent-tx` opens the socket and owns every write (and the KeepAlive and ping
    cadence); `agent-rx` owns every read. Callbacks run on `agent-rx` in arrival order, so the
    audio path can act on events and audio frames without reordering them.
    """

    def __init__(self, *, url: str, api_key: str, dialect: protocol.Dialect, settings: str,
                 on_event: Callable[[AgentConnected | AgentDisconnected | AgentEventReceived], None],
                 on_audio: Callable[[AgentLink, bytes], None],
                 connect_timeout: float = 10.0, keepalive_interval: float = 4.0,
                 ping_interval: float = 5.0, ca_file: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._api_key = api_key
        self.dialect = dialect
        self._settings = settings
        self._on_event = on_event
        self._on_audio = on_audio
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive_interval
        self._ping = ping_interval
        self._ca_file = ca_file
        self._clock = clock
        # The outbox decouples the mic thread (which must never block) from the network: audio
        # in a bounded deque that drops its oldest frame, control messages in a deque of their
        # own that never drops one, both under the lock. The doorbell wakes the tx thread for
        # either, or a close: rung after the lock is released, the last thing a sender does, so
        # the woken thread does not wait for the lock before it sends.
        self._lock = threading.Lock()
        self._bell = Doorbell()
        # The audio deque also carries the few JSON messages that must follow the audio already
        # queued (ForceEndTurn): the control deque goes first, so it would overtake the words.
        self._audio: collections.deque[bytes | str] = collections.deque()
        self._audio_frames = 0  # the bytes items in _audio (what the bound counts)
        self._control: collections.deque[str] = collections.deque()
        self._failure = ""  # set by fail(): the reason the link is dropped
        self._sending = False  # the tx thread is inside a send (a plain flag: read by close())
        self._closing = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._down_sent = threading.Lock()
        self._down = False
        self._dropped_frames = 0
        self._tx = threading.Thread(target=self._tx_main, name="agent-tx", daemon=True)
        self._rx: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"AgentLink({self.url!r})"

    # --- commands (any thread; they only enqueue or set a flag) --------------------------

    def start(self) -> AgentLink:
        self._tx.start()
        return self

    def send_audio(self, pcm: bytes) -> None:
        """Queue one audio frame; never blocks (drops the oldest frame when the network stalls)."""
        if self._closing.is_set():
            return
        with self._lock:
            if self._audio_frames >= OUTBOX_FRAMES:
                self._drop_oldest_frame()
                self._dropped_frames += 1
                if self._dropped_frames in (1, 10, 100) or self._dropped_frames % 1000 == 0:
                    log.warning("network too slow: dropped %d outgoing audio frames",
                                self._dropped_frames)
            self._audio.append(pcm)
            self._audio_frames += 1
        self._bell.ring()

    def _drop_oldest_frame(self) -> None:
        """The oldest audio frame goes (the caller holds the lock); an ordered message never."""
        if isinstance(self._audio[0], bytes):
            self._audio.popleft()  # the usual case: a message waits behind audio only briefly
        else:
            for i, item in enumerate(self._audio):
                if isinstance(item, bytes):
                    del self._audio[i]
                    break
        self._audio_frames -= 1

    def send_text(self, text: str, *, after_audio: bool = False) -> None:
        """Queue one JSON message; never dropped (past MAX_CONTROL_QUEUED the link is).

        Control messages go ahead of queued audio (a function's answer need not wait behind
        the microphone), except with `after_audio`: then it follows every frame queued so far.
        """
        if self._closing.is_set():
            return
        with self._lock:
            full = len(self._control) + len(self._audio) - self._audio_frames >= MAX_CONTROL_QUEUED
            if not full:
                if after_audio and self._audio:
                    self._audio.append(text)
                else:
                    self._control.append(text)
        if full:  # fail() rings
            self.fail(f"the agent stopped reading: {MAX_CONTROL_QUEUED} messages unsent")
        else:
            self._bell.ring()

    def fail(self, reason: str) -> None:
        """Drop the link for a reason (a limit the peer went past); it reconnects as after a drop."""
        with self._lock:
            if not self._failure:
                self._failure = reason
        self._closing.set()
        self._bell.ring()
        self._report_down(reason)

    def close(self) -> None:
        """Close the socket (idempotent); AgentDisconnected(requested=True) follows."""
        self._closing.set()
        self._bell.ring()
        ws = self._ws
        if ws is not None and self._sending:
            # A send in progress at close time is one the peer does not take (a healthy peer
            # takes a frame in microseconds): cut it short rather than wait out the timeout.
            _abort(ws)

    def alive(self) -> bool:
        """Whether either thread is still running."""
        return any(t is not None and t.is_alive() for t in (self._tx, self._rx))

    def join(self, timeout: float = 2.0) -> bool:
        """Wait for both threads; False if one would not die."""
        deadline = time.monotonic() + timeout
        if self._tx.is_alive() and self._tx is not threading.current_thread():
            self._tx.join(min(timeout, CLOSE_SEND_TIMEOUT))
            ws = self._ws
            if self._tx.is_alive() and self._closing.is_set() and ws is not None:
                _abort(ws)  # closing, but stuck on the peer: drop the TCP connection now
        for t in (self._tx, self._rx):
            if t is not None and t.is_alive() and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in (self._tx, self._rx)
                 if t is not None and t.is_alive() and t is not threading.current_thread()]
        if alive:
            log.warning("threads did not stop: %s", ", ".join(alive))
        return not alive

    # --- the write side ------------------------------------------------------------------

    def _tx_main(self) -> None:
        try:
            ws = connect(self.url, self._api_key, timeout=self._connect_timeout, ca_file=self._ca_file)
        except ConnectFailed as exc:
            self._report_down(exc.reason, status=exc.status)
            return
        if self._closing.is_set():
            ws.shutdown()
            self._report_down("closed", requested=True)
            return
        self._ws = ws
        # A silent peer is found by the receive timeout: we ping every ping interval, so a
        # ping interval plus a round trip's grace without any frame (not even a pong) means
        # the connection is dead.
        ws.settimeout(self._ping + 2.0)
        try:
            ws.send(self._settings)
        except Exception as exc:  # noqa: BLE001
            self._report_down(f"connection lost: {describe(exc)}")
            ws.shutdown()
            return
        self._rx = threading.Thread(target=self._rx_main, args=(ws,), name="agent-rx", daemon=True)
        self._rx.start()
        self._on_event(AgentConnected(self, self._clock()))
        self._tx_loop(ws)

    def _next(self, wait: float) -> str | bytes | None:
        """The next message to send (control first), or None when `wait` passed or closing."""
        item = self._pop()
        if item is None and not self._closing.is_set():
            # A ring from before the look above (for what it popped) returns at once: one more look.
            self._bell.wait(wait)
            item = self._pop()
        return None if self._closing.is_set() else item

    def _pop(self) -> str | bytes | None:
        with self._lock:
            if self._control:
                return self._control.popleft()
            if self._audio:
                item = self._audio.popleft()
                if isinstance(item, bytes):
                    self._audio_frames -= 1
                return item
            return None

    def _tx_loop(self, ws: websocket.WebSocket) -> None:
        last_sent = last_ping = time.monotonic()
        reason, requested = "closed", True
        while not self._closing.is_set():
            now = time.monotonic()
            # Wake for whichever is due first: the KeepAlive (only when nothing else went out)
            # or the ping that proves the peer is alive.
            wait = max(0.0, min(last_sent + self._keepalive, last_ping + self._ping) - now)
            item = self._next(wait)
            if self._closing.is_set():
                break
            self._sending = True
            try:
                now = time.monotonic()
                if isinstance(item, bytes):
                    ws.send(item, opcode=websocket.ABNF.OPCODE_BINARY)
                    last_sent = now
                elif isinstance(item, str):
                    ws.send(item)
                    log.debug("sent %s", _type_of(item))
                    last_sent = now
                elif now - last_sent >= self._keepalive:
                    ws.send(protocol.encode_keepalive())
                    log.debug("sent KeepAlive")
                    last_sent = now
                if now - last_ping >= self._ping:
                    ws.ping()
                    last_ping = now
            except Exception as exc:  # noqa: BLE001 - a failed write means the link is gone
                if not self._closing.is_set():  # a close cuts a blocked send short on purpose
                    reason, requested = f"connection lost: {describe(exc)}", False
                break
            finally:
                self._sending = False
        if self._failure:
            reason, requested = self._failure, False
        if requested or self._failure:
            try:
                # A peer that stopped reading would hold a blocking send for the whole timeout.
                ws.settimeout(CLOSE_SEND_TIMEOUT)
                ws.send_close(websocket.STATUS_POLICY_VIOLATION if self._failure
                              else websocket.STATUS_NORMAL)
            except Exception:  # noqa: BLE001 - closing a dead socket may fail; it is closed either way
                pass
        # Shutting the socket wakes the rx thread out of recv(); it then reports (or not) and exits.
        _abort(ws)
        if self._rx is not None:
            self._rx.join(2.0)
        ws.shutdown()
        self._report_down(reason, requested=requested)

    # --- the read side -------------------------------------------------------------------

    def _rx_main(self, ws: websocket.WebSocket) -> None:
        while not self._closing.is_set():
            try:
                opcode, data = read_message(ws)
            except FrameRefused as exc:
                self._lost(str(exc))
                return
            except websocket.WebSocketTimeoutException:
                self._lost("the agent stopped answering (no frame, not even a pong)")
                return
            except Exception as exc:  # noqa: BLE001
                if not self._closing.is_set():
                    self._lost(f"connection lost: {describe(exc)}")
                return
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self._on_audio(self, data)
            elif opcode == websocket.ABNF.OPCODE_TEXT:
                self._text(data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                code = close_code(data)
                self._lost(f"closed by the agent (code {code})" if code else "closed by the agent")
                return

    def _text(self, data: bytes) -> None:
        try:
            event = protocol.decode(data, self.dialect)
        except protocol.ProtocolError as exc:
            log.warning("skipped a bad frame from the agent: %s", shown(exc))
            return
        log.debug("received %s", type(event).__name__)
        self._on_event(AgentEventReceived(self, event, self._clock()))

    def _lost(self, reason: str) -> None:
        """The read side saw the end: wake the tx thread; the first to notice reports it."""
        self._closing.set()
        self._bell.ring()
        self._report_down(reason)

    def _report_down(self, reason: str, *, status: int | None = None, requested: bool = False) -> None:
        # Exactly one AgentDisconnected per link, whichever side notices first.
        with self._down_sent:
            if self._down:
                return
            self._down = True
        self._on_event(AgentDisconnected(self, self._clock(), reason, status, requested))


def _abort(ws: websocket.WebSocket) -> None:
    """Shut the socket both ways, waking a blocked recv() or send() in another thread.

    Not ws.abort(): it does nothing once send_close() has marked the socket closed, which left
    the rx thread in recv() until its timeout after every close.
    """
    sock = ws.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _type_of(text: str) -> str:
    # For debug logs: the message type only, never the payload (settings may carry headers).
    start = text.find('"type"')
    if start < 0:
        return "message"
    rest = text[start + 6:].lstrip(' :"')
    return rest[: rest.find('"')] if '"' in rest else "message"
