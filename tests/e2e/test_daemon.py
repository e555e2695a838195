"""The daemon as a process: readiness and watchdog, signals, reload, crashes and exit codes."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalOutputDevice

from speakerd import button as button_module
from speakerd.config import load_config
from speakerd.daemon import Daemon, Hooks
from speakerd.emulator import Emulator
from speakerd.emulator.sound import PulseServer
from speakerd.events import State
from speakerd.notify import Notifier
from tests.support.daemon import BUTTON, LED, WAIT, wait_until
from tests.support.emulator import TEST_KEY
from tests.support.process import (
    FakeSystemd,
    SpeakerdProcess,
    child_env,
    raw_config,
    speak,
    write_config,
)

pytestmark = pytest.mark.realtime

DAEMON_THREADS = {"mic", "speaker", "session", "agent-rx", "agent-tx"}


# --- readiness, status, watchdog, stopping ---------------------------------------------------


def test_notify_socket_hears_ready_status_watchdog_then_stopping(
        agent_emulator: Emulator, pulse_audio: PulseServer, fake_systemd: FakeSystemd,
        speakerd_process: Callable[..., SpeakerdProcess], tmp_path: Path) -> None:
    """`speakerd run`: READY=1 before pings, STATUS= per state, WATCHDOG=1 repeatedly, STOPPING=1 last."""
    config = write_config(tmp_path / "speakerd.yaml",
                          raw_config(agent_emulator, pulse_audio, tmp_path / "state"))
    proc = speakerd_process(config, child_env(pulse_audio, fake_systemd, WATCHDOG_USEC="1000000"))
    fake_systemd.wait_for("READY=1")
    proc.press()
    fake_systemd.wait_for("STATUS=listening")
    speak(pulse_audio)
    proc.release()
    speaking = fake_systemd.wait_for("STATUS=speaking")
    fake_systemd.wait_for("STATUS=idle", after=speaking)
    # WATCHDOG_USEC=1 s: a ping every half second; wait for several beyond the turn's own.
    pings = fake_systemd.first_lines().count("WATCHDOG=1")
    assert wait_until(lambda: fake_systemd.first_lines().count("WATCHDOG=1") >= pings + 3), \
        fake_systemd.first_lines()
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.stderr()
    lines = fake_systemd.first_lines()
    # STATUS= may come before readiness; READY=1 precedes every ping and the first turn.
    assert [line for line in lines if not line.startswith("STATUS=")][0] == "READY=1", lines
    statuses = [line for line in lines if line.startswith("STATUS=")]
    states = [s.removeprefix("STATUS=").split(";")[0] for s in statuses]
    # Consecutive duplicates collapsed: the turn's states in the order the user lived them.
    walked = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert walked[-5:] == [State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING,
                           State.IDLE], statuses
    assert lines.index("STATUS=connecting") > lines.index("READY=1")
    assert lines[-1] == "STOPPING=1", lines
    assert lines.count("STOPPING=1") == 1
    assert lines.count("WATCHDOG=1") >= 3
    assert "Traceback" not in proc.stderr()


def test_no_watchdog_pings_without_watchdog_usec(
        agent_emulator: Emulator, pulse_audio: PulseServer, fake_systemd: FakeSystemd,
        speakerd_process: Callable[..., SpeakerdProcess], tmp_path: Path) -> None:
    """Without WATCHDOG_USEC the daemon sends READY=1 and STOPPING=1 but never WATCHDOG=1."""
    config = write_config(tmp_path / "speakerd.yaml",
                          raw_config(agent_emulator, pulse_audio, tmp_path / "state"))
    proc = speakerd_process(config, child_env(pulse_audio, fake_systemd))
    fake_systemd.wait_for("READY=1")
    # Two watchdog periods of the other test: pings would have come by now if they were sent.
    assert not wait_until(lambda: "WATCHDOG=1" in fake_systemd.first_lines(), 1.5)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.stderr()
    assert fake_systemd.first_lines()[-1] == "STOPPING=1"
    assert "WATCHDOG=1" not in fake_systemd.first_lines()


# --- the daemon in this process, its run() in the main thread ---------------------------------


class Served:
    """What came of Daemon.run() in the main thread while a worker thread played the user."""

    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.signal_at: float | None = None
        self.returned_at: float | None = None
        self.error: BaseException | None = None
        self.left: list[str] = []
        self.returned = threading.Event()  # set once run() has returned in the main thread

    @property
    def stop_seconds(self) -> float:
        assert self.signal_at is not None and self.returned_at is not None
        return self.returned_at - self.signal_at


class Driver:
    """The user's hands and voice for an in-process daemon, and its state history."""

    def __init__(self, pulse: PulseServer, pins: Any) -> None:
        self.pulse = pulse
        self.pins = pins
        self.states: list[str] = []
        self._lock = threading.Lock()

    def on_state(self, state: str) -> None:
        with self._lock:
            self.states.append(state)

    def wait_state(self, state: str, after: int = 0, timeout: float = WAIT) -> int:
        def seen() -> bool:
            with self._lock:
                return state in self.states[after:]
        assert wait_until(seen, timeout), f"never reached {state}: {self.states}"
        with self._lock:
            return self.states.index(state, after)

    def mark(self) -> int:
        with self._lock:
            return len(self.states)

    def press(self) -> None:
        self.pins.pin(BUTTON).drive_low()

    def release(self) -> None:
        self.pins.pin(BUTTON).drive_high()

    def speak(self, name: str = "hello.wav") -> None:
        speak(self.pulse, name)

    def full_turn(self) -> None:
        """Press, speak, release, hear the reply out; back to idle."""
        n = self.mark()
        self.press()
        self.wait_state(State.LISTENING, after=n)
        self.speak()
        self.release()
        s = self.wait_state(State.SPEAKING, after=n)
        self.wait_state(State.IDLE, after=s)


