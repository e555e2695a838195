"""The websocket to the Voice Agent: one connection's lifecycle and its rx/tx threads."""

from __future__ import annotations

import logging
import os
import queue
import ssl
import threading
import time
from collections.abc import Callable

import websocket

from . import protocol
from .events import AgentConnected, AgentDisconnected, AgentEventReceived

log = logging.getLogger(__name__)

# A text frame larger than this is not a message we model; decoding it would only burn a Pi's CPU.
MAX_TEXT_FRAME = 1 << 20
# Enough for several seconds of uplink frames (40 s of 80 ms ones) if the network hiccups; past
# that the oldest frames are dropped rather than letting memory grow without bound.
OUTBOX_FRAMES = 500
_CLOSE = object()
_MASK_KEYS = 256  # mask keys drawn from the OS at once: one getrandom() per 256 frames sent


class MaskKeys:
    """Websocket mask keys from os.urandom, drawn in batches rather than one call per frame.

    Called by websocket-client for every frame it sends: from agent-tx, and from agent-rx
    when it answers a ping, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def __call__(self, length: int) -> bytes:
        with self._lock:
            if self._at + length > len(self._pool):
                self._pool = os.urandom(max(length, 4) * _MASK_KEYS)
                self._at = 0
            key = self._pool[self._at:self._at + length]
            self._at += length
            return key


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
        # The outbox decouples the mic thread (which must never block) from the network.
        self._outbox: queue.Queue[object] = queue.Queue(maxsize=OUTBOX_FRAMES)
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
        self._put(pcm)

    def send_text(self, text: str) -> None:
        """Queue one JSON message."""
        self._put(text)

    def close(self) -> None:
        """Close the socket (idempotent); AgentDisconnected(requested=True) follows."""
        self._closing.set()
        try:
            self._outbox.put_nowait(_CLOSE)
        except queue.Full:
            pass  # the tx thread checks the closing flag at its next wake-up

    def alive(self) -> bool:
        """Whether either thread is still running."""
        return any(t is not None and t.is_alive() for t in (self._tx, self._rx))

    def join(self, timeout: float = 2.0) -> bool:
        """Wait for both threads; False if one would not die."""
        deadline = time.monotonic() + timeout
        for t in (self._tx, self._rx):
            if t is not None and t.is_alive() and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in (self._tx, self._rx)
                 if t is not None and t.is_alive() and t is not threading.current_thread()]
        if alive:
            log.warning("threads did not stop: %s", ", ".join(alive))
        return not alive

    def _put(self, item: object) -> None:
        if self._closing.is_set():
            return
        try:
            self._outbox.put_nowait(item)
        except queue.Full:
            try:
                self._outbox.get_nowait()
            except queue.Empty:
                pass
            self._dropped_frames += 1
            if self._dropped_frames in (1, 10, 100) or self._dropped_frames % 1000 == 0:
                log.warning("network too slow: dropped %d outgoing frames", self._dropped_frames)
            try:
                self._outbox.put_nowait(item)
            except queue.Full:
                pass

    # --- the write side ------------------------------------------------------------------

    def _sslopt(self) -> dict[str, object]:
        # Verification stays on; a CA file only adds trust (e.g. a local test server's cert).
        opt: dict[str, object] = {"cert_reqs": ssl.CERT_REQUIRED}
        if self._ca_file:
            opt["ca_certs"] = self._ca_file
        return opt

    def _tx_main(self) -> None:
        try:
            ws = websocket.WebSocket(sslopt=self._sslopt(), enable_multithread=True,
                                     skip_utf8_validation=True)
            ws.set_mask_key(MaskKeys())
            # The key goes only into this header; websocket-client does not log headers unless
            # its trace is enabled, which we never do.
            ws.connect(self.url, header=[f"Authorization: Token {self._api_key}"],
                       timeout=self._connect_timeout)
        except websocket.WebSocketBadStatusException as exc:
            self._report_down(_handshake_reason(exc.status_code), status=exc.status_code)
            return
        except Exception as exc:  # noqa: BLE001 - any connect failure is a disconnect with a reason
            self._report_down(f"cannot connect: {_describe(exc)}")
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
            self._report_down(f"connection lost: {_describe(exc)}")
            ws.shutdown()
            return
        self._rx = threading.Thread(target=self._rx_main, args=(ws,), name="agent-rx", daemon=True)
        self._rx.start()
        self._on_event(AgentConnected(self, self._clock()))
        self._tx_loop(ws)

    def _tx_loop(self, ws: websocket.WebSocket) -> None:
        last_sent = last_ping = time.monotonic()
        reason, requested = "closed", True
        while True:
            now = time.monotonic()
            # Wake for whichever is due first: the KeepAlive (only when nothing else went out)
            # or the ping that proves the peer is alive.
            wait = max(0.0, min(last_sent + self._keepalive, last_ping + self._ping) - now)
            try:
                item = self._outbox.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _CLOSE or self._closing.is_set():
                break
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
                reason, requested = f"connection lost: {_describe(exc)}", False
                break
        if requested:
            try:
                ws.send_close()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail; it is closed either way
                pass
        # abort() wakes the rx thread out of recv(); it then reports (or not) and exits.
        ws.abort()
        if self._rx is not None:
            self._rx.join(2.0)
        ws.shutdown()
        self._report_down(reason, requested=requested)

    # --- the read side -------------------------------------------------------------------

    def _rx_main(self, ws: websocket.WebSocket) -> None:
        while not self._closing.is_set():
            try:
                opcode, frame = ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                self._lost("the agent stopped answering (no frame, not even a pong)")
                return
            except Exception as exc:  # noqa: BLE001
                if not self._closing.is_set():
                    self._lost(f"connection lost: {_describe(exc)}")
                return
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self._on_audio(self, frame.data)
            elif opcode == websocket.ABNF.OPCODE_TEXT:
                self._text(frame.data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                code = _close_code(frame.data)
                self._lost(f"closed by the agent (code {code})" if code else "closed by the agent")
                return

    def _text(self, data: bytes) -> None:
        if len(data) > MAX_TEXT_FRAME:
            log.warning("skipped a %d-byte text frame from the agent (limit %d)", len(data),
                        MAX_TEXT_FRAME)
            return
        try:
            event = protocol.decode(data, self.dialect)
        except protocol.ProtocolError as exc:
            log.warning("skipped a bad frame from the agent: %s", exc)
            return
        log.debug("received %s", type(event).__name__)
        self._on_event(AgentEventReceived(self, event, self._clock()))

    def _lost(self, reason: str) -> None:
        """The read side saw the end: wake the tx thread; the first to notice reports it."""
        self._closing.set()
        try:
            self._outbox.put_nowait(_CLOSE)
        except queue.Full:
            pass
        self._report_down(reason)

    def _report_down(self, reason: str, *, status: int | None = None, requested: bool = False) -> None:
        # Exactly one AgentDisconnected per link, whichever side notices first.
        with self._down_sent:
            if self._down:
                return
            self._down = True
        self._on_event(AgentDisconnected(self, self._clock(), reason, status, requested))


def _handshake_reason(status: int) -> str:
    if status in (401, 403):
        return f"the agent refused the API key (HTTP {status})"
    if status == 429:
        return "the agent is rate-limiting us (HTTP 429)"
    return f"the agent refused the connection (HTTP {status})"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _close_code(data: bytes) -> int | None:
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


def _type_of(text: str) -> str:
    # For debug logs: the message type only, never the payload (settings may carry headers).
    start = text.find('"type"')
    if start < 0:
        return "message"
    rest = text[start + 6:].lstrip(' :"')
    return rest[: rest.find('"')] if '"' in rest else "message"
