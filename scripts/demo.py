"""A conversation that talks: the real daemon, the local agent emulator, real-time ALSA devices.

Run from the repository root (scripts/demo does). The daemon runs in this process with mock GPIO
pins; PulseAudio null sinks stand in for the sound card. The button is pressed for it while a
spoken fixture plays into the microphone; what the speaker played is saved as a WAV.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

# Before gpiozero is imported anywhere: no Pi here, so its pins are mocks.
os.environ["GPIOZERO_PIN_FACTORY"] = "mock"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpiozero import Device  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from speakerd.config import DEFAULT_PATTERNS, Config, parse_config  # noqa: E402
from speakerd.daemon import Daemon, Hooks  # noqa: E402
from speakerd.emulator import Emulator, EmulatorOptions  # noqa: E402
from speakerd.emulator.sound import PulseServer, read_wav, wait_until  # noqa: E402
from speakerd.events import (
    PlaybackInterrupted,  # noqa: E402
    State,
)
from speakerd.notify import Notifier  # noqa: E402

KEY = "demo-emulator-key"
BUTTON = "GPIO17"
LED = "GPIO25"
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "data" / "audio"
WAIT = 15.0
LONG_REPLY = 8.0  # seconds: long enough that the press lands mid-reply


class DemoFailed(Exception):
    """A step of the demo did not happen."""


def load_wav(name: str) -> bytes:
    return read_wav(FIXTURES / name)


def save_wav(path: Path, pcm: bytes, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def expect(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a step of the demo; DemoFailed naming it if it does not happen in time."""
    if not wait_until(predicate, timeout):
        raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")


class Console:
    """Prints the conversation as it happens, stamped with seconds since the start."""

    def __init__(self, cfg: Config) -> None:
        self.t0 = time.monotonic()
        self.cfg = cfg
        self.states: list[str] = []
        self.texts: list[tuple[str, str]] = []
        self.turn_lines: list[str] = []
        self.interrupts: list[PlaybackInterrupted] = []
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            print(f"{time.monotonic() - self.t0:6.2f}  {line}", flush=True)

    def on_state(self, state: str) -> None:
        self.states.append(state)
        p = self.cfg.leds[0].patterns.get(state) or DEFAULT_PATTERNS[state]
        led = p.effect if p.effect in ("off", "on") else f"{p.effect} {p.on_time:g}/{p.off_time:g} s"
        self.say(f"[state] {state:<10} LED: {led}")

    def on_text(self, role: str, content: str) -> None:
        self.texts.append((role, content))
        self.say(f"[{role}] {content}")


class TurnLines(logging.Handler):
    """Shows the daemon's INFO lines (per-turn latencies, connects); states are shown already."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.name == "speakerd.session" and msg.startswith("state "):
            return
        if record.name.startswith("speakerd.emulator"):
            self.console.say(f"[agent] {msg}")
            return
        if msg.startswith("turn "):
            self.console.turn_lines.append(msg)
        self.console.say(f"[log]   {msg}" if record.levelno <= logging.INFO
                         else f"[{record.levelname.lower()}] {msg}")


def watch_playback(daemon: Daemon, console: Console) -> None:
    """Show the speaker's interruptions: its events reach the session through session.post."""
    assert daemon.parts is not None
    session = daemon.parts.session
    post = session.post

    def observe(event: object) -> None:
        if isinstance(event, PlaybackInterrupted) and event.discarded_bytes:
            console.interrupts.append(event)
            console.say(f"[speaker] interrupted: {event.discarded_bytes / 2 / 16000:.2f} s of the "
                        f"old reply dropped, device stopped "
                        f"{(event.t_dropped - event.t_request) * 1000:.1f} ms after the request")
        post(event)

    session.post = observe  # type: ignore[method-assign]


def demo_config(emu: Emulator, pa: PulseServer, state_dir: Path) -> Config:
    """The shipped defaults (chimes on) pointed at the emulator and the PulseAudio devices."""
    return parse_config({
        "agent": {"url": emu.url("v1")},
        "audio": {"input": {"device": pa.mic_device, "sample_rate": pa.rate},
                  "output": {"device": pa.speaker_device, "sample_rate": pa.rate}},
        "button": {"pin": BUTTON},
        "leds": [{"kind": "pwm", "pins": [LED]}],
        "log": {"state_dir": str(state_dir)},
    })