def serve(daemon: Daemon, user: Callable[[Served], None]) -> Served:
    """Run the daemon in the main thread with its signal handlers; `user` acts from a worker thread."""
    served = Served()
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}

    def act() -> None:
        try:
            # The button exists last in start-up: a press before it would be lost.
            assert wait_until(lambda: daemon.parts is not None and daemon.parts.button is not None), \
                "the daemon never started"
            user(served)
        except BaseException as exc:  # noqa: BLE001 - reported by the test after run() returns
            served.error = exc
            daemon.request_stop()

    # A failing user must not leave run() waiting for ever.
    guard = threading.Timer(90.0, daemon.request_stop)
    guard.daemon = True
    worker = threading.Thread(target=act, name="test-user", daemon=True)
    try:
        daemon.install_signals()
        guard.start()
        worker.start()
        served.exit_code = daemon.run()
        served.returned_at = time.monotonic()
        served.returned.set()
    finally:
        guard.cancel()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        daemon.stop()
    worker.join(WAIT)
    served.left = sorted(t.name for t in threading.enumerate()
                         if t.name in DAEMON_THREADS and t.is_alive())
    if served.error is not None:
        raise served.error
    return served


def make_daemon(agent_emulator: Emulator, pulse: PulseServer, tmp_path: Path, driver: Driver,
                notifier: Notifier | None = None, on_state: Callable[[str], None] | None = None,
                **sections: Any) -> Daemon:
    path = write_config(tmp_path / "speakerd.yaml",
                        raw_config(agent_emulator, pulse, tmp_path / "state", **sections))
    return Daemon(str(path), load_config(path), TEST_KEY,
                  notifier=notifier or Notifier(environ={}),
                  hooks=Hooks(on_state=on_state or driver.on_state))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_reply_stops_with_exit_0_and_no_thread_left(
        agent_emulator: Emulator, pulse_audio: PulseServer, mock_pins: Any, tmp_path: Path,
        signum: int) -> None:
    """A stop signal while the reply plays: run() returns 0 and no daemon thread is left."""
    agent_emulator.options.reply_seconds = 8.0
    driver = Driver(pulse_audio, mock_pins)
    daemon = make_daemon(agent_emulator, pulse_audio, tmp_path, driver)

    def user(served: Served) -> None:
        driver.press()
        driver.wait_state(State.LISTENING)
        driver.speak()
        driver.release()
        driver.wait_state(State.SPEAKING)
        # Let the reply really play before the signal arrives.
        parts = daemon.parts
        assert parts is not None
        assert wait_until(parts.speaker.is_playing)
        served.signal_at = time.monotonic()
        os.kill(os.getpid(), signum)
        # The signal itself must end run(), long before the guard's request_stop() would; how
        # fast it stops is a figure for scripts/bench ("stop mid-reply").
        assert served.returned.wait(WAIT), "run() did not return after the signal"

    served = serve(daemon, user)
    print(f"{signal.Signals(signum).name} mid-reply: run() returned in {served.stop_seconds:.3f} s")
    assert served.exit_code == 0
    assert served.left == []
    assert driver.states[-1] == State.SPEAKING  # it was stopped mid-reply, not after it


