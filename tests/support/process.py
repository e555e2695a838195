"""Fixtures: `speakerd run` in a child process with a pressable mock button, and a fake systemd.

The daemon and CLI tests drive the real command as systemd would start it: its environment
(NOTIFY_SOCKET, the key, ALSA on the test's PulseAudio), a config file, signals, exit codes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from speakerd.emulator import Emulator
from speakerd.emulator.sound import PulseServer
from speakerd.notify import Notifier

from .alsa import load_wav
from .daemon import BUTTON, LED, WAIT, wait_until
from .emulator import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
PROCESS_LIMIT = 120.0  # no `speakerd run` started here outlives this

# Runs `speakerd run` in a child process whose mock button the test presses: the test writes
# numbered files (0, 1, ...) holding "low" or "high" into a control folder, and a thread of the
# child drives the pin, as the Pi's GPIO callback thread would deliver an edge.
_HAND = r'''
import sys, threading
from pathlib import Path
from gpiozero import Device

def hand(ctl, pin):
    tick = threading.Event()  # never set: an interruptible pause between polls
    n = 0
    while True:
        f = ctl / str(n)
        if not f.exists():
            tick.wait(0.02)
            continue
        p = Device.pin_factory.pin(pin)
        p.drive_low() if f.read_text().strip() == "low" else p.drive_high()
        n += 1

threading.Thread(target=hand, args=(Path(sys.argv[1]), sys.argv[2]), name="test-hand",
                 daemon=True).start()
from speakerd.__main__ import main
sys.exit(main(sys.argv[3:]))
'''


class FakeSystemd:
    """An abstract-namespace datagram socket standing in for systemd; keeps every message."""

    def __init__(self) -> None:
        name = f"speakerd-test-{uuid.uuid4().hex}"
        self.env_value = "@" + name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name)
        self.sock.settimeout(0.1)  # lets the reader notice close() promptly
        self.messages: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="fake-systemd", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((data.decode("utf-8"), time.monotonic()))

    def texts(self) -> list[str]:
        with self._lock:
            return [m for m, _ in self.messages]

    def first_lines(self) -> list[str]:
        """The first assignment of each datagram (RELOADING=1 carries MONOTONIC_USEC too)."""
        return [m.split("\n", 1)[0] for m in self.texts()]

    def wait_for(self, line: str, after: int = 0, timeout: float = WAIT) -> int:
        """Wait for a datagram whose first line is `line` at index ≥ after; return its index."""
        def seen() -> bool:
            return line in self.first_lines()[after:]
        assert wait_until(seen, timeout), f"no {line!r} after #{after}: {self.first_lines()}"
        return self.first_lines().index(line, after)

    def notifier(self, **env: str) -> Notifier:
        return Notifier({"NOTIFY_SOCKET": self.env_value, **env})

    def close(self) -> None:
        self._closed.set()
        self._reader.join(5)
        self.sock.close()


@pytest.fixture
def fake_systemd() -> Iterator[FakeSystemd]:
    """A fake notify socket, closed after the test."""
    fake = FakeSystemd()
    try:
        yield fake
    finally:
        fake.close()


def raw_config(emulator: Emulator, pulse: PulseServer, state_dir: Path, **sections: Any) -> dict[str, Any]:
    """A YAML-ready config aimed at the emulator and the PulseAudio devices, chimes off."""
    raw: dict[str, Any] = {
        "agent": {"url": emulator.url("v1")},
        "audio": {"input": {"device": pulse.mic_device, "sample_rate": pulse.rate},
                  "output": {"device": pulse.speaker_device, "sample_rate": pulse.rate}},
        "chimes": {name: {"enabled": False} for name in ("press", "error", "goodbye")},
        "button": {"pin": BUTTON},
        "leds": [{"kind": "pwm", "pins": [LED]}],
        "log": {"state_dir": str(state_dir)},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


class SpeakerdProcess:
    """`speakerd run` in a child process with a fake NOTIFY_SOCKET and a pressable mock button."""

    def __init__(self, config: Path, env: dict[str, str], workdir: Path) -> None:
        self.ctl = workdir / "hand"
        self.ctl.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "speakerd.stderr"
        self._edges = 0
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**env, "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin",
                    "PYTHONPATH": str(ROOT)}
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _HAND, str(self.ctl), BUTTON, "run", "--config", str(config)],
            env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err,
            cwd=workdir)
        # A timer, not a sleep: a child a failing test forgot is killed by pid when its time is up.
        self._limit = threading.Timer(PROCESS_LIMIT, self._kill)
        self._limit.daemon = True
        self._limit.start()

    def _kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)

    def edge(self, level: str) -> None:
        (self.ctl / str(self._edges)).write_text(level)
        self._edges += 1

    def press(self) -> None:
        self.edge("low")

    def release(self) -> None:
        self.edge("high")

    def signal(self, sig: int) -> None:
        assert self.popen.poll() is None, "speakerd exited early:\n" + self.stderr()
        os.kill(self.popen.pid, sig)

    def wait(self, timeout: float = WAIT) -> int:
        return self.popen.wait(timeout)

    def stderr(self) -> str:
        self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        self._limit.cancel()
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self._kill()
                self.popen.wait(5)
        self._err.close()


@pytest.fixture
def speakerd_process(tmp_path: Path) -> Iterator[Callable[..., SpeakerdProcess]]:
    """A factory for child `speakerd run` processes; every one is ended by pid after the test."""
    procs: list[SpeakerdProcess] = []

    def start(config: Path, env: dict[str, str]) -> SpeakerdProcess:
        proc = SpeakerdProcess(config, env, tmp_path / f"proc{len(procs)}")
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.stop()


def child_env(pulse: PulseServer, fake: FakeSystemd, key: str = TEST_KEY, **extra: str) -> dict[str, str]:
    """The environment systemd would give: the notify socket, the key; ALSA on the test's PulseAudio."""
    env = {**pulse.env, "ALSA_CONFIG_PATH": str(pulse.alsa_config), "NOTIFY_SOCKET": fake.env_value,
           "DEEPGRAM_API_KEY": key, **extra}
    env.pop("JOURNAL_STREAM", None)
    return env


def speak(pulse: PulseServer, name: str = "hello.wav") -> None:
    proc = pulse.play_into_mic(load_wav(name))
    assert wait_until(lambda: not proc.alive(), WAIT), "pacat did not finish"


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m speakerd ARGS` with no key or credential but those given, bounded in time."""
    root = Path(__file__).resolve().parents[2]
    base = {**os.environ, "PYTHONPATH": str(root)}
    base.pop("DEEPGRAM_API_KEY", None)
    base.pop("CREDENTIALS_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "speakerd", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          cwd=root)


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    """A path for a control socket (the daemon's or a test's), removed afterwards."""
    # A short path: AF_UNIX names are limited to 107 bytes, and tmp_path can be long.
    path = Path(f"/tmp/speakerd-ctl-{os.getpid()}-{tmp_path.name[-12:]}.sock")
    yield str(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