def run(out: Path) -> None:
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    pins: MockFactory = Device.pin_factory  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="speakerd-demo-") as tmp:
        root = Path(tmp)
        pa = PulseServer(root / "pulse")
        pa.start()
        os.environ["ALSA_CONFIG_PATH"] = str(pa.alsa_config)
        # end_of_speech longer than the fixtures' trailing silence: the release ends each turn.
        emu = Emulator(EmulatorOptions(api_key=KEY, end_of_speech=1.5, reply_latency=0.2)).start()
        rec = None
        daemon = None
        try:
            cfg = demo_config(emu, pa, root / "state")
            console = Console(cfg)
            logging.getLogger("speakerd").addHandler(TurnLines(console))
            logging.getLogger("speakerd").setLevel(logging.INFO)
            console.say(f"emulator on {emu.url('v1')}; speaker {pa.speaker_device}, mic {pa.mic_device}")
            rec = pa.record_speaker(root / "speaker.raw")
            daemon = Daemon(None, cfg, KEY, notifier=Notifier(environ={}),
                            hooks=Hooks(on_state=console.on_state, on_text=console.on_text))
            daemon.start()
            watch_playback(daemon, console)
            pin = pins.pin(BUTTON)

            def edge(low: bool) -> None:
                # From another thread, as the Pi's GPIO callback thread delivers it.
                console.say("[button] " + ("pressed" if low else "released"))
                t = threading.Thread(target=pin.drive_low if low else pin.drive_high)
                t.start()
                t.join(5)

            def seen(state: str, after: int) -> Callable[[], bool]:
                return lambda: state in console.states[after:]

            def speak(name: str) -> None:
                pcm = load_wav(name)
                console.say(f"[mic]    playing {name} ({len(pcm) / 2 / pa.rate:.1f} s) into the microphone")
                proc = pa.play_into_mic(pcm, name=f"{name}.raw")
                expect(lambda: not proc.alive(), WAIT, f"{name} to finish playing")

            # Turn 1: a whole turn, the agent parrots the words back.
            console.say("--- turn 1: press, say hello, release; the agent answers")
            n = len(console.states)
            edge(True)
            expect(seen(State.LISTENING, n), WAIT, "listening after the press")
            speak("hello.wav")
            edge(False)
            expect(seen(State.SPEAKING, n), WAIT, "the agent's reply")
            m = len(console.states)
            expect(seen(State.IDLE, m), WAIT, "the reply to play out")

            # Turn 2: a long reply, interrupted by a press mid-reply.
            console.say(f"--- turn 2: a {LONG_REPLY:.0f} s reply, interrupted by a press after 1.5 s")
            emu.options.reply_seconds = LONG_REPLY
            n = len(console.states)
            edge(True)
            expect(seen(State.LISTENING, n), WAIT, "listening after the press")
            speak("weather.wav")
            edge(False)
            expect(seen(State.SPEAKING, n), WAIT, "the long reply")
            emu.options.reply_seconds = None
            threading.Event().wait(1.5)
            m = len(console.states)

            # Turn 3: the interrupting press starts the next turn at once.
            console.say("--- turn 3: the press that interrupts starts the next turn")
            edge(True)
            expect(seen(State.LISTENING, m), WAIT, "listening after the interrupting press")
            speak("hello.wav")
            edge(False)
            expect(seen(State.SPEAKING, m), WAIT, "the reply after the interruption")
            k = len(console.states)
            expect(seen(State.IDLE, k), WAIT, "the last reply to play out")
            expect(lambda: len(console.turn_lines) >= 3, 5, "three per-turn latency lines")
        finally:
            if daemon is not None:
                daemon.stop()
            pcm = rec.stop() if rec is not None else b""
            emu_replies = [r for s in emu.sessions for r in s.replies]
            emu.stop()
            pa.stop()
        save_wav(out, pcm, pa.rate)
        for r in emu_replies:
            state = "interrupted" if r.interrupted else "complete"
            console.say(f"[agent] reply {r.text!r}: {r.frames} frames sent, {state}")
        console.say(f"saved what the speaker played: {out} ({len(pcm) / 2 / pa.rate:.1f} s)")

        problems = []
        if not console.interrupts:
            problems.append("the long reply was never interrupted (no PlaybackInterrupted)")
        if sum(1 for role, _ in console.texts if role == "user") < 3:
            problems.append(f"expected 3 user transcripts, got {console.texts}")
        if len(pcm) < pa.rate * 2:
            problems.append("the speaker recording is under a second long")
        if problems:
            raise DemoFailed("; ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo-speaker.wav"),
                        help="where to save what the speaker played (WAV)")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        run(args.out)
    except DemoFailed as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"demo OK in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
