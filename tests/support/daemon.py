"""Fixtures: the whole daemon on real parts — emulator, PulseAudio-backed ALSA, mock pins.

`DaemonRig` drives it like a user: press, speak into the microphone, release, listen to what
reached the speaker. Everything it waits on is a polled predicate with a generous timeout.
"""

from __future__ import annotations

import array
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speakerd.config import Config, ProviderSecrets, parse_config
from speakerd.daemon import Daemon, Hooks
from speakerd.emulator import Emulator
from speakerd.emulator.sound import PulseServer
from speakerd.events import State
from speakerd.notify import Notifier

from .alsa import load_wav, wait_until
from .emulator import TEST_KEY, fast_options

WAIT = 20.0  # generous: a busy 2-core CI machine must never make these flake
BUTTON = "GPIO17"
LED = "GPIO25"


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def rig_config(emulator: Emulator, pulse: PulseServer, state_dir: Path, dialect: str = "v1",
               **overrides: Any) -> Config:
    """A config pointing the daemon at the emulator and the PulseAudio devices, chimes off."""
    raw: dict[str, Any] = {
        "agent": {"dialect": dialect, "url": emulator.url(dialect)},
        "audio": {"input": {"device": pulse.mic_device, "sample_rate": pulse.rate},
                  "output": {"device": pulse.speaker_device, "sample_rate": pulse.rate}},
        # Chimes off: the speaker's monitor must carry agent audio only, so it can be compared.
        "chimes": {name: {"enabled": False} for name in ("press", "error", "goodbye")},
        "button": {"pin": BUTTON},
        "leds": [{"kind": "pwm", "pins": [LED]}],
        "log": {"state_dir": str(state_dir)},
    }
    return parse_config(merge(raw, overrides))


def envelope(pcm: bytes, rate: int, window: float = 0.02) -> list[float]:
    """RMS per window of S16_LE mono audio."""
    samples = array.array("h", pcm[: len(pcm) - len(pcm) % 2])
    step = max(1, int(rate * window))
    return [math.sqrt(sum(s * s for s in samples[i:i + step]) / step)
            for i in range(0, len(samples) - step + 1, step)]


def best_correlation(needle: list[float], haystack: list[float]) -> float:
    """The highest normalised correlation of `needle` slid along `haystack` (envelopes)."""
    n = len(needle)
    if n == 0 or len(haystack) < n:
        return 0.0
    mean_n = sum(needle) / n
    dn = [x - mean_n for x in needle]
    norm_n = math.sqrt(sum(x * x for x in dn)) or 1.0
    best = 0.0
    for i in range(len(haystack) - n + 1):
        window = haystack[i:i + n]
        mean_w = sum(window) / n
        dw = [x - mean_w for x in window]
        norm_w = math.sqrt(sum(x * x for x in dw)) or 1.0
        best = max(best, sum(a * b for a, b in zip(dn, dw, strict=True)) / (norm_n * norm_w))
    return best


def trim_silence(pcm: bytes, threshold: int = 300) -> bytes:
    """The span of S16_LE audio from the first to the last sample above the threshold."""
    samples = array.array("h", pcm[: len(pcm) - len(pcm) % 2])
    loud = [i for i, s in enumerate(samples) if abs(s) > threshold]
    return samples[loud[0]:loud[-1] + 1].tobytes() if loud else b""


def played_in_order(sent: bytes, heard: bytes, chunk: int = 1600) -> float:
    """The share of `sent`'s non-silent 50 ms chunks found byte for byte in `heard`, in order.

    Exact bytes, not envelopes: a playback underrun or a recorder glitch costs the chunks it
    touches instead of the whole comparison, while anything other than the sent audio matches
    nothing at all.
    """
    chunks = [sent[i:i + chunk] for i in range(0, len(sent) - chunk + 1, chunk)]
    chunks = [c for c in chunks if max(array.array("h", c), default=0) > 300]
    found, pos = 0, 0
    for c in chunks:
        at = heard.find(c, pos)
        if at >= 0:
            found, pos = found + 1, at + len(c)
    return found / len(chunks) if chunks else 0.0


