"""Helpers for the system tier: the installed unit, a paced microphone FIFO, the emulator unit."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .container import REPO, Container

UNIT = "speakerd.service"
EMULATOR_UNIT = "speakerd-test-emulator.service"
CLONE = "/root/speakerd"
SPEAKERD = "/opt/speakerd/venv/bin/speakerd"
WAIT = 60.0  # generous: a busy 2-core CI machine must never make these flake
T = TypeVar("T")


def readme_command(script: str) -> str:
    """The README's own command line for scripts/<script> (e.g. `sudo scripts/install --key-file key.txt`)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    pattern = {"install": r"# or: (sudo scripts/install --key-file \S+)",
               "uninstall": r"`(sudo scripts/uninstall)`"}[script]
    match = re.search(pattern, text)
    assert match is not None, f"the README no longer gives the {script} command"
    return match.group(1)


def poll(what: str, probe: Callable[[], T | None], timeout: float = WAIT, step: float = 0.1) -> T:
    """Call probe until it returns something other than None (or False); fail naming `what`."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()  # never set: a timed pause between probes
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        tick.wait(step)


@dataclass
class Service:
    """The installed speakerd unit in the container, seen through systemctl, journalctl and ctl."""

    box: Container
    baseline: dict[str, tuple[object, ...]] = field(default_factory=dict)

    def install(self) -> tuple[subprocess.CompletedProcess[str], float]:
        """The README's install command, run in the clone as root with no terminal; (result, s)."""
        started = time.monotonic()
        done = self.box.run(f"cd {CLONE} && {readme_command('install')}", check=False, timeout=900)
        return done, time.monotonic() - started

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.box.run(["systemctl", *args], check=check, timeout=120)

    def props(self, unit: str = UNIT) -> dict[str, str]:
        return self.box.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts", "Result",
                             "ExecMainStatus", "ExecMainCode", "StatusText", "InvocationID",
                             "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic",
                             "ActiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic",
                             "LoadState")

    def props_when(self, what: str, holds: Callable[[dict[str, str]], bool],
                   timeout: float = WAIT) -> dict[str, str]:
        """Poll the unit's props until `holds` says yes; fail naming `what`."""
        def probe() -> dict[str, str] | None:
            p = self.props()
            return p if holds(p) else None
        return poll(what, probe, timeout)

    def running(self, other_than: str = "") -> dict[str, str] | None:
        """The props once active (running) with a main PID other than `other_than`, else None."""
        p = self.props()
        ok = p["ActiveState"] == "active" and p["SubState"] == "running" and p["MainPID"] != "0"
        return p if ok and p["MainPID"] != other_than else None

    def wait_running(self, other_than: str = "", timeout: float = WAIT) -> dict[str, str]:
        return poll(f"{UNIT} running (a main PID other than {other_than or 'none'})",
                    lambda: self.running(other_than), timeout)

    def ensure_running(self) -> dict[str, str]:
        """Start the unit if an earlier check left it stopped or failed."""
        if self.running() is None:
            self.systemctl("reset-failed", UNIT, check=False)
            self.systemctl("start", UNIT)
        return self.wait_running()

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.box.run([SPEAKERD, "ctl", *args], check=check, timeout=60)

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.ctl("status", "--json").stdout))

    def journal(self, *args: str) -> list[dict[str, Any]]:
        out = self.box.run(["journalctl", "--no-pager", "-o", "json", *args], timeout=60).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def messages(self, pid: str) -> list[str]:
        """What process `pid` (a main PID) wrote to the journal, in order."""
        return [str(e.get("MESSAGE", "")) for e in self.journal(f"_PID={pid}")]

    def states(self, pid: str) -> list[str]:
        """The state changes the daemon `pid` logged: ['connecting', 'listening', ...]."""
        found = [re.search(r"state (\w+) → (\w+)", m) for m in self.messages(pid)]
        return [m.group(2) for m in found if m]

    def signal(self, pid: str, sig: str) -> None:
        # The container has no /bin/kill (no procps): the shell's builtin sends it.
        self.box.run(["sh", "-c", f"kill -{sig} {int(pid)}"])


def monotonic_us_to_s(value: str) -> float:
    return int(value) / 1_000_000


class MicFeeder:
    """Feeds the container's capture FIFO at the pace of a real microphone: silence, or speech.

    alsa-lib's file plugin reads its infile with one read() per period, so a FIFO written a
    period every 20 ms paces capture like a sound card (a plain file is read at once, which no
    real device does). Written from the host: the FIFO is on the container's disk.
    """

    def __init__(self, fifo: Path, period_bytes: int = 640, period: float = 0.02) -> None:
        self.fifo = fifo
        self._period_bytes = period_bytes
        self._period = period
        self._silence = bytes(period_bytes)
        # Chunks of speech, taken one per period by the feeder thread; said() waits on `_spoken`.
        self._lock = threading.Lock()
        self._pending: collections.deque[bytes] = collections.deque()
        self._spoken = threading.Event()
        self._stop = threading.Event()
        self._fd = -1
        self._thread: threading.Thread | None = None

    def start(self) -> MicFeeder:
        if not self.fifo.exists():
            os.mkfifo(self.fifo, 0o644)
        # O_RDWR: opening never blocks, and the reader never sees an end of file between uses.
        self._fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="mic-feeder", daemon=True)
        self._thread.start()
        return self

    def say(self, pcm: bytes, timeout: float = WAIT) -> None:
        """Queue PCM (16 kHz mono S16_LE) and wait until it has all been written at pace."""
        n = self._period_bytes
        chunks = [pcm[i:i + n].ljust(n, b"\0") for i in range(0, len(pcm), n)]
        with self._lock:
            self._spoken.clear()
            self._pending.extend(chunks)
        assert self._spoken.wait(timeout), "the microphone FIFO was not read"

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            with self._lock:
                chunk = self._pending[0] if self._pending else None
            try:
                os.write(self._fd, chunk if chunk is not None else self._silence)
            except BlockingIOError:
                pass  # the daemon's mic is paused and the FIFO is full: try again next period
            else:
                with self._lock:
                    if chunk is not None:
                        self._pending.popleft()
                        if not self._pending:
                            self._spoken.set()
            due += self._period
            if due < time.monotonic() - 0.2:
                due = time.monotonic()  # fell behind (a busy machine): resume, do not burst

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


ASOUND_CONF = """\
# speakerd system test: capture from a paced FIFO, playback recorded to a file (no sound card)
pcm.!default {{
    type asym
    playback.pcm {{ type file slave.pcm {{ type null }} file "{speaker}" format "raw" }}
    capture.pcm {{ type file slave.pcm {{ type null }} file "/dev/null" infile "{mic}" format "raw" }}
}}
"""

EMULATOR_UNIT_TEXT = """\
[Unit]
Description=speakerd system test: the local Voice Agent emulator on loopback

[Service]
DynamicUser=yes
Environment=PYTHONPATH=/opt/speakerd-test/pylib
EnvironmentFile=/etc/speakerd-test/emulator.env
ExecStart={speakerd} emulate --host 127.0.0.1 --port {port} --end-of-speech 1.5
"""


def free_port() -> int:
    """A free TCP port on loopback (the container shares this machine's network)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False
