"""Soak: many turns with interruptions on the real daemon threads; memory, threads and files stay flat.

SPEAKERD_SOAK_TURNS sets the number of turns (default 1000); scripts/soak runs a longer one.
"""

from __future__ import annotations

import collections
import gc
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from speakerd.config import parse_config
from speakerd.daemon import Daemon, Hooks
from speakerd.events import State
from speakerd.notify import Notifier
from tests.support.alsa import AlsaFiles
from tests.support.daemon import BUTTON, LED, wait_until
from tests.support.emulator import TEST_KEY, silence, tone

TURNS = int(os.environ.get("SPEAKERD_SOAK_TURNS", "1000"))
# Long enough to fill every bounded history (the session keeps 100 turns, the LEDs 200 states)
# before the start figures are taken, so what is measured is growth, not filling up.
WARMUP = 120
INTERRUPT_EVERY = 4  # every 4th turn is cut short by the next press
WAIT = 20.0
RATE = 16000
PERIOD = 640  # 20 ms of S16_LE mono at 16 kHz
SPEEDUP = 4  # the source hands out 20 ms of audio every 5 ms


class CueSource:
    """The microphone, in memory: silence until cued, then one utterance, then silence again.

    The speech must start on cue (the press), which a file-backed device cannot do; it is paced
    (SPEEDUP times real time) because an unpaced source would spin the mic thread at 100 % CPU.
    """

    def __init__(self) -> None:
        self._speech = tone(0.3, RATE)
        self._quiet = silence(0.02, RATE)
        self._lock = threading.Lock()  # guards the queued utterance
        self._pending = b""
        self.done = threading.Event()  # set when the cued utterance has been read out
        self.done.set()
        self._closed = threading.Event()  # its wait() is the pacing; set on close to end it

    def cue(self) -> None:
        with self._lock:
            self._pending = self._speech
            self.done.clear()

    def read(self) -> bytes:
        self._closed.wait(0.02 / SPEEDUP)
        with self._lock:
            if self._pending:
                chunk, self._pending = self._pending[:PERIOD], self._pending[PERIOD:]
                if not self._pending:
                    self.done.set()
                return chunk + bytes(PERIOD - len(chunk))
        return self._quiet

    def close(self) -> None:
        self._closed.set()


class StateLog:
    """The daemon's state changes, kept bounded so the test itself does not grow."""

    def __init__(self) -> None:
        self.count = 0
        self.recent: collections.deque[str] = collections.deque(maxlen=16)
        self._cond = threading.Condition()  # notified on every state change

    def __call__(self, state: str) -> None:
        with self._cond:
            self.count += 1
            self.recent.append(state)
            self._cond.notify_all()

    def wait_for(self, state: str, after: int, timeout: float = WAIT) -> None:
        """Wait until `state` is entered as change number > after."""
        def seen() -> bool:
            k = self.count - after
            return 0 < k and state in list(self.recent)[-min(k, len(self.recent)):]
        with self._cond:
            assert self._cond.wait_for(seen, timeout), f"never reached {state}: {list(self.recent)}"


def rss_kb() -> int:
    status = open("/proc/self/status").read()  # noqa: SIM115 - read at once
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def figures(pins: Any) -> tuple[int, int, int]:
    # gpiozero's mock pins record every state change forever (the LEDs blink and pulse through
    # every turn): a test double's history that no real pin keeps, so it is not ours to count.
    for pin in list(pins.pins.values()):
        pin.clear_states()
    gc.collect()
    return rss_kb(), threading.active_count(), len(os.listdir("/proc/self/fd"))


