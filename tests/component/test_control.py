"""The control socket: its commands, its bounds, and the `speakerd ctl` client."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from speakerd.__main__ import main
from speakerd.control import (
    MAX_REQUEST,
    ControlError,
    ControlServer,
    LinkMeter,
    request,
    wait_reload,
)
from speakerd.events import State
from tests.support.daemon import WAIT


class RecordingControls:
    """Controls that record each call; status and reload answer like a daemon would."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.tickets = 0
        self.covers = 0
        self.fail: str | None = None

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail == name:
            raise RuntimeError("boom")

    def press(self) -> None:
        self._call("press")

    def release(self) -> None:
        self._call("release")

    def status(self) -> dict[str, Any]:
        self._call("status")
        return {"state": State.IDLE.value, "last_error": "", "agent_connected": False,
                "connected_seconds": 0.0, "uptime_seconds": 1.0, "turns": 0, "last_turn": None,
                "reload": {"count": self.covers, "covers": self.covers, "ok": True,
                           "message": "applied x"}}

    def ask_reload(self) -> int:
        self._call("reload")
        self.tickets += 1
        # This fake applies the reload at once.
        self.covers = self.tickets
        return self.tickets


@pytest.fixture
def served(sock_path: str) -> Iterator[tuple[ControlServer, RecordingControls]]:
    controls = RecordingControls()
    server = ControlServer(sock_path, controls, client_timeout=0.5, max_clients=2).start()
    try:
        yield server, controls
    finally:
        server.stop()


def _raw(path: str, payload: bytes, *, shut: bool = True) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(WAIT)
        s.connect(path)
        s.sendall(payload)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return dict(json.loads(data))


def test_each_command_reaches_the_controls(served: tuple[ControlServer, RecordingControls],
                                           sock_path: str) -> None:
    """press, release, status and reload each call their control once and answer ok."""
    _, controls = served
    assert request("press", sock_path) == {"ok": True}
    assert request("release", sock_path) == {"ok": True}
    assert request("status", sock_path)["state"] == State.IDLE
    assert wait_reload(sock_path)["ok"] is True
    assert controls.calls[:3] == ["press", "release", "status"]
    assert controls.calls.count("reload") == 1


def test_socket_is_group_only_and_removed_at_stop(sock_path: str) -> None:
    """The socket file is 0660 whatever the umask, and stop() removes it and ends the thread."""
    old = os.umask(0o077)
    try:
        server = ControlServer(sock_path, RecordingControls()).start()
    finally:
        os.umask(old)
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    server.stop()
    assert not os.path.exists(sock_path)
    assert not any(t.name == "control" for t in threading.enumerate())


def test_a_stale_socket_is_replaced_but_no_other_file(sock_path: str) -> None:
    """A socket left by a killed daemon is replaced; a regular file in its place is never deleted."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()
    server = ControlServer(sock_path, RecordingControls()).start()
    assert request("press", sock_path) == {"ok": True}
    server.stop()
    Path(sock_path).write_text("not a socket")
    with pytest.raises(OSError):
        ControlServer(sock_path, RecordingControls()).start()
    assert Path(sock_path).read_text() == "not a socket"


def test_bad_requests_get_a_reason(served: tuple[ControlServer, RecordingControls],
                                   sock_path: str) -> None:
    """Not JSON, an unknown command, and an over-long line are each refused with why."""
    assert _raw(sock_path, b"hello\n")["error"] == "not a JSON request"
    assert "unknown command" in _raw(sock_path, b'{"command": "format-disk"}\n')["error"]
    reply = _raw(sock_path, b'{"command": "' + b"x" * (2 * MAX_REQUEST) + b'"}\n', shut=False)
    assert reply == {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
    assert served[1].calls == []


def test_a_silent_client_times_out_and_others_are_served(
        served: tuple[ControlServer, RecordingControls], sock_path: str) -> None:
    """A client that never sends is answered with a timeout; meanwhile others get through."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.settimeout(WAIT)
        idle.connect(sock_path)
        assert request("press", sock_path) == {"ok": True}
        reply = json.loads(idle.recv(4096))
    assert reply == {"ok": False, "error": "request timed out"}


def test_connections_beyond_the_limit_are_refused(
        served: tuple[ControlServer, RecordingControls], sock_path: str) -> None:
    """With max_clients connections open and silent, the next one is told the socket is busy."""
    server, _ = served
    held = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            held.append(s)
        with pytest.raises(ControlError, match="busy"):
            request("status", sock_path)
        assert server.refused == 1
    finally:
        for s in held:
            s.close()


def test_a_failing_control_is_reported_and_the_thread_lives_on(
        served: tuple[ControlServer, RecordingControls], sock_path: str) -> None:
    """An exception in a control becomes an error reply; the next request is served."""
    _, controls = served
    controls.fail = "press"
    with pytest.raises(ControlError, match="press failed"):
        request("press", sock_path)
    assert request("release", sock_path) == {"ok": True}


def test_client_errors_name_the_fix(tmp_path: Path) -> None:
    """No socket at the path gives a reason a user can act on."""
    with pytest.raises(ControlError, match="is speakerd running"):
        request("status", str(tmp_path / "none.sock"))


def test_ctl_status_prints_text_and_json(served: tuple[ControlServer, RecordingControls],
                                         sock_path: str) -> None:
    """`speakerd ctl status` prints readable lines; --json the same fields for scripts."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["ctl", "status", "--socket", sock_path]) == 0
    assert "state: idle" in out.getvalue() and "agent connected: no" in out.getvalue()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["ctl", "status", "--json", "--socket", sock_path]) == 0
    fields = json.loads(out.getvalue())
    assert {"state", "last_error", "agent_connected", "connected_seconds", "last_turn"} <= set(fields)


def test_link_meter_counts_connected_seconds() -> None:
    """Connected time is the sum over links of up-to-down, plus the open link's time so far."""
    now = [100.0]
    meter = LinkMeter(clock=lambda: now[0])
    a, b = object(), object()
    meter.up(a)
    now[0] = 103.0
    meter.down(a)
    assert (meter.connected, meter.seconds()) == (False, 3.0)
    meter.down(b)  # a link that never came up costs nothing
    meter.up(b)
    now[0] = 104.5
    assert (meter.connected, meter.seconds()) == (True, 4.5)
