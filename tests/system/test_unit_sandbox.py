"""The unit's address-family restriction, reproduced: with socket(AF_NETLINK) refused by a seccomp
filter (what RestrictAddressFamilies= installs), name lookups and the agent's connect still work."""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from speakerd.emulator import Emulator
from tests.support.emulator import TEST_KEY, fast_options

ROOT = Path(__file__).resolve().parents[2]

# Installed in the child before anything else runs: socket(AF_NETLINK, ...) fails with
# EAFNOSUPPORT, as under systemd's RestrictAddressFamilies= without AF_NETLINK.
NO_NETLINK = r'''
import ctypes, errno, platform, socket, struct
def _ins(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
arch, nr = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}[platform.machine()]
prog = b"".join([
    _ins(0x20, 0, 0, 4), _ins(0x15, 1, 0, arch), _ins(0x06, 0, 0, 0x7FFF0000),
    _ins(0x20, 0, 0, 0), _ins(0x15, 0, 3, nr),
    _ins(0x20, 0, 0, 16), _ins(0x15, 0, 1, socket.AF_NETLINK),
    _ins(0x06, 0, 0, 0x00050000 | errno.EAFNOSUPPORT), _ins(0x06, 0, 0, 0x7FFF0000)])
buf = ctypes.create_string_buffer(prog)
class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(_Prog(len(prog) // 8, ctypes.addressof(buf))), 0, 0) == 0
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    raise SystemExit("netlink was not refused")
except OSError as exc:
    assert exc.errno == errno.EAFNOSUPPORT
'''

CONNECT = r'''
import socket, sys, time
from speakerd import protocol
from speakerd.agent import AgentLink
from speakerd.config import Config
# glibc opens a netlink socket for AI_ADDRCONFIG (and to sort several addresses): refused, it
# assumes both families and still answers.
assert socket.getaddrinfo("localhost", 80, 0, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)
events = []
link = AgentLink(url=sys.argv[1], api_key=sys.argv[2], dialect=protocol.Dialect.V1,
                 settings=protocol.encode_settings(Config(), "v1"), on_event=events.append,
                 on_audio=lambda link, pcm: None).start()
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not any(
        type(e).__name__ == "AgentEventReceived" and type(e.event).__name__ == "SettingsApplied"
        for e in events):
    time.sleep(0.02)
link.close()
link.join()
print([type(e).__name__ for e in events])
'''


@pytest.fixture
def emulator_on_localhost() -> Iterator[Emulator]:
    emu = Emulator(fast_options()).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="filter for x86_64/aarch64")
def test_the_agent_connects_with_netlink_refused(emulator_on_localhost: Emulator) -> None:
    """A name lookup and the whole handshake to the agent work with AF_NETLINK refused."""
    url = f"ws://localhost:{emulator_on_localhost.port}/v1/agent/converse"
    done = subprocess.run([sys.executable, "-c", NO_NETLINK + CONNECT, url, TEST_KEY],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "AgentConnected" in done.stdout and "AgentEventReceived" in done.stdout, done.stdout