@pytest.fixture
def emulator_process(tmp_path: Any) -> Iterator[str]:
    """The emulator in a process of its own, so its records are not counted in our memory."""
    out = open(tmp_path / "emulator.out", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "speakerd", "emulate", "--port", "0", "--key", TEST_KEY,
         "--end-of-speech", "0.2", "--reply-latency", "0.01", "--reply-seconds", "0.3",
         "--reply-pace", "20", "--idle-timeout", "60"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # A hard limit by pid, whatever happens to the test.
    limit = threading.Timer(3600, lambda: proc.poll() is None and os.kill(proc.pid, signal.SIGKILL))
    limit.daemon = True
    limit.start()
    try:
        def url() -> str | None:
            out.seek(0)
            m = re.search(r"listening: (ws://\S+/v1/agent/converse)", out.read())
            return m.group(1) if m else None
        assert wait_until(lambda: url() is not None or proc.poll() is not None, WAIT)
        address = url()
        assert address, "the emulator did not start"
        yield address
    finally:
        limit.cancel()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        out.close()


def test_soak_turns_with_interruptions(emulator_process: str, alsa_files: AlsaFiles,
                                       mock_pins: Any, tmp_path: Any) -> None:
    """SPEAKERD_SOAK_TURNS turns, every 4th interrupted: RSS grows ≤ 1 MB, no thread or file more."""
    cfg = parse_config({
        "agent": {"url": emulator_process},
        # The link stays open for the whole run, so start and end are measured at the same point.
        "session": {"idle_timeout": 3600},
        "audio": {"input": {"device": "default", "sample_rate": RATE},
                  # The speaker on the file plugin: unpaced, so a reply plays out at once.
                  "output": {"device": "default", "sample_rate": RATE}},
        "chimes": {name: {"enabled": False} for name in ("press", "error", "goodbye")},
        "button": {"pin": BUTTON},
        "leds": [{"kind": "pwm", "pins": [LED]}],
        "log": {"state_dir": str(tmp_path / "state"), "conversation_log_max_bytes": 100_000},
    })
    source = CueSource()
    states = StateLog()
    daemon = Daemon(None, cfg, TEST_KEY, notifier=Notifier(environ={}),
                    hooks=Hooks(open_source=lambda: source, on_state=states))
    pin = mock_pins.pin(BUTTON)

    def edge(low: bool) -> None:
        # From another thread, as the Pi's GPIO callback thread would deliver the edge.
        worker = threading.Thread(target=pin.drive_low if low else pin.drive_high)
        worker.start()
        worker.join(5)

    def turn(number: int) -> None:
        if number % 10 == 0:
            for mock in list(mock_pins.pins.values()):
                mock.clear_states()  # keep the mock pins' own history from growing (see figures)
        n = states.count
        edge(True)
        states.wait_for(State.LISTENING, n)
        source.cue()
        assert source.done.wait(WAIT)
        edge(False)
        if number % INTERRUPT_EVERY == INTERRUPT_EVERY - 1:
            states.wait_for(State.THINKING, n)  # the next press lands before or during the reply
        else:
            states.wait_for(State.SPEAKING, n)
            assert wait_until(lambda: daemon.parts is not None
                              and daemon.parts.session.state == State.IDLE, WAIT, step=0.005)

    # pytest keeps every captured log record in memory for its report; the daemon's INFO lines
    # (a few per turn) would be counted as the daemon's growth. Its warnings still show.
    speakerd_log = logging.getLogger("speakerd")
    saved_level = speakerd_log.level
    speakerd_log.setLevel(logging.WARNING)
    daemon.start()
    try:
        for i in range(WARMUP):
            turn(i)
        assert wait_until(lambda: daemon.parts.session.state == State.IDLE, WAIT)  # type: ignore[union-attr]
        start = figures(mock_pins)
        t0 = time.monotonic()
        for i in range(TURNS):
            turn(i)
        assert wait_until(lambda: daemon.parts.session.state == State.IDLE, WAIT)  # type: ignore[union-attr]
        elapsed = time.monotonic() - t0
        # Threads of a finished turn may take a moment to end: poll, do not sleep.
        wait_until(lambda: figures(mock_pins)[1:] <= start[1:], 5.0)
        end = figures(mock_pins)
    finally:
        daemon.stop()
        speakerd_log.setLevel(saved_level)
    print(f"\nsoak: {TURNS} turns ({TURNS // INTERRUPT_EVERY} interrupted) in {elapsed:.0f} s "
          f"({elapsed / TURNS * 1000:.0f} ms/turn)\n"
          f"  VmRSS   {start[0]} kB -> {end[0]} kB ({end[0] - start[0]:+d} kB)\n"
          f"  threads {start[1]} -> {end[1]}\n"
          f"  files   {start[2]} -> {end[2]}")
    assert end[0] - start[0] <= 1024, f"RSS grew {end[0] - start[0]} kB"
    assert end[1] == start[1], "threads grew"
    assert end[2] == start[2], "open files grew"
