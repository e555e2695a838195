"""What `speakerd run` writes for journald: one line per missing device, one for no GPIO."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gpiozero import Device

from speakerd.button import NoPinFactory, load_pin_factory
from speakerd.daemon import EX_UNAVAILABLE
from tests.support.daemon import WAIT, wait_until
from tests.support.process import FakeSystemd

ROOT = Path(__file__).resolve().parents[2]
KEY = "dgFAKEkey-7c1d0e9f2a3b4c5d"


def _config(tmp_path: Path, device: str = "nosuchpcm", level: str = "INFO") -> Path:
    raw = {"audio": {"input": {"device": device}, "output": {"device": device}},
           "log": {"state_dir": str(tmp_path / "state"), "level": level}}
    path = tmp_path / "speakerd.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GPIOZERO_", "NOTIFY_SOCKET", "WATCHDOG_", "JOURNAL_STREAM"))}
    # As under systemd: stderr is the journal's stream, which turns the priority prefixes on.
    return {**env, "PYTHONPATH": str(ROOT), "DEEPGRAM_API_KEY": KEY, "JOURNAL_STREAM": "8:12345",
            **extra}


def test_no_pin_factory_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no factory to load, one exception says which package to install."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)
    with pytest.raises(NoPinFactory) as caught:
        load_pin_factory()
    message = str(caught.value)
    assert "python3-lgpio" in message and "pip install lgpio" in message
    assert "\n" not in message


def test_run_without_a_pin_factory_is_one_error_line_and_69(tmp_path: Path) -> None:
    """`speakerd run` on a machine without GPIO: a single <3> line naming the fix, exit 69."""
    done = subprocess.run([sys.executable, "-m", "speakerd", "run", "--config", str(_config(tmp_path))],
                          env=_env(), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == EX_UNAVAILABLE, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(("<3>", "<2>"))]
    assert len(errors) == 1 and "no GPIO pin factory" in errors[0] and "python3-lgpio" in errors[0]
    assert "Traceback" not in done.stderr and "PinFactoryFallback" not in done.stderr


def test_missing_devices_are_one_line_each_and_alsa_lib_stays_quiet(tmp_path: Path) -> None:
    """Devices that cannot open: one warning each naming the device and its key; no `ALSA lib`."""
    fake = FakeSystemd()
    err = tmp_path / "stderr"
    config = _config(tmp_path, level="DEBUG")  # each retry is a debug line of our own

    def retries(device: str) -> int:
        return sum(line.startswith("<7>") and f"{device} unavailable" in line
                   for line in err.read_text(errors="replace").splitlines())

    with open(err, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "speakerd", "run", "--config", str(config)],
            env=_env(GPIOZERO_PIN_FACTORY="mock", GPIOZERO_MOCK_PIN_CLASS="mockpwmpin",
                     NOTIFY_SOCKET=fake.env_value),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out)
    try:
        fake.wait_for("READY=1")
        assert wait_until(lambda: any("speaker: " in t and "microphone: " in t
                                      for t in fake.first_lines()), WAIT), fake.first_lines()
        # Several failed opens of each device (backoff 0.5, 1, 2 s), each of which alsa-lib
        # would have printed about.
        assert wait_until(lambda: min(retries("microphone"), retries("speaker")) >= 3, WAIT), \
            (retries("microphone"), retries("speaker"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        fake.close()
    text = err.read_text(errors="replace")
    assert "ALSA lib" not in text
    for device, key in (("microphone", "audio.input.device"), ("speaker", "audio.output.device")):
        lines = [line for line in text.splitlines()
                 if f"{device} unavailable" in line and not line.startswith("<7>")]
        assert len(lines) == 1, text
        assert lines[0].startswith("<4>") and "'nosuchpcm'" in lines[0] and key in lines[0]


def test_reloads_while_devices_are_missing_never_hang(tmp_path: Path) -> None:
    """SIGHUP after SIGHUP while both devices fail to open: every reload ends in READY=1."""
    fake = FakeSystemd()
    err = tmp_path / "stderr"
    with open(err, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "speakerd", "run", "--config",
             str(_config(tmp_path, device="sysdefault", level="DEBUG"))],
            env=_env(GPIOZERO_PIN_FACTORY="mock", GPIOZERO_MOCK_PIN_CLASS="mockpwmpin",
                     NOTIFY_SOCKET=fake.env_value),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out)
    try:
        seen = fake.wait_for("READY=1")
        for _ in range(10):
            # A reload starts a new mic and speaker thread, which open their devices at once:
            # alsa-lib's error handler then runs in two threads together.
            proc.send_signal(signal.SIGHUP)
            seen = fake.wait_for("RELOADING=1", after=seen + 1)
            seen = fake.wait_for("READY=1", after=seen + 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        fake.close()
    assert "ALSA lib" not in err.read_text(errors="replace")
