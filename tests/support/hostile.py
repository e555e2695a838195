"""A hostile server: a man in the middle between the daemon and the emulator, on loopback.

It passes the handshake and every frame through, and records them, so a healthy turn still works
end to end; its knobs make it answer the handshake with a redirect, push frames of its own at the
daemon (floods, oversized headers, fragments, forged calls) after a given server message, or stop
reading. Every thread it starts ends when it is stopped.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from speakerd.emulator import Emulator

TEXT, BINARY, CONT, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One unmasked server frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def text(msg: dict[str, Any]) -> bytes:
    return frame(TEXT, json.dumps(msg).encode())


def frame_header(opcode: int, length: int) -> bytes:
    """Only the header of a frame claiming `length` bytes (the payload may never come)."""
    return bytes([0x80 | opcode, 127]) + struct.pack("!Q", length)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = sock.recv(min(n, 1 << 16))
        if not chunk:
            raise ConnectionError("closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> tuple[bytes, int, bytes]:
    """(raw bytes, opcode, unmasked payload) of one frame."""
    head = _read_exact(sock, 2)
    length = head[1] & 0x7F
    ext = b""
    if length == 126:
        ext = _read_exact(sock, 2)
        length = struct.unpack("!H", ext)[0]
    elif length == 127:
        ext = _read_exact(sock, 8)
        length = struct.unpack("!Q", ext)[0]
    mask = _read_exact(sock, 4) if head[1] & 0x80 else b""
    body = _read_exact(sock, length)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(body)) if mask and length < 4096 \
        else _unmask(body, mask)
    return head + ext + mask + body, head[0] & 0x0F, payload


def _unmask(body: bytes, mask: bytes) -> bytes:
    if not mask:
        return body
    n = len(body)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(body, "big") ^ key).to_bytes(n, "big")


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
        if len(data) > 65536:
            raise ConnectionError("handshake too long")
    return data


@dataclass
class Handshake:
    """One upgrade request the proxy received: what the daemon sent, and to which address."""
    request_line: str
    headers: dict[str, str]
    raw: bytes


@dataclass
class Injection:
    """Raw bytes pushed at the daemon right after the server sent a message of type `after`."""
    after: str
    data: bytes | Callable[[], Iterator[bytes]]
    fired: threading.Event = field(default_factory=threading.Event)


class Catcher:
    """A TCP listener that records whatever connects to it (the target of a redirect)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-catcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    self.received.append(conn.recv(65536))
                except OSError:
                    self.received.append(b"")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class HostileProxy:
    """Between the daemon and the emulator: records everything, injects what a test asks."""

    def __init__(self, upstream: Emulator) -> None:
        self.upstream = upstream
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.handshakes: list[Handshake] = []
        self.client_frames: list[tuple[int, bytes]] = []  # (opcode, payload) from the daemon
        self.redirect_to: str | None = None
        self.silent = False  # stop reading from the daemon and stop forwarding the server
        self._injections: list[Injection] = []
        # Guards the records and the injections, read by the test while the threads write.
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._run, name="hostile-accept", daemon=True)
        self._accept.start()

    def url(self, path: str = "/v1/agent/converse") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def inject(self, after: str, data: bytes | Callable[[], Iterator[bytes]]) -> Injection:
        """Push `data` (or the chunks a generator yields) once the server has sent `after`."""
        injection = Injection(after, data)
        with self.lock:
            self._injections.append(injection)
        return injection

    def client_texts(self, type_: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            frames = list(self.client_frames)
        out = []
        for opcode, payload in frames:
            if opcode == TEXT:
                msg = json.loads(payload)
                if type_ is None or msg.get("type") == type_:
                    out.append(msg)
        return out

    def client_bytes(self) -> bytes:
        with self.lock:
            return b"".join(p for _, p in self.client_frames)

    # --- serving -----------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="hostile-conn", daemon=True)
        with self.lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with self.lock:
                self._conns.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            head = _read_head(client)
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            with self.lock:
                self.handshakes.append(Handshake(lines[0], headers, head))
            if self.redirect_to is not None:
                client.sendall(f"HTTP/1.1 301 Moved Permanently\r\nLocation: {self.redirect_to}"
                               "\r\nContent-Length: 0\r\n\r\n".encode())
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream.port))
            with self.lock:
                self._conns.append(upstream)
            upstream.sendall(head)
            client.sendall(_read_head(upstream))
            self._spawn(self._client_to_server, client, upstream)
            self._server_to_client(upstream, client)
        except (OSError, ConnectionError):
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

    def _client_to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                if self.silent:
                    self._stop.wait(0.05)  # a peer that stopped reading: TCP buffers fill up
                    continue
                raw, opcode, payload = _read_frame(client)
                with self.lock:
                    self.client_frames.append((opcode, payload))
                upstream.sendall(raw)
        except (OSError, ConnectionError):
            pass
        finally:
            try:
                upstream.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _server_to_client(self, upstream: socket.socket, client: socket.socket) -> None:
        while not self._stop.is_set():
            if self.silent:
                self._stop.wait(0.05)
                continue
            raw, opcode, payload = _read_frame(upstream)
            client.sendall(raw)
            if opcode != TEXT:
                continue
            kind = json.loads(payload).get("type")
            with self.lock:
                due = [i for i in self._injections if i.after == kind and not i.fired.is_set()]
            for injection in due:
                injection.fired.set()
                try:
                    if isinstance(injection.data, bytes):
                        client.sendall(injection.data)
                    else:
                        for chunk in injection.data():
                            client.sendall(chunk)
                except OSError:
                    return  # the daemon dropped us: what a limit is for

    def stop(self) -> None:
        self._stop.set()
        self._accept.join(5)
        with self.lock:
            conns, threads = list(self._conns), list(self._threads)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in threads:
            t.join(5)
        self.sock.close()


@pytest.fixture
def hostile(agent_emulator: Emulator) -> Iterator[HostileProxy]:
    """A hostile proxy in front of the rig's emulator (point agent.url at hostile.url())."""
    proxy = HostileProxy(agent_emulator)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    """A listener that records any connection: where a followed redirect would have gone."""
    c = Catcher()
    try:
        yield c
    finally:
        c.stop()


# --- a webhook that never finishes --------------------------------------------------------

@pytest.fixture
def dripping_server() -> Iterator[str]:
    """An HTTP server that answers a byte every 50 ms, for ever: each read alone is quick."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while not stop.wait(0.05):
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        break

    thread = threading.Thread(target=serve, name="drip-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/drip"
    finally:
        stop.set()
        thread.join(5.0)
        srv.close()