class DaemonRig:
    """The daemon under test and the handles a test needs to play the user."""

    def __init__(self, cfg: Config, emulator: Emulator, pulse: PulseServer, pins: Any,
                 secrets: ProviderSecrets | None = None) -> None:
        self.cfg = cfg
        self.emulator = emulator
        self.pulse = pulse
        self.pins = pins
        self.states: list[tuple[str, float]] = []
        self.texts: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.daemon = Daemon(None, cfg, TEST_KEY, notifier=Notifier(environ={}),
                             hooks=Hooks(on_state=self._state, on_text=self._text),
                             secrets=secrets)

    def _state(self, state: str) -> None:
        with self._lock:
            self.states.append((state, time.monotonic()))

    def _text(self, role: str, content: str) -> None:
        with self._lock:
            self.texts.append((role, content))

    # --- the user's hands and voice --------------------------------------------------

    def _drive(self, low: bool) -> float:
        # From another thread, as the Pi's GPIO callback thread would deliver the edge.
        pin = self.pins.pin(BUTTON)
        t = time.monotonic()
        worker = threading.Thread(target=pin.drive_low if low else pin.drive_high)
        worker.start()
        worker.join(5)
        return t

    def press(self) -> float:
        return self._drive(True)

    def release(self) -> float:
        return self._drive(False)

    def speak(self, name_or_pcm: str | bytes = "hello.wav", wait: bool = True) -> bytes:
        """Play a fixture (or PCM) into the microphone; return the PCM played."""
        pcm = load_wav(name_or_pcm) if isinstance(name_or_pcm, str) else name_or_pcm
        proc = self.pulse.play_into_mic(pcm)
        if wait:
            assert wait_until(lambda: not proc.alive(), WAIT), "pacat did not finish"
            proc.stop()  # closes its log file now, so it is not counted as a leaked descriptor
        return pcm

    def full_turn(self, fixture: str = "hello.wav") -> bytes:
        """Press, speak, release, hear the reply out: back to idle. Returns what was spoken."""
        n = len(self.states)
        self.press()
        self.wait_state(State.LISTENING, after=n)
        spoken = self.speak(fixture)
        self.release()
        self.wait_state(State.SPEAKING, after=n)
        # Idle after that speaking: a short reply may be over before this looks.
        with self._lock:
            spoke = next(i for i in range(n, len(self.states)) if self.states[i][0] == State.SPEAKING)
        self.wait_state(State.IDLE, after=spoke + 1)
        return spoken

    # --- observations -------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self.daemon.parts.session.state if self.daemon.parts else "stopped"

    def state_names(self) -> list[str]:
        with self._lock:
            return [s for s, _ in self.states]

    def wait_state(self, state: str, timeout: float = WAIT, after: int = 0) -> float:
        """Wait until `state` appears in the history at index ≥ after; return when it began."""
        def seen() -> bool:
            with self._lock:
                return any(s == state for s, _ in self.states[after:])
        assert wait_until(seen, timeout), f"never reached {state}; states: {self.state_names()}"
        with self._lock:
            return next(t for s, t in self.states[after:] if s == state)

    def assert_parrot_heard(self, spoken: bytes, heard: bytes) -> None:
        """The agent's last reply repeats what was spoken, and the speaker played that reply."""
        reply = [r for r in self.emulator.sessions[-1].replies if r.kind == "turn"][-1]
        # The microphone side: the agent heard the user's words (it parrots what it received,
        # from its own speech onset to its end of speech), all of them.
        said = bytes(reply.audio)
        assert len(said) >= 0.8 * len(trim_silence(spoken)), "the agent heard only part of it"
        rate = self.pulse.rate
        assert best_correlation(envelope(said, rate), envelope(spoken, rate)) > 0.9
        # The speaker side: what the agent sent is what reached the speaker, in order.
        share = played_in_order(bytes(reply.audio), heard)
        assert share >= 0.9, f"only {share:.0%} of the reply reached the speaker"

    def led_history(self) -> list[str]:
        assert self.daemon.parts is not None
        return list(self.daemon.parts.leds.history)


@pytest.fixture
def agent_emulator() -> Iterator[Emulator]:
    """An emulator with fast timings, for the whole-daemon tests."""
    # end_of_speech longer than the fixtures' trailing silence (1.0 s): the test releases the
    # button before the agent's own end-of-turn detection would answer.
    emu = Emulator(fast_options(end_of_speech=1.5)).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def make_rig(agent_emulator: Emulator, pulse_audio: PulseServer, mock_pins: Any,
             tmp_path: Path) -> Iterator[Callable[..., DaemonRig]]:
    """A factory: make_rig(dialect="v1", secrets=None, **config_overrides) starts a daemon; all
    are stopped after."""
    rigs: list[DaemonRig] = []

    def make(dialect: str = "v1", secrets: ProviderSecrets | None = None,
             **overrides: Any) -> DaemonRig:
        cfg = rig_config(agent_emulator, pulse_audio, tmp_path / "state", dialect, **overrides)
        rig = DaemonRig(cfg, agent_emulator, pulse_audio, mock_pins, secrets)
        rig.daemon.start()
        rigs.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in rigs:
            rig.daemon.stop()
