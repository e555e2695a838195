"""The agent link's TLS: a ca_file adds to the system's trust store, verification stays on."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import serve

from speakerd import protocol
from speakerd.agent import AgentLink
from speakerd.agent.handshake import sslopt
from speakerd.config import Config
from speakerd.events import AgentConnected, AgentDisconnected
from tests.support.alsa import wait_until

WAIT = 10.0


@pytest.fixture
def local_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate it signed for localhost: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr",
                                                          "srv.pem"))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost\n", encoding="ascii")
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True,  # noqa: E731
                                       timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "1", "-subj", "/CN=speakerd test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return ca, cert, key


@pytest.fixture
def tls_server(local_ca: tuple[Path, Path, Path]) -> Iterator[int]:
    """A wss:// server on localhost that answers the handshake and waits for the close."""
    _, cert, key = local_ca
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))

    def handler(conn: Any) -> None:
        for _ in conn:  # read until the client closes
            pass

    server = serve(handler, "127.0.0.1", 0, ssl=context, compression=None)
    thread = threading.Thread(target=server.serve_forever, name="tls-server", daemon=True)
    thread.start()
    try:
        yield server.socket.getsockname()[1]
    finally:
        server.shutdown()
        thread.join(WAIT)


def _link(port: int, ca_file: str, events: list[Any]) -> AgentLink:
    return AgentLink(url=f"wss://localhost:{port}/v1/agent/converse", api_key="k",
                     dialect=protocol.Dialect.V1, settings=protocol.encode_settings(Config(), "v1"),
                     on_event=events.append, on_audio=lambda link, pcm: None, ca_file=ca_file)


def test_a_ca_file_adds_to_the_system_store(local_ca: tuple[Path, Path, Path]) -> None:
    """With a ca_file the context trusts every system CA and this one, and still verifies names."""
    ca, _, _ = local_ca
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    context = sslopt("wss://localhost:1/v1/agent/converse", str(ca))["context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.cert_store_stats()["x509_ca"] == system + 1
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_the_ca_file_makes_a_local_server_trusted_and_only_it(
        tls_server: int, local_ca: tuple[Path, Path, Path]) -> None:
    """wss:// to a server signed by the ca_file connects; without the ca_file it is refused."""
    ca, _, _ = local_ca
    for ca_file, wanted in ((str(ca), AgentConnected), ("", AgentDisconnected)):
        events: list[Any] = []
        link = _link(tls_server, ca_file, events).start()
        assert wait_until(lambda events=events: bool(events), WAIT)
        link.close()
        assert link.join(WAIT)
        assert isinstance(events[0], wanted), events
        if wanted is AgentDisconnected:
            assert "certificate" in events[0].reason.lower() or "verify" in events[0].reason.lower()


def test_plain_loopback_ws_loads_no_ca_store() -> None:
    """A ws:// link (loopback only) builds no TLS context, so the CA store is never loaded."""
    assert sslopt("ws://127.0.0.1:1/v1/agent/converse", "") == {}
