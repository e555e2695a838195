"""Faults on the whole daemon: each ends back at ready, with a full turn and no leaked threads or files."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speakerd.emulator import Emulator
from speakerd.emulator.sound import PulseServer
from speakerd.events import State
from tests.support.alsa import load_wav
from tests.support.daemon import WAIT, DaemonRig, rig_config, wait_until

pytestmark = pytest.mark.realtime

# Short timings so every fault recovers in seconds: the idle socket closes 0.5 s after a turn
# (resources are compared with the link closed), reconnects start at 0.2 s.
FAST = {"session": {"idle_timeout": 0.5, "reconnect_initial": 0.2, "reconnect_max": 2.0,
                    "reply_timeout": 3.0}}


def resources() -> tuple[int, int]:
    """Threads and open file descriptors of this process."""
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def _session(rig: DaemonRig) -> Any:
    assert rig.daemon.parts is not None
    return rig.daemon.parts.session


def link_closed(rig: DaemonRig) -> bool:
    """The daemon is idle with no agent link, and every emulator connection is finished."""
    return (rig.state == State.IDLE and _session(rig).link is None
            and all(s.closed.is_set() for s in rig.emulator.sessions))


def full_turn(rig: DaemonRig, wav: str = "hello.wav") -> None:
    """Press, speak, release, hear the reply: the state reaches speaking, then idle, and stays."""
    rig.full_turn(wav)
    assert wait_until(lambda: rig.state == State.IDLE), rig.state_names()


def settle(rig: DaemonRig) -> tuple[int, int]:
    """Wait for the idle link to close; return the resource counts at that point."""
    assert wait_until(lambda: link_closed(rig), WAIT), (rig.state, rig.state_names()[-8:])
    return resources()


def assert_no_growth(rig: DaemonRig, baseline: tuple[int, int]) -> None:
    """After the fault and a full turn, with the link closed again: no more threads or files."""
    settle(rig)
    # Threads of a closed link or a finished handler end a moment later: poll, do not sleep.
    ok = wait_until(lambda: resources()[0] <= baseline[0] and resources()[1] <= baseline[1], WAIT)
    assert ok, f"threads/files {resources()} grew from {baseline}: " \
               f"{sorted(t.name for t in threading.enumerate())}"


@pytest.fixture
def fault_rig(make_rig: Callable[..., DaemonRig]) -> Callable[..., tuple[DaemonRig, tuple[int, int]]]:
    """A rig with fast timings, one full turn done and its resource baseline taken."""
    from tests.support.daemon import merge

    def make(**overrides: Any) -> tuple[DaemonRig, tuple[int, int]]:
        rig = make_rig(**merge(FAST, overrides))
        full_turn(rig)
        return rig, settle(rig)
    return make


def recover(rig: DaemonRig, baseline: tuple[int, int]) -> None:
    """Back to ready: idle, then a full turn, then no growth."""
    assert wait_until(lambda: rig.state == State.IDLE, WAIT), rig.state_names()[-8:]
    full_turn(rig)
    assert_no_growth(rig, baseline)


def reply_until(rig: DaemonRig, state: State = State.SPEAKING) -> int:
    """Press, speak, release, and wait for `state`; return the state index of the press."""
    n = len(rig.states)
    rig.press()
    rig.wait_state(State.LISTENING, after=n)
    proc = rig.pulse.play_into_mic(load_wav("hello.wav"))
    assert wait_until(lambda: not proc.alive(), WAIT)
    proc.stop()
    rig.release()
    rig.wait_state(state, after=n)
    return n


# --- the agent ---------------------------------------------------------------------------


def test_refused_key_shows_error_and_backs_off(fault_rig: Any, caplog: pytest.LogCaptureFixture) -> None:
    """401 at the handshake: error state and LED, a log line about the key, few attempts for many presses."""
    caplog.set_level(logging.INFO)
    # reconnect_initial 2 s: after the first refusal a retry is allowed only 4 s later.
    rig, baseline = fault_rig(session={"reconnect_initial": 2.0, "reconnect_max": 4.0})
    rig.emulator.options.refuse_status = 401
    before = len(rig.emulator.rejected)
    n = len(rig.states)
    rig.press()
    rig.release()
    rig.wait_state(State.ERROR, after=n)
    assert State.ERROR in rig.led_history()
    assert wait_until(lambda: any("refused the API key" in r.getMessage() and r.levelno >= logging.ERROR
                                  for r in caplog.records))
    # Eight more presses inside the backoff, each one handled by the session before the next:
    # the refused key must not be retried on any of them.
    session = _session(rig)
    after_error = len(rig.states)
    for _ in range(8):
        seen = session._floor.last_activity  # the session thread stamps every press it handles
        rig.press()
        rig.release()
        assert wait_until(lambda seen=seen: session._floor.last_activity > seen), "a press was not handled"
    assert session._reconnect.key_blocked(), "the presses outlasted the backoff"
    assert State.CONNECTING not in rig.state_names()[after_error:]
    attempts = len(rig.emulator.rejected) - before
    assert attempts == 1, f"{attempts} connection attempts for 9 presses"
    assert all(status == 401 for _, status in rig.emulator.rejected[before:])
    rig.emulator.options.refuse_status = None
    # The backoff is the session's own; wait for it to allow a retry (bounded by reconnect_max).
    assert wait_until(lambda: not session._reconnect.key_blocked() and rig.state == State.IDLE, WAIT)
    recover(rig, baseline)


@pytest.mark.parametrize("status", [429, 500])
def test_handshake_refused_goes_offline_and_retries(fault_rig: Any, status: int) -> None:
    """429/500 at the handshake: offline, retried with backoff, and back once the server accepts."""
    rig, baseline = fault_rig()
    rig.emulator.options.refuse_status = status
    before = len(rig.emulator.rejected)
    n = len(rig.states)
    rig.press()
    rig.wait_state(State.OFFLINE, after=n)
    assert wait_until(lambda: len(rig.emulator.rejected) - before >= 2, WAIT), "never retried"
    rig.release()
    rig.emulator.options.refuse_status = None
    recover(rig, baseline)


def test_tcp_dropped_mid_reply(fault_rig: Any) -> None:
    """The connection dropped mid-reply: offline, reconnected, and the next turn is whole."""
    rig, baseline = fault_rig()
    rig.emulator.options.reply_seconds = 3.0
    rig.emulator.options.drop_mid_reply = True
    reply_until(rig, State.OFFLINE)
    rig.emulator.options.reply_seconds = None
    recover(rig, baseline)


def test_close_right_after_an_error(fault_rig: Any) -> None:
    """An Error then a close: the error state, then idle after the hold, then a full turn."""
    rig, baseline = fault_rig()
    rig.emulator.options.error_then_close = "EMULATED_FAILURE"
    reply_until(rig, "error")
    recover(rig, baseline)


# What the session reports when the link's ping watchdog (ping interval + 2 s without any frame)
# or its own reply deadline (session.reply_timeout) finds a silent server.
STALL_DETECTORS = ("the agent stopped answering (no frame, not even a pong)", "no reply from the agent")


class FreezingProxy:
    """A loopback TCP forwarder whose open connections can be frozen: bytes stop both ways,
    pings and pongs included, while the sockets stay open — a server gone silent."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()  # guards _pairs
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, name="proxy-accept")
        self._accept.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                t = threading.Thread(target=self._pump, args=(a, b), name="proxy-pump")
                t.start()
                self._threads.append(t)
            self._threads = [t for t in self._threads if t.is_alive()]

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.05)
        try:
            while not self._stop.is_set():
                if self._frozen.is_set():
                    self._stop.wait(0.05)  # hold every byte where it is
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def freeze(self) -> None:
        self._frozen.set()

    def cut(self) -> None:
        """Close every connection (frozen ones included) and let new ones flow again."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._frozen.clear()
        for t in list(self._threads):
            t.join(5)
        for pair in pairs:
            for sock in pair:
                sock.close()

    def close(self) -> None:
        self.cut()
        self._stop.set()
        self._accept.join(5)
        self._listener.close()


def test_silent_stall_is_detected_by_the_ping_or_the_reply_deadline(
        make_rig: Callable[..., DaemonRig], agent_emulator: Emulator) -> None:
    """A server gone silent (no frames, no pongs) while thinking: detected by the link's ping
    watchdog or the session's reply deadline (both within 10 s as configured), then recovered."""
    from tests.support.daemon import merge

    proxy = FreezingProxy(agent_emulator.port)
    try:
        rig = make_rig(**merge(FAST, {
            "agent": {"url": f"ws://127.0.0.1:{proxy.port}/v1/agent/converse"},
            # The defaults: the link pings every 5 s (7 s without a frame is a stall) and the
            # session gives the agent 10 s to reply; whichever fires first must be within 10 s.
            "session": {"reply_timeout": 10.0}}))
        full_turn(rig)
        baseline = settle(rig)
        n = len(rig.states)
        rig.press()
        rig.wait_state(State.LISTENING, after=n)
        proc = rig.pulse.play_into_mic(load_wav("hello.wav"))
        assert wait_until(lambda: not proc.alive(), WAIT)
        proc.stop()
        # The agent's own end of speech (1.5 s) has not fired yet: freeze before it answers.
        proxy.freeze()
        frozen_at = time.monotonic()
        rig.release()
        rig.wait_state(State.THINKING, after=n)
        session = _session(rig)
        assert wait_until(lambda: session.link is None, 15.0), "the stall was never detected"
        detected = time.monotonic() - frozen_at
        print(f"stall detected after {detected:.1f} s by: {session.last_error}")
        # Which detector fired, not how fast: a busy machine may be late, never another cause.
        assert session.last_error in STALL_DETECTORS, f"{detected:.1f} s: {session.last_error}"
        proxy.cut()
        recover(rig, baseline)
    finally:
        proxy.close()


