"""What `speakerd run` writes for journald: priorities, one line per missing device, no pin factory."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gpiozero import Device

from speakerd.button import NoPinFactory, load_pin_factory
from speakerd.daemon import EX_UNAVAILABLE, JournalFormatter

from .support.daemon import WAIT, wait_until
from .test_daemon import FakeSystemd

ROOT = Path(__file__).resolve().parent.parent
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


def test_journal_formatter_prefixes_every_line_with_its_priority() -> None:
    """<7> debug, <6> info, <4> warning, <3> error, <2> critical; each traceback line too."""
    formatter = JournalFormatter("%(levelname)s %(message)s")
    for level, prefix in ((logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"),
                          (logging.ERROR, "<3>"), (logging.CRITICAL, "<2>")):
        record = logging.LogRecord("x", level, __file__, 1, "hello", None, None)
        assert formatter.format(record).startswith(prefix + logging.getLevelName(level))
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    lines = formatter.format(record).splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)


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
    config = _config(tmp_path, level="DEBUG")  # alsa-lib's own messages show as debug lines

    def routed() -> int:
        return sum("alsa-lib pcm.c" in line and line.startswith("<7>")
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
        # One alsa-lib message per failed open: the first two, then retries of both devices.
        assert wait_until(lambda: routed() >= 8, WAIT), routed()
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