def test_sighup_with_a_good_file_applies_the_new_config(
        monkeypatch: pytest.MonkeyPatch,
        agent_emulator: Emulator, pulse_audio: PulseServer, mock_pins: Any, tmp_path: Path,
        fake_systemd: FakeSystemd) -> None:
    """SIGHUP after switching the file to toggle mode: RELOADING=1, READY=1, and a press now toggles."""
    monkeypatch.setenv("DEEPGRAM_API_KEY", TEST_KEY)  # a reload reads the key again
    driver = Driver(pulse_audio, mock_pins)
    daemon = make_daemon(agent_emulator, pulse_audio, tmp_path, driver, fake_systemd.notifier())
    path = Path(str(daemon.config_path))

    def user(served: Served) -> None:
        ready = fake_systemd.wait_for("READY=1")
        raw = raw_config(agent_emulator, pulse_audio, tmp_path / "state",
                         button={"mode": "toggle"}, leds=[{"kind": "pwm", "pins": ["GPIO24"]}])
        write_config(path, raw)
        os.kill(os.getpid(), signal.SIGHUP)
        reloading = fake_systemd.wait_for("RELOADING=1", after=ready + 1)
        fake_systemd.wait_for("READY=1", after=reloading)
        assert daemon.cfg.button.mode == "toggle"
        # Toggle mode: one press-and-release opens a hands-free turn that returns to listening.
        n = driver.mark()
        driver.press()
        driver.release()
        driver.wait_state(State.LISTENING, after=n)
        driver.speak()
        s = driver.wait_state(State.SPEAKING, after=n)
        driver.wait_state(State.LISTENING, after=s)
        # The LEDs moved to the new pin: it shows the states now.
        assert daemon.parts is not None
        assert daemon.parts.cfg.leds[0].pins == ("GPIO24",)
        assert any(s.state > 0 for s in mock_pins.pin("GPIO24").states), "new LED pin never lit"
        served.signal_at = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)

    served = serve(daemon, user)
    assert served.exit_code == 0
    assert served.left == []


def test_sighup_with_a_bad_file_keeps_serving_the_old_config(
        monkeypatch: pytest.MonkeyPatch,
        agent_emulator: Emulator, pulse_audio: PulseServer, mock_pins: Any, tmp_path: Path,
        fake_systemd: FakeSystemd, caplog: pytest.LogCaptureFixture) -> None:
    """SIGHUP with a broken file: every problem logged, READY=1 again, the old config still serves turns."""
    monkeypatch.setenv("DEEPGRAM_API_KEY", TEST_KEY)  # a reload reads the key again
    driver = Driver(pulse_audio, mock_pins)
    daemon = make_daemon(agent_emulator, pulse_audio, tmp_path, driver, fake_systemd.notifier())
    path = Path(str(daemon.config_path))
    caplog.set_level(logging.INFO, logger="speakerd")

    def user(served: Served) -> None:
        ready = fake_systemd.wait_for("READY=1")
        parts = daemon.parts
        path.write_text("button:\n  mode: sideways\n  pinn: GPIO5\naudio:\n  input:\n"
                        "    sample_rate: 3\n", encoding="utf-8")
        os.kill(os.getpid(), signal.SIGHUP)
        reloading = fake_systemd.wait_for("RELOADING=1", after=ready + 1)
        fake_systemd.wait_for("READY=1", after=reloading)
        assert daemon.parts is parts, "the running parts were replaced"
        assert daemon.cfg.button.mode == "hold"
        # Hold mode still: a full turn works after the failed reload.
        driver.full_turn()
        os.kill(os.getpid(), signal.SIGTERM)

    served = serve(daemon, user)
    assert served.exit_code == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for key in ("button.mode", "button.pinn", "audio.input.sample_rate"):
        assert any(key in e for e in errors), (key, errors)
    lines = fake_systemd.first_lines()
    assert any(line.startswith("STATUS=reload failed") for line in lines), lines