def test_unknown_types_and_warnings_are_ignored(fault_rig: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Unknown message types and Warnings arrive mid-turn: logged, and the turn completes."""
    caplog.set_level(logging.INFO)
    rig, baseline = fault_rig()
    rig.emulator.options.unknown_types = True
    rig.emulator.options.warnings = True
    full_turn(rig)
    sent = rig.emulator.sessions[-1].sent_types()
    assert "EmulatorTurnNote" in sent and "Warning" in sent
    messages = [r.getMessage() for r in caplog.records]
    assert any("unknown message type" in m for m in messages)
    assert any("agent warning" in m for m in messages)
    rig.emulator.options.unknown_types = False
    rig.emulator.options.warnings = False
    recover(rig, baseline)


def _send_raw(emu_session: Any, frames: list[str | bytes]) -> None:
    # The emulator has no knob for malformed frames, so write them on its connection directly,
    # under its send lock so they do not tear its own frames.
    link = emu_session._link
    with link.send_lock:
        for frame in frames:
            link._conn.send(frame)


def test_malformed_huge_and_odd_frames_mid_reply(fault_rig: Any) -> None:
    """Malformed JSON and odd-length binary frames mid-reply: skipped, link kept (a frame past the
    size limit drops the link instead: tests/e2e/test_hostile.py)."""
    rig, baseline = fault_rig()
    rig.emulator.options.reply_seconds = 2.0
    reply_until(rig)
    emu_session = rig.emulator.sessions[-1]
    link = _session(rig).link
    _send_raw(emu_session, ["{not json", '{"type": ', "[1, 2, 3]", '"just a string"',
                            json.dumps({"type": "Welcome", "pad": "x" * (512 * 1024)}),
                            b"\x01", b"\x01\x02\x03", b"\x00" * 4095])
    n = len(rig.states)
    rig.wait_state(State.IDLE, after=n - 1)
    # The same link survived all of it.
    assert _session(rig).link is link
    assert not emu_session.closed.is_set()
    rig.emulator.options.reply_seconds = None
    recover(rig, baseline)


# --- audio ---------------------------------------------------------------------------------


def test_capture_device_missing_at_start_then_appearing(
        make_rig: Callable[..., DaemonRig], pulse_audio: PulseServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The mic's PCM is undefined at start: reported, retried, and used once the config defines it."""
    caplog.set_level(logging.INFO)
    own = tmp_path / "asoundrc"
    base = pulse_audio.alsa_config.read_text()
    own.write_text(base)
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(own))
    rig = make_rig(**{**FAST, "audio": {"input": {"device": "pa_late"}}})
    assert wait_until(lambda: any("microphone unavailable" in r.getMessage()
                                  for r in caplog.records), WAIT)
    # A new inode: alsa-lib re-reads its config at the next open.
    late = f'pcm.pa_late {{ type pulse server "unix:{pulse_audio.socket}" device "mic.monitor" }}\n'
    (tmp_path / "asoundrc.new").write_text(base + late)
    os.replace(tmp_path / "asoundrc.new", own)
    assert wait_until(lambda: any("microphone is back" in r.getMessage()
                                  for r in caplog.records), WAIT)
    full_turn(rig)
    baseline = settle(rig)
    recover(rig, baseline)


