"""`speakerd selftest` on real parts: PulseAudio-backed ALSA and mock pins."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from speakerd.emulator.sound import PulseServer
from speakerd.events import State
from speakerd.selftest import selftest
from tests.support.emulator import tone

pytestmark = pytest.mark.realtime


def _config(tmp_path: Path, pulse: PulseServer) -> str:
    path = tmp_path / "speakerd.yaml"
    path.write_text(yaml.safe_dump({
        "audio": {"input": {"device": pulse.mic_device, "sample_rate": pulse.rate},
                  "output": {"device": pulse.speaker_device, "sample_rate": pulse.rate}},
        "button": {"pin": "GPIO17"},
        "leds": [{"kind": "pwm", "pins": ["GPIO25"]}],
    }))
    return str(path)


def test_selftest_passes_with_sound_at_the_mic_and_a_press(
        pulse_audio: PulseServer, mock_pins: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tone out, level in, every LED state, a press: all checks pass and exit 0."""
    path = _config(tmp_path, pulse_audio)
    pulse_audio.play_into_mic(tone(4.0, pulse_audio.rate))
    done = threading.Event()
    pin = mock_pins.pin("GPIO17")

    def presser() -> None:
        # Keep pressing, as a person would, until the check is over.
        while not done.wait(0.1):
            pin.drive_low()
            done.wait(0.05)
            pin.drive_high()

    worker = threading.Thread(target=presser)
    worker.start()
    try:
        code = selftest(path, seconds=1.0, button_timeout=10.0, led_seconds=0.05)
    finally:
        done.set()
        worker.join(5)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "speaker: ok" in out and "button: ok" in out and "all checks passed" in out
    assert all(f"  {state}" in out for state in (State.IDLE, State.LISTENING, State.SPEAKING, State.ERROR))


def test_selftest_reports_a_silent_mic_and_a_missing_press(
        pulse_audio: PulseServer, mock_pins: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing at the mic and no press: both checks fail by name and the exit code is 1."""
    code = selftest(_config(tmp_path, pulse_audio), seconds=0.5, button_timeout=0.5, led_seconds=0.01)
    out = capsys.readouterr().out
    assert code == 1
    assert "microphone: FAILED" in out and "button: FAILED" in out