def test_an_exception_in_the_session_thread_stops_the_daemon_with_exit_1(
        agent_emulator: Emulator, pulse_audio: PulseServer, mock_pins: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A hook raising inside the session thread: run() returns 1 at once, no restart, no thread left."""
    driver = Driver(pulse_audio, mock_pins)

    def explode(state: str) -> None:
        driver.on_state(state)
        if state == State.CONNECTING:
            raise RuntimeError("boom from a hook")

    daemon = make_daemon(agent_emulator, pulse_audio, tmp_path, driver, on_state=explode)

    def user(served: Served) -> None:
        served.signal_at = time.monotonic()  # from the press: the crash follows it
        driver.press()

    served = serve(daemon, user)
    assert served.exit_code == 1
    assert served.stop_seconds < WAIT
    assert served.left == []
    assert driver.states.count(State.CONNECTING) == 1  # nothing started the session again
    crashes = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any("session" in r.getMessage() for r in crashes), [r.getMessage() for r in crashes]


def test_sighup_mid_reply_reloads_and_the_next_press_gives_a_full_turn(
        monkeypatch: pytest.MonkeyPatch,
        agent_emulator: Emulator, pulse_audio: PulseServer, mock_pins: Any, tmp_path: Path) -> None:
    """SIGHUP while the reply plays: the parts are rebuilt, no thread or file is left over, turns go on."""
    monkeypatch.setenv("DEEPGRAM_API_KEY", TEST_KEY)  # a reload reads the key again
    agent_emulator.options.reply_seconds = 8.0
    driver = Driver(pulse_audio, mock_pins)
    daemon = make_daemon(agent_emulator, pulse_audio, tmp_path, driver,
                         session={"idle_timeout": 0.5})
    counts: dict[str, tuple[int, int]] = {}

    def figures() -> tuple[int, int]:
        # The finished pacat helpers of this test keep a log file and a time-limit thread until
        # stopped: end them so only the daemon's own threads and files are counted.
        for child in pulse_audio._children:
            child.stop()
        pulse_audio._children.clear()
        return threading.active_count(), len(os.listdir("/proc/self/fd"))

    def user(served: Served) -> None:
        agent_emulator.options.reply_seconds = None
        driver.full_turn()
        assert wait_until(lambda: agent_emulator.sessions[-1].closed.is_set())  # idle socket closed
        counts["before"] = figures()
        agent_emulator.options.reply_seconds = 8.0
        n = driver.mark()
        driver.press()
        driver.wait_state(State.LISTENING, after=n)
        driver.speak()
        driver.release()
        driver.wait_state(State.SPEAKING, after=n)
        old = daemon.parts
        assert old is not None and wait_until(old.speaker.is_playing)
        os.kill(os.getpid(), signal.SIGHUP)
        # The button is made last in start-up: a press before it exists would be lost.
        assert wait_until(lambda: daemon.parts is not None and daemon.parts is not old
                          and daemon.parts.button is not None)
        agent_emulator.options.reply_seconds = None
        driver.full_turn()
        assert wait_until(lambda: agent_emulator.sessions[-1].closed.is_set())
        # Threads of the old parts may take a moment to end: poll, do not sleep.
        wait_until(lambda: all(a <= b for a, b in zip(figures(), counts["before"], strict=True)), 5.0)
        counts["after"] = figures()
        os.kill(os.getpid(), signal.SIGTERM)

    served = serve(daemon, user)
    assert served.exit_code == 0
    # Threads and open files each, not the pair as a tuple (one fewer thread would hide a leak).
    assert all(a <= b for a, b in zip(counts["after"], counts["before"], strict=True)), counts
    assert served.left == []


# --- reloads that cannot build the new parts -------------------------------------------------


def test_sighup_when_the_new_parts_cannot_start_keeps_serving_the_old_config(
        monkeypatch: pytest.MonkeyPatch, agent_emulator: Emulator, pulse_audio: PulseServer,
        mock_pins: Any, tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    """A busy pin in the new file: the old config serves again, the status says why, and the pins
    the half-built parts claimed are free."""
    monkeypatch.setenv("DEEPGRAM_API_KEY", TEST_KEY)  # a reload reads the key again
    driver = Driver(pulse_audio, mock_pins)
    daemon = make_daemon(agent_emulator, pulse_audio, tmp_path, driver, fake_systemd.notifier())
    path = Path(str(daemon.config_path))

    def user(served: Served) -> None:
        ready = fake_systemd.wait_for("READY=1")
        # The new file wants an LED on GPIO24 (claimed first) and the button on GPIO23, which
        # something else holds: the new parts fail half way.
        busy = DigitalOutputDevice("GPIO23")
        try:
            write_config(path, raw_config(agent_emulator, pulse_audio, tmp_path / "state",
                                          button={"pin": "GPIO23"},
                                          leds=[{"kind": "pwm", "pins": ["GPIO24"]}]))
            os.kill(os.getpid(), signal.SIGHUP)
            reloading = fake_systemd.wait_for("RELOADING=1", after=ready + 1)
            fake_systemd.wait_for("READY=1", after=reloading)
        finally:
            busy.close()
        assert daemon.cfg.button.pin == BUTTON
        assert any(line.startswith("STATUS=reload failed") for line in fake_systemd.first_lines())
        DigitalOutputDevice("GPIO24").close()  # what the half-built parts claimed is free again
        driver.full_turn()  # the old config serves
        os.kill(os.getpid(), signal.SIGTERM)

    served = serve(daemon, user)
    assert served.exit_code == 0
    assert "STOPPING=1" in fake_systemd.first_lines()
    assert served.left == []


def test_a_reload_that_cannot_restore_any_config_exits_1_cleanly(
        monkeypatch: pytest.MonkeyPatch, agent_emulator: Emulator, pulse_audio: PulseServer,
        mock_pins: Any, tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    """If neither the new nor the old parts can start: STOPPING=1, exit 1, excepthook restored,
    every pin free (systemd restarts a clean process)."""
    monkeypatch.setenv("DEEPGRAM_API_KEY", TEST_KEY)
    driver = Driver(pulse_audio, mock_pins)
    daemon = make_daemon(agent_emulator, pulse_audio, tmp_path, driver, fake_systemd.notifier())
    hook = threading.excepthook
    real_button = button_module.PushButton
    builds: list[object] = []

    def failing_button(*args: Any, **kwargs: Any) -> Any:
        # The last step of a start, after the LEDs, devices and threads were claimed.
        builds.append(args)
        if len(builds) > 1:
            raise RuntimeError("device or resource busy (made so by the test)")
        return real_button(*args, **kwargs)

    monkeypatch.setattr(button_module, "PushButton", failing_button)

    def user(served: Served) -> None:
        fake_systemd.wait_for("READY=1")
        served.signal_at = time.monotonic()
        os.kill(os.getpid(), signal.SIGHUP)

    served = serve(daemon, user)
    assert served.exit_code == 1
    assert len(builds) == 3  # the first start, the new config, the way back to the old one
    fake_systemd.wait_for("STOPPING=1")
    assert threading.excepthook is hook
    for pin in (BUTTON, LED):
        DigitalOutputDevice(pin).close()  # free: nothing half-built holds it
    assert served.left == []


class StuckSource:
    """A capture device that reads silence until told to hang, then hangs in read()."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.hang = threading.Event()
        self.hanging = threading.Event()
        self.unstuck = threading.Event()
        self.opened = 0
        self._pace = threading.Event()  # never set: its wait paces reads like a device

    def __call__(self) -> StuckSource:
        self.opened += 1
        return self

    def read(self) -> bytes:
        if self.hang.is_set():
            self.hanging.set()
            self.unstuck.wait(60)
        self._pace.wait(0.02)
        return bytes(self.period)

    def close(self) -> None:
        pass


def test_a_reload_over_a_stuck_mic_exits_1_instead_of_a_second_owner(
        monkeypatch: pytest.MonkeyPatch, agent_emulator: Emulator, pulse_audio: PulseServer,
        mock_pins: Any, tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    """A mic thread stuck in a read when a reload comes: the device is never opened twice; the
    daemon exits 1 so systemd starts a clean process."""
    monkeypatch.setenv("DEEPGRAM_API_KEY", TEST_KEY)
    driver = Driver(pulse_audio, mock_pins)
    path = write_config(tmp_path / "speakerd.yaml",
                        raw_config(agent_emulator, pulse_audio, tmp_path / "state",
                                   audio={"duplex": "full"}))
    source = StuckSource(640)
    daemon = Daemon(str(path), load_config(path), TEST_KEY, notifier=fake_systemd.notifier(),
                    hooks=Hooks(on_state=driver.on_state, open_source=source))

    def user(served: Served) -> None:
        fake_systemd.wait_for("READY=1")
        source.hang.set()
        driver.press()  # the mic reads once there is somewhere for its frames to go
        assert source.hanging.wait(WAIT)
        served.signal_at = time.monotonic()
        os.kill(os.getpid(), signal.SIGHUP)

    try:
        served = serve(daemon, user)
        assert served.exit_code == 1
        assert source.opened == 1
        assert sum(t.name == "mic" for t in threading.enumerate()) == 1  # the stuck one only
        fake_systemd.wait_for("STOPPING=1")
    finally:
        source.unstuck.set()
