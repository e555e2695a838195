"""Notifier against a fake NOTIFY_SOCKET: the datagrams systemd would receive."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from speakerd.events import State
from speakerd.notify import Notifier


class FakeSystemd:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode("utf-8")

    def assignments(self, timeout: float = 5.0) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.receive(timeout).split("\n"))


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSystemd]:
    """A bound notify socket, by file path and in the abstract namespace ('@name')."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify")
        sock.bind(path)
        env_value = path
    else:
        name = f"speakerd-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        env_value = "@" + name
    yield FakeSystemd(sock, env_value)
    sock.close()


def test_each_message_arrives_as_systemd_expects(fake_systemd: FakeSystemd) -> None:
    """READY, STATUS, WATCHDOG, RELOADING (+MONOTONIC_USEC) and STOPPING arrive in order."""
    n = Notifier({"NOTIFY_SOCKET": fake_systemd.env_value})
    assert n.enabled
    assert n.ready()
    assert fake_systemd.receive() == "READY=1"
    assert n.status(State.LISTENING)
    assert fake_systemd.receive() == "STATUS=listening"
    assert n.watchdog()
    assert fake_systemd.receive() == "WATCHDOG=1"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reload_msg = fake_systemd.assignments()
    assert reload_msg["RELOADING"] == "1"
    assert before <= int(reload_msg["MONOTONIC_USEC"]) <= after
    assert n.ready()
    assert fake_systemd.receive() == "READY=1"
    assert n.stopping()
    assert fake_systemd.receive() == "STOPPING=1"
    n.close()


def test_status_is_one_line_and_bounded(fake_systemd: FakeSystemd) -> None:
    """A status with newlines cannot smuggle another assignment, and a long one is cut."""
    n = Notifier({"NOTIFY_SOCKET": fake_systemd.env_value})
    n.status("reload failed:\nREADY=1")
    assert fake_systemd.receive() == "STATUS=reload failed: READY=1"
    n.status("x" * 5000)
    msg = fake_systemd.receive()
    assert msg.startswith("STATUS=x") and "\n" not in msg and len(msg) <= 7 + 200


def test_messages_from_several_threads_all_arrive(fake_systemd: FakeSystemd) -> None:
    """The session thread's watchdog and the main thread's status can be sent at the same time."""
    n = Notifier({"NOTIFY_SOCKET": fake_systemd.env_value})
    sent: list[bool] = []
    threads = [threading.Thread(target=lambda: sent.extend(n.watchdog() for _ in range(20)))
               for _ in range(4)]
    for t in threads:
        t.start()
    # Receive while they send: the kernel queues only a few datagrams per socket.
    got = [fake_systemd.receive() for _ in range(80)]
    for t in threads:
        t.join(timeout=10)
    assert got == ["WATCHDOG=1"] * 80
    assert sent == [True] * 80


def test_send_gives_up_when_systemd_does_not_read(fake_systemd: FakeSystemd) -> None:
    """A receive queue that stays full makes a send fail after a bounded wait instead of hanging."""
    n = Notifier({"NOTIFY_SOCKET": fake_systemd.env_value}, send_timeout=0.05)
    results: list[bool] = []
    done = threading.Event()

    def flood() -> None:
        for _ in range(100_000):
            results.append(n.watchdog())
            if not results[-1]:
                break
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert done.wait(timeout=30), "a send to a full queue never returned"
    assert results[0] is True
    assert results[-1] is False


def test_unset_socket_makes_every_call_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    """Outside systemd nothing is sent, nothing raises and nothing is logged."""
    caplog.set_level(logging.DEBUG, logger="speakerd.notify")
    n = Notifier({})
    assert not n.enabled
    assert n.watchdog_interval() is None
    assert not n.ready()
    assert not n.status(State.IDLE)
    assert not n.watchdog()
    assert not n.reloading()
    assert not n.stopping()
    n.close()
    assert caplog.records == []


def test_unusable_address_disables_notification() -> None:
    """A NOTIFY_SOCKET that is neither a path nor '@name' is ignored rather than misused."""
    n = Notifier({"NOTIFY_SOCKET": "relative/notify"})
    assert not n.enabled
    assert not n.ready()


def test_send_failure_never_raises_and_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A socket that vanished (systemd restarted) gives False and one debug line, not a crash."""
    caplog.set_level(logging.DEBUG, logger="speakerd.notify")
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.enabled
    assert not n.ready()
    assert not n.watchdog()
    assert not n.status(State.IDLE)
    failures = [r for r in caplog.records if r.name == "speakerd.notify"]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG


def test_send_recovers_when_the_socket_comes_back(tmp_path: Path) -> None:
    """After a failed send, the next message reaches a socket that is listening again."""
    path = tmp_path / "notify"
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    assert not n.watchdog()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        assert n.watchdog()
        sock.settimeout(5)
        assert sock.recv(64) == b"WATCHDOG=1"
    finally:
        sock.close()


@pytest.mark.parametrize(("env", "expected"), [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_ours(env: dict[str, str], expected: float | None) -> None:
    """The ping interval is half of WATCHDOG_USEC, and only when the watchdog is meant for us."""
    assert Notifier(env).watchdog_interval() == expected