@pytest.fixture
def own_rig(agent_emulator: Emulator, own_pulse_server: PulseServer, mock_pins: Any,
            tmp_path: Path) -> Iterator[DaemonRig]:
    """A rig on a PulseAudio server of its own, so the test can crash and restart it."""
    cfg = rig_config(agent_emulator, own_pulse_server, tmp_path / "state", **FAST)
    rig = DaemonRig(cfg, agent_emulator, own_pulse_server, mock_pins)
    rig.daemon.start()
    try:
        yield rig
    finally:
        rig.daemon.stop()


def test_playback_device_gone_mid_reply_and_back(own_rig: DaemonRig,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The sound server dies mid-reply: the daemon survives, and uses the devices once it is back."""
    caplog.set_level(logging.INFO)
    rig = own_rig
    full_turn(rig)
    baseline = settle(rig)
    rig.emulator.options.reply_seconds = 4.0
    reply_until(rig)
    rig.pulse.crash()
    assert wait_until(lambda: any("speaker unavailable" in r.getMessage()
                                  for r in caplog.records), WAIT)
    assert wait_until(lambda: rig.state == State.IDLE, WAIT), rig.state_names()[-6:]
    rig.pulse.start()  # a new server on the same socket and config paths
    assert wait_until(lambda: any("speaker is back" in r.getMessage() for r in caplog.records), WAIT)
    assert wait_until(lambda: any("microphone is back" in r.getMessage()
                                  for r in caplog.records), WAIT)
    rig.emulator.options.reply_seconds = None
    recover(rig, baseline)


# --- the button ----------------------------------------------------------------------------


def test_storm_of_a_hundred_presses(fault_rig: Any) -> None:
    """100 presses in a second: the daemon settles to idle and the next full turn works."""
    rig, baseline = fault_rig()
    pin = rig.pins.pin("GPIO17")
    pause = threading.Event()

    def storm() -> None:
        # From another thread, as the Pi's GPIO callback thread would deliver the edges.
        for _ in range(100):
            pin.drive_low()
            pause.wait(0.005)
            pin.drive_high()
            pause.wait(0.005)

    worker = threading.Thread(target=storm)
    worker.start()
    worker.join(WAIT)
    assert not worker.is_alive()
    assert wait_until(lambda: link_closed(rig), 2 * WAIT), rig.state_names()[-8:]
    recover(rig, baseline)


def test_held_press_is_capped_by_max_turn_seconds(fault_rig: Any) -> None:
    """A press held far too long (session.max_turn_seconds = 5 s here) hands the turn over while held."""
    rig, baseline = fault_rig(session={"max_turn_seconds": 5.0})
    # The agent's own end of speech at 3 s, longer than any gap in the speech below, so only
    # the cap can end the turn while the button is held.
    rig.emulator.options.end_of_speech = 3.0
    n = len(rig.states)
    pressed = rig.press()
    rig.wait_state(State.LISTENING, after=n)
    # Nine seconds of speech (four greetings back to back, gaps of 1.3 s).
    proc = rig.pulse.play_into_mic(load_wav("hello.wav") * 4)
    thinking = rig.wait_state(State.THINKING, after=n)  # still held: the cap released the turn
    # Not before the cap; how late after it is left to the machine (a busy one is slower).
    assert thinking - pressed >= 5.0, thinking - pressed
    assert rig.state_names()[n:].count(State.SPEAKING) == 0  # the agent had not answered before
    rig.wait_state(State.SPEAKING, after=n)
    assert wait_until(lambda: not proc.alive(), WAIT)
    proc.stop()
    assert wait_until(lambda: rig.state == State.IDLE, WAIT)
    rig.release()  # the late release is ignored
    recover(rig, baseline)
