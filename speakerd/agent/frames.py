"""The websocket's frames: their hard limits, the reader that holds them, the mask keys we send with."""

from __future__ import annotations

import os
import threading

import websocket

# A message (one frame or all fragments of one) larger than this is not one the agent sends:
# refused from the frame's header, before its payload is read, and the link is dropped.
MAX_MESSAGE = 1 << 20
# Fragments of one message: each costs a frame header and a list item, so they are bounded too.
MAX_FRAGMENTS = 4096
# RFC 6455: a control frame (close, ping, pong) carries at most 125 bytes.
MAX_CONTROL = 125
_MASK_KEYS = 256  # mask keys drawn from the OS at once: one getrandom() per 256 frames sent
# What the frame reader asks the socket for at once (websocket-client's own cap per recv()).
READ_AHEAD = 16384


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


def read_ahead(ws: websocket.WebSocket) -> None:
    """Make the frame reader take what the socket holds (up to READ_AHEAD) in one recv().

    websocket-client asks the socket for exactly what it parses next: the 2 header bytes, the
    length, then the payload, so each audio frame from the agent cost three recv() calls (six
    system calls, each a chance to lose the interpreter lock). Its reader keeps any surplus for
    the next frame, so one read now usually brings a whole frame, often the next ones too.
    The surplus is bounded by READ_AHEAD, so a frame refused from its header still costs at
    most that much reading.
    """
    fb = ws.frame_buffer
    recv = fb.recv
    fb.recv = lambda _wanted: recv(READ_AHEAD)


class FrameRefused(Exception):
    """A frame or message past a hard limit, or out of order: the link is dropped."""


def _payload(frame: websocket.ABNF) -> bytes:
    data = frame.data  # received frames carry bytes; the type also allows str for sending
    return data if isinstance(data, bytes) else data.encode("latin-1")


def _read_frame(ws: websocket.WebSocket, room: int) -> websocket.ABNF:
    """One frame, its length checked from the header before any of its payload is read."""
    fb = ws.frame_buffer
    with fb.lock:
        if fb.needs_header():
            fb.recv_header()
        if fb.needs_length():
            fb.recv_length()
        assert fb.header is not None and fb.length is not None
        opcode, length = fb.header[4], fb.length
    if opcode >= 0x8:
        if length > MAX_CONTROL:
            raise FrameRefused(f"the agent sent a {length}-byte control frame (limit {MAX_CONTROL})")
    elif length > room:
        raise FrameRefused(f"the agent sent a message over {MAX_MESSAGE} bytes "
                           f"(a frame of {length} bytes); dropped from its header")
    return ws.frame_buffer.recv_frame()  # the header is read: this reads the payload only


def read_message(ws: websocket.WebSocket) -> tuple[int, bytes]:
    """One whole message (its fragments joined once, linearly), answering pings on the way."""
    ABNF = websocket.ABNF
    parts: list[bytes] = []
    size = 0
    opcode: int | None = None
    while True:
        frame = _read_frame(ws, MAX_MESSAGE - size)
        op = frame.opcode
        if op == ABNF.OPCODE_PING:
            ws.pong(frame.data)
            continue
        if op == ABNF.OPCODE_PONG:
            continue
        if op == ABNF.OPCODE_CLOSE:
            try:
                ws.send_close()
            except Exception:  # noqa: BLE001 - the peer may be gone already; we close either way
                pass
            return op, _payload(frame)
        if op == ABNF.OPCODE_CONT:
            if opcode is None:
                raise FrameRefused("the agent sent a continuation frame outside a message")
        elif opcode is not None:
            raise FrameRefused("the agent started a message inside another one")
        else:
            opcode = op
        data = _payload(frame)
        parts.append(data)
        size += len(data)
        if len(parts) > MAX_FRAGMENTS:
            raise FrameRefused(f"the agent sent a message in over {MAX_FRAGMENTS} fragments")
        if frame.fin:
            return opcode, parts[0] if len(parts) == 1 else b"".join(parts)


def close_code(data: bytes) -> int | None:
    """The status code a close frame's payload carries, if it carries one."""
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None
