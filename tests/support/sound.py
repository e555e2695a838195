"""Fixtures: the private PulseAudio server of speakerd/emulator/sound.py, shared or a test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from speakerd.emulator.sound import PulseServer

__all__ = ["PulseServer", "own_pulse_server", "pulse_audio", "pulse_server"]


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    """One PulseAudio server for the whole run (starting one costs ~0.1 s; stopped at the end)."""
    server = PulseServer(tmp_path_factory.mktemp("pulse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pulse_audio(pulse_server: PulseServer,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[PulseServer]:
    """The shared server with ALSA pointed at it; this test's pacat/parecord are ended after."""
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(pulse_server.alsa_config))
    try:
        yield pulse_server
    finally:
        for child in pulse_server._children:
            child.stop()
        pulse_server._children.clear()
        # A test may have turned the shared speaker down (the volume function does).
        pulse_server.set_sink_volume_percent(100)


@pytest.fixture
def own_pulse_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PulseServer]:
    """A PulseAudio server of this test's own, for tests that crash or restart it."""
    server = PulseServer(tmp_path / "pulse")
    server.start()
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(server.alsa_config))
    try:
        yield server
    finally:
        server.stop()
